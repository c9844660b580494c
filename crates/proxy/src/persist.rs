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

/// The current record format (5: the rule's manipulation of the request).
pub const VERSION: u8 = 5;
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
    pub failover_codes: Vec<u16>,
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

/// A branch's request, LZ4-compressed with the caller's INVITE as the
/// dictionary (empty stays empty).
pub fn pack_request(request: &[u8], caller: &[u8]) -> Vec<u8> {
    if request.is_empty() {
        return Vec::new();
    }
    lz4_flex::block::compress_prepend_size_with_dict(request, caller)
}

/// The request [`pack_request`] packed; `None` when damaged.
pub fn unpack_request(packed: &[u8], caller: &[u8]) -> Option<Vec<u8>> {
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
pub enum Part<'a> {
    Base(BaseRecord<'a>),
    State(StateRecord<'a>),
}

fn encode_kind<T: Serialize>(kind: u8, r: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(VERSION);
    out.push(kind);
    postcard::to_extend(r, out).unwrap_or_default()
}

/// Encode a base record.
pub fn encode_base(r: &BaseRecord<'_>) -> Vec<u8> {
    encode_kind(KIND_BASE, r)
}

/// Encode a state record.
pub fn encode_state(r: &StateRecord<'_>) -> Vec<u8> {
    encode_kind(KIND_STATE, r)
}

/// Decode one record; `None` for another version or a damaged record.
pub fn decode(b: &[u8]) -> Option<Part<'_>> {
    match b {
        [VERSION, KIND_BASE, rest @ ..] => postcard::from_bytes(rest).ok().map(Part::Base),
        [VERSION, KIND_STATE, rest @ ..] => postcard::from_bytes(rest).ok().map(Part::State),
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
            request: unpack_request(&bb.request, &b.request)?,
            sent_at: bb.sent_at,
            // No state for it: timer C counts from when it was sent.
            state: states.next().unwrap_or_default(),
        });
    }
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
            failover_codes: b.failover_codes,
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

    #[test]
    fn a_damaged_packed_request_is_refused() {
        let req = sent();
        let mut packed = pack_request(&req, CALLER);
        // A size of 4 GiB is refused before anything is allocated.
        packed[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(unpack_request(&packed, CALLER), None);
        assert_eq!(unpack_request(&[1, 2], CALLER), None);
        let mut packed = pack_request(&req, CALLER);
        packed.truncate(packed.len() / 2);
        assert_eq!(unpack_request(&packed, CALLER), None);
    }
}
