//! cairn-proxy: the transaction-stateful proxy core (RFC 3261 section 16)
//! as a sans-I/O state machine.
//!
//! [`Proxy`] takes events — a message from a peer, timers due, a failed
//! send — each with the time from an injected clock, and queues
//! [`Output`]s for the driver. It validates requests (16.3), processes
//! routes (16.4), forks to the targets the routing policy chooses
//! (serially with failover, or in parallel), aggregates responses (16.7),
//! runs timer C, and routes every CANCEL from its INVITE's transaction.

pub mod branch;
pub mod config;
mod core;
pub mod dialog;
pub mod persist;
pub mod probe;
pub mod reason;
pub mod stats;

pub use crate::config::{CancelConfig, CoreConfig, LocalAddr, UnmatchedCancel};
pub use crate::core::{
    BranchInfo, Output, Peer, Proxy, RestoreReport, Space, Transmit, TxnId, TxnInfo,
};
pub use crate::reason::{CallerReason, CancelReason, ReasonConfig};
pub use crate::stats::Stats;
pub use cairn_transaction::Millis;
