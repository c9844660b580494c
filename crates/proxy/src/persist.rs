//! The records that make a proxied INVITE survive a restart.
//!
//! Each INVITE server transaction that forwarded something has two
//! records, written as things change:
//!
//! * the **base** ([`BaseRecord`]): what does not change once sent — the
//!   caller's INVITE and where to answer, the route decisions, and for
//!   each branch the exact request that went out (destination, transport,
//!   Request-URI, branch id, the headers a CANCEL and an ACK need). It is
//!   written when a branch is added (before that branch's INVITE leaves),
//!   so a call writes it once, or once per serial failover.
//! * the **state** ([`StateRecord`]): small and rewritten on every change
//!   that matters after a restart (a branch answered 1xx or a final, a
//!   final went upstream, a CANCEL was sent, a deadline moved).
//!
//! The state is stored under the base's key with [`STATE_KEY_MARK`] xored
//! in; restore pairs them by the transaction's key hash and merges them
//! into a [`TxnRecord`]. The first state rides inside the base (one record
//! per INVITE forwarded; a state record of its own only once something
//! changes). Each branch's request is kept LZ4-compressed with the
//! caller's INVITE as the dictionary: it is that INVITE with a few header
//! edits, so it shrinks to a few hundred bytes. Records are encoded with
//! postcard behind a version byte and a kind byte; byte fields go through
//! serde_bytes (one copy, not one call per byte) and are borrowed when
//! encoding.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The current record format (6: branch requests packed as line runs of
/// the caller's INVITE; 5, whose requests are LZ4-compressed, is read
/// too).
pub const VERSION: u8 = 6;
/// The previous record format, still read.
const VERSION_5: u8 = 5;
/// Kind byte of a base record.
pub const KIND_BASE: u8 = 0;
/// Kind byte of a state record.
pub const KIND_STATE: u8 = 1;
/// Xored into a transaction's key hash to make the key of its state
/// record.
pub const STATE_KEY_MARK: u64 = 0x5a5a_0000_0000_0001;

/// A transaction as restore sees it: base and state merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// The server transaction key.
    pub key: Vec<u8>,
    /// The caller's INVITE, as received.
    pub request: Vec<u8>,
    pub peer: SocketAddr,
    pub peer_transport: u8,
    pub local: Option<(u8, SocketAddr)>,
    /// Server transaction state (see `server_state_code`).
    pub state: u8,
    pub last_status: u16,
    pub last_response: Option<Vec<u8>>,
    pub ctx: Option<CtxRecord>,
    /// When the record is of no use any more (unix ms).
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtxRecord {
    pub parallel: bool,
    /// Failover codes as inclusive runs.
    pub failover_ranges: Vec<(u16, u16)>,
    pub failover_on_timeout: bool,
    pub targets: Vec<TargetRecord>,
    pub next_target: u32,
    pub pop_route: bool,
    pub strict_ruri: Option<Vec<u8>>,
    pub record_route: bool,
    pub branches: Vec<BranchRecord>,
    pub best: Option<Vec<u8>>,
    pub challenges: Vec<Vec<u8>>,
    pub synthetic: Option<u16>,
    pub cancelled: Option<ReasonRecord>,
    pub final_sent: bool,
    pub got_2xx: bool,
    pub cancel_reason: Option<String>,
    pub ring_timeout: Option<u64>,
    pub rule: Option<String>,
    pub set: Option<String>,
    /// How the request is changed on branches still to be sent (failover after a restart).
    pub manipulation: Option<ManipulationRecord>,
}

/// A [`cairn_routing::Manipulation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManipulationRecord {
    pub ruri_user: Option<String>,
    pub ruri_host: Option<String>,
    pub add_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
}

impl ManipulationRecord {
    pub(crate) fn of(m: &cairn_routing::Manipulation) -> ManipulationRecord {
        ManipulationRecord {
            ruri_user: m.ruri_user.as_deref().map(str::to_owned),
            ruri_host: m.ruri_host.as_deref().map(str::to_owned),
            add_headers: m
                .add_headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            remove_headers: m.remove_headers.iter().map(|n| n.to_string()).collect(),
        }
    }

