//! cairn-sip: the SIP message layer. Parse, edit and build SIP messages; no I/O.

pub mod transport;

pub use transport::Transport;
