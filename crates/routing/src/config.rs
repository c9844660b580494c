//! The routing part of the configuration, as plain serde structs.
//!
//! These mirror the TOML keys `[[destination_set]]`, `[[rule]]` and `[routing]` one to one;
//! they hold raw text (URIs, CIDRs, code patterns) that [`Policy::build`](crate::Policy::build)
//! checks and compiles. They can also be built in code, which is what the tests do.
//! Unknown keys are refused (`deny_unknown_fields`) so a typo is an error, not a silent default.

use std::fmt;
use std::path::PathBuf;

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
    /// The `[[lcr]]` array (least-cost routing tables), in file order.
    pub lcr: Vec<LcrConfig>,
    /// The directory a relative `lcr.file` is resolved against: the directory of the
    /// configuration file. `None`: the current directory.
    /// [`Policy::build`](crate::Policy::build) reads the files (its only I/O).
    pub base_dir: Option<PathBuf>,
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
    /// Health probing (OPTIONS) of the destinations. Default: none (always up unless
    /// set down through the admin API).
    #[serde(default)]
    pub health: Option<HealthConfig>,
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
            health: None,
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
    /// Action: least-cost routing through the `[[lcr]]` table of this name.
    #[serde(default)]
    pub lcr: Option<String>,
    /// Matcher: the rule matches only inside one of these time windows.
    #[serde(default)]
    pub time: Option<TimeConditions>,
    /// The Reason header value (RFC 3326) of every CANCEL cairn sends for the calls of
    /// this rule, e.g. `SIP;cause=480;text="Try later"`. A caller's own Reason is still
    /// kept when `cancel.caller_reason = "preserve"`.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// No-answer time of each branch, in milliseconds: a branch without a final response
    /// this long after it was sent is CANCELed (Reason 480) and the call fails over.
    #[serde(default)]
    pub ring_timeout_ms: Option<u64>,
    /// Action: a Lua function decides (a destination set, targets or a response).
    #[serde(default)]
    pub script: Option<ScriptConfig>,
    /// Manipulation of the forwarded request: the new Request-URI user part (`""` removes
    /// it).
    #[serde(default)]
    pub set_ruri_user: Option<String>,
    /// Manipulation: the new Request-URI host, with an optional port (`"gw.example.com"`,
    /// `"192.0.2.10:5080"`, `"[2001:db8::1]:5080"`); the old port goes with the old host.
    #[serde(default)]
    pub set_ruri_host: Option<String>,
    /// Manipulation: header lines added to the forwarded request (`"X-Foo: bar"`), after
    /// `remove_headers` took effect.
    #[serde(default)]
    pub add_headers: Option<StringList>,
    /// Manipulation: header names removed from the forwarded request (case-insensitive,
    /// compact forms included).
    #[serde(default)]
    pub remove_headers: Option<StringList>,
}

/// `rule.script`: a Lua function decides where the request goes.
/// `script = { file = "route.lua", function = "route", failure = { code = 500 } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// The Lua file, relative to [`RoutingConfig::base_dir`] (the configuration file's
    /// directory).
    pub file: String,
    /// The global function of the file that decides. Default `"route"`.
    #[serde(default = "default_script_function")]
    pub function: String,
    /// The answer when the script fails at run time (an error, a limit, a bad return
    /// value). Default 500 "Server Internal Error".
    #[serde(default)]
    pub failure: Option<ResponseConfig>,
}

impl ScriptConfig {
    /// A script rule calling `function` of `file`, with the default failure response.
    pub fn new(file: &str, function: &str) -> ScriptConfig {
        ScriptConfig {
            file: file.to_owned(),
            function: function.to_owned(),
            failure: None,
        }
    }
}

fn default_script_function() -> String {
    "route".to_owned()
}

/// The default `routing.script_max_instructions`.
pub const DEFAULT_SCRIPT_MAX_INSTRUCTIONS: u64 = 1_000_000;
/// The default `routing.script_max_memory_kb` (16 MiB).
pub const DEFAULT_SCRIPT_MAX_MEMORY_KB: u64 = 16 * 1024;

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
    /// The most Lua VM instructions one script call may run (counted in steps of
    /// 1000); past it the call fails. Default 1,000,000.
    #[serde(default = "default_script_max_instructions")]
    pub script_max_instructions: u64,
    /// The most memory the Lua state of the scripts may hold, in KiB. Default 16384.
    #[serde(default = "default_script_max_memory_kb")]
    pub script_max_memory_kb: u64,
}

