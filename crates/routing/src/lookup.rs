//! Routing lookups: a rule that asks an external HTTP service where a request goes.
//!
//! The policy only decides *that* a lookup is needed ([`Decision::Lookup`](crate::Decision))
//! and turns the service's answer ([`LookupAnswer`]) or its failure into a decision
//! ([`Policy::lookup_answer`](crate::Policy::lookup_answer),
//! [`Policy::lookup_failed`](crate::Policy::lookup_failed)); the HTTP exchange itself is the
//! driver's, so this crate stays sans-I/O.

use std::fmt;

use serde::Deserialize;

/// The most targets an answer may name (a parallel answer forks to all of them).
pub const MAX_LOOKUP_TARGETS: usize = 16;

/// The longest `lookup.timeout_ms`.
pub const MAX_LOOKUP_TIMEOUT_MS: u64 = 60_000;

/// The JSON answer of a routing service: either targets to try
///
/// ```json
/// {"targets": ["sip:192.0.2.10:5060", "sip:192.0.2.11;transport=tcp"], "mode": "serial"}
/// ```
///
/// or a final response for the caller: `{"code": 486, "reason": "Busy Here"}`.
/// Unknown keys make the answer invalid, so a misspelt key is noticed instead of ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupAnswer {
    /// Destination URIs, same form as `destination_set.destinations[].uri`
    /// (numeric IP hosts only).
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// How the targets are tried. Default serial.
    #[serde(default)]
    pub mode: Option<LookupMode>,
    /// A final response (300 to 699) instead of targets.
    #[serde(default)]
    pub code: Option<u16>,
    /// Its reason phrase; defaults to the code's standard phrase.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `mode` of a [`LookupAnswer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupMode {
    /// One target at a time, in order, the next on failover (5xx, 408 or a timeout).
    #[default]
    Serial,
    /// Every target at once.
    Parallel,
}

/// Why a lookup produced no usable answer. Displayed in logs; the call then gets the rule's
/// fallback set or failure response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The answer was understood but is not acceptable (bad target URI, no targets, ...).
    InvalidAnswer(String),
    /// The lookup's rule is not in this policy any more (the policy was replaced).
    UnknownRule,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::InvalidAnswer(m) => write!(f, "invalid answer: {m}"),
            LookupError::UnknownRule => f.write_str("the rule is no longer configured"),
        }
    }
}

impl std::error::Error for LookupError {}

/// Check a lookup URL: `http://HOST[:PORT][/PATH][?QUERY]`. Plain HTTP only: cairn's HTTP
/// client has no TLS. The host may be a name (resolved by the driver) or an IP address.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "\"{url}\" contains whitespace or control characters"
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "\"{url}\" is not a URL: expected http://HOST[:PORT]/PATH"
        ));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "\"{url}\": https is not supported (cairn's HTTP client has no TLS): use http://"
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "\"{url}\": scheme \"{scheme}\" is not supported: use http://"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!(
            "\"{url}\": user information in the URL is not supported"
        ));
    }
    if authority.is_empty() {
        return Err(format!("\"{url}\": the host is missing"));
    }
    if url.contains('#') {
        return Err(format!("\"{url}\": a fragment ('#') is not allowed"));
    }
    crate::host::Host::parse_with_port(authority).map_err(|m| format!("\"{url}\": {m}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:8080/route",
            "http://routing.example.com/v1/route?x=1",
            "HTTP://[::1]:8080",
            "http://localhost",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, want) in [
            ("https://127.0.0.1/route", "no TLS"),
            ("ftp://127.0.0.1/route", "scheme \"ftp\""),
            ("127.0.0.1:8080/route", "not a URL"),
            ("http:///route", "host is missing"),
            ("http://user:pw@127.0.0.1/", "user information"),
            ("http://127.0.0.1:0/", "port 0"),
            ("http://127.0.0.1/a b", "whitespace"),
            ("http://127.0.0.1/#frag", "fragment"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn answers_deserialize() {
        let a: LookupAnswer =
            serde_json::from_str(r#"{"targets": ["sip:127.0.0.1:5071"], "mode": "parallel"}"#)
                .unwrap();
        assert_eq!(
            a.targets.as_deref(),
            Some(&["sip:127.0.0.1:5071".to_string()][..])
        );
        assert_eq!(a.mode, Some(LookupMode::Parallel));
        let a: LookupAnswer = serde_json::from_str(r#"{"code": 486, "reason": "Busy"}"#).unwrap();
        assert_eq!((a.code, a.reason.as_deref()), (Some(486), Some("Busy")));
        assert!(serde_json::from_str::<LookupAnswer>(r#"{"target": ["sip:1.2.3.4"]}"#).is_err());
        assert!(serde_json::from_str::<LookupAnswer>(r#"{"mode": "random"}"#).is_err());
        assert!(serde_json::from_str::<LookupAnswer>(r#"{"code": 70000}"#).is_err());
    }
}
