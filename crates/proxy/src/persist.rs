//! The records that make a proxied INVITE survive a restart.
//!
//! One record per INVITE server transaction, written (upserted) whenever
//! something that matters after a restart changes: a branch was sent, a
//! branch answered 1xx or a final, a final went upstream, a CANCEL was
//! sent. It holds everything needed to act as if nothing had happened:
//! the caller's INVITE and where to answer, and for each branch the exact
//! request that went out (destination, transport, Request-URI, branch id,
//! the headers a CANCEL and an ACK need) with its state and deadlines.
//! Records are encoded with postcard behind a version byte; byte fields
//! go through serde_bytes (one copy, not one call per byte).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The current record format (4: the rule's manipulation of the request).
pub const VERSION: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// The server transaction key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The caller's INVITE, as received.
    #[serde(with = "serde_bytes")]
    pub request: Vec<u8>,
    pub peer: SocketAddr,
    pub peer_transport: u8,
    pub local: Option<(u8, SocketAddr)>,
    /// Server transaction state (see `server_state_code`).
    pub state: u8,
    pub last_status: u16,
    #[serde(with = "serde_bytes")]
    pub last_response: Option<Vec<u8>>,
    pub ctx: Option<CtxRecord>,
    /// When the record is of no use any more (unix ms).
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtxRecord {
    pub parallel: bool,
    pub failover_codes: Vec<u16>,
    pub failover_on_timeout: bool,
    pub targets: Vec<TargetRecord>,
    pub next_target: u32,
    pub pop_route: bool,
    #[serde(with = "serde_bytes")]
    pub strict_ruri: Option<Vec<u8>>,
    pub record_route: bool,
    pub branches: Vec<BranchRecord>,
    #[serde(with = "serde_bytes")]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchRecord {
    pub target: TargetRecord,
    /// The request as sent on this branch (empty when none was sent).
    #[serde(with = "serde_bytes")]
    pub request: Vec<u8>,
    pub sent_at: u64,
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

/// Encode a record: a version byte, then postcard.
pub fn encode(r: &TxnRecord) -> Vec<u8> {
    let out = vec![VERSION];
    match postcard::to_extend(r, out) {
        Ok(v) => v,
        Err(_) => Vec::new(),
    }
}

/// Decode a record; `None` for another version or a damaged record.
pub fn decode(b: &[u8]) -> Option<TxnRecord> {
    match b.split_first() {
        Some((&VERSION, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
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