impl Default for RoutingSection {
    fn default() -> Self {
        RoutingSection {
            no_match: default_no_match(),
            script_max_instructions: DEFAULT_SCRIPT_MAX_INSTRUCTIONS,
            script_max_memory_kb: DEFAULT_SCRIPT_MAX_MEMORY_KB,
        }
    }
}

fn default_script_max_instructions() -> u64 {
    DEFAULT_SCRIPT_MAX_INSTRUCTIONS
}

fn default_script_max_memory_kb() -> u64 {
    DEFAULT_SCRIPT_MAX_MEMORY_KB
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

/// `destination_set.health`: OPTIONS probing of the set's destinations.
/// `health = { interval_ms = 10000, timeout_ms = 2000, down_after = 3, up_after = 2,
/// alive_codes = ["2xx", "404"] }`. Checked by [`Policy::build`](crate::Policy::build).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between two probes of one destination. Default 10000.
    #[serde(default = "default_probe_interval")]
    pub interval_ms: u64,
    /// A probe without a reply after this long has failed. Default 2000; at most
    /// `interval_ms`.
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failed probes that mark an up destination down. Default 3.
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    /// Consecutive answered probes that mark a down destination up again. Default 2.
    #[serde(default = "default_up_after")]
    pub up_after: u32,
    /// The replies that count as alive: codes (`"404"` or `404`) or classes (`"2xx"`),
    /// 200 to 699. Default `["2xx"]`.
    #[serde(default = "default_alive_codes")]
    pub alive_codes: Vec<CodePattern>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: default_probe_interval(),
            timeout_ms: default_probe_timeout(),
            down_after: default_down_after(),
            up_after: default_up_after(),
            alive_codes: default_alive_codes(),
        }
    }
}

fn default_probe_interval() -> u64 {
    10_000
}
fn default_probe_timeout() -> u64 {
    2_000
}
fn default_down_after() -> u32 {
    3
}
fn default_up_after() -> u32 {
    2
}
fn default_alive_codes() -> Vec<CodePattern> {
    vec![CodePattern::from("2xx")]
}

/// One `[[lcr]]`: a least-cost routing table. Prefixes of the normalised called number
/// (the Request-URI user) map to carriers with a priority and a weight.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcrConfig {
    /// Unique among tables and destination sets; referenced by `rule.lcr`.
    pub name: String,
    /// The carriers (gateway groups) the prefixes name. At least one.
    pub carriers: Vec<CarrierConfig>,
    /// Prefix entries written in the configuration.
    #[serde(default)]
    pub prefixes: Vec<LcrPrefixConfig>,
    /// A CSV file of prefix entries (`prefix,carrier[,priority[,weight]]`), relative to
    /// [`RoutingConfig::base_dir`]. Read by [`Policy::build`](crate::Policy::build).
    #[serde(default)]
    pub file: Option<String>,
    /// Before matching: cut the user at its first `;` and keep only the digits and a
    /// leading `+`. Default true.
    #[serde(default = "default_true")]
    pub digits_only: bool,
    /// Rewrite rules applied after `digits_only`: the first whose `strip` begins the
    /// number applies (strip it, put `prefix` in front), the others are skipped.
    #[serde(default)]
    pub normalize: Vec<NormalizeRule>,
    /// Final response codes that make the plan try the next destination (and so the next
    /// carrier). Default `["5xx", "408"]`.
    #[serde(default = "default_failover_codes")]
    pub failover_codes: Vec<CodePattern>,
    /// Try the next destination when a branch gets no final answer in time. Default true.
    #[serde(default = "default_true")]
    pub failover_on_timeout: bool,
    /// The answer when no prefix matches (or the request has no user part).
    /// Default 404 "Not Found".
    #[serde(default = "default_no_match")]
    pub no_match: ResponseConfig,
}

