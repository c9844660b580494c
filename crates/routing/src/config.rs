//! The routing part of the configuration, as plain serde structs.
//!
//! These mirror the TOML keys `[[destination_set]]`, `[[rule]]` and `[routing]` one to one;
//! they hold raw text (URIs, CIDRs, code patterns) that [`Policy::build`](crate::Policy::build)
//! checks and compiles. They can also be built in code, which is what the tests do.
//! Unknown keys are refused (`deny_unknown_fields`) so a typo is an error, not a silent default.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The whole routing configuration: what [`Policy::build`](crate::Policy::build) compiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingConfig {
    /// The `[[destination_set]]` array, in file order.
    pub destination_sets: Vec<DestinationSetConfig>,
    /// The `[[rule]]` array, in file order (first match wins).
    pub rules: Vec<RuleConfig>,
    /// The `[routing]` table.
    pub routing: RoutingSection,
}

/// How a destination set orders its destinations for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Start at a shared counter that advances by one per request, then the rest in order.
    #[default]
    RoundRobin,
    /// A random order drawn by weight (weight 0: only after every weighted destination).
    WeightedRandom,
    /// Start at an index derived from a stable hash of the Call-ID, then the rest in order.
    HashCallId,
    /// Ascending `priority`, ties in configuration order.
    Priority,
    /// Every destination at once (parallel forking).
    Parallel,
}

impl Algorithm {
    /// The configuration name (`round_robin`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRandom => "weighted_random",
            Algorithm::HashCallId => "hash_call_id",
            Algorithm::Priority => "priority",
            Algorithm::Parallel => "parallel",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `[[destination_set]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSetConfig {
    /// Unique name, referenced by `rule.destination_set`.
    pub name: String,
    /// Default `round_robin`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Final response codes that make a serial set try the next destination: exact codes
    /// (`"486"` or `486`) or classes (`"5xx"`). Default `["5xx", "408"]`.
    #[serde(default = "default_failover_codes")]
    pub failover_codes: Vec<CodePattern>,
    /// Try the next destination when a branch gets no final answer in time. Default true.
    #[serde(default = "default_true")]
    pub failover_on_timeout: bool,
    /// Default for the destinations' `rewrite_ruri_host`. Default false.
    #[serde(default)]
    pub rewrite_ruri_host: bool,
    /// At least one.
    pub destinations: Vec<DestinationConfig>,
}

/// One entry of `destination_set.destinations`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// `sip:IP[:PORT][;transport=tcp]` (or `sips:`); numeric IP hosts only for now.
    pub uri: String,
    /// Relative weight for `weighted_random`. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Order for `priority`: lower first. Default 0.
    #[serde(default)]
    pub priority: u32,
    /// Overrides the URI's `transport` parameter.
    #[serde(default)]
    pub transport: Option<String>,
    /// Overrides the set's `rewrite_ruri_host`.
    #[serde(default)]
    pub rewrite_ruri_host: Option<bool>,
    /// Most dialogs at once with this destination (needs dialog tracking);
    /// a full destination is skipped by every algorithm. Default: no limit.
    #[serde(default)]
    pub max_dialogs: Option<u32>,
}

impl DestinationConfig {
    /// A destination with only a URI, every other key at its default.
    pub fn new(uri: &str) -> DestinationConfig {
        DestinationConfig {
            uri: uri.to_owned(),
            weight: 1,
            priority: 0,
            transport: None,
            rewrite_ruri_host: None,
            max_dialogs: None,
        }
    }
}

impl DestinationSetConfig {
    /// A set with the given destinations (by URI) and every other key at its default.
    pub fn new(name: &str, algorithm: Algorithm, uris: &[&str]) -> DestinationSetConfig {
        DestinationSetConfig {
            name: name.to_owned(),
            algorithm,
            failover_codes: default_failover_codes(),
            failover_on_timeout: true,
            rewrite_ruri_host: false,
            destinations: uris.iter().map(|u| DestinationConfig::new(u)).collect(),
        }
    }
}

/// One `[[rule]]`. Every matcher that is present must match (AND); within a list any
/// entry may match (OR). A rule without matchers matches every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, reported in logs and metrics.
    pub name: String,
    /// SIP method tokens, case-sensitive (`INVITE`).
    #[serde(default)]
    pub methods: Option<StringList>,
    /// Request-URI user part prefixes, case-sensitive, compared as received.
    #[serde(default)]
    pub ruri_user_prefix: Option<StringList>,
    /// Request-URI hosts, case-insensitive; IP addresses compare as addresses.
    #[serde(default)]
    pub ruri_domain: Option<StringList>,
    /// Source addresses: CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single IPs.
    #[serde(default)]
    pub source: Option<StringList>,
    /// Action: forward to this destination set.
    #[serde(default)]
    pub destination_set: Option<String>,
    /// Action: answer with this response.
    #[serde(default)]
    pub respond: Option<ResponseConfig>,
    /// Action: ask an HTTP service for the destinations.
    #[serde(default)]
    pub lookup: Option<LookupConfig>,
    /// The Reason header value (RFC 3326) of every CANCEL cairn sends for the calls of
    /// this rule, e.g. `SIP;cause=480;text="Try later"`. A caller's own Reason is still
    /// kept when `cancel.caller_reason = "preserve"`.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// No-answer time of each branch, in milliseconds: a branch without a final response
    /// this long after it was sent is CANCELed (Reason 480) and the call fails over.
    #[serde(default)]
    pub ring_timeout_ms: Option<u64>,
}

/// `rule.lookup`: ask an external HTTP service where to send the request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// `http://HOST[:PORT][/PATH]` (plain HTTP/1.1, no TLS).
    pub url: String,
    /// How long to wait for the answer. Default 1000.
    #[serde(default = "default_lookup_timeout")]
    pub timeout_ms: u64,
    /// The destination set to use when the lookup fails (timeout, error, invalid answer).
    #[serde(default)]
    pub fallback: Option<String>,
    /// The response when the lookup fails and there is no fallback. Default 503.
    #[serde(default)]
    pub failure: Option<ResponseConfig>,
}