    pub(crate) fn into_manipulation(self) -> cairn_routing::Manipulation {
        cairn_routing::Manipulation {
            ruri_user: self.ruri_user.map(Into::into),
            ruri_host: self.ruri_host.map(Into::into),
            add_headers: self
                .add_headers
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            remove_headers: self.remove_headers.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub addr: SocketAddr,
    pub transport: u8,
    pub rewrite_ruri_host: bool,
    pub name: String,
    pub index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchRecord {
    pub target: TargetRecord,
    /// The request as sent on this branch (empty when none was sent).
    pub request: Vec<u8>,
    pub sent_at: u64,
    pub state: BranchState,
}

/// What changes on a branch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchState {
    pub provisional: bool,
    pub done: bool,
    /// 0 none, 1 pending, 2 sent.
    pub cancel: u8,
    pub cancel_reason: Option<ReasonRecord>,
    pub timed_out: bool,
    pub timer_c: u64,
    pub ring_deadline: Option<u64>,
    /// When the first CANCEL went out on this branch.
    pub cancel_sent_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReasonRecord {
    Caller(Vec<Vec<u8>>),
    CompletedElsewhere,
    NoAnswer,
    Final(u16),
}

/// What does not change once a branch is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord<'a> {
    #[serde(with = "serde_bytes", borrow)]
    pub key: Cow<'a, [u8]>,
    #[serde(with = "serde_bytes", borrow)]
    pub request: Cow<'a, [u8]>,
    pub peer: SocketAddr,
    pub peer_transport: u8,
    pub local: Option<(u8, SocketAddr)>,
    pub parallel: bool,
    /// The failover codes: inclusive runs as pairs `first, last`
    /// (version 5: every code).
    pub failover_codes: Vec<u16>,
    pub failover_on_timeout: bool,
    pub targets: Vec<TargetRecord>,
    pub pop_route: bool,
    #[serde(with = "serde_bytes", borrow)]
    pub strict_ruri: Option<Cow<'a, [u8]>>,
    pub record_route: bool,
    pub cancel_reason: Option<String>,
    pub ring_timeout: Option<u64>,
    pub rule: Option<String>,
    pub set: Option<String>,
    /// How the request is changed on branches still to be sent (failover after a restart).
    pub manipulation: Option<ManipulationRecord>,
    pub branches: Vec<BranchBase<'a>>,
    /// Until when the base is kept: past every deadline the state can
    /// reach without the base being written again.
    pub expires_at: u64,
    /// The state when no state record of its own was written yet.
    #[serde(borrow)]
    pub state: Option<StateRecord<'a>>,
    /// The format the record was read in (not stored: the version byte).
    #[serde(skip)]
    pub version: u8,
}

/// A branch as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchBase<'a> {
    pub target: TargetRecord,
    /// The request as sent, see [`pack_request`].
    #[serde(with = "serde_bytes", borrow)]
    pub request: Cow<'a, [u8]>,
    pub sent_at: u64,
}

/// The largest request a record unpacks (a damaged size is refused, not
/// allocated).
const MAX_REQUEST: usize = 1 << 20;

/// A branch's request, packed against the caller's INVITE (empty stays
/// empty). A forwarded request is that INVITE with a few lines added
/// (Via, Record-Route), changed (Max-Forwards, the Request-URI) or
/// removed (a Route): it is written as runs of lines copied from the
/// caller's INVITE and the lines of its own, so a branch costs about the
/// bytes the proxy added. Format: a sequence of varints `x`; `x & 1 == 0`
/// copies `x >> 1` bytes of the caller's INVITE from the offset in the
/// next varint, `x & 1 == 1` takes the next `x >> 1` bytes as they are.
pub fn pack_request(request: &[u8], caller: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.len() / 4 + 16);
    // The pending run: a copy (caller offset, length) or own bytes
    // (request start, end).
    let mut copy: Option<(usize, usize)> = None;
    let mut own: Option<(usize, usize)> = None;
    let mut cursor = 0; // in the caller: after the last line copied
    let mut pos = 0;
    while pos < request.len() {
        let end = line_end(request, pos);
        let line = &request[pos..end];
        match find_line(caller, cursor, line) {
            Some(at) => {
                if let Some((s, e)) = own.take() {
                    put_own(&mut out, &request[s..e]);
                }
                copy = match copy {
                    Some((off, len)) if off + len == at => Some((off, len + line.len())),
                    Some((off, len)) => {
                        put_copy(&mut out, off, len);
                        Some((at, line.len()))
                    }
                    None => Some((at, line.len())),
                };
                cursor = at + line.len();
            }
            None => {
                if let Some((off, len)) = copy.take() {
                    put_copy(&mut out, off, len);
                }
                own = Some((own.map_or(pos, |(s, _)| s), end));
            }
        }
        pos = end;
    }
    if let Some((off, len)) = copy {
        put_copy(&mut out, off, len);
    }
    if let Some((s, e)) = own {
        put_own(&mut out, &request[s..e]);
    }
    out
}