impl LcrConfig {
    /// A table with these carriers and prefixes and every other key at its default.
    pub fn new(name: &str, carriers: Vec<CarrierConfig>, prefixes: Vec<LcrPrefixConfig>) -> Self {
        LcrConfig {
            name: name.to_owned(),
            carriers,
            prefixes,
            file: None,
            digits_only: true,
            normalize: Vec::new(),
            failover_codes: default_failover_codes(),
            failover_on_timeout: true,
            no_match: default_no_match(),
        }
    }
}

/// One entry of `lcr.carriers`: a named gateway group, either existing destination sets
/// (tried in the listed order, each in its own algorithm's order) or its own destinations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// Unique in the table; referenced by the prefix entries.
    pub name: String,
    /// Destination sets (by name) that make up the carrier, tried in this order.
    #[serde(default)]
    pub destination_sets: Option<StringList>,
    /// The carrier's own gateways (same keys as `destination_set.destinations`); they form
    /// a destination set named `TABLE.CARRIER`.
    #[serde(default)]
    pub destinations: Option<Vec<DestinationConfig>>,
    /// Order of the own `destinations`. Default `priority`; `parallel` is refused.
    #[serde(default)]
    pub algorithm: Option<Algorithm>,
    /// Health probing of the own `destinations`.
    #[serde(default)]
    pub health: Option<HealthConfig>,
}

/// One entry of `lcr.prefixes`: `{ prefix = "+1", carrier = "a", priority = 1, weight = 10 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcrPrefixConfig {
    /// A normalised number prefix: digits with an optional leading `+`, at most 32
    /// characters; `""` matches every number.
    pub prefix: String,
    /// A carrier of the table.
    pub carrier: String,
    /// Lower is tried first. Default 0.
    #[serde(default)]
    pub priority: u32,
    /// Share among the carriers of equal priority (weighted random order; 0 = only after
    /// the weighted ones). Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

impl LcrPrefixConfig {
    /// An entry with priority 0 and weight 1.
    pub fn new(prefix: &str, carrier: &str) -> Self {
        LcrPrefixConfig {
            prefix: prefix.to_owned(),
            carrier: carrier.to_owned(),
            priority: 0,
            weight: 1,
        }
    }
}

/// One entry of `lcr.normalize`: `{ strip = "00", prefix = "+" }` turns `0049301234` into
/// `+49301234`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeRule {
    /// The rule applies when the number begins with this; it is removed. `""` always
    /// applies.
    #[serde(default)]
    pub strip: String,
    /// Put in front of what is left.
    #[serde(default)]
    pub prefix: String,
}

/// `rule.time`: one window (a table) or several (an array of tables, any may match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeConditions(pub Vec<TimeWindowConfig>);

impl<'de> Deserialize<'de> for TimeConditions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TimeConditions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a time window table or a list of them")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<TimeConditions, A::Error> {
                let w = TimeWindowConfig::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TimeConditions(vec![w]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TimeConditions, A::Error> {
                let mut out = Vec::new();
                while let Some(w) = seq.next_element::<TimeWindowConfig>()? {
                    out.push(w);
                }
                Ok(TimeConditions(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One time window: `{ zone = "Europe/Berlin", days = ["mon..fri"], from = "08:00",
/// to = "18:00", dates = ["2026-12-24..2026-12-26"], invert = false }`. Every key present
/// must hold (AND); a window without keys always holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindowConfig {
    /// IANA time zone name. Default `"UTC"`.
    #[serde(default)]
    pub zone: Option<String>,
    /// Days of the week: `"mon"` ... `"sun"` (or full names) and ranges `"mon..fri"`.
    #[serde(default)]
    pub days: Option<StringList>,
    /// Local start time `"HH:MM"` or `"HH:MM:SS"`, inclusive. Default 00:00.
    #[serde(default)]
    pub from: Option<String>,
    /// Local end time, exclusive (`"24:00"` is the end of the day). Default 24:00. Before
    /// `from`: the window crosses midnight.
    #[serde(default)]
    pub to: Option<String>,
    /// Dates `"2026-12-24"`, ranges `"2026-12-24..2026-12-26"`, or yearly `"12-24"`,
    /// `"12-24..01-06"`; inclusive.
    #[serde(default)]
    pub dates: Option<StringList>,
    /// Hold outside the window instead of inside.
    #[serde(default)]
    pub invert: bool,
}
