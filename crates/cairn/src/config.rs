//! The TOML configuration of cairn. The reference for every key is `docs/configuration.md`.
//!
//! [`parse`] and [`load`] read the whole file, check every key and compile the routing
//! policy; a [`Config`] is therefore always valid. Errors ([`ConfigError`]) name the file,
//! the line and column when known, the key path (`rule[1].destination_set`, arrays counted
//! from 0) and the problem. Unknown keys are errors, so typos do not pass silently.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use cairn_proxy::{CallerReason, CancelConfig, ReasonConfig, UnmatchedCancel};
use cairn_routing::{
    check_reason_value, BuildError, DestinationSetConfig, Host, KeyPath, PathSegment, Policy,
    RoutingConfig, RoutingSection, RuleConfig,
};
use cairn_sip::Transport;
use serde::Deserialize;

/// A complete, checked configuration.
#[derive(Debug)]
pub struct Config {
    pub log: LogConfig,
    /// At least one; no duplicates.
    pub listen: Vec<Listen>,
    pub proxy: ProxyConfig,
    pub timers: Timers,
    /// `[cancel]`: CANCEL handling and the Reason values of the CANCELs cairn sends.
    pub cancel: CancelConfig,
    /// The compiled `[[destination_set]]`, `[[rule]]` and `[routing]` sections.
    pub routing: Policy,
    /// `[store]`: where and how durably calls in flight are recorded.
    pub store: StoreSettings,
    /// `[dialogs]`: dialog tracking.
    pub dialogs: DialogSettings,
    /// `[admin]`: the HTTP admin API and metrics; off when no `listen`.
    pub admin: AdminSettings,
    /// `[cluster]`: this node's id and the other nodes.
    pub cluster: ClusterSettings,
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This node's id (0 for a single node): written into branch ids and
    /// into the keys of its records in Redis.
    pub node_id: u16,
    /// Every node of the cluster (this one included) and its SIP address.
    pub nodes: Vec<(u16, SocketAddr)>,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `embedded` (an on-disk store in `path`).
    pub backend: String,
    /// Directory of the embedded store. Default `cairn-state`.
    pub path: std::path::PathBuf,
    /// `off`, `buffered` (default) or `strict`.
    pub durability: cairn_store::Durability,
    /// The buffered level's fsync ticker. Default 50 ms.
    pub sync_interval_ms: u64,
    /// `backend = "redis"`: the connection and its limits (its `node` is
    /// `[cluster] node_id`).
    pub redis: Option<cairn_store::RedisConfig>,
    /// How long a record that no message waits for (a 1xx, a final, a
    /// dialog, an end) may wait to be grouped with others. Default 10 ms.
    pub state_delay_ms: u64,
    /// The least time between two commits that messages wait for (a
    /// branch, a CANCEL): what comes meanwhile waits at most this long and
    /// shares the next one. Default 10 ms; 0 commits at every turn.
    pub commit_interval_ms: u64,
}

/// `[dialogs]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogSettings {
    pub enabled: bool,
    /// A confirmed dialog without BYE ends after this long. Default 12 h.
    pub timeout_s: u64,
}

/// `[admin]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdminSettings {
    pub listen: Option<SocketAddr>,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`; lower-cased) or a tracing
    /// filter directive (`info,cairn_proxy=debug`), which the binary checks when it installs it.
    pub level: String,
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// One `[[listen]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// `Udp` or `Tcp` for now.
    pub transport: Transport,
    pub address: SocketAddr,
}

/// `[proxy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Insert Record-Route so in-dialog requests come through cairn. Default true.
    pub record_route: bool,
    /// Extra names of this proxy (besides the listen addresses), for Request-URI and
    /// Route checks.
    pub aliases: Vec<Alias>,
    /// Largest message accepted, in bytes. Default 65535.
    pub max_message_size: usize,
    /// Host to put in Via and Record-Route instead of the listen address (e.g. behind NAT).
    pub advertise: Option<Host>,
}

/// One entry of `proxy.aliases`: a host, with or without a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub host: Host,
    /// `None`: any port.
    pub port: Option<u16>,
}

impl Alias {
    /// Whether a URI host and its effective port (the transport's default when the URI has
    /// none) name this alias. Host names compare case-insensitively.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        self.host.matches(host) && self.port.is_none_or(|p| p == port)
    }
}

/// `[timers]` (RFC 3261 section 17 and 16.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate. Default 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses. Default 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network. Default 5 s.
    pub t4: Duration,
    /// Proxy INVITE timer: how long a branch may stay without a final response. Default 180 s.
    pub timer_c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_millis(4000),
            t4: Duration::from_millis(5000),
            timer_c: Duration::from_millis(180_000),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name (or the `origin` given to [`parse`]).
    pub origin: String,
    /// 1-based line and column of the problem, when known.
    pub location: Option<(usize, usize)>,
    /// The key path, e.g. `rule[1].destination_set`; `None` for file and syntax errors.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Read and check the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        location: None,
        key: None,
        message: format!("cannot read the configuration file: {e}"),
    })?;
    let mut cfg = parse_in(&text, &origin, path.parent())?;
    // A relative store path is relative to the configuration file.
    if cfg.store.path.is_relative() {
        if let Some(dir) = path.parent() {
            cfg.store.path = dir.join(&cfg.store.path);
        }
    }
    Ok(cfg)
}

/// Check a configuration given as text. `origin` names it in errors (usually the file name).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_in(text, origin, None)
}

/// [`parse`], with relative file names (`lcr.file`) resolved against
/// `base_dir` (the configuration file's directory).
pub fn parse_in(text: &str, origin: &str, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let raw = deserialize(text, origin)?;
    raw.check(base_dir).map_err(|e| located(text, origin, e))
}

