//! The compiled routing policy and what it decides for one initial request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use cairn_sip::{Message, Transport};

use crate::cidr::Cidr;
use crate::config::{
    default_failover_codes, ResponseConfig, RoutingConfig, RuleConfig, StringList,
};
use crate::error::{BuildError, KeyPath};
use crate::failover::{CodeSet, Failover};
use crate::health::DestinationId;
use crate::host::Host;
use crate::lcr::LcrTable;
use crate::lookup::{
    check_url, LookupAnswer, LookupError, LookupMode, MAX_LOOKUP_TARGETS, MAX_LOOKUP_TIMEOUT_MS,
};
use crate::manip::Manipulation;
use crate::reason::{check_reason_value, standard_reason};
use crate::rng::Rng;
use crate::script::{
    Named, ScriptDecision, ScriptEngine, SCRIPT_INSTRUCTIONS_RANGE, SCRIPT_MEMORY_KB_RANGE,
    SCRIPT_SET_NAME,
};
use crate::set::{Destination, DestinationSet};
use crate::time::{any_holds, TimeWindow};
use crate::uri::parse_destination_uri;

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
    /// The current time, in milliseconds since the UNIX epoch (UTC), for rules with
    /// time conditions (`rule.time`). The core passes its clock; routing never reads one.
    pub now_unix_ms: u64,
    /// The transport the request came over (for scripts: `cairn.transport()`).
    pub transport: Transport,
    /// The whole request, for scripts (`cairn.header()`, `cairn.from_user()`, ...);
    /// `None`: those read nothing.
    pub request: Option<&'a Message>,
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

/// An asynchronous routing lookup a rule asks for (an HTTP service). The driver performs
/// it and hands the answer to [`Policy::lookup_answer`], or its failure to
/// [`Policy::lookup_failed`], to get the request's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The rule that asked.
    pub rule: Arc<str>,
    /// The rule's position in [`Policy::rules`].
    pub rule_index: usize,
    /// The service's URL (`http://...`).
    pub url: Arc<str>,
    /// How long to wait for the answer.
    pub timeout_ms: u64,
}

/// The set name written in the plans made from a lookup answer (logs, metrics).
pub const LOOKUP_SET_NAME: &str = "lookup";

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
    /// How the forwarded request is changed (the rule's `set_ruri_user`, ... and what its
    /// script set), on every branch, before a destination's `rewrite_ruri_host`.
    pub manipulation: Option<Arc<Manipulation>>,
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
    /// Ask an HTTP service for the destinations.
    Lookup(LookupAction),
    /// Least-cost routing through the table at this index of [`Policy::lcr_tables`].
    Lcr { table: usize },
    /// A Lua function decides.
    Script(ScriptAction),
}

/// A compiled `rule.script`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptAction {
    /// The script file (resolved path), for logs.
    pub file: Arc<str>,
    /// The function's name.
    pub function: Arc<str>,
    /// The function's index in the policy's Lua state.
    pub(crate) index: usize,
    /// The response when the script fails at run time.
    pub failure_code: u16,
    pub failure_reason: Arc<str>,
}

/// A compiled `rule.lookup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupAction {
    pub url: Arc<str>,
    pub timeout_ms: u64,
    /// The destination set (index of [`Policy::destination_sets`]) used when the lookup
    /// fails.
    pub fallback: Option<usize>,
    /// The response when the lookup fails and there is no fallback.
    pub failure_code: u16,
    pub failure_reason: Arc<str>,
}

/// A compiled `[[rule]]`.
#[derive(Debug)]
pub struct Rule {
    name: Arc<str>,
    methods: Option<Box<[Box<str>]>>,
    user_prefixes: Option<Box<[Box<str>]>>,
    domains: Option<Box<[Host]>>,
    sources: Option<Box<[Cidr]>>,
    time: Option<Box<[TimeWindow]>>,
    action: Action,
    cancel_reason: Option<Arc<str>>,
    ring_timeout_ms: Option<u64>,
    manipulation: Option<Arc<Manipulation>>,
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

    /// The rule's `cancel_reason`: the Reason value of the CANCELs of its calls.
    pub fn cancel_reason(&self) -> Option<&Arc<str>> {
        self.cancel_reason.as_ref()
    }

