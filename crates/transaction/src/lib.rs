//! cairn-transaction: the RFC 3261 section 17 transaction layer as
//! sans-I/O state machines.
//!
//! Each transaction takes events (a message, a timer firing, a transport
//! error) with the current time from an injected clock, and pushes
//! [`Action`]s: send bytes to its peer, arm a timer at an absolute
//! deadline, or end. Nothing here does I/O or reads a clock, so every
//! schedule and timeout is tested on a virtual clock. Timers are plain
//! deadlines kept by the owner in one [`TimerQueue`]: no task or OS timer
//! per transaction.
//!
//! INVITE server and client transactions follow RFC 6026 (the
//! "Accepted" state), so that 2xx retransmissions are forwarded and
//! INVITE retransmissions after a 2xx are absorbed.

pub mod client;
pub mod key;
pub mod server;
pub mod timer;

pub use client::{ClientInvite, ClientNonInvite};
pub use key::{ClientKey, ServerKey};
pub use server::{ServerInvite, ServerNonInvite};
pub use timer::{Timer, TimerQueue, Timers};

use bytes::Bytes;

/// Milliseconds on the core's clock (the driver maps its clock to it; the
/// tests use a virtual one).
pub type Millis = u64;

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the transaction's peer.
    Send(Bytes),
    /// Call `on_timer(timer)` at this time (absolute).
    Arm(Timer, Millis),
    /// The transaction is over: forget it.
    Terminated,
}

/// How a transaction disposed of an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Hand it to the transaction user (the proxy core).
    Pass,
    /// A retransmission or a message the state absorbs.
    Absorb,
}

/// Why a transaction failed; the proxy turns it into a response
/// (RFC 3261 8.1.3.1, 16.7: 408 for a timeout, 503 for a transport error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    TransportError,
}

impl Failure {
    /// The status code that stands for this failure.
    pub fn status(self) -> u16 {
        match self {
            Failure::Timeout => 408,
            Failure::TransportError => 503,
        }
    }
}