// ---------------------------------------------------------------------------------------
// Raw (serde) form: what the file says, before checking.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    listen: Vec<RawListen>,
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    timers: RawTimers,
    #[serde(default)]
    cancel: RawCancel,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    dialogs: RawDialogs,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    destination_set: Vec<DestinationSetConfig>,
    #[serde(default)]
    lcr: Vec<cairn_routing::LcrConfig>,
    #[serde(default)]
    rule: Vec<RuleConfig>,
    #[serde(default)]
    routing: RoutingSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
    format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: LogFormat::Human,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    transport: String,
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProxy {
    record_route: bool,
    aliases: Vec<String>,
    max_message_size: u64,
    advertise: Option<String>,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            record_route: true,
            aliases: Vec::new(),
            max_message_size: 65535,
            advertise: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTimers {
    t1_ms: u64,
    t2_ms: u64,
    t4_ms: u64,
    timer_c_ms: u64,
}

impl Default for RawTimers {
    fn default() -> Self {
        RawTimers {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            timer_c_ms: 180_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    backend: String,
    path: String,
    durability: String,
    sync_interval_ms: u64,
    url: Option<String>,
    key_prefix: Option<String>,
    commit_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    io_timeout_ms: Option<u64>,
    lookup_timeout_ms: Option<u64>,
    max_pending_bytes: Option<u64>,
    state_delay_ms: u64,
    commit_interval_ms: u64,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            backend: "embedded".into(),
            path: "cairn-state".into(),
            durability: "buffered".into(),
            sync_interval_ms: 50,
            state_delay_ms: 10,
            commit_interval_ms: 10,
            url: None,
            key_prefix: None,
            commit_timeout_ms: None,
            connect_timeout_ms: None,
            io_timeout_ms: None,
            lookup_timeout_ms: None,
            max_pending_bytes: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawCluster {
    node_id: Option<u64>,
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: u64,
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDialogs {
    enabled: bool,
    timeout_s: u64,
}

impl Default for RawDialogs {
    fn default() -> Self {
        RawDialogs {
            enabled: false,
            timeout_s: 43_200,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    listen: Option<String>,
}

fn check_store(raw: &RawStore) -> Result<StoreSettings, BuildError> {
    let path = KeyPath::root("store");
    let redis = match raw.backend.as_str() {
        "embedded" => false,
        "redis" => true,
        other => {
            return Err(err(
                path.key("backend"),
                format!("unknown backend \"{other}\": expected \"embedded\" or \"redis\""),
            ))
        }
    };
    let durability = raw
        .durability
        .parse::<cairn_store::Durability>()
        .map_err(|e| err(path.key("durability"), e))?;
    if raw.path.trim().is_empty() {
        return Err(err(
            path.key("path"),
            "empty path: name the directory of the store",
        ));
    }
    if !(1..=10_000).contains(&raw.sync_interval_ms) {
        return Err(err(
            path.key("sync_interval_ms"),
            format!("{} is out of range: 1 to 10000 ms", raw.sync_interval_ms),
        ));
    }
    if raw.state_delay_ms > 1_000 {
        return Err(err(
            path.key("state_delay_ms"),
            format!("{} is out of range: 0 to 1000 ms", raw.state_delay_ms),
        ));
    }
    if raw.commit_interval_ms > 100 {
        return Err(err(
            path.key("commit_interval_ms"),
            format!("{} is out of range: 0 to 100 ms", raw.commit_interval_ms),
        ));
    }
    let redis_keys = [
        ("url", raw.url.is_some()),
        ("key_prefix", raw.key_prefix.is_some()),
        ("commit_timeout_ms", raw.commit_timeout_ms.is_some()),
        ("connect_timeout_ms", raw.connect_timeout_ms.is_some()),
        ("io_timeout_ms", raw.io_timeout_ms.is_some()),
        ("lookup_timeout_ms", raw.lookup_timeout_ms.is_some()),
        ("max_pending_bytes", raw.max_pending_bytes.is_some()),
    ];
    let redis = if redis {
        if durability == cairn_store::Durability::Strict {
            return Err(err(
                path.key("durability"),
                "\"strict\" is for the embedded store; with Redis, durability is the server's \
                 own (appendonly, replicas): use \"buffered\" (or \"off\")",
            ));
        }
        let url = raw
            .url
            .clone()
            .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        let mut r = cairn_store::RedisConfig::new(url, 0);
        cairn_store::RedisStore::check_url(&r.url).map_err(|e| err(path.key("url"), e))?;
        if let Some(p) = &raw.key_prefix {
            if p.is_empty()
                || p.len() > 64
                || p.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(err(
                    path.key("key_prefix"),
                    format!("{p:?}: expected 1 to 64 characters, no spaces"),
                ));
            }
            r.key_prefix = p.clone();
        }
        let ms = |key: &str, v: Option<u64>, def: u64, max: u64| -> Result<u64, BuildError> {
            match v {
                None => Ok(def),
                Some(v) if (1..=max).contains(&v) => Ok(v),
                Some(v) => Err(err(
                    path.key(key),
                    format!("{v} is out of range: 1 to {max} ms"),
                )),
            }
        };
        r.commit_timeout_ms = ms(
            "commit_timeout_ms",
            raw.commit_timeout_ms,
            r.commit_timeout_ms,
            1000,
        )?;
        r.connect_timeout_ms = ms(
            "connect_timeout_ms",
            raw.connect_timeout_ms,
            r.connect_timeout_ms,
            10_000,
        )?;
        r.io_timeout_ms = ms("io_timeout_ms", raw.io_timeout_ms, r.io_timeout_ms, 60_000)?;
        r.lookup_timeout_ms = ms(
            "lookup_timeout_ms",
            raw.lookup_timeout_ms,
            r.lookup_timeout_ms,
            1000,
        )?;
        if let Some(b) = raw.max_pending_bytes {
            if !(65_536..=(16u64 << 30)).contains(&b) {
                return Err(err(
                    path.key("max_pending_bytes"),
                    format!("{b} is out of range: 65536 to 17179869184 bytes"),
                ));
            }
            r.max_pending_bytes = b as usize;
        }
        Some(r)
    } else {
        if let Some((key, _)) = redis_keys.iter().find(|(_, set)| *set) {
            return Err(err(path.key(key), "only for backend = \"redis\""));
        }
        None
    };
    Ok(StoreSettings {
        backend: raw.backend.clone(),
        path: raw.path.clone().into(),
        durability,
        sync_interval_ms: raw.sync_interval_ms,
        redis,
        state_delay_ms: raw.state_delay_ms,
        commit_interval_ms: raw.commit_interval_ms,
    })
}

fn check_cluster(
    raw: &RawCluster,
    store: &mut StoreSettings,
) -> Result<ClusterSettings, BuildError> {
    let path = KeyPath::root("cluster");
    let id = |key: KeyPath, v: u64| -> Result<u16, BuildError> {
        u16::try_from(v)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| err(key, format!("{v} is out of range: node ids are 1 to 65535")))
    };
    let node_id = match raw.node_id {
        None => 0,
        Some(v) => id(path.key("node_id"), v)?,
    };
    let mut nodes: Vec<(u16, SocketAddr)> = Vec::with_capacity(raw.nodes.len());
    for (i, n) in raw.nodes.iter().enumerate() {
        let at = path.key("nodes").index(i);
        let nid = id(at.key("id"), n.id)?;
        let addr: SocketAddr = n.address.trim().parse().map_err(|_| {
            err(
                at.key("address"),
                format!(
                    "{:?} is not an IP address and port (e.g. \"10.0.0.1:5060\")",
                    n.address
                ),
            )
        })?;
        if nodes.iter().any(|(o, _)| *o == nid) {
            return Err(err(at.key("id"), format!("node {nid} is listed twice")));
        }
        nodes.push((nid, addr));
    }
    if !nodes.is_empty() {
        if store.redis.is_none() {
            return Err(err(
                path.key("nodes"),
                "a cluster shares its records in Redis: set [store] backend = \"redis\"",
            ));
        }
        if node_id == 0 {
            return Err(err(
                path.key("node_id"),
                "missing: a node of a cluster needs its id (one of [cluster] nodes)",
            ));
        }
        if !nodes.iter().any(|(n, _)| *n == node_id) {
            return Err(err(
                path.key("node_id"),
                format!("{node_id} is not one of [cluster] nodes"),
            ));
        }
    }
    if let Some(r) = &mut store.redis {
        r.node = node_id;
    }
    Ok(ClusterSettings { node_id, nodes })
}

fn check_dialogs(raw: &RawDialogs) -> Result<DialogSettings, BuildError> {
    if !(1..=7 * 86_400).contains(&raw.timeout_s) {
        return Err(err(
            KeyPath::root("dialogs").key("timeout_s"),
            format!("{} is out of range: 1 s to 7 days", raw.timeout_s),
        ));
    }
    Ok(DialogSettings {
        enabled: raw.enabled,
        timeout_s: raw.timeout_s,
    })
}

fn check_admin(raw: &RawAdmin) -> Result<AdminSettings, BuildError> {
    let listen = match &raw.listen {
        None => None,
        Some(a) => Some(
            parse_listen_address(a).map_err(|e| err(KeyPath::root("admin").key("listen"), e))?,
        ),
    };
    Ok(AdminSettings { listen })
}

/// `[cancel]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCancel {
    unmatched: RawUnmatched,
    unmatched_memory: u64,
    unmatched_window_ms: u64,
    caller_reason: RawCallerReason,
    reason_originator: String,
    reason_no_answer: String,
    reason_completed_elsewhere: String,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawUnmatched {
    #[serde(rename = "reply_481")]
    Reply481,
    Forward,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawCallerReason {
    Preserve,
    Replace,
    Drop,
}

impl Default for RawCancel {
    fn default() -> Self {
        let d = CancelConfig::default();
        RawCancel {
            unmatched: RawUnmatched::Reply481,
            unmatched_memory: d.unmatched_memory as u64,
            unmatched_window_ms: d.unmatched_window,
            caller_reason: RawCallerReason::Preserve,
            reason_originator: d.reasons.originator.to_string(),
            reason_no_answer: d.reasons.no_answer.to_string(),
            reason_completed_elsewhere: d.reasons.completed_elsewhere.to_string(),
        }
    }
}

/// The most unmatched CANCELs `cancel.unmatched_memory` may ask to remember.
const MAX_UNMATCHED_MEMORY: u64 = 10_000_000;

const MIN_MESSAGE_SIZE: u64 = 1024;
const MAX_MESSAGE_SIZE: u64 = 16 * 1024 * 1024;
const MAX_TIMER_MS: u64 = 86_400_000;
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn deserialize(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError {
        origin: origin.to_owned(),
        location: e.span().map(|s| line_col(text, s.start)),
        key: None,
        message: format!("TOML syntax error: {}", e.message()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let key = (path != ".").then_some(path);
        let mut message = e.inner().message().to_owned();
        if let Some(k) = key.as_deref() {
            if ["listen", "destination_set", "rule"].contains(&k)
                && message.contains("expected a sequence")
            {
                message.push_str(&format!(" (write [[{k}]]: an array of tables)"));
            }
        }
        ConfigError {
            origin: origin.to_owned(),
            location: e.inner().span().map(|s| line_col(text, s.start)),
            key,
            message,
        }
    })
}

/// Attach the origin and, by finding the key in the document, the line and column.
fn located(text: &str, origin: &str, e: BuildError) -> ConfigError {
    ConfigError {
        origin: origin.to_owned(),
        location: find_key(text, &e.path).map(|offset| line_col(text, offset)),
        key: Some(e.path.to_string()),
        message: e.message,
    }
}

/// Byte offset of the value at `path`, or of its nearest present ancestor below the root.
fn find_key(text: &str, path: &KeyPath) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut value = DeValue::Table(root.into_inner());
    let mut found = None;
    for seg in path.segments() {
        let next = match seg {
            PathSegment::Key(k) => value.get(k.as_str()),
            PathSegment::Index(i) => value.get(*i),
        };
        match next {
            Some(v) => {
                found = Some(v.span().start);
                value = v.get_ref().clone();
            }
            None => break,
        }
    }
    found
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn err(path: KeyPath, message: impl Into<String>) -> BuildError {
    BuildError {
        path,
        message: message.into(),
    }
}

impl RawConfig {
    fn check(self, base_dir: Option<&Path>) -> Result<Config, BuildError> {
        let log = check_log(self.log)?;
        let listen = check_listen(&self.listen)?;
        let proxy = check_proxy(self.proxy)?;
        let timers = check_timers(&self.timers)?;
        let cancel = check_cancel(&self.cancel)?;
        let mut store = check_store(&self.store)?;
        let cluster = check_cluster(&self.cluster, &mut store)?;
        let dialogs = check_dialogs(&self.dialogs)?;
        let admin = check_admin(&self.admin)?;
        // Which destinations set the `transport` key (for naming the key in errors).
        let explicit: Vec<Vec<bool>> = self
            .destination_set
            .iter()
            .map(|s| {
                s.destinations
                    .iter()
                    .map(|d| d.transport.is_some())
                    .collect()
            })
            .collect();
        let routing = Policy::build(&RoutingConfig {
            destination_sets: self.destination_set,
            rules: self.rule,
            routing: self.routing,
            lcr: self.lcr,
            base_dir: base_dir.map(Path::to_path_buf),
        })?;
        check_destination_transports(&routing, &explicit, &listen)?;
        Ok(Config {
            log,
            listen,
            proxy,
            timers,
            cancel,
            routing,
            store,
            dialogs,
            admin,
            cluster,
        })
    }
}

fn check_log(raw: RawLog) -> Result<LogConfig, BuildError> {
    let level = raw.level.trim();
    let is_filter = level.contains(['=', ',', '[', ':']);
    let level = if is_filter {
        level.to_owned()
    } else if LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
        level.to_ascii_lowercase()
    } else {
        return Err(err(
            KeyPath::root("log").key("level"),
            format!(
                "unknown log level \"{}\" (expected error, warn, info, debug, trace, off, or a filter such as \"info,cairn_proxy=debug\")",
                raw.level
            ),
        ));
    };
    Ok(LogConfig {
        level,
        format: raw.format,
    })
}

fn check_listen(raw: &[RawListen]) -> Result<Vec<Listen>, BuildError> {
    if raw.is_empty() {
        return Err(err(
            KeyPath::root("listen"),
            "at least one [[listen]] is required (e.g. transport = \"udp\", address = \"0.0.0.0:5060\")",
        ));
    }
    let mut out: Vec<Listen> = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        let path = KeyPath::root("listen").index(i);
        let transport: Transport = l
            .transport
            .parse()
            .map_err(|m: String| err(path.key("transport"), m))?;
        if !matches!(transport, Transport::Udp | Transport::Tcp) {
            return Err(err(
                path.key("transport"),
                format!("{transport} listeners are not supported yet (udp or tcp)"),
            ));
        }
        let address = parse_listen_address(&l.address).map_err(|m| err(path.key("address"), m))?;
        let this = Listen { transport, address };
        for (k, other) in out.iter().enumerate() {
            if other.transport != transport || other.address.port() != address.port() {
                continue;
            }
            if other.address == address {
                return Err(err(
                    path.clone(),
                    format!("duplicate listener: {transport} {address} is already listen[{k}]"),
                ));
            }
            let (a, b) = (other.address.ip(), address.ip());
            if a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()) {
                return Err(err(
                    path.key("address"),
                    format!(
                        "{transport} {address} overlaps listen[{k}] ({transport} {}): an unspecified address already covers every address of its family on that port",
                        other.address
                    ),
                ));
            }
        }
        out.push(this);
    }
    Ok(out)
}

fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        let hint = if text.parse::<IpAddr>().is_ok() {
            " (the port is missing)"
        } else if text
            .rsplit_once(':')
            .is_some_and(|(h, _)| Host::parse(h).is_ok_and(|h| h.is_name()))
        {
            " (host names are not allowed: use an IP address, 0.0.0.0 for all IPv4 addresses)"
        } else {
            ""
        };
        format!("\"{text}\" is not an address: expected IP:PORT or [IPv6]:PORT{hint}")
    })?;
    if addr.port() == 0 {
        return Err(format!("\"{text}\": port 0 is not allowed"));
    }
    if addr.ip().is_multicast() {
        return Err(format!("\"{text}\": cannot listen on a multicast address"));
    }
    Ok(addr)
}