    /// The rule's `ring_timeout_ms`.
    pub fn ring_timeout_ms(&self) -> Option<u64> {
        self.ring_timeout_ms
    }

    /// The rule's manipulation of the forwarded request (`set_ruri_user`, ...).
    pub fn manipulation(&self) -> Option<&Arc<Manipulation>> {
        self.manipulation.as_ref()
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
        if let Some(windows) = &self.time {
            if !any_holds(windows, input.now_unix_ms) {
                return false;
            }
        }
        true
    }

    /// The rule's time windows (`rule.time`), if any.
    pub fn time_windows(&self) -> Option<&[TimeWindow]> {
        self.time.as_deref()
    }
}

/// The routing policy compiled from configuration: `Send + Sync`, shared by every worker.
/// [`route`](Policy::route) takes no lock and allocates only the plan's target list, except
/// for script rules: their Lua state (one per policy) is locked for the call.
#[derive(Debug)]
pub struct Policy {
    sets: Box<[DestinationSet]>,
    lcr: Box<[LcrTable]>,
    rules: Box<[Rule]>,
    no_match_code: u16,
    no_match_reason: Arc<str>,
    unavailable: Arc<str>,
    lookup_set: Arc<str>,
    script_set: Arc<str>,
    scripts: Option<ScriptEngine>,
    rng: Rng,
}

