//! The compiled routing policy and what it decides for one initial request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use cairn_sip::Transport;

use crate::cidr::Cidr;
use crate::config::{ResponseConfig, RoutingConfig, RuleConfig, StringList};
use crate::error::{BuildError, KeyPath};
use crate::failover::Failover;
use crate::host::Host;
use crate::reason::standard_reason;
use crate::rng::Rng;
use crate::set::DestinationSet;

/// What routing reads from an initial (out-of-dialog) request. Borrowed from the parsed
/// message: building one allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    /// The method token, as received (case-sensitive).
    pub method: &'a str,
    /// The Request-URI user part as received (not unescaped), if any.
    pub ruri_user: Option<&'a str>,
    /// The Request-URI host as received (IPv6 with or without brackets).
    pub ruri_host: &'a str,
    /// The Request-URI port, if any. Not used by any matcher yet.
    pub ruri_port: Option<u16>,
    /// Where the request came from (the packet's source, not the Via).
    pub source: SocketAddr,
    /// The Call-ID value (for `hash_call_id`).
    pub call_id: &'a [u8],
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Proxy it according to the plan.
    Forward(Plan),
    /// Ask an external service (asynchronously): the driver performs the
    /// lookup and turns its answer into a `Forward` or `Respond`.
    Lookup(Lookup),
    /// Answer it with this final response (a `respond` rule, `routing.no_match`, or
    /// 503 when every destination of the chosen set is down).
    Respond { code: u16, reason: Arc<str> },
}

/// An asynchronous routing lookup a rule asks for (an HTTP service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The rule that asked.
    pub rule: Arc<str>,
    /// The service's URL.
    pub url: Arc<str>,
    /// How long to wait for the answer.
    pub timeout_ms: u64,
}

/// How the targets of a plan are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForkMode {
    /// One at a time, in order; the next one on failover.
    Serial,
    /// All at once.
    Parallel,
}

/// Where to proxy one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The rule that matched.
    pub rule: Arc<str>,
    /// The destination set it named.
    pub set: Arc<str>,
    pub mode: ForkMode,
    /// Never empty. Serial: the order to try; parallel: every branch.
    pub targets: Vec<Target>,
    /// When a serial plan moves to its next target. Unused by parallel plans.
    pub failover: Failover,
    /// The Reason value of the CANCELs sent for this call (the rule's
    /// `cancel_reason`); `None`: the global defaults.
    pub cancel_reason: Option<Arc<str>>,
    /// The rule's ring timeout: a branch that has no final answer this long
    /// after it was sent is CANCELed (Reason 480) and fails over.
    pub ring_timeout_ms: Option<u64>,
}

/// One destination, ready to send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// Rewrite the Request-URI host:port to `addr` (for gateways that want their own address there).
    pub rewrite_ruri_host: bool,
    /// The configured URI text, for logs and metrics.
    pub name: Arc<str>,
    /// The destination's position in its set ([`DestinationSet::destinations`]), so that
    /// outcomes (timeouts, 503s) can be reported back against it, e.g. for health.
    pub index: usize,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward to the destination set at this index of [`Policy::destination_sets`].
    Forward { set: usize },
    /// Answer with a final response.
    Respond { code: u16, reason: Arc<str> },
}

/// A compiled `[[rule]]`.
#[derive(Debug)]
pub struct Rule {
    name: Arc<str>,
    methods: Option<Box<[Box<str>]>>,
    user_prefixes: Option<Box<[Box<str>]>>,
    domains: Option<Box<[Host]>>,
    sources: Option<Box<[Cidr]>>,
    action: Action,
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// What the rule does.
    pub fn action(&self) -> &Action {
        &self.action
    }

    /// Whether every matcher of the rule accepts the request.
    pub fn matches(&self, input: &RouteInput<'_>) -> bool {
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| **m == *input.method) {
                return false;
            }
        }
        if let Some(sources) = &self.sources {
            let ip = input.source.ip();
            if !sources.iter().any(|c| c.contains(ip)) {
                return false;
            }
        }
        if let Some(domains) = &self.domains {
            if !domains.iter().any(|h| h.matches(input.ruri_host)) {
                return false;
            }
        }
        if let Some(prefixes) = &self.user_prefixes {
            match input.ruri_user {
                Some(user) if prefixes.iter().any(|p| user.starts_with(&**p)) => {}
                _ => return false,
            }
        }
        true
    }
}

/// The routing policy compiled from configuration: `Send + Sync`, shared by every worker.
/// [`route`](Policy::route) takes no lock and allocates only the plan's target list.
#[derive(Debug)]
pub struct Policy {
    sets: Box<[DestinationSet]>,
    rules: Box<[Rule]>,
    no_match_code: u16,
    no_match_reason: Arc<str>,
    unavailable: Arc<str>,
    rng: Rng,
}