fn check_proxy(raw: RawProxy) -> Result<ProxyConfig, BuildError> {
    let path = KeyPath::root("proxy");
    let mut aliases = Vec::with_capacity(raw.aliases.len());
    for (i, a) in raw.aliases.iter().enumerate() {
        let (host, port) =
            Host::parse_with_port(a).map_err(|m| err(path.key("aliases").index(i), m))?;
        aliases.push(Alias { host, port });
    }
    if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&raw.max_message_size) {
        return Err(err(
            path.key("max_message_size"),
            format!(
                "{} is out of range: expected {MIN_MESSAGE_SIZE} to {MAX_MESSAGE_SIZE} bytes",
                raw.max_message_size
            ),
        ));
    }
    let advertise = match raw.advertise.as_deref() {
        None => None,
        Some(a) => {
            let p = path.key("advertise");
            let (host, port) = Host::parse_with_port(a).map_err(|m| err(p.clone(), m))?;
            if port.is_some() {
                return Err(err(
                    p,
                    format!("\"{a}\": advertise is a host without port (each listener keeps its own port)"),
                ));
            }
            if matches!(host, Host::Ip(ip) if ip.is_unspecified()) {
                return Err(err(
                    p,
                    format!("\"{a}\": cannot advertise an unspecified address"),
                ));
            }
            Some(host)
        }
    };
    Ok(ProxyConfig {
        record_route: raw.record_route,
        aliases,
        max_message_size: raw.max_message_size as usize,
        advertise,
    })
}

