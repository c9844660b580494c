//! The Reason header (RFC 3326) of the CANCELs cairn sends.

use bytes::Bytes;
use smallvec::SmallVec;

/// Why cairn cancels a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// The caller sent a CANCEL; its Reason values, if any, are kept.
    Caller(SmallVec<[Bytes; 2]>),
    /// Another branch of a parallel fork answered 2xx.
    CompletedElsewhere,
    /// The branch rang too long (timer C) or timed out.
    NoAnswer,
    /// Another branch answered this 6xx.
    Final(u16),
}

impl CancelReason {
    /// The Reason values for the CANCEL (several pass intact).
    pub fn values(&self) -> SmallVec<[Bytes; 2]> {
        let one = |s: &'static str| SmallVec::from_iter([Bytes::from_static(s.as_bytes())]);
        match self {
            CancelReason::Caller(v) if !v.is_empty() => v.clone(),
            CancelReason::Caller(_) => one("SIP;cause=487;text=\"ORIGINATOR_CANCEL\""),
            CancelReason::CompletedElsewhere => {
                one("SIP;cause=200;text=\"Call completed elsewhere\"")
            }
            CancelReason::NoAnswer => one("SIP;cause=480;text=\"NO_ANSWER\""),
            CancelReason::Final(code) => SmallVec::from_iter([Bytes::from(format!(
                "SIP;cause={code};text=\"{}\"",
                cairn_sip::build::reason_phrase(*code)
            ))]),
        }
    }
}