/// How many lines of the caller's INVITE past the cursor a line is looked
/// for (lines the proxy removed, such as a Route, are skipped).
const LOOK_AHEAD: usize = 8;

/// The end of the line starting at `pos` (after its LF, or the end).
fn line_end(b: &[u8], pos: usize) -> usize {
    memchr::memchr(b'\n', &b[pos..]).map_or(b.len(), |i| pos + i + 1)
}

/// Where `line` is in `caller`, as a whole line among the next
/// [`LOOK_AHEAD`] lines from `cursor`.
fn find_line(caller: &[u8], mut cursor: usize, line: &[u8]) -> Option<usize> {
    for _ in 0..LOOK_AHEAD {
        if cursor >= caller.len() {
            return None;
        }
        let end = line_end(caller, cursor);
        if &caller[cursor..end] == line {
            return Some(cursor);
        }
        cursor = end;
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn put_copy(out: &mut Vec<u8>, off: usize, len: usize) {
    put_varint(out, (len as u64) << 1);
    put_varint(out, off as u64);
}

fn put_own(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, ((bytes.len() as u64) << 1) | 1);
    out.extend_from_slice(bytes);
}

/// The request [`pack_request`] packed; `None` when damaged.
pub fn unpack_request(packed: &[u8], caller: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(if packed.is_empty() {
        0
    } else {
        caller.len() + 256
    });
    let mut p = packed;
    while !p.is_empty() {
        let x = get_varint(&mut p)?;
        let len = usize::try_from(x >> 1).ok()?;
        if len > MAX_REQUEST - out.len() {
            return None;
        }
        if x & 1 == 0 {
            let off = usize::try_from(get_varint(&mut p)?).ok()?;
            out.extend_from_slice(caller.get(off..off.checked_add(len)?)?);
        } else {
            out.extend_from_slice(p.get(..len)?);
            p = &p[len..];
        }
    }
    Some(out)
}

/// A branch's request as records of version 5 kept it: LZ4-compressed
/// with the caller's INVITE as the dictionary (read so that calls in
/// flight survive an upgrade).
fn unpack_request_v5(packed: &[u8], caller: &[u8]) -> Option<Vec<u8>> {
    if packed.is_empty() {
        return Some(Vec::new());
    }
    let size = u32::from_le_bytes(packed.get(..4)?.try_into().ok()?) as usize;
    if size > MAX_REQUEST {
        return None;
    }
    lz4_flex::block::decompress_size_prepended_with_dict(packed, caller).ok()
}

/// What changes while the transaction runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord<'a> {
    /// The key hash of the transaction (the base's store key).
    pub key_hash: u64,
    pub state: u8,
    pub last_status: u16,
    #[serde(with = "serde_bytes", borrow)]
    pub last_response: Option<Cow<'a, [u8]>>,
    pub next_target: u32,
    pub branches: Vec<BranchState>,
    #[serde(with = "serde_bytes", borrow)]
    pub best: Option<Cow<'a, [u8]>>,
    pub challenges: Vec<Cow<'a, [u8]>>,
    pub synthetic: Option<u16>,
    pub cancelled: Option<ReasonRecord>,
    pub final_sent: bool,
    pub got_2xx: bool,
    pub expires_at: u64,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
// Records are decoded one at a time: boxing the base would cost an
// allocation per record at restore.
#[allow(clippy::large_enum_variant)]
pub enum Part<'a> {
    Base(BaseRecord<'a>),
    State(StateRecord<'a>),
}

fn encode_kind<T: Serialize>(kind: u8, r: &T, size_hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint);
    out.push(VERSION);
    out.push(kind);
    postcard::to_extend(r, out).unwrap_or_default()
}

/// Encode a base record.
pub fn encode_base(r: &BaseRecord<'_>) -> Vec<u8> {
    // The caller's INVITE and the server key are most of it.
    let hint = r.request.len() + r.key.len() + 256 * (1 + r.branches.len());
    encode_kind(KIND_BASE, r, hint)
}

/// Encode a state record.
pub fn encode_state(r: &StateRecord<'_>) -> Vec<u8> {
    let hint = r.last_response.as_ref().map_or(0, |b| b.len()) + 128;
    encode_kind(KIND_STATE, r, hint)
}

/// Decode one record; `None` for another version or a damaged record.
pub fn decode(b: &[u8]) -> Option<Part<'_>> {
    match b {
        [v @ (VERSION | VERSION_5), KIND_BASE, rest @ ..] => postcard::from_bytes(rest)
            .ok()
            .map(|r| Part::Base(BaseRecord { version: *v, ..r })),
        [VERSION | VERSION_5, KIND_STATE, rest @ ..] => {
            postcard::from_bytes(rest).ok().map(Part::State)
        }
        _ => None,
    }
}