fn check_timers(raw: &RawTimers) -> Result<Timers, BuildError> {
    let path = KeyPath::root("timers");
    for (key, v) in [
        ("t1_ms", raw.t1_ms),
        ("t2_ms", raw.t2_ms),
        ("t4_ms", raw.t4_ms),
        ("timer_c_ms", raw.timer_c_ms),
    ] {
        if v == 0 || v > MAX_TIMER_MS {
            return Err(err(
                path.key(key),
                format!("{v} is out of range: expected 1 to {MAX_TIMER_MS} (one day)"),
            ));
        }
    }
    if raw.t2_ms < raw.t1_ms {
        return Err(err(
            path.key("t2_ms"),
            format!(
                "t2_ms ({}) must not be less than t1_ms ({})",
                raw.t2_ms, raw.t1_ms
            ),
        ));
    }
    Ok(Timers {
        t1: Duration::from_millis(raw.t1_ms),
        t2: Duration::from_millis(raw.t2_ms),
        t4: Duration::from_millis(raw.t4_ms),
        timer_c: Duration::from_millis(raw.timer_c_ms),
    })
}

fn check_cancel(raw: &RawCancel) -> Result<CancelConfig, BuildError> {
    let path = KeyPath::root("cancel");
    if raw.unmatched_memory > MAX_UNMATCHED_MEMORY {
        return Err(err(
            path.key("unmatched_memory"),
            format!(
                "{} is out of range: expected 0 to {MAX_UNMATCHED_MEMORY} entries",
                raw.unmatched_memory
            ),
        ));
    }
    if raw.unmatched_window_ms == 0 || raw.unmatched_window_ms > MAX_TIMER_MS {
        return Err(err(
            path.key("unmatched_window_ms"),
            format!(
                "{} is out of range: expected 1 to {MAX_TIMER_MS} (one day)",
                raw.unmatched_window_ms
            ),
        ));
    }
    let reason = |key: &str, v: &str| -> Result<Arc<str>, BuildError> {
        check_reason_value(v).map_err(|m| err(path.key(key), m))?;
        Ok(Arc::from(v.trim()))
    };
    Ok(CancelConfig {
        unmatched: match raw.unmatched {
            RawUnmatched::Reply481 => UnmatchedCancel::Reply481,
            RawUnmatched::Forward => UnmatchedCancel::Forward,
        },
        unmatched_memory: raw.unmatched_memory as usize,
        unmatched_window: raw.unmatched_window_ms,
        reasons: ReasonConfig {
            caller: match raw.caller_reason {
                RawCallerReason::Preserve => CallerReason::Preserve,
                RawCallerReason::Replace => CallerReason::Replace,
                RawCallerReason::Drop => CallerReason::Drop,
            },
            originator: reason("reason_originator", &raw.reason_originator)?,
            no_answer: reason("reason_no_answer", &raw.reason_no_answer)?,
            completed_elsewhere: reason(
                "reason_completed_elsewhere",
                &raw.reason_completed_elsewhere,
            )?,
        },
    })
}