impl LookupConfig {
    /// A lookup with the default timeout, no fallback and the default failure response.
    pub fn new(url: &str) -> LookupConfig {
        LookupConfig {
            url: url.to_owned(),
            timeout_ms: default_lookup_timeout(),
            fallback: None,
            failure: None,
        }
    }
}

/// The default `lookup.timeout_ms`.
pub const DEFAULT_LOOKUP_TIMEOUT_MS: u64 = 1000;

fn default_lookup_timeout() -> u64 {
    DEFAULT_LOOKUP_TIMEOUT_MS
}

/// A final response cairn sends itself: `{ code = 403, reason = "Forbidden" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// 300 to 699.
    pub code: u16,
    /// Reason phrase; defaults to the standard phrase of `code` when there is one.
    #[serde(default)]
    pub reason: Option<String>,
}

impl ResponseConfig {
    /// A response with an explicit reason phrase.
    pub fn new(code: u16, reason: &str) -> ResponseConfig {
        ResponseConfig {
            code,
            reason: Some(reason.to_owned()),
        }
    }
}

/// The `[routing]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// The answer to a request no rule matches. Default 404 "Not Found".
    #[serde(default = "default_no_match")]
    pub no_match: ResponseConfig,
}

impl Default for RoutingSection {
    fn default() -> Self {
        RoutingSection {
            no_match: default_no_match(),
        }
    }
}

/// A list of strings that may also be written as a single string
/// (`methods = "INVITE"` is `methods = ["INVITE"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl<S: Into<String>> FromIterator<S> for StringList {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        StringList(iter.into_iter().map(Into::into).collect())
    }
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of `failover_codes`, as written: `"5xx"`, `"486"` or the integer `486`.
/// Checked by [`Policy::build`](crate::Policy::build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodePattern(pub String);

impl From<&str> for CodePattern {
    fn from(s: &str) -> Self {
        CodePattern(s.to_owned())
    }
}

impl<'de> Deserialize<'de> for CodePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = CodePattern;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a response code (486) or class (\"5xx\")")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CodePattern, E> {
                Ok(CodePattern(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CodePattern, E> {
                Ok(CodePattern(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CodePattern, E> {
                Ok(CodePattern(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn default_true() -> bool {
    true
}

fn default_weight() -> u32 {
    1
}

/// `["5xx", "408"]`.
pub fn default_failover_codes() -> Vec<CodePattern> {
    vec![CodePattern::from("5xx"), CodePattern::from("408")]
}

fn default_no_match() -> ResponseConfig {
    ResponseConfig::new(404, "Not Found")
}
