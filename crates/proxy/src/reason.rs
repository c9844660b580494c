//! The Reason header (RFC 3326) of the CANCELs cairn sends, and what the
//! operator can configure about it.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

/// What to do with the Reason headers of a caller's CANCEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallerReason {
    /// Pass them on unchanged (several values, SIP and Q.850, intact).
    #[default]
    Preserve,
    /// Replace them with cairn's own (the rule's, else `originator`).
    Replace,
    /// Send the CANCEL without any Reason.
    Drop,
}

/// The Reason values cairn writes on the CANCELs it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonConfig {
    pub caller: CallerReason,
    /// Relaying a caller's CANCEL that carried no Reason.
    pub originator: Arc<str>,
    /// A branch rang too long (timer C, ring timeout).
    pub no_answer: Arc<str>,
    /// Another branch of a parallel fork answered.
    pub completed_elsewhere: Arc<str>,
}

impl Default for ReasonConfig {
    fn default() -> Self {
        ReasonConfig {
            caller: CallerReason::Preserve,
            originator: Arc::from("SIP;cause=487;text=\"ORIGINATOR_CANCEL\""),
            no_answer: Arc::from("SIP;cause=480;text=\"NO_ANSWER\""),
            completed_elsewhere: Arc::from("SIP;cause=200;text=\"Call completed elsewhere\""),
        }
    }
}

/// Why cairn cancels a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// The caller sent a CANCEL, with these Reason values (maybe none).
    Caller(SmallVec<[Bytes; 2]>),
    /// Another branch of a parallel fork answered 2xx.
    CompletedElsewhere,
    /// The branch rang too long (timer C or the rule's ring timeout).
    NoAnswer,
    /// Another branch answered this 6xx.
    Final(u16),
}

impl CancelReason {
    /// The Reason values for the CANCEL. A rule's own Reason replaces
    /// cairn's defaults; a caller's Reason is kept unless configured
    /// otherwise.
    pub fn values(&self, cfg: &ReasonConfig, rule: Option<&Arc<str>>) -> SmallVec<[Bytes; 2]> {
        let text = |s: &Arc<str>| SmallVec::from_iter([Bytes::copy_from_slice(s.as_bytes())]);
        if let CancelReason::Caller(v) = self {
            match cfg.caller {
                CallerReason::Preserve if !v.is_empty() => return v.clone(),
                CallerReason::Drop => return SmallVec::new(),
                _ => {}
            }
        }
        if let Some(r) = rule {
            return text(r);
        }
        match self {
            CancelReason::Caller(_) => text(&cfg.originator),
            CancelReason::CompletedElsewhere => text(&cfg.completed_elsewhere),
            CancelReason::NoAnswer => text(&cfg.no_answer),
            CancelReason::Final(code) => SmallVec::from_iter([Bytes::from(format!(
                "SIP;cause={code};text=\"{}\"",
                cairn_sip::build::reason_phrase(*code)
            ))]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&'static str]) -> SmallVec<[Bytes; 2]> {
        s.iter().map(|x| Bytes::from_static(x.as_bytes())).collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let cfg = ReasonConfig::default();
        let caller = CancelReason::Caller(v(&["SIP;cause=200", "Q.850;cause=16"]));
        assert_eq!(
            caller.values(&cfg, None),
            v(&["SIP;cause=200", "Q.850;cause=16"])
        );
        assert_eq!(
            CancelReason::Caller(v(&[])).values(&cfg, None),
            v(&["SIP;cause=487;text=\"ORIGINATOR_CANCEL\""])
        );
        assert_eq!(
            CancelReason::NoAnswer.values(&cfg, None),
            v(&["SIP;cause=480;text=\"NO_ANSWER\""])
        );
        assert_eq!(
            CancelReason::CompletedElsewhere.values(&cfg, None),
            v(&["SIP;cause=200;text=\"Call completed elsewhere\""])
        );
        let rule: Arc<str> = Arc::from("SIP;cause=486;text=\"Rule says\"");
        assert_eq!(
            CancelReason::NoAnswer.values(&cfg, Some(&rule)),
            v(&["SIP;cause=486;text=\"Rule says\""])
        );
        assert_eq!(
            caller.values(&cfg, Some(&rule)),
            v(&["SIP;cause=200", "Q.850;cause=16"]),
            "the caller's wins when preserved"
        );
        let replace = ReasonConfig {
            caller: CallerReason::Replace,
            ..cfg.clone()
        };
        assert_eq!(
            caller.values(&replace, None),
            v(&["SIP;cause=487;text=\"ORIGINATOR_CANCEL\""])
        );
        let drop = ReasonConfig {
            caller: CallerReason::Drop,
            ..cfg
        };
        assert!(caller.values(&drop, None).is_empty());
    }
}