impl Policy {
    /// Check and compile a routing configuration. The random generator (for
    /// `weighted_random`) is seeded from the OS; see [`reseed`](Policy::reseed).
    pub fn build(cfg: &RoutingConfig) -> Result<Policy, BuildError> {
        let mut sets = Vec::with_capacity(cfg.destination_sets.len());
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for (i, s) in cfg.destination_sets.iter().enumerate() {
            let path = KeyPath::root("destination_set").index(i);
            if let Some(&k) = by_name.get(s.name.as_str()) {
                return Err(BuildError::new(
                    path.key("name"),
                    format!(
                        "duplicate destination set name \"{}\" (already destination_set[{k}])",
                        s.name
                    ),
                ));
            }
            sets.push(DestinationSet::build(s, &path)?);
            by_name.insert(&s.name, i);
        }
        let mut rules = Vec::with_capacity(cfg.rules.len());
        let mut rule_names: HashMap<&str, usize> = HashMap::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let path = KeyPath::root("rule").index(i);
            if let Some(&k) = rule_names.get(r.name.as_str()) {
                return Err(BuildError::new(
                    path.key("name"),
                    format!("duplicate rule name \"{}\" (already rule[{k}])", r.name),
                ));
            }
            rules.push(build_rule(r, &path, &by_name, cfg)?);
            rule_names.insert(&r.name, i);
        }
        let (no_match_code, no_match_reason) = build_response(
            &cfg.routing.no_match,
            &KeyPath::root("routing").key("no_match"),
        )?;
        Ok(Policy {
            sets: sets.into_boxed_slice(),
            rules: rules.into_boxed_slice(),
            no_match_code,
            no_match_reason,
            unavailable: Arc::from("Service Unavailable"),
            rng: Rng::from_entropy(),
        })
    }

    /// [`build`](Policy::build) with a fixed random seed, for reproducible tests.
    pub fn build_seeded(cfg: &RoutingConfig, seed: u64) -> Result<Policy, BuildError> {
        let p = Policy::build(cfg)?;
        p.reseed(seed);
        Ok(p)
    }

    /// Restart the random generator from `seed`. Draws are then reproducible as long as one
    /// thread routes.
    pub fn reseed(&self, seed: u64) {
        self.rng.reseed(seed);
    }

    /// Decide what to do with an initial request: rules in order, first match wins; no match
    /// gives `routing.no_match`. A matching rule whose set has every destination down gives
    /// 503 Service Unavailable.
    pub fn route(&self, input: &RouteInput<'_>) -> Decision {
        let Some(rule) = self.rules.iter().find(|r| r.matches(input)) else {
            return Decision::Respond {
                code: self.no_match_code,
                reason: self.no_match_reason.clone(),
            };
        };
        match &rule.action {
            Action::Respond { code, reason } => Decision::Respond {
                code: *code,
                reason: reason.clone(),
            },
            Action::Forward { set } => {
                let set = &self.sets[*set];
                let targets = set.targets(input.call_id, &self.rng);
                if targets.is_empty() {
                    return Decision::Respond {
                        code: 503,
                        reason: self.unavailable.clone(),
                    };
                }
                Decision::Forward(Plan {
                    rule: rule.name.clone(),
                    set: set.name().clone(),
                    mode: set.mode(),
                    targets,
                    failover: set.failover(),
                    cancel_reason: None,
                    ring_timeout_ms: None,
                })
            }
        }
    }

    /// The destination sets, in configuration order.
    pub fn destination_sets(&self) -> &[DestinationSet] {
        &self.sets
    }

    /// The destination set with this name.
    pub fn destination_set(&self, name: &str) -> Option<&DestinationSet> {
        self.sets.iter().find(|s| &**s.name() == name)
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The answer to a request no rule matches.
    pub fn no_match(&self) -> (u16, &Arc<str>) {
        (self.no_match_code, &self.no_match_reason)
    }
}

/// Names of sets and rules appear in logs and metric labels: `[A-Za-z0-9_.-]+`.
pub(crate) fn check_name(name: &str, path: &KeyPath) -> Result<(), BuildError> {
    if name.is_empty() {
        return Err(BuildError::new(path.clone(), "name must not be empty"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(BuildError::new(
            path.clone(),
            format!("\"{name}\": a name may contain only letters, digits, '_', '-' and '.'"),
        ));
    }
    Ok(())
}

const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// A matcher list must not be empty: an empty list would match nothing, which is never
/// what was meant.
fn non_empty<'a>(
    list: &'a StringList,
    path: &KeyPath,
    what: &str,
) -> Result<&'a [String], BuildError> {
    if list.0.is_empty() {
        return Err(BuildError::new(
            path.clone(),
            format!("empty list matches nothing: remove the key to match any {what}"),
        ));
    }
    Ok(&list.0)
}

