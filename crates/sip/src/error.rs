//! Parse errors that say what is wrong in words a 400 reason phrase or a
//! log line can carry.

use std::borrow::Cow;
use std::fmt;

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The status a request with this error should be answered with
    /// (400, or 505 for an unsupported SIP version, 513 for an oversize
    /// message). Responses are never answered.
    pub status: u16,
    /// A short description: fit for a reason phrase and a log line.
    pub reason: Cow<'static, str>,
}

impl ParseError {
    pub(crate) fn bad(reason: impl Into<Cow<'static, str>>) -> Self {
        ParseError {
            status: 400,
            reason: reason.into(),
        }
    }

    pub(crate) fn with_status(status: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        ParseError {
            status,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for ParseError {}