/// Pair the bases and states of a set of stored values into
/// transactions. Returns the merged records and how many values were
/// damaged, of another version, or without their other half (a base
/// without a state is restored as just sent; a state without a base is
/// of no use).
pub fn merge_all<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> (Vec<TxnRecord>, usize) {
    let mut bases: Vec<BaseRecord<'a>> = Vec::new();
    let mut states: HashMap<u64, StateRecord<'a>> = HashMap::new();
    let mut bad = 0;
    for v in values {
        match decode(v) {
            Some(Part::Base(b)) => bases.push(b),
            Some(Part::State(s)) => {
                states.insert(s.key_hash, s);
            }
            None => bad += 1,
        }
    }
    let mut out = Vec::with_capacity(bases.len());
    for mut b in bases {
        let embedded = b.state.take();
        let state = states.remove(&crate::branch::key_hash(&b.key)).or(embedded);
        match merge(b, state) {
            Some(r) => out.push(r),
            None => bad += 1,
        }
    }
    (out, bad + states.len())
}

fn owned(c: Cow<'_, [u8]>) -> Vec<u8> {
    c.into_owned()
}

/// One transaction from its base and (when found) its state; `None` when
/// a branch's request cannot be unpacked.
pub fn merge(b: BaseRecord<'_>, s: Option<StateRecord<'_>>) -> Option<TxnRecord> {
    let mut s = s.unwrap_or_else(|| StateRecord {
        key_hash: 0,
        state: 0,
        last_status: 0,
        last_response: None,
        next_target: b.branches.len() as u32,
        branches: Vec::new(),
        best: None,
        challenges: Vec::new(),
        synthetic: None,
        cancelled: None,
        final_sent: false,
        got_2xx: false,
        expires_at: b.expires_at,
    });
    let mut states = std::mem::take(&mut s.branches).into_iter();
    let mut branches = Vec::with_capacity(b.branches.len());
    for bb in b.branches {
        branches.push(BranchRecord {
            target: bb.target,
            request: if b.version == VERSION_5 {
                unpack_request_v5(&bb.request, &b.request)?
            } else {
                unpack_request(&bb.request, &b.request)?
            },
            sent_at: bb.sent_at,
            // No state for it: timer C counts from when it was sent.
            state: states.next().unwrap_or_default(),
        });
    }
    let failover_ranges = if b.version == VERSION_5 {
        // Every code by itself.
        b.failover_codes.iter().map(|&c| (c, c)).collect()
    } else {
        let pairs = b.failover_codes.chunks_exact(2);
        pairs.map(|p| (p[0], p[1])).collect()
    };
    Some(TxnRecord {
        key: owned(b.key),
        request: owned(b.request),
        peer: b.peer,
        peer_transport: b.peer_transport,
        local: b.local,
        state: s.state,
        last_status: s.last_status,
        last_response: s.last_response.map(owned),
        ctx: Some(CtxRecord {
            parallel: b.parallel,
            failover_ranges,
            failover_on_timeout: b.failover_on_timeout,
            targets: b.targets,
            next_target: s.next_target,
            pop_route: b.pop_route,
            strict_ruri: b.strict_ruri.map(owned),
            record_route: b.record_route,
            branches,
            best: s.best.map(owned),
            challenges: s.challenges.into_iter().map(owned).collect(),
            synthetic: s.synthetic,
            cancelled: s.cancelled,
            final_sent: s.final_sent,
            got_2xx: s.got_2xx,
            cancel_reason: b.cancel_reason,
            ring_timeout: b.ring_timeout,
            rule: b.rule,
            set: b.set,
            manipulation: b.manipulation,
        }),
        expires_at: s.expires_at.min(b.expires_at),
    })
}
pub(crate) fn transport_code(t: cairn_sip::Transport) -> u8 {
    match t {
        cairn_sip::Transport::Udp => 0,
        cairn_sip::Transport::Tcp => 1,
        cairn_sip::Transport::Tls => 2,
        cairn_sip::Transport::Ws => 3,
        cairn_sip::Transport::Wss => 4,
    }
}