impl Policy {
    /// Check and compile a routing configuration. The random generator (for
    /// `weighted_random`) is seeded from the OS; see [`reseed`](Policy::reseed).
    ///
    /// The files of `[[lcr]]` tables (`lcr.file`, relative to
    /// [`RoutingConfig::base_dir`](crate::RoutingConfig::base_dir)) are read here: the only
    /// I/O of this crate, at build time only.
    pub fn build(cfg: &RoutingConfig) -> Result<Policy, BuildError> {
        let mut sets = Vec::with_capacity(cfg.destination_sets.len());
        let mut by_name: HashMap<String, usize> = HashMap::new();
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
            by_name.insert(s.name.clone(), i);
        }
        let mut lcr = Vec::with_capacity(cfg.lcr.len());
        let mut lcr_names: HashMap<&str, usize> = HashMap::new();
        for (i, l) in cfg.lcr.iter().enumerate() {
            let path = KeyPath::root("lcr").index(i);
            if let Some(&k) = lcr_names.get(l.name.as_str()) {
                return Err(BuildError::new(
                    path.key("name"),
                    format!("duplicate lcr table name \"{}\" (already lcr[{k}])", l.name),
                ));
            }
            if by_name.contains_key(l.name.as_str()) {
                return Err(BuildError::new(
                    path.key("name"),
                    format!(
                        "\"{}\" is already the name of a destination set: plans name their table like a set, so the names must differ",
                        l.name
                    ),
                ));
            }
            lcr.push(LcrTable::build(
                l,
                &path,
                &mut sets,
                &mut by_name,
                cfg.base_dir.as_deref(),
            )?);
            lcr_names.insert(&l.name, i);
        }
        // A carrier's own set may not take the name of a later table either.
        for (i, l) in cfg.lcr.iter().enumerate() {
            if let Some(&k) = by_name.get(l.name.as_str()) {
                return Err(BuildError::new(
                    KeyPath::root("lcr").index(i).key("name"),
                    format!(
                        "\"{}\" is already the name of a destination set ({})",
                        l.name,
                        sets[k].name()
                    ),
                ));
            }
        }
        let scripts_path = KeyPath::root("routing");
        let max_instructions = cfg.routing.script_max_instructions;
        let (lo, hi) = SCRIPT_INSTRUCTIONS_RANGE;
        if !(lo..=hi).contains(&max_instructions) {
            return Err(BuildError::new(
                scripts_path.key("script_max_instructions"),
                format!("{max_instructions} is out of range: expected {lo} to {hi}"),
            ));
        }
        let max_memory_kb = cfg.routing.script_max_memory_kb;
        let (lo, hi) = SCRIPT_MEMORY_KB_RANGE;
        if !(lo..=hi).contains(&max_memory_kb) {
            return Err(BuildError::new(
                scripts_path.key("script_max_memory_kb"),
                format!("{max_memory_kb} is out of range: expected {lo} to {hi} KiB"),
            ));
        }
        let mut scripts = None;
        if let Some(i) = cfg.rules.iter().position(|r| r.script.is_some()) {
            let mut names: HashMap<Box<str>, Named> = HashMap::new();
            for (k, set) in sets.iter().enumerate() {
                names.insert(set.name().as_ref().into(), Named::Set(k));
            }
            for (k, table) in lcr.iter().enumerate() {
                names.insert(table.name().as_ref().into(), Named::Lcr(k));
            }
            scripts = Some(
                ScriptEngine::new(max_instructions, max_memory_kb, names).map_err(|m| {
                    BuildError::new(KeyPath::root("rule").index(i).key("script"), m)
                })?,
            );
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
            let script = match (&r.script, scripts.as_mut()) {
                (Some(sc), Some(engine)) => Some(build_script(
                    sc,
                    engine,
                    cfg.base_dir.as_deref(),
                    &path.key("script"),
                )?),
                _ => None,
            };
            rules.push(build_rule(r, &path, &by_name, &lcr_names, &sets, script)?);
            rule_names.insert(&r.name, i);
        }
        let (no_match_code, no_match_reason) = build_response(
            &cfg.routing.no_match,
            &KeyPath::root("routing").key("no_match"),
        )?;
        Ok(Policy {
            sets: sets.into_boxed_slice(),
            lcr: lcr.into_boxed_slice(),
            rules: rules.into_boxed_slice(),
            no_match_code,
            no_match_reason,
            unavailable: Arc::from("Service Unavailable"),
            lookup_set: Arc::from(LOOKUP_SET_NAME),
            script_set: Arc::from(SCRIPT_SET_NAME),
            scripts,
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
    ///
    /// A script rule whose function returns `nil` lets the next rules try.
    pub fn route(&self, input: &RouteInput<'_>) -> Decision {
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matches(input) {
                continue;
            }
            return match &rule.action {
                Action::Respond { code, reason } => Decision::Respond {
                    code: *code,
                    reason: reason.clone(),
                },
                Action::Forward { set } => self.set_plan(rule, *set, input.call_id),
                Action::Lcr { table } => self.lcr_plan(rule, *table, input),
                Action::Lookup(l) => Decision::Lookup(Lookup {
                    rule: rule.name.clone(),
                    rule_index: index,
                    url: l.url.clone(),
                    timeout_ms: l.timeout_ms,
                }),
                Action::Script(action) => match self.script_decision(rule, action, input) {
                    Some(d) => d,
                    None => continue,
                },
            };
        }
        Decision::Respond {
            code: self.no_match_code,
            reason: self.no_match_reason.clone(),
        }
    }

    /// Run a script rule; `None` when the script lets the next rules try.
    fn script_decision(
        &self,
        rule: &Rule,
        action: &ScriptAction,
        input: &RouteInput<'_>,
    ) -> Option<Decision> {
        let failure = || Decision::Respond {
            code: action.failure_code,
            reason: action.failure_reason.clone(),
        };
        let Some(engine) = &self.scripts else {
            return Some(failure());
        };
        let result = engine.run(action.index, input);
        let decision = match result.decision {
            Ok(ScriptDecision::Continue) => return None,
            Ok(ScriptDecision::Respond(code, reason)) => {
                return Some(Decision::Respond { code, reason })
            }
            Ok(ScriptDecision::Named(Named::Set(set))) => self.set_plan(rule, set, input.call_id),
            Ok(ScriptDecision::Named(Named::Lcr(table))) => self.lcr_plan(rule, table, input),
            Ok(ScriptDecision::Targets(targets, mode)) => Decision::Forward(Plan {
                rule: rule.name.clone(),
                set: self.script_set.clone(),
                mode,
                targets,
                failover: lookup_failover(),
                cancel_reason: rule.cancel_reason.clone(),
                ring_timeout_ms: rule.ring_timeout_ms,
                manipulation: rule.manipulation.clone(),
            }),
            Err(error) => {
                tracing::warn!(
                    rule = %rule.name,
                    file = %action.file,
                    function = %action.function,
                    %error,
                    code = action.failure_code,
                    "routing script failed: answering with the rule's failure response"
                );
                return Some(failure());
            }
        };
        let Decision::Forward(mut plan) = decision else {
            return Some(decision);
        };
        if let Some(reason) = result.cancel_reason {
            plan.cancel_reason = Some(reason);
        }
        if let Some(m) = result.manipulation {
            let merged = match &rule.manipulation {
                Some(base) => {
                    let mut all = Manipulation::clone(base);
                    all.merge(&m);
                    all
                }
                None => m,
            };
            plan.manipulation = Some(Arc::new(merged));
        }
        Some(Decision::Forward(plan))
    }

    /// How many script calls failed at run time since the policy was built.
    pub fn script_errors(&self) -> u64 {
        self.scripts.as_ref().map_or(0, |s| s.errors())
    }

    /// The plan for a rule's destination set, or 503 when every destination is down.
    fn set_plan(&self, rule: &Rule, set: usize, call_id: &[u8]) -> Decision {
        let set = &self.sets[set];
        let targets = set.targets(call_id, &self.rng);
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
            cancel_reason: rule.cancel_reason.clone(),
            ring_timeout_ms: rule.ring_timeout_ms,
            manipulation: rule.manipulation.clone(),
        })
    }

    /// The plan of an LCR table: its no-match response when no prefix matches the user,
    /// 503 when every destination of every matching carrier is down.
    fn lcr_plan(&self, rule: &Rule, table: usize, input: &RouteInput<'_>) -> Decision {
        let table = &self.lcr[table];
        let Some(targets) = table.targets(input.ruri_user, input.call_id, &self.sets, &self.rng)
        else {
            let (code, reason) = table.no_match();
            return Decision::Respond {
                code,
                reason: reason.clone(),
            };
        };
        if targets.is_empty() {
            return Decision::Respond {
                code: 503,
                reason: self.unavailable.clone(),
            };
        }
        Decision::Forward(Plan {
            rule: rule.name.clone(),
            set: table.name().clone(),
            mode: ForkMode::Serial,
            targets,
            failover: table.failover(),
            cancel_reason: rule.cancel_reason.clone(),
            ring_timeout_ms: rule.ring_timeout_ms,
            manipulation: rule.manipulation.clone(),
        })
    }

    /// The rule a lookup came from, if this policy still has it.
    fn lookup_rule(&self, lookup: &Lookup) -> Option<(&Rule, &LookupAction)> {
        let rule = self.rules.get(lookup.rule_index)?;
        match &rule.action {
            Action::Lookup(a) if rule.name == lookup.rule => Some((rule, a)),
            _ => None,
        }
    }

    /// The decision for a lookup's answer: its targets as a plan (with the rule's
    /// `cancel_reason` and `ring_timeout_ms`), or its response. An answer that is not
    /// acceptable gives [`lookup_failed`](Policy::lookup_failed).
    pub fn lookup_answer(
        &self,
        lookup: &Lookup,
        answer: &LookupAnswer,
        call_id: &[u8],
    ) -> Decision {
        self.try_lookup_answer(lookup, answer)
            .unwrap_or_else(|_| self.lookup_failed(lookup, call_id))
    }

    /// [`lookup_answer`](Policy::lookup_answer) that says why an answer is refused (for the
    /// driver's log), instead of falling back.
    pub fn try_lookup_answer(
        &self,
        lookup: &Lookup,
        answer: &LookupAnswer,
    ) -> Result<Decision, LookupError> {
        let (rule, _) = self.lookup_rule(lookup).ok_or(LookupError::UnknownRule)?;
        let invalid = |m: String| LookupError::InvalidAnswer(m);
        match (&answer.targets, answer.code) {
            (Some(_), Some(_)) => Err(invalid("both targets and code: give one of them".into())),
            (None, None) => Err(invalid("neither targets nor code".into())),
            (None, Some(code)) => {
                if answer.mode.is_some() {
                    return Err(invalid("mode goes with targets, not with code".into()));
                }
                let (code, reason) = build_response(
                    &ResponseConfig {
                        code,
                        reason: answer.reason.clone(),
                    },
                    &KeyPath::root("answer"),
                )
                .map_err(|e| invalid(e.message))?;
                Ok(Decision::Respond { code, reason })
            }
            (Some(uris), None) => {
                if answer.reason.is_some() {
                    return Err(invalid("reason goes with code, not with targets".into()));
                }
                if uris.is_empty() {
                    return Err(invalid("targets is empty".into()));
                }
                if uris.len() > MAX_LOOKUP_TARGETS {
                    return Err(invalid(format!(
                        "{} targets: at most {MAX_LOOKUP_TARGETS}",
                        uris.len()
                    )));
                }
                let mut targets: Vec<Target> = Vec::with_capacity(uris.len());
                for (i, text) in uris.iter().enumerate() {
                    let (addr, transport) = parse_destination_uri(text)
                        .and_then(|u| u.resolve(None))
                        .map_err(|m| invalid(format!("targets[{i}]: {m}")))?;
                    if let Some(k) = targets
                        .iter()
                        .position(|t| t.addr == addr && t.transport == transport)
                    {
                        return Err(invalid(format!(
                            "targets[{i}]: {transport} {addr} is already targets[{k}]"
                        )));
                    }
                    targets.push(Target {
                        addr,
                        transport,
                        rewrite_ruri_host: false,
                        name: Arc::from(text.as_str()),
                        index: i,
                    });
                }
                let mode = match answer.mode.unwrap_or_default() {
                    LookupMode::Serial => ForkMode::Serial,
                    LookupMode::Parallel => ForkMode::Parallel,
                };
                Ok(Decision::Forward(Plan {
                    rule: rule.name.clone(),
                    set: self.lookup_set.clone(),
                    mode,
                    targets,
                    failover: lookup_failover(),
                    cancel_reason: rule.cancel_reason.clone(),
                    ring_timeout_ms: rule.ring_timeout_ms,
                    manipulation: rule.manipulation.clone(),
                }))
            }
        }
    }

    /// The decision when a lookup failed (timeout, transport or HTTP error, invalid
    /// answer): the rule's `fallback` set, else its `failure` response (default 503).
    pub fn lookup_failed(&self, lookup: &Lookup, call_id: &[u8]) -> Decision {
        let Some((rule, action)) = self.lookup_rule(lookup) else {
            return Decision::Respond {
                code: 503,
                reason: self.unavailable.clone(),
            };
        };
        match action.fallback {
            Some(set) => self.set_plan(rule, set, call_id),
            None => Decision::Respond {
                code: action.failure_code,
                reason: action.failure_reason.clone(),
            },
        }
    }

    /// The destination sets: the configured ones in configuration order, then the sets of
    /// the LCR carriers with their own destinations (`TABLE.CARRIER`).
    pub fn destination_sets(&self) -> &[DestinationSet] {
        &self.sets
    }

    /// The destination set with this name, or the set view of the LCR table with this
    /// name ([`LcrTable::destinations`]): whatever a [`Plan::set`] names, so that
    /// `destination_set(&plan.set)?.destinations()[target.index]` is the target's
    /// destination.
    pub fn destination_set(&self, name: &str) -> Option<&DestinationSet> {
        self.sets
            .iter()
            .find(|s| &**s.name() == name)
            .or_else(|| self.lcr_table(name).map(|t| t.destinations()))
    }

    /// The destination with this id ([`destination_sets`](Policy::destination_sets) index,
    /// destination index).
    pub fn destination(&self, id: DestinationId) -> Option<&Destination> {
        self.sets.get(id.set)?.destinations().get(id.index)
    }

    /// Find a destination of a (configured or carrier) set by the set's name and the
    /// destination's index (`"0"`), configured URI, or `IP:PORT` address.
    pub fn destination_id(&self, set: &str, destination: &str) -> Option<DestinationId> {
        let s = self.sets.iter().position(|x| &**x.name() == set)?;
        let dests = self.sets[s].destinations();
        let index = match destination.parse::<usize>() {
            Ok(i) if i < dests.len() => Some(i),
            Ok(_) => None,
            Err(_) => dests
                .iter()
                .position(|d| &**d.uri() == destination)
                .or_else(|| {
                    let addr: SocketAddr = destination.parse().ok()?;
                    let mut it = dests.iter().enumerate().filter(|(_, d)| d.addr() == addr);
                    // An address reached over two transports is ambiguous: use the URI.
                    match (it.next(), it.next()) {
                        (Some((i, _)), None) => Some(i),
                        _ => None,
                    }
                }),
        }?;
        Some(DestinationId { set: s, index })
    }

    /// The LCR tables, in configuration order.
    pub fn lcr_tables(&self) -> &[LcrTable] {
        &self.lcr
    }

    /// The LCR table with this name.
    pub fn lcr_table(&self, name: &str) -> Option<&LcrTable> {
        self.lcr.iter().find(|t| &**t.name() == name)
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
/// Parse every entry of an optional, non-empty list; an error names the entry.
fn parse_list<T>(
    list: Option<&StringList>,
    path: &KeyPath,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Box<[T]>>, BuildError> {
    let Some(list) = list else { return Ok(None) };
    let mut out = Vec::new();
    for (k, s) in non_empty(list, path, what)?.iter().enumerate() {
        out.push(parse(s).map_err(|m| BuildError::new(path.index(k), m))?);
    }
    Ok(Some(out.into_boxed_slice()))
}

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
    sets: &HashMap<String, usize>,
    lcr: &HashMap<&str, usize>,
    compiled_sets: &[DestinationSet],
    script: Option<ScriptAction>,
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

    let domains = parse_list(
        r.ruri_domain.as_ref(),
        &path.key("ruri_domain"),
        "domain",
        Host::parse,
    )?;
    let sources = parse_list(
        r.source.as_ref(),
        &path.key("source"),
        "source",
        Cidr::parse,
    )?;

    let time = match &r.time {
        None => None,
        Some(windows) => {
            let p = path.key("time");
            if windows.0.is_empty() {
                return Err(BuildError::new(
                    p,
                    "empty list of time windows never holds: remove the key to match at any time",
                ));
            }
            let one = windows.0.len() == 1;
            let mut out = Vec::with_capacity(windows.0.len());
            for (k, w) in windows.0.iter().enumerate() {
                let wp = if one { p.clone() } else { p.index(k) };
                out.push(TimeWindow::build(w, &wp)?);
            }
            Some(out.into_boxed_slice())
        }
    };

    let set_index = |name: &str, key: KeyPath| -> Result<usize, BuildError> {
        match sets.get(name) {
            Some(&set) => Ok(set),
            None => {
                let known: Vec<&str> = compiled_sets.iter().map(|s| &**s.name()).collect();
                let known = if known.is_empty() {
                    "none are defined".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                Err(BuildError::new(
                    key,
                    format!("no destination set named \"{name}\" ({known})"),
                ))
            }
        }
    };
    let given: Vec<&str> = [
        r.destination_set.as_ref().map(|_| "destination_set"),
        r.respond.as_ref().map(|_| "respond"),
        r.lookup.as_ref().map(|_| "lookup"),
        r.lcr.as_ref().map(|_| "lcr"),
        r.script.as_ref().map(|_| "script"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(BuildError::new(
            path.clone(),
            format!(
                "a rule has exactly one action: set destination_set, respond, lookup, lcr or script, not both {}",
                given.join(" and ")
            ),
        ));
    }
    let action = if let Some(script) = script {
        Action::Script(script)
    } else if let Some(name) = &r.destination_set {
        Action::Forward {
            set: set_index(name, path.key("destination_set"))?,
        }
    } else if let Some(name) = &r.lcr {
        match lcr.get(name.as_str()) {
            Some(&table) => Action::Lcr { table },
            None => {
                let mut known: Vec<&str> = lcr.keys().copied().collect();
                known.sort_unstable();
                let known = if known.is_empty() {
                    "none are defined".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                return Err(BuildError::new(
                    path.key("lcr"),
                    format!("no lcr table named \"{name}\" ({known})"),
                ));
            }
        }
    } else if let Some(resp) = &r.respond {
        let (code, reason) = build_response(resp, &path.key("respond"))?;
        Action::Respond { code, reason }
    } else if let Some(l) = &r.lookup {
        let p = path.key("lookup");
        check_url(&l.url).map_err(|m| BuildError::new(p.key("url"), m))?;
        if !(1..=MAX_LOOKUP_TIMEOUT_MS).contains(&l.timeout_ms) {
            return Err(BuildError::new(
                p.key("timeout_ms"),
                format!(
                    "{} is out of range: expected 1 to {MAX_LOOKUP_TIMEOUT_MS} ms",
                    l.timeout_ms
                ),
            ));
        }
        let fallback = match &l.fallback {
            Some(name) => Some(set_index(name, p.key("fallback"))?),
            None => None,
        };
        let (failure_code, failure_reason) = match &l.failure {
            Some(resp) => build_response(resp, &p.key("failure"))?,
            None => (503, Arc::from("Service Unavailable")),
        };
        Action::Lookup(LookupAction {
            url: Arc::from(l.url.as_str()),
            timeout_ms: l.timeout_ms,
            fallback,
            failure_code,
            failure_reason,
        })
    } else {
        return Err(BuildError::new(
            path.clone(),
            "a rule needs an action: destination_set = \"NAME\", respond = { code = ..., reason = \"...\" }, lookup = { url = \"http://...\" }, lcr = \"TABLE\" or script = { file = \"route.lua\" }",
        ));
    };

    let forwards = !matches!(action, Action::Respond { .. });
    let cancel_reason = match &r.cancel_reason {
        None => None,
        Some(v) => {
            let p = path.key("cancel_reason");
            if !forwards {
                return Err(BuildError::new(
                    p,
                    "a respond rule sends no CANCEL: cancel_reason needs destination_set, lookup, lcr or script",
                ));
            }
            check_reason_value(v).map_err(|m| BuildError::new(p, m))?;
            Some(Arc::from(v.trim()))
        }
    };
    let ring_timeout_ms = match r.ring_timeout_ms {
        None => None,
        Some(ms) => {
            let p = path.key("ring_timeout_ms");
            if !forwards {
                return Err(BuildError::new(
                    p,
                    "a respond rule rings nothing: ring_timeout_ms needs destination_set, lookup, lcr or script",
                ));
            }
            if !(1..=MAX_RING_TIMEOUT_MS).contains(&ms) {
                return Err(BuildError::new(
                    p,
                    format!(
                        "{ms} is out of range: expected 1 to {MAX_RING_TIMEOUT_MS} ms (one day)"
                    ),
                ));
            }
            Some(ms)
        }
    };

    let manipulation = Manipulation::build(
        r.set_ruri_user.as_deref(),
        r.set_ruri_host.as_deref(),
        r.add_headers.as_ref().map(|l| &l.0[..]),
        r.remove_headers.as_ref().map(|l| &l.0[..]),
        path,
    )?;
    if manipulation.is_some() && !forwards {
        let key = [
            ("set_ruri_user", r.set_ruri_user.is_some()),
            ("set_ruri_host", r.set_ruri_host.is_some()),
            ("add_headers", r.add_headers.is_some()),
            ("remove_headers", r.remove_headers.is_some()),
        ]
        .into_iter()
        .find(|(_, set)| *set)
        .map_or("set_ruri_user", |(k, _)| k);
        return Err(BuildError::new(
            path.key(key),
            format!("a respond rule forwards nothing: {key} needs destination_set, lookup, lcr or script"),
        ));
    }

    Ok(Rule {
        name: Arc::from(r.name.as_str()),
        methods,
        user_prefixes,
        domains,
        sources,
        time,
        action,
        cancel_reason,
        ring_timeout_ms,
        manipulation: manipulation.map(Arc::new),
    })
}

/// Load a rule's script into the policy's Lua state.
fn build_script(
    sc: &crate::config::ScriptConfig,
    engine: &mut ScriptEngine,
    base_dir: Option<&std::path::Path>,
    path: &KeyPath,
) -> Result<ScriptAction, BuildError> {
    let (failure_code, failure_reason) = match &sc.failure {
        Some(resp) => build_response(resp, &path.key("failure"))?,
        None => (500, Arc::from("Server Internal Error")),
    };
    let index = engine.add(sc, base_dir, path)?;
    Ok(ScriptAction {
        file: engine
            .file(index)
            .cloned()
            .unwrap_or_else(|| Arc::from(sc.file.as_str())),
        function: Arc::from(sc.function.trim()),
        index,
        failure_code,
        failure_reason,
    })
}

/// The longest `ring_timeout_ms` (one day, like the timers).
pub const MAX_RING_TIMEOUT_MS: u64 = 86_400_000;

/// How a serial plan from a lookup answer fails over: the destination sets' defaults
/// (5xx, 408 and timeouts).
fn lookup_failover() -> Failover {
    let mut codes = CodeSet::empty();
    for p in default_failover_codes() {
        let _ = codes.parse_pattern(&p.0);
    }
    Failover {
        codes,
        on_timeout: true,
    }
}

pub(crate) fn build_response(
    r: &ResponseConfig,
    path: &KeyPath,
) -> Result<(u16, Arc<str>), BuildError> {
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
