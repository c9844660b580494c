//! cairn-sip: the SIP message layer. Parse, edit and build SIP messages;
//! no I/O, no async runtime, no panics on any input.
//!
//! * [`Message::parse`] indexes a message lazily and zero-copy: the bytes
//!   stay in one shared buffer, headers are spans into it, and only what
//!   every hop needs is parsed at once.
//! * [`Editor`] records the edits a proxy makes when forwarding (Via,
//!   Route, Record-Route, Max-Forwards, Request-URI, added headers) and
//!   writes the result with one allocation; untouched bytes go out as
//!   they came in.
//! * [`build`] makes responses, CANCELs and ACKs.

pub mod addr;
pub mod build;
pub mod edit;
pub mod error;
mod fast;
pub mod header;
pub mod message;
pub mod method;
pub mod params;
mod scan;
pub mod transport;
pub mod uri;
pub mod via;

pub use addr::NameAddr;
pub use edit::Editor;
pub use error::ParseError;
pub use header::HeaderName;
pub use message::{CSeq, Header, Limits, Message, Span, MAX_LINE_LIMIT};
pub use method::Method;
pub use params::Params;
pub use transport::Transport;
pub use uri::{Scheme, Uri};
pub use via::{Via, MAGIC_COOKIE};