/// A destination is reached over a transport cairn listens on: Via and Record-Route must
/// name a port of that transport.
fn check_destination_transports(
    policy: &Policy,
    explicit: &[Vec<bool>],
    listen: &[Listen],
) -> Result<(), BuildError> {
    for (i, set) in policy.destination_sets().iter().enumerate() {
        for (j, d) in set.destinations().iter().enumerate() {
            let t = d.transport();
            if !listen.iter().any(|l| l.transport == t) {
                let by_key = explicit.get(i).and_then(|s| s.get(j)).copied() == Some(true);
                return Err(err(
                    KeyPath::root("destination_set")
                        .index(i)
                        .key("destinations")
                        .index(j)
                        .key(if by_key { "transport" } else { "uri" }),
                    format!(
                        "{} is reached over {t}, but no [[listen]] has transport = \"{t}\"",
                        d.uri()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_routing::{Algorithm, Decision, ForkMode, RouteInput};

    const MINIMAL: &str = "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n";

    fn ok(text: &str) -> Config {
        parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn bad(text: &str) -> ConfigError {
        match parse(text, "test.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        }
    }

    /// Assert the key and a fragment of the message, and that Display carries both.
    fn assert_bad(text: &str, key: &str, fragment: &str) -> ConfigError {
        let e = bad(text);
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains(fragment), "{e}\n  wanted: {fragment}");
        let shown = e.to_string();
        assert!(shown.starts_with("test.toml"), "{shown}");
        assert!(shown.contains(key) && shown.contains(fragment), "{shown}");
        e
    }

    fn with_gateways(rest: &str) -> String {
        format!(
            "{MINIMAL}\n[[destination_set]]\nname = \"gateways\"\ndestinations = [{{ uri = \"sip:10.0.0.1\" }}]\n{rest}"
        )
    }

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cairn.toml");
        let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Human);
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen[0].transport, Transport::Udp);
        assert_eq!(c.listen[1].transport, Transport::Tcp);
        assert_eq!(c.listen[1].address, "127.0.0.1:5060".parse().unwrap());
        assert!(c.proxy.record_route);
        assert_eq!(c.timers, Timers::default());
        let set = c.routing.destination_set("gateways").unwrap();
        assert_eq!(set.algorithm(), Algorithm::RoundRobin);
        assert_eq!(set.destinations().len(), 2);
        let input = RouteInput {
            method: "INVITE",
            ruri_user: Some("bob"),
            ruri_host: "example.com",
            ruri_port: None,
            source: "127.0.0.1:40000".parse().unwrap(),
            call_id: b"x",
            now_unix_ms: 0,
            transport: cairn_sip::Transport::Udp,
            request: None,
        };
        let Decision::Forward(plan) = c.routing.route(&input) else {
            panic!("INVITE is forwarded")
        };
        assert_eq!(plan.rule.as_ref(), "calls-to-gateways");
        assert_eq!(plan.mode, ForkMode::Serial);
        assert!(plan.failover.should_failover(503) && plan.failover.should_failover(408));
        let bye = RouteInput {
            method: "REGISTER",
            ..input
        };
        assert_eq!(
            c.routing.route(&bye),
            Decision::Respond {
                code: 404,
                reason: "Not Found".into()
            }
        );
    }

    #[test]
    fn defaults() {
        let c = ok(MINIMAL);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Human);
        assert!(c.proxy.record_route);
        assert!(c.proxy.aliases.is_empty());
        assert_eq!(c.proxy.max_message_size, 65535);
        assert_eq!(c.proxy.advertise, None);
        assert_eq!(c.timers.t1, Duration::from_millis(500));
        assert_eq!(c.timers.t2, Duration::from_millis(4000));
        assert_eq!(c.timers.t4, Duration::from_millis(5000));
        assert_eq!(c.timers.timer_c, Duration::from_secs(180));
        assert!(c.routing.rules().is_empty());
        assert_eq!(c.routing.no_match().0, 404);
    }

    #[test]
    fn full_config() {
        let text = r#"
[log]
level = "info,cairn_proxy=debug"
format = "json"

[[listen]]
transport = "udp"
address = "0.0.0.0:5060"

[[listen]]
transport = "tcp"
address = "[::1]:5060"

[[listen]]
transport = "udp"
address = "[::]:5060"

[proxy]
record_route = false
aliases = ["sip.example.com", "198.51.100.1:5080", "[2001:db8::5]:5060"]
max_message_size = 8192
advertise = "sip.example.com"

[timers]
t1_ms = 100
t2_ms = 100
timer_c_ms = 2000

[[destination_set]]
name = "carriers"
algorithm = "weighted_random"
failover_codes = ["5xx", 486, "408"]
failover_on_timeout = false
rewrite_ruri_host = true
destinations = [
    { uri = "sip:10.0.0.1:5060", weight = 3 },
    { uri = "sip:[2001:db8::1]", weight = 1, transport = "tcp", rewrite_ruri_host = false },
    { uri = "sip:10.0.0.3;transport=tcp", weight = 0, priority = 9 },
]

[[destination_set]]
name = "pbx"
algorithm = "parallel"
destinations = [{ uri = "sip:10.1.0.1" }, { uri = "sip:10.1.0.2" }]

[[rule]]
name = "blocklist"
source = ["203.0.113.0/24", "2001:db8:bad::/48"]
respond = { code = 403, reason = "Forbidden" }

[[rule]]
name = "internal"
methods = "INVITE"
ruri_domain = ["pbx.example.com"]
ruri_user_prefix = ["1", "2"]
destination_set = "pbx"

[[rule]]
name = "outbound"
destination_set = "carriers"

[routing]
no_match = { code = 480 }
"#;
        let c = ok(text);
        assert_eq!(c.log.level, "info,cairn_proxy=debug");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.listen.len(), 3);
        assert!(!c.proxy.record_route);
        assert_eq!(c.proxy.aliases.len(), 3);
        assert!(c.proxy.aliases[0].matches("SIP.example.com", 5062));
        assert!(c.proxy.aliases[1].matches("198.51.100.1", 5080));
        assert!(!c.proxy.aliases[1].matches("198.51.100.1", 5060));
        assert!(c.proxy.aliases[2].matches("[2001:db8::5]", 5060));
        assert_eq!(c.proxy.max_message_size, 8192);
        assert_eq!(
            c.proxy.advertise,
            Some(Host::parse("sip.example.com").unwrap())
        );
        assert_eq!(c.timers.t1, Duration::from_millis(100));
        assert_eq!(
            c.timers.t4,
            Duration::from_millis(5000),
            "t4 keeps its default"
        );
        assert_eq!(c.timers.timer_c, Duration::from_secs(2));
        let carriers = c.routing.destination_set("carriers").unwrap();
        let f = carriers.failover();
        assert!(f.should_failover(486) && f.should_failover(502) && !f.on_timeout());
        let d = carriers.destinations();
        assert_eq!(d[1].transport(), Transport::Tcp);
        assert!(d[0].rewrite_ruri_host() && !d[1].rewrite_ruri_host());
        assert_eq!(c.routing.rules().len(), 3);
        assert_eq!(c.routing.no_match().1.as_ref(), "Temporarily Unavailable");
    }

    // ----- bad configurations: each names the key and the problem -----

    #[test]
    fn unknown_keys_are_refused() {
        let e = assert_bad(
            &format!("{MINIMAL}[proxy]\nrecord_rout = true\n"),
            "proxy.record_rout",
            "unknown field `record_rout`",
        );
        assert_eq!(e.location, Some((5, 1)));
        assert_bad(
            &format!("bogus = 1\n{MINIMAL}"),
            "bogus",
            "unknown field `bogus`",
        );
        // After [[listen]], a key belongs to that table: the error says so.
        assert_bad(
            &format!("{MINIMAL}bogus = 1\n"),
            "listen[0].bogus",
            "expected `transport` or `address`",
        );
        assert_bad(
            &with_gateways(
                "[[rule]]\nname = \"r\"\nmethod = [\"INVITE\"]\ndestination_set = \"gateways\"\n",
            ),
            "rule[0].method",
            "expected one of",
        );
        assert_bad(
            &format!("{MINIMAL}[[destination_set]]\nname = \"g\"\ndestinations = [{{ uri = \"sip:10.0.0.1\", wieght = 2 }}]\n"),
            "destination_set[0].destinations[0].wieght",
            "unknown field `wieght`",
        );
    }

    #[test]
    fn unknown_destination_set() {
        let e = assert_bad(
            &with_gateways(
                "[[rule]]\nname = \"a\"\ndestination_set = \"gateways\"\n\n[[rule]]\nname = \"b\"\ndestination_set = \"gw2\"\n",
            ),
            "rule[1].destination_set",
            "no destination set named \"gw2\" (known: gateways)",
        );
        assert_eq!(e.location, Some((14, 19)), "{e}");
        assert!(e
            .to_string()
            .starts_with("test.toml:14:19: rule[1].destination_set: "));
    }

    #[test]
    fn store_grouping_limits() {
        assert_bad(
            &format!("{MINIMAL}[store]\ncommit_interval_ms = 500\n"),
            "store.commit_interval_ms",
            "500 is out of range: 0 to 100 ms",
        );
        assert_bad(
            &format!("{MINIMAL}[store]\nstate_delay_ms = 5000\n"),
            "store.state_delay_ms",
            "out of range",
        );
    }

    #[test]
    fn bad_listen_address() {
        let e = assert_bad(
            "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\n",
            "listen[0].address",
            "the port is missing",
        );
        assert_eq!(e.location, Some((3, 11)));
        assert_bad(
            "[[listen]]\ntransport = \"udp\"\naddress = \"localhost:5060\"\n",
            "listen[0].address",
            "host names are not allowed",
        );
        assert_bad(
            "[[listen]]\ntransport = \"udp\"\naddress = \"::1:5060\"\n",
            "listen[0].address",
            "expected IP:PORT or [IPv6]:PORT",
        );
        assert_bad(
            "[[listen]]\ntransport = \"udp\"\naddress = \"10.0.0.1:0\"\n",
            "listen[0].address",
            "port 0",
        );
        assert_bad(
            "[[listen]]\ntransport = \"sctp\"\naddress = \"10.0.0.1:5060\"\n",
            "listen[0].transport",
            "unknown transport 'sctp'",
        );
        assert_bad(
            "[[listen]]\ntransport = \"tls\"\naddress = \"10.0.0.1:5061\"\n",
            "listen[0].transport",
            "not supported yet",
        );
        assert_bad(
            "[[listen]]\naddress = \"10.0.0.1:5061\"\n",
            "listen[0]",
            "missing field `transport`",
        );
    }

    #[test]
    fn listen_is_required_and_unique() {
        assert_bad("", "listen", "at least one [[listen]] is required");
        assert_bad(
            "[log]\nlevel = \"debug\"\n",
            "listen",
            "at least one [[listen]]",
        );
        assert_bad(
            "[listen]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n",
            "listen",
            "write [[listen]]",
        );
        assert_bad(
            &format!("{MINIMAL}{MINIMAL}"),
            "listen[1]",
            "duplicate listener: udp 127.0.0.1:5060 is already listen[0]",
        );
        assert_bad(
            &format!("{MINIMAL}[[listen]]\ntransport = \"udp\"\naddress = \"0.0.0.0:5060\"\n"),
            "listen[1].address",
            "overlaps listen[0]",
        );
        // Same address on another transport, or another port, is fine.
        ok(&format!(
            "{MINIMAL}[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:5060\"\n[[listen]]\ntransport = \"udp\"\naddress = \"0.0.0.0:5080\"\n"
        ));
    }

    #[test]
    fn hostname_destination() {
        let e = assert_bad(
            &format!("{MINIMAL}[[destination_set]]\nname = \"g\"\ndestinations = [\n  {{ uri = \"sip:10.0.0.1\" }},\n  {{ uri = \"sip:gw.example.com:5060\" }},\n]\n"),
            "destination_set[0].destinations[1].uri",
            "DNS names are not supported yet",
        );
        assert_eq!(e.location.map(|l| l.0), Some(8));
    }

    #[test]
    fn bad_algorithm() {
        assert_bad(
            &format!("{MINIMAL}[[destination_set]]\nname = \"g\"\nalgorithm = \"least_loaded\"\ndestinations = [{{ uri = \"sip:10.0.0.1\" }}]\n"),
            "destination_set[0].algorithm",
            "unknown variant `least_loaded`, expected one of `round_robin`, `weighted_random`, `hash_call_id`, `priority`, `parallel`",
        );
    }

    #[test]
    fn bad_codes() {
        assert_bad(
            &with_gateways("[[rule]]\nname = \"r\"\nrespond = { code = 200, reason = \"OK\" }\n"),
            "rule[0].respond.code",
            "expected 300 to 699",
        );
        assert_bad(
            &with_gateways("[[rule]]\nname = \"r\"\nrespond = { code = 70000 }\n"),
            "rule[0].respond.code",
            "expected u16",
        );
        assert_bad(
            &format!("{MINIMAL}[routing]\nno_match = {{ code = 99, reason = \"x\" }}\n"),
            "routing.no_match.code",
            "expected 300 to 699",
        );
        assert_bad(
            &format!("{MINIMAL}[[destination_set]]\nname = \"g\"\nfailover_codes = [\"5xx\", \"9xx\"]\ndestinations = [{{ uri = \"sip:10.0.0.1\" }}]\n"),
            "destination_set[0].failover_codes[1]",
            "not a response class",
        );
        assert_bad(
            &format!("{MINIMAL}[[destination_set]]\nname = \"g\"\nfailover_codes = [200]\ndestinations = [{{ uri = \"sip:10.0.0.1\" }}]\n"),
            "destination_set[0].failover_codes[0]",
            "final non-2xx",
        );
    }

    #[test]
    fn both_actions() {
        assert_bad(
            &with_gateways("[[rule]]\nname = \"r\"\ndestination_set = \"gateways\"\nrespond = { code = 403, reason = \"Forbidden\" }\n"),
            "rule[0]",
            "set destination_set, respond, lookup, lcr or script, not both destination_set and respond",
        );
        assert_bad(
            &with_gateways("[[rule]]\nname = \"r\"\nmethods = [\"INVITE\"]\n"),
            "rule[0]",
            "needs an action",
        );
    }

    #[test]
    fn destination_transport_needs_a_listener() {
        assert_bad(
            &format!("{MINIMAL}[[destination_set]]\nname = \"g\"\ndestinations = [{{ uri = \"sip:10.0.0.1;transport=tcp\" }}]\n"),
            "destination_set[0].destinations[0].uri",
            "no [[listen]] has transport = \"tcp\"",
        );
        assert_bad(
            &format!("{MINIMAL}[[destination_set]]\nname = \"g\"\ndestinations = [{{ uri = \"sip:10.0.0.1\", transport = \"tcp\" }}]\n"),
            "destination_set[0].destinations[0].transport",
            "no [[listen]] has transport = \"tcp\"",
        );
    }

    #[test]
    fn other_bad_values() {
        assert_bad(
            &format!("{MINIMAL}[timers]\nt1_ms = 0\n"),
            "timers.t1_ms",
            "out of range",
        );
        assert_bad(
            &format!("{MINIMAL}[timers]\nt1_ms = 500\nt2_ms = 400\n"),
            "timers.t2_ms",
            "must not be less than t1_ms",
        );
        assert_bad(
            &format!("{MINIMAL}[timers]\nt4_ms = -1\n"),
            "timers.t4_ms",
            "invalid value",
        );
        assert_bad(
            &format!("{MINIMAL}[log]\nlevel = \"verbose\"\n"),
            "log.level",
            "unknown log level \"verbose\"",
        );
        assert_bad(
            &format!("{MINIMAL}[log]\nformat = \"xml\"\n"),
            "log.format",
            "unknown variant `xml`",
        );
        assert_bad(
            &format!("{MINIMAL}[proxy]\naliases = [\"ok.example.com\", \"bad host\"]\n"),
            "proxy.aliases[1]",
            "not a valid host name",
        );
        assert_bad(
            &format!("{MINIMAL}[proxy]\nadvertise = \"203.0.113.1:5060\"\n"),
            "proxy.advertise",
            "host without port",
        );
        assert_bad(
            &format!("{MINIMAL}[proxy]\nmax_message_size = 100\n"),
            "proxy.max_message_size",
            "out of range",
        );
        assert_bad(
            &with_gateways("[[rule]]\nname = \"r\"\nsource = [\"10.0.0.0/33\"]\ndestination_set = \"gateways\"\n"),
            "rule[0].source[0]",
            "prefix length must be 0 to 32",
        );
        assert_bad(
            &with_gateways("[[rule]]\nname = \"r\"\nmethods = 5\ndestination_set = \"gateways\"\n"),
            "rule[0].methods",
            "a string or a list of strings",
        );
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = bad(&format!("{MINIMAL}[proxy\nrecord_route = true\n"));
        assert_eq!(e.key, None);
        assert_eq!(e.location, Some((4, 7)));
        assert!(e.message.starts_with("TOML syntax error: "), "{e}");
        assert!(
            e.to_string()
                .starts_with("test.toml:4:7: TOML syntax error: "),
            "{e}"
        );
        let e = bad(&format!(
            "{MINIMAL}[proxy]\nrecord_route = true\nrecord_route = false\n"
        ));
        assert!(e.message.contains("duplicate key"), "{e}");
        assert_eq!(e.location.map(|l| l.0), Some(6));
    }

    #[test]
    fn cancel_defaults() {
        let c = ok(MINIMAL);
        let d = CancelConfig::default();
        assert_eq!(c.cancel.unmatched, UnmatchedCancel::Reply481);
        assert_eq!(c.cancel.unmatched_memory, 10_000);
        assert_eq!(c.cancel.unmatched_window, 32_000);
        assert_eq!(c.cancel.reasons, d.reasons);
        assert_eq!(c.cancel.reasons.caller, CallerReason::Preserve);
        assert_eq!(
            &*c.cancel.reasons.no_answer,
            "SIP;cause=480;text=\"NO_ANSWER\""
        );
        assert_eq!(
            &*c.cancel.reasons.completed_elsewhere,
            "SIP;cause=200;text=\"Call completed elsewhere\""
        );
        assert_eq!(
            &*c.cancel.reasons.originator,
            "SIP;cause=487;text=\"ORIGINATOR_CANCEL\""
        );
    }

    #[test]
    fn cancel_section() {
        let c = ok(&format!(
            "{MINIMAL}[cancel]\nunmatched = \"forward\"\nunmatched_memory = 0\nunmatched_window_ms = 5000\n\
             caller_reason = \"drop\"\nreason_originator = \"SIP;cause=487;text=\\\"Bye\\\"\"\n\
             reason_no_answer = \"Q.850;cause=19\"\n\
             reason_completed_elsewhere = \"SIP;cause=200;text=\\\"Elsewhere\\\", Q.850;cause=26\"\n"
        ));
        assert_eq!(c.cancel.unmatched, UnmatchedCancel::Forward);
        assert_eq!(c.cancel.unmatched_memory, 0);
        assert_eq!(c.cancel.unmatched_window, 5000);
        assert_eq!(c.cancel.reasons.caller, CallerReason::Drop);
        assert_eq!(&*c.cancel.reasons.originator, "SIP;cause=487;text=\"Bye\"");
        assert_eq!(&*c.cancel.reasons.no_answer, "Q.850;cause=19");
        assert_eq!(
            &*c.cancel.reasons.completed_elsewhere,
            "SIP;cause=200;text=\"Elsewhere\", Q.850;cause=26"
        );
        for (v, want) in [
            ("preserve", CallerReason::Preserve),
            ("replace", CallerReason::Replace),
        ] {
            let c = ok(&format!("{MINIMAL}[cancel]\ncaller_reason = \"{v}\"\n"));
            assert_eq!(c.cancel.reasons.caller, want);
        }
        let c = ok(&format!("{MINIMAL}[cancel]\nunmatched = \"reply_481\"\n"));
        assert_eq!(c.cancel.unmatched, UnmatchedCancel::Reply481);
    }

    #[test]
    fn bad_cancel_section() {
        assert_bad(
            &format!("{MINIMAL}[cancel]\nunmatched = \"drop\"\n"),
            "cancel.unmatched",
            "unknown variant `drop`, expected `reply_481` or `forward`",
        );
        assert_bad(
            &format!("{MINIMAL}[cancel]\ncaller_reason = \"keep\"\n"),
            "cancel.caller_reason",
            "expected one of `preserve`, `replace`, `drop`",
        );
        assert_bad(
            &format!("{MINIMAL}[cancel]\nunmatched_window_ms = 0\n"),
            "cancel.unmatched_window_ms",
            "out of range",
        );
        assert_bad(
            &format!("{MINIMAL}[cancel]\nunmatched_memory = 10000001\n"),
            "cancel.unmatched_memory",
            "out of range",
        );
        assert_bad(
            &format!("{MINIMAL}[cancel]\nunmatched_memory = -1\n"),
            "cancel.unmatched_memory",
            "invalid value",
        );
        assert_bad(
            &format!("{MINIMAL}[cancel]\nreason_no_answer = \"SIP;cause=480\\r\\nX-Evil: 1\"\n"),
            "cancel.reason_no_answer",
            "line breaks",
        );
        assert_bad(
            &format!("{MINIMAL}[cancel]\nreason_originator = \"ORIGINATOR_CANCEL\"\n"),
            "cancel.reason_originator",
            "expected protocol;params",
        );
        assert_bad(
            &format!("{MINIMAL}[cancel]\nreason_completed_elsewhere = \"SIP;text=elsewhere\"\n"),
            "cancel.reason_completed_elsewhere",
            "quoted string",
        );
        let e = assert_bad(
            &format!("{MINIMAL}[cancel]\nunmatched_memry = 5\n"),
            "cancel.unmatched_memry",
            "unknown field",
        );
        assert_eq!(e.location.map(|l| l.0), Some(5));
    }

    #[test]
    fn rule_lookup_cancel_reason_and_ring_timeout() {
        let c = ok(&with_gateways(
            "[[rule]]\nname = \"dynamic\"\nmethods = \"INVITE\"\n\
             lookup = { url = \"http://127.0.0.1:8080/route\", timeout_ms = 300, fallback = \"gateways\", failure = { code = 480 } }\n\
             cancel_reason = 'SIP;cause=480;text=\"Routed\"'\nring_timeout_ms = 20000\n",
        ));
        let rule = &c.routing.rules()[0];
        assert_eq!(rule.ring_timeout_ms(), Some(20_000));
        assert_eq!(
            rule.cancel_reason().map(|r| &**r),
            Some("SIP;cause=480;text=\"Routed\"")
        );
        let cairn_routing::Action::Lookup(l) = rule.action() else {
            panic!("{:?}", rule.action())
        };
        assert_eq!(&*l.url, "http://127.0.0.1:8080/route");
        assert_eq!(l.timeout_ms, 300);
        assert_eq!(l.fallback, Some(0));
        assert_eq!(
            (l.failure_code, &*l.failure_reason),
            (480, "Temporarily Unavailable")
        );

        assert_bad(
            &with_gateways(
                "[[rule]]\nname = \"r\"\nlookup = { url = \"http://127.0.0.1/\", fallback = \"gw2\" }\n",
            ),
            "rule[0].lookup.fallback",
            "no destination set named \"gw2\"",
        );
        assert_bad(
            &with_gateways("[[rule]]\nname = \"r\"\nlookup = { uri = \"http://127.0.0.1/\" }\n"),
            "rule[0].lookup.uri",
            "unknown field `uri`",
        );
        assert_bad(
            &with_gateways("[[rule]]\nname = \"r\"\nlookup = { url = \"https://127.0.0.1/\" }\n"),
            "rule[0].lookup.url",
            "no TLS",
        );
        assert_bad(
            &with_gateways(
                "[[rule]]\nname = \"r\"\ndestination_set = \"gateways\"\nlookup = { url = \"http://127.0.0.1/\" }\n",
            ),
            "rule[0]",
            "not both destination_set and lookup",
        );
        assert_bad(
            &with_gateways(
                "[[rule]]\nname = \"r\"\ndestination_set = \"gateways\"\ncancel_reason = \"SIP;cause=x\"\n",
            ),
            "rule[0].cancel_reason",
            "cause must be a number",
        );
        assert_bad(
            &with_gateways(
                "[[rule]]\nname = \"r\"\ndestination_set = \"gateways\"\nring_timeout_ms = 0\n",
            ),
            "rule[0].ring_timeout_ms",
            "out of range",
        );
    }

    #[test]
    fn redis_store_and_cluster() {
        let c = ok(&format!(
            "{MINIMAL}[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.9:6390/1\"\n\
             key_prefix = \"pbx:\"\ncommit_timeout_ms = 3\n\n[cluster]\nnode_id = 2\n\
             nodes = [{{ id = 1, address = \"10.0.0.1:5060\" }}, {{ id = 2, address = \"10.0.0.2:5060\" }}]\n"
        ));
        let r = c.store.redis.as_ref().unwrap();
        assert_eq!(
            (r.url.as_str(), r.key_prefix.as_str()),
            ("redis://127.0.0.9:6390/1", "pbx:")
        );
        assert_eq!((r.node, r.commit_timeout_ms, r.io_timeout_ms), (2, 3, 1000));
        assert_eq!(c.cluster.node_id, 2);
        assert_eq!(c.cluster.nodes[0], (1, "10.0.0.1:5060".parse().unwrap()));
        // A single node on Redis: node 0, no [cluster].
        let c = ok(&format!("{MINIMAL}[store]\nbackend = \"redis\"\n"));
        assert_eq!(c.store.redis.unwrap().node, 0);
        assert!(ok(MINIMAL).store.redis.is_none());

        let redis = format!("{MINIMAL}[store]\nbackend = \"redis\"\n");
        assert_bad(
            &format!("{MINIMAL}[store]\nbackend = \"etcd\"\n"),
            "store.backend",
            "\"embedded\" or \"redis\"",
        );
        assert_bad(
            &format!("{MINIMAL}[store]\nurl = \"redis://h\"\n"),
            "store.url",
            "only for backend = \"redis\"",
        );
        assert_bad(
            &format!("{redis}url = \"http://h\"\n"),
            "store.url",
            "redis://",
        );
        assert_bad(
            &format!("{redis}durability = \"strict\"\n"),
            "store.durability",
            "embedded store",
        );
        assert_bad(
            &format!("{redis}commit_timeout_ms = 0\n"),
            "store.commit_timeout_ms",
            "out of range",
        );
        assert_bad(
            &format!("{redis}key_prefix = \"a b\"\n"),
            "store.key_prefix",
            "no spaces",
        );
        let node = "nodes = [{ id = 1, address = \"10.0.0.1:5060\" }]\n";
        assert_bad(
            &format!("{MINIMAL}[cluster]\nnode_id = 1\n{node}"),
            "cluster.nodes",
            "backend = \"redis\"",
        );
        assert_bad(
            &format!("{redis}[cluster]\n{node}"),
            "cluster.node_id",
            "missing",
        );
        assert_bad(
            &format!("{redis}[cluster]\nnode_id = 3\n{node}"),
            "cluster.node_id",
            "not one of",
        );
        assert_bad(
            &format!("{redis}[cluster]\nnode_id = 70000\n"),
            "cluster.node_id",
            "1 to 65535",
        );
        assert_bad(
            &format!("{redis}[cluster]\nnode_id = 1\nnodes = [{{ id = 1, address = \"h:1\" }}]\n"),
            "cluster.nodes[0].address",
            "not an IP address",
        );
        assert_bad(
            &format!(
                "{redis}[cluster]\nnode_id = 1\nnodes = [{{ id = 1, address = \"10.0.0.1:5060\" }}, {{ id = 1, address = \"10.0.0.2:5060\" }}]\n"
            ),
            "cluster.nodes[1].id",
            "listed twice",
        );
    }

    #[test]
    fn load_names_the_file() {
        let e = load(Path::new("/nonexistent/cairn.toml")).unwrap_err();
        assert_eq!(e.origin, "/nonexistent/cairn.toml");
        assert!(
            e.to_string()
                .starts_with("/nonexistent/cairn.toml: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 3), (2, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
        assert_eq!(line_col("éa", 2), (1, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