fn build_rule(
    r: &RuleConfig,
    path: &KeyPath,
    sets: &HashMap<&str, usize>,
    cfg: &RoutingConfig,
) -> Result<Rule, BuildError> {
    check_name(&r.name, &path.key("name"))?;

    let methods = match &r.methods {
        None => None,
        Some(list) => {
            let p = path.key("methods");
            let mut out = Vec::new();
            for (k, m) in non_empty(list, &p, "method")?.iter().enumerate() {
                if m.is_empty() || !m.bytes().all(is_token_char) {
                    return Err(BuildError::new(
                        p.index(k),
                        format!("\"{m}\" is not a SIP method token"),
                    ));
                }
                let upper = m.to_ascii_uppercase();
                if *m != upper && KNOWN_METHODS.contains(&upper.as_str()) {
                    return Err(BuildError::new(
                        p.index(k),
                        format!("methods are case-sensitive: \"{m}\" never matches; did you mean \"{upper}\"?"),
                    ));
                }
                out.push(m.clone().into_boxed_str());
            }
            Some(out.into_boxed_slice())
        }
    };

    let user_prefixes = match &r.ruri_user_prefix {
        None => None,
        Some(list) => {
            let p = path.key("ruri_user_prefix");
            let mut out = Vec::new();
            for (k, s) in non_empty(list, &p, "user")?.iter().enumerate() {
                if s.is_empty() {
                    return Err(BuildError::new(
                        p.index(k),
                        "empty prefix: remove the key to match any user",
                    ));
                }
                if s.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
                {
                    return Err(BuildError::new(
                        p.index(k),
                        format!("\"{s}\" contains whitespace or control characters"),
                    ));
                }
                out.push(s.clone().into_boxed_str());
            }
            Some(out.into_boxed_slice())
        }
    };

    let domains = match &r.ruri_domain {
        None => None,
        Some(list) => {
            let p = path.key("ruri_domain");
            let mut out = Vec::new();
            for (k, s) in non_empty(list, &p, "domain")?.iter().enumerate() {
                out.push(Host::parse(s).map_err(|m| BuildError::new(p.index(k), m))?);
            }
            Some(out.into_boxed_slice())
        }
    };

    let sources = match &r.source {
        None => None,
        Some(list) => {
            let p = path.key("source");
            let mut out = Vec::new();
            for (k, s) in non_empty(list, &p, "source")?.iter().enumerate() {
                out.push(Cidr::parse(s).map_err(|m| BuildError::new(p.index(k), m))?);
            }
            Some(out.into_boxed_slice())
        }
    };

    let action = match (&r.destination_set, &r.respond) {
        (Some(_), Some(_)) => {
            return Err(BuildError::new(
                path.clone(),
                "a rule has exactly one action: set destination_set or respond, not both",
            ))
        }
        (None, None) => {
            return Err(BuildError::new(
                path.clone(),
                "a rule needs an action: destination_set = \"NAME\" or respond = { code = ..., reason = \"...\" }",
            ))
        }
        (Some(name), None) => match sets.get(name.as_str()) {
            Some(&set) => Action::Forward { set },
            None => {
                let known: Vec<&str> = cfg
                    .destination_sets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                let known = if known.is_empty() {
                    "none are defined".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                return Err(BuildError::new(
                    path.key("destination_set"),
                    format!("no destination set named \"{name}\" ({known})"),
                ));
            }
        },
        (None, Some(resp)) => {
            let (code, reason) = build_response(resp, &path.key("respond"))?;
            Action::Respond { code, reason }
        }
    };

    Ok(Rule {
        name: Arc::from(r.name.as_str()),
        methods,
        user_prefixes,
        domains,
        sources,
        action,
    })
}

fn build_response(r: &ResponseConfig, path: &KeyPath) -> Result<(u16, Arc<str>), BuildError> {
    if !(300..=699).contains(&r.code) {
        return Err(BuildError::new(
            path.key("code"),
            format!(
                "{} is not a final non-2xx response code: expected 300 to 699",
                r.code
            ),
        ));
    }
    let reason = match &r.reason {
        Some(reason) => {
            if reason.is_empty() {
                return Err(BuildError::new(
                    path.key("reason"),
                    "reason must not be empty",
                ));
            }
            if reason.chars().any(|c| c.is_control() && c != '\t') {
                return Err(BuildError::new(
                    path.key("reason"),
                    "reason must not contain line breaks or control characters",
                ));
            }
            reason.as_str()
        }
        None => standard_reason(r.code).ok_or_else(|| {
            BuildError::new(
                path.key("reason"),
                format!("{} has no standard reason phrase: set reason", r.code),
            )
        })?,
    };
    Ok((r.code, Arc::from(reason)))
}