pub(crate) fn transport_of(c: u8) -> cairn_sip::Transport {
    match c {
        1 => cairn_sip::Transport::Tcp,
        2 => cairn_sip::Transport::Tls,
        3 => cairn_sip::Transport::Ws,
        4 => cairn_sip::Transport::Wss,
        _ => cairn_sip::Transport::Udp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-caller\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1@192.0.2.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n";

    fn sent() -> Vec<u8> {
        let s = std::str::from_utf8(CALLER).unwrap();
        s.replacen(
            "Via:",
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcn0123\r\nVia:",
            1,
        )
        .replacen("Max-Forwards: 70", "Max-Forwards: 69", 1)
        .into_bytes()
    }

    #[test]
    fn a_branch_request_packs_small_against_the_callers_invite() {
        let req = sent();
        let packed = pack_request(&req, CALLER);
        assert!(
            packed.len() < req.len() / 3,
            "{} bytes packed from {}",
            packed.len(),
            req.len()
        );
        assert_eq!(unpack_request(&packed, CALLER).unwrap(), req);
        assert_eq!(unpack_request(&[], CALLER).unwrap(), Vec::<u8>::new());
    }

    /// A forwarded request with every kind of edit: Request-URI
    /// rewritten, Via and Record-Route added, Route removed, Max-Forwards
    /// changed, a header added at the end, body kept.
    fn edited() -> (Vec<u8>, Vec<u8>) {
        let caller = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-caller\r\nRoute: <sip:10.0.0.1;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1@192.0.2.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\nContent-Type: application/sdp\r\nContent-Length: 28\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
        let sent = caller
            .replacen("sip:bob@example.com SIP", "sip:bob@198.51.100.9 SIP", 1)
            .replacen(
                "Via:",
                "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcn1\r\nVia:",
                1,
            )
            .replacen("Route: <sip:10.0.0.1;lr>\r\n", "", 1)
            .replacen(
                "Max-Forwards: 70",
                "Record-Route: <sip:10.0.0.1;lr>\r\nMax-Forwards: 69",
                1,
            )
            .replacen(
                "Content-Length: 28\r\n",
                "Content-Length: 28\r\nX-Added: 1\r\n",
                1,
            );
        (caller.into(), sent.into())
    }

    #[test]
    fn every_kind_of_edit_round_trips_and_costs_about_the_bytes_added() {
        let (caller, sent) = edited();
        let packed = pack_request(&sent, &caller);
        assert_eq!(unpack_request(&packed, &caller).unwrap(), sent);
        // The lines of its own: start line, Via, Record-Route +
        // Max-Forwards, X-Added (about 170 bytes), plus a few varints.
        assert!(
            packed.len() < 200,
            "{} bytes packed from {}",
            packed.len(),
            sent.len()
        );
    }

    #[test]
    fn any_request_round_trips_whatever_it_shares_with_the_caller() {
        let (caller, sent) = edited();
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (caller.clone(), caller.clone()),
            (caller.clone(), b"OPTIONS sip:x SIP/2.0\r\n\r\n".to_vec()),
            (Vec::new(), sent.clone()),
            (caller.clone(), sent[..sent.len() - 3].to_vec()),
            (b"no line end".to_vec(), b"no line end".to_vec()),
            (b"a\nb\na\nb\n".to_vec(), b"b\na\nb\na\nc".to_vec()),
        ];
        for (caller, req) in cases {
            let packed = pack_request(&req, &caller);
            assert_eq!(unpack_request(&packed, &caller).unwrap(), req);
        }
        // Every cut of a real request, and every request with one line
        // dropped.
        for cut in 0..sent.len() {
            let req = &sent[..cut];
            assert_eq!(
                unpack_request(&pack_request(req, &caller), &caller).unwrap(),
                req
            );
        }
        let lines: Vec<&[u8]> = sent.split_inclusive(|&b| b == b'\n').collect();
        for skip in 0..lines.len() {
            let req: Vec<u8> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .flat_map(|(_, l)| l.iter().copied())
                .collect();
            assert_eq!(
                unpack_request(&pack_request(&req, &caller), &caller).unwrap(),
                req
            );
        }
    }

    #[test]
    fn a_damaged_packed_request_is_refused() {
        let req = sent();
        let packed = pack_request(&req, CALLER);
        // A copy past the end of the caller's INVITE.
        let mut bad = Vec::new();
        put_copy(&mut bad, CALLER.len(), 1);
        assert_eq!(unpack_request(&bad, CALLER), None);
        // A run longer than the largest request is refused before
        // anything is allocated.
        let mut bad = Vec::new();
        put_varint(&mut bad, ((MAX_REQUEST as u64 + 1) << 1) | 1);
        assert_eq!(unpack_request(&bad, CALLER), None);
        let mut bad = Vec::new();
        put_varint(&mut bad, u64::MAX);
        assert_eq!(unpack_request(&bad, CALLER), None);
        // An unterminated varint, bytes of its own cut short.
        assert_eq!(unpack_request(&[0x80], CALLER), None);
        assert_eq!(unpack_request(&[0xff; 11], CALLER), None);
        assert_eq!(unpack_request(&[9, b'a'], CALLER), None);
        for cut in 1..packed.len() {
            // Cut inside a run: refused; cut between runs: a shorter
            // request, never a panic.
            if let Some(r) = unpack_request(&packed[..cut], CALLER) {
                assert!(req.starts_with(&r));
            }
        }
    }

    #[test]
    fn a_record_of_version_5_is_still_read() {
        let req = sent();
        let mut packed_v5 = (req.len() as u32).to_le_bytes().to_vec();
        packed_v5.extend(lz4_flex::block::compress_with_dict(&req, CALLER));
        let target = TargetRecord {
            addr: "192.0.2.9:5060".parse().unwrap(),
            transport: 0,
            rewrite_ruri_host: false,
            name: "gw".into(),
            index: 0,
        };
        let base = BaseRecord {
            key: Cow::Borrowed(b"key"),
            request: Cow::Borrowed(CALLER),
            peer: "192.0.2.1:5060".parse().unwrap(),
            peer_transport: 0,
            local: None,
            parallel: false,
            failover_codes: vec![],
            failover_on_timeout: false,
            targets: vec![target.clone()],
            pop_route: false,
            strict_ruri: None,
            record_route: false,
            cancel_reason: None,
            ring_timeout: None,
            rule: None,
            set: None,
            manipulation: None,
            branches: vec![BranchBase {
                target,
                request: Cow::Owned(packed_v5),
                sent_at: 1,
            }],
            expires_at: 10,
            state: None,
            version: VERSION,
        };
        let mut v5 = encode_base(&base);
        assert_eq!(v5[0], VERSION);
        v5[0] = VERSION_5;
        let (txns, bad) = merge_all([v5.as_slice()]);
        assert_eq!(bad, 0);
        assert_eq!(txns[0].ctx.as_ref().unwrap().branches[0].request, req);
        // The same bytes under the current version are not LZ4: refused.
        v5[0] = VERSION;
        assert_eq!(merge_all([v5.as_slice()]).0.len(), 0);
    }
}
