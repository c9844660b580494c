//! Destination health: the probing state machine (sans-I/O).
//!
//! A [`HealthTracker`] knows every destination of a [`Policy`] and, for the sets with a
//! `health` table, when each is due for an OPTIONS probe. The driver asks it for the due
//! probes ([`due_probes`](HealthTracker::due_probes)), sends them, and reports each outcome
//! ([`on_probe_response`](HealthTracker::on_probe_response),
//! [`on_probe_result`](HealthTracker::on_probe_result)); probes not answered within
//! `timeout_ms` fail when [`handle_timeouts`](HealthTracker::handle_timeouts) runs. After
//! `down_after` consecutive failures an up destination is marked down
//! ([`DestinationState::set_up`]), after `up_after` consecutive successes a down one is up
//! again; every change comes back as a [`Transition`] for the caller to log and count.
//!
//! An administrator can force a destination up or down
//! ([`force`](HealthTracker::force)): the override is sticky (probes go on and their
//! results are remembered, but change nothing) until it is released.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use cairn_sip::Transport;

use crate::config::HealthConfig;
use crate::error::{BuildError, KeyPath};
use crate::policy::Policy;
use crate::set::DestinationState;

/// The shortest `health.interval_ms`.
pub const MIN_PROBE_INTERVAL_MS: u64 = 100;
/// The longest `health.interval_ms` (one day).
pub const MAX_PROBE_INTERVAL_MS: u64 = 86_400_000;
/// The largest `down_after` / `up_after`.
pub const MAX_PROBE_THRESHOLD: u32 = 1000;

/// A compiled `destination_set.health`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    interval_ms: u64,
    timeout_ms: u64,
    down_after: u32,
    up_after: u32,
    /// Bit per response code 0..704.
    alive: [u64; 11],
}

impl fmt::Debug for HealthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<u16> = (200..=699).filter(|&c| self.is_alive(c)).collect();
        f.debug_struct("HealthSettings")
            .field("interval_ms", &self.interval_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("down_after", &self.down_after)
            .field("up_after", &self.up_after)
            .field("alive_codes", &codes.len())
            .finish()
    }
}

impl HealthSettings {
    pub(crate) fn build(cfg: &HealthConfig, path: &KeyPath) -> Result<HealthSettings, BuildError> {
        if !(MIN_PROBE_INTERVAL_MS..=MAX_PROBE_INTERVAL_MS).contains(&cfg.interval_ms) {
            return Err(BuildError::new(
                path.key("interval_ms"),
                format!(
                    "{} is out of range: expected {MIN_PROBE_INTERVAL_MS} to {MAX_PROBE_INTERVAL_MS} ms",
                    cfg.interval_ms
                ),
            ));
        }
        if !(1..=cfg.interval_ms).contains(&cfg.timeout_ms) {
            return Err(BuildError::new(
                path.key("timeout_ms"),
                format!(
                    "{} is out of range: expected 1 ms to interval_ms ({} ms)",
                    cfg.timeout_ms, cfg.interval_ms
                ),
            ));
        }
        for (key, v) in [("down_after", cfg.down_after), ("up_after", cfg.up_after)] {
            if !(1..=MAX_PROBE_THRESHOLD).contains(&v) {
                return Err(BuildError::new(
                    path.key(key),
                    format!("{v} is out of range: expected 1 to {MAX_PROBE_THRESHOLD}"),
                ));
            }
        }
        let p = path.key("alive_codes");
        if cfg.alive_codes.is_empty() {
            return Err(BuildError::new(
                p,
                "empty list: no reply would count as alive (\"2xx\" is the default)",
            ));
        }
        let mut alive = [0u64; 11];
        for (k, pattern) in cfg.alive_codes.iter().enumerate() {
            let (lo, hi) = parse_alive(&pattern.0).map_err(|m| BuildError::new(p.index(k), m))?;
            for code in lo..=hi {
                alive[usize::from(code) / 64] |= 1 << (code % 64);
            }
        }
        Ok(HealthSettings {
            interval_ms: cfg.interval_ms,
            timeout_ms: cfg.timeout_ms,
            down_after: cfg.down_after,
            up_after: cfg.up_after,
            alive,
        })
    }

    /// Time between two probes of one destination.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }
    /// How long a probe may go unanswered.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
    /// Consecutive failures that mark a destination down.
    pub fn down_after(&self) -> u32 {
        self.down_after
    }
    /// Consecutive successes that mark a destination up.
    pub fn up_after(&self) -> u32 {
        self.up_after
    }
    /// Whether a final reply with this code counts as alive.
    pub fn is_alive(&self, code: u16) -> bool {
        let i = usize::from(code) / 64;
        i < self.alive.len() && self.alive[i] & (1 << (code % 64)) != 0
    }
}

/// `"2xx"`, `"404"` or `404`: the code range, within 200..=699.
fn parse_alive(p: &str) -> Result<(u16, u16), String> {
    let b = p.as_bytes();
    if b.len() == 3 && b[1..].eq_ignore_ascii_case(b"xx") {
        return match b[0] {
            c @ b'2'..=b'6' => {
                let base = u16::from(c - b'0') * 100;
                Ok((base, base + 99))
            }
            b'1' => Err(format!(
                "\"{p}\": a provisional reply says nothing yet; use final classes 2xx to 6xx"
            )),
            _ => Err(format!(
                "\"{p}\" is not a response class (2xx, 3xx, 4xx, 5xx or 6xx)"
            )),
        };
    }
    match p.parse::<u16>() {
        Ok(code @ 200..=699) if b.iter().all(u8::is_ascii_digit) => Ok((code, code)),
        Ok(100..=199) => Err(format!(
            "\"{p}\": a provisional reply says nothing yet; use final codes 200 to 699"
        )),
        _ => Err(format!(
            "\"{p}\" is not a response code (200 to 699) or class (\"2xx\")"
        )),
    }
}

/// A destination of a [`Policy`]: its set's position in
/// [`Policy::destination_sets`] and its own in
/// [`DestinationSet::destinations`](crate::DestinationSet::destinations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationId {
    pub set: usize,
    pub index: usize,
}

/// An OPTIONS probe to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Report the outcome with this token. Unique per tracker; an outcome with an unknown or
    /// stale token (the probe already timed out) is ignored.
    pub token: u64,
    pub id: DestinationId,
    /// The set's name, for logs.
    pub set: Arc<str>,
    /// The destination's configured URI (the OPTIONS Request-URI), for logs.
    pub uri: Arc<str>,
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// What changed for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionKind {
    /// Probes failed this many times in a row: health is down.
    Down { failures: u32 },
    /// Probes succeeded this many times in a row: health is up.
    Up { successes: u32 },
    /// An administrator forced the destination up (`true`) or down.
    Forced { up: bool },
    /// An administrator released the override: the health decides again.
    Released,
}

/// A change of a destination's health or override, for the caller to log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: DestinationId,
    pub set: Arc<str>,
    pub uri: Arc<str>,
    pub kind: TransitionKind,
    /// Whether the destination is offered to requests after the change
    /// ([`DestinationState::is_up`]): a health change under an override changes nothing.
    pub routable: bool,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "destination {} of set {}: ", self.uri, self.set)?;
        match self.kind {
            TransitionKind::Down { failures } => write!(f, "down after {failures} failed probes")?,
            TransitionKind::Up { successes } => write!(f, "up after {successes} answered probes")?,
            TransitionKind::Forced { up: true } => f.write_str("forced up by an administrator")?,
            TransitionKind::Forced { up: false } => {
                f.write_str("forced down by an administrator")?
            }
            TransitionKind::Released => f.write_str("administrative override released")?,
        }
        let is_health = matches!(
            self.kind,
            TransitionKind::Down { .. } | TransitionKind::Up { .. }
        );
        match (is_health, self.routable) {
            (true, r) if r != matches!(self.kind, TransitionKind::Up { .. }) => {
                write!(f, " (overridden: stays {})", if r { "up" } else { "down" })
            }
            (false, r) => write!(f, " (now {})", if r { "up" } else { "down" }),
            _ => Ok(()),
        }
    }
}

/// One destination as the tracker sees it, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationHealth {
    pub id: DestinationId,
    pub set: Arc<str>,
    pub uri: Arc<str>,
    /// Whether its set probes it.
    pub probed: bool,
    /// Health (up until probes say otherwise).
    pub health_up: bool,
    /// The administrative override.
    pub forced: Option<bool>,
    /// Offered to requests (override, else health).
    pub routable: bool,
    /// Consecutive failed / answered probes.
    pub failures: u32,
    pub successes: u32,
    /// When the last outcome was reported (ms since the epoch).
    pub last_result_at: Option<u64>,
}

/// Probes sent and their outcomes since the tracker was made (carried over by
/// [`HealthTracker::replace_policy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    pub sent: u64,
    /// Answered with an alive code.
    pub ok: u64,
    /// Answered otherwise, timed out, or could not be sent.
    pub failed: u64,
}

/// An admin request named no destination of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDestination(pub DestinationId);

impl fmt::Display for UnknownDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no destination {} in set {}", self.0.index, self.0.set)
    }
}

impl std::error::Error for UnknownDestination {}

#[derive(Debug, Clone)]
struct Entry {
    id: DestinationId,
    /// The set's probing settings.
    settings: Option<HealthSettings>,
    next_due: u64,
    /// (token, deadline) of the probe in flight.
    in_flight: Option<(u64, u64)>,
    failures: u32,
    successes: u32,
    last_result_at: Option<u64>,
}

/// The probing state machine of every destination of a policy. Not shared: one owner (the
/// driver's probing task) calls it; the states it flips are read by every worker.
#[derive(Debug)]
pub struct HealthTracker {
    policy: Arc<Policy>,
    entries: Vec<Entry>,
    /// First entry of each set.
    offsets: Vec<usize>,
    /// Token of each probe in flight, to its entry.
    in_flight: HashMap<u64, usize>,
    next_token: u64,
    counts: ProbeCounts,
}

impl HealthTracker {
    /// A tracker for `policy`; every probed destination is due at `now` (ms since the
    /// epoch). Destinations start up.
    pub fn new(policy: Arc<Policy>, now: u64) -> HealthTracker {
        let mut entries = Vec::new();
        let mut offsets = Vec::new();
        for (s, set) in policy.destination_sets().iter().enumerate() {
            offsets.push(entries.len());
            for index in 0..set.destinations().len() {
                entries.push(Entry {
                    id: DestinationId { set: s, index },
                    settings: set.health().copied(),
                    next_due: now,
                    in_flight: None,
                    failures: 0,
                    successes: 0,
                    last_result_at: None,
                });
            }
        }
        HealthTracker {
            policy,
            entries,
            offsets,
            in_flight: HashMap::new(),
            next_token: 1,
            counts: ProbeCounts::default(),
        }
    }

    /// Probes sent, answered and failed so far.
    pub fn counts(&self) -> ProbeCounts {
        self.counts
    }

    /// The probing settings of the destination probe `token` went to, while that probe
    /// is in flight.
    pub fn probe_settings(&self, token: u64) -> Option<HealthSettings> {
        self.entries[*self.in_flight.get(&token)?].settings
    }

    /// The policy whose destinations are tracked.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Move to a new policy (a reload): destinations that are in both (same set name,
    /// address and transport) keep their health, override, counters, schedule and the
    /// probe in flight; new ones start up and due at `now`.
    pub fn replace_policy(&mut self, policy: Arc<Policy>, now: u64) {
        let mut old: HashMap<(Arc<str>, SocketAddr, Transport), usize> = HashMap::new();
        for (k, e) in self.entries.iter().enumerate() {
            let set = &self.policy.destination_sets()[e.id.set];
            let d = &set.destinations()[e.id.index];
            old.insert((set.name().clone(), d.addr(), d.transport()), k);
        }
        let mut next = HealthTracker::new(policy, now);
        next.next_token = self.next_token;
        next.counts = self.counts;
        for k in 0..next.entries.len() {
            let id = next.entries[k].id;
            let set = &next.policy.destination_sets()[id.set];
            let d = &set.destinations()[id.index];
            let Some(&o) = old.get(&(set.name().clone(), d.addr(), d.transport())) else {
                continue;
            };
            let prev = &self.entries[o];
            let prev_state = self.state(prev.id);
            d.state().set_up(prev_state.health_up());
            d.state().force(prev_state.forced());
            let e = &mut next.entries[k];
            e.failures = prev.failures;
            e.successes = prev.successes;
            e.last_result_at = prev.last_result_at;
            if e.settings.is_some() && prev.settings.is_some() {
                e.next_due = prev
                    .next_due
                    .min(now + e.settings.map_or(0, |s| s.interval_ms));
                e.in_flight = prev.in_flight;
                if let Some((token, _)) = prev.in_flight {
                    next.in_flight.insert(token, k);
                }
            }
        }
        *self = next;
    }

    fn state(&self, id: DestinationId) -> &DestinationState {
        self.policy.destination_sets()[id.set].destinations()[id.index].state()
    }

    fn entry_index(&self, id: DestinationId) -> Option<usize> {
        let base = *self.offsets.get(id.set)?;
        let n = self.policy.destination_sets()[id.set].destinations().len();
        (id.index < n).then_some(base + id.index)
    }

    /// The probes due at `now`, marked in flight (answer within `timeout_ms`). A destination
    /// whose previous probe is still in flight is skipped until that one ends: call
    /// [`handle_timeouts`](HealthTracker::handle_timeouts) first.
    pub fn due_probes(&mut self, now: u64) -> Vec<Probe> {
        let mut out = Vec::new();
        for k in 0..self.entries.len() {
            let e = &self.entries[k];
            let Some(s) = e.settings else { continue };
            if e.in_flight.is_some() || e.next_due > now {
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            let id = e.id;
            let e = &mut self.entries[k];
            e.in_flight = Some((token, now.saturating_add(s.timeout_ms)));
            e.next_due = now.saturating_add(s.interval_ms);
            self.in_flight.insert(token, k);
            self.counts.sent += 1;
            let set = &self.policy.destination_sets()[id.set];
            let d = &set.destinations()[id.index];
            out.push(Probe {
                token,
                id,
                set: set.name().clone(),
                uri: d.uri().clone(),
                addr: d.addr(),
                transport: d.transport(),
            });
        }
        out
    }

    /// A reply to a probe: a final code among the set's `alive_codes` is a success, any
    /// other final code a failure; provisional replies (1xx) change nothing.
    pub fn on_probe_response(&mut self, token: u64, code: u16, now: u64) -> Option<Transition> {
        if code < 200 {
            return None;
        }
        let k = *self.in_flight.get(&token)?;
        let ok = self.entries[k].settings.is_some_and(|s| s.is_alive(code));
        self.on_probe_result(token, ok, now)
    }

    /// The outcome of a probe: `ok` (answered alive) or not (a reply that does not count,
    /// the transport failed, the transaction timed out). Unknown or stale tokens are
    /// ignored.
    pub fn on_probe_result(&mut self, token: u64, ok: bool, now: u64) -> Option<Transition> {
        let k = self.in_flight.remove(&token)?;
        self.entries[k].in_flight = None;
        if ok {
            self.counts.ok += 1;
        } else {
            self.counts.failed += 1;
        }
        self.record(k, ok, now)
    }

    /// Fail the probes whose time is up.
    pub fn handle_timeouts(&mut self, now: u64) -> Vec<Transition> {
        let expired: Vec<u64> = self
            .entries
            .iter()
            .filter_map(|e| e.in_flight.filter(|&(_, deadline)| deadline <= now))
            .map(|(token, _)| token)
            .collect();
        expired
            .into_iter()
            .filter_map(|t| self.on_probe_result(t, false, now))
            .collect()
    }

    /// When to call again: the earliest probe due or deadline, `None` when nothing is
    /// probed.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.entries
            .iter()
            .filter(|e| e.settings.is_some())
            .map(|e| match e.in_flight {
                Some((_, deadline)) => deadline,
                None => e.next_due,
            })
            .min()
    }

    fn record(&mut self, k: usize, ok: bool, now: u64) -> Option<Transition> {
        let e = &mut self.entries[k];
        e.last_result_at = Some(now);
        let settings = e.settings?;
        let id = e.id;
        let state = self.policy.destination_sets()[id.set].destinations()[id.index].state();
        let kind = if ok {
            e.failures = 0;
            e.successes = e.successes.saturating_add(1);
            if state.health_up() || e.successes < settings.up_after {
                return None;
            }
            state.set_up(true);
            TransitionKind::Up {
                successes: e.successes,
            }
        } else {
            e.successes = 0;
            e.failures = e.failures.saturating_add(1);
            if !state.health_up() || e.failures < settings.down_after {
                return None;
            }
            state.set_up(false);
            TransitionKind::Down {
                failures: e.failures,
            }
        };
        Some(self.transition(id, kind))
    }

    fn transition(&self, id: DestinationId, kind: TransitionKind) -> Transition {
        let set = &self.policy.destination_sets()[id.set];
        let d = &set.destinations()[id.index];
        Transition {
            id,
            set: set.name().clone(),
            uri: d.uri().clone(),
            kind,
            routable: d.state().is_up(),
        }
    }

    /// Force a destination up (`Some(true)`) or down (`Some(false)`) whatever its probes
    /// say, until released with `None`. `Ok(None)` when that was already so.
    pub fn force(
        &mut self,
        id: DestinationId,
        state: Option<bool>,
    ) -> Result<Option<Transition>, UnknownDestination> {
        self.entry_index(id).ok_or(UnknownDestination(id))?;
        let prev = self.state(id).force(state);
        if prev == state {
            return Ok(None);
        }
        let kind = match state {
            Some(up) => TransitionKind::Forced { up },
            None => TransitionKind::Released,
        };
        Ok(Some(self.transition(id, kind)))
    }

    /// Every destination's state, in set and destination order.
    pub fn snapshot(&self) -> Vec<DestinationHealth> {
        self.entries
            .iter()
            .map(|e| {
                let set = &self.policy.destination_sets()[e.id.set];
                let d = &set.destinations()[e.id.index];
                let st = d.state();
                DestinationHealth {
                    id: e.id,
                    set: set.name().clone(),
                    uri: d.uri().clone(),
                    probed: e.settings.is_some(),
                    health_up: st.health_up(),
                    forced: st.forced(),
                    routable: st.is_up(),
                    failures: e.failures,
                    successes: e.successes,
                    last_result_at: e.last_result_at,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Algorithm, CodePattern, DestinationSetConfig, RoutingConfig, RuleConfig};
    use crate::{Decision, RouteInput};

    const A: &str = "sip:10.0.0.1:5060";
    const B: &str = "sip:10.0.0.2:5060;transport=tcp";
    const C: &str = "sip:10.0.0.3:5060";

    fn health(down: u32, up: u32) -> HealthConfig {
        HealthConfig {
            interval_ms: 1000,
            timeout_ms: 300,
            down_after: down,
            up_after: up,
            alive_codes: vec!["2xx".into(), "404".into(), CodePattern("486".into())],
        }
    }

    fn policy(h: Option<HealthConfig>) -> Arc<Policy> {
        let mut probed = DestinationSetConfig::new("gw", Algorithm::Priority, &[A, B]);
        probed.health = h;
        let plain = DestinationSetConfig::new("plain", Algorithm::Priority, &[C]);
        Arc::new(
            Policy::build(&RoutingConfig {
                destination_sets: vec![probed, plain],
                rules: vec![RuleConfig {
                    name: "r".into(),
                    destination_set: Some("gw".into()),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .unwrap(),
        )
    }

    fn targets(p: &Policy) -> Vec<String> {
        let input = RouteInput {
            method: "INVITE",
            ruri_user: Some("1"),
            ruri_host: "h",
            ruri_port: None,
            source: "192.0.2.1:5060".parse().unwrap(),
            call_id: b"c",
            now_unix_ms: 0,
            transport: cairn_sip::Transport::Udp,
            request: None,
        };
        match p.route(&input) {
            Decision::Forward(plan) => plan.targets.iter().map(|t| t.name.to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    const GW_A: DestinationId = DestinationId { set: 0, index: 0 };
    const GW_B: DestinationId = DestinationId { set: 0, index: 1 };

    /// The token of the probe to `id` among `probes`.
    fn token(probes: &[Probe], id: DestinationId) -> u64 {
        probes.iter().find(|p| p.id == id).unwrap().token
    }

    #[test]
    fn settings_and_codes() {
        let h = HealthSettings::build(&health(3, 2), &KeyPath::root("h")).unwrap();
        for (code, alive) in [
            (200, true),
            (299, true),
            (404, true),
            (486, true),
            (403, false),
            (503, false),
            (100, false),
            (0, false),
            (u16::MAX, false),
        ] {
            assert_eq!(h.is_alive(code), alive, "{code}");
        }
        let d = HealthSettings::build(&HealthConfig::default(), &KeyPath::root("h")).unwrap();
        assert_eq!(
            (
                d.interval_ms(),
                d.timeout_ms(),
                d.down_after(),
                d.up_after()
            ),
            (10_000, 2_000, 3, 2)
        );
        assert!(d.is_alive(200) && !d.is_alive(404));
        for (f, want) in [
            (
                Box::new(|h: &mut HealthConfig| h.interval_ms = 10)
                    as Box<dyn Fn(&mut HealthConfig)>,
                "h.interval_ms: 10 is out of range",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.timeout_ms = 20_000),
                "h.timeout_ms: 20000 is out of range",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.timeout_ms = 0),
                "h.timeout_ms: 0",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.down_after = 0),
                "h.down_after: 0 is out of range",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.up_after = 5000),
                "h.up_after: 5000",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.alive_codes = vec![]),
                "h.alive_codes: empty list",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.alive_codes = vec!["2xx".into(), "1xx".into()]),
                "h.alive_codes[1]: \"1xx\": a provisional",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.alive_codes = vec!["180".into()]),
                "h.alive_codes[0]: \"180\": a provisional",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.alive_codes = vec!["7xx".into()]),
                "not a response class",
            ),
            (
                Box::new(|h: &mut HealthConfig| h.alive_codes = vec!["700".into()]),
                "not a response code",
            ),
        ] {
            let mut c = HealthConfig::default();
            f(&mut c);
            let e = HealthSettings::build(&c, &KeyPath::root("h"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} / {want}");
        }
    }

    #[test]
    fn probes_are_due_by_interval_and_only_for_probed_sets() {
        let p = policy(Some(health(3, 2)));
        let mut t = HealthTracker::new(p.clone(), 1000);
        assert_eq!(t.next_wakeup(), Some(1000));
        assert!(t.due_probes(999).is_empty());
        let probes = t.due_probes(1000);
        assert_eq!(probes.len(), 2, "set plain has no health: not probed");
        assert_eq!(probes[0].addr, "10.0.0.1:5060".parse().unwrap());
        assert_eq!(probes[1].transport, Transport::Tcp);
        assert_eq!(&*probes[1].set, "gw");
        assert_eq!(&*probes[0].uri, A);
        assert_ne!(probes[0].token, probes[1].token);
        // In flight: not due again, wake up at the timeout.
        assert!(t.due_probes(1500).is_empty());
        assert_eq!(t.next_wakeup(), Some(1300));
        assert_eq!(
            t.probe_settings(probes[0].token).map(|s| s.timeout_ms()),
            Some(300)
        );
        assert_eq!(t.on_probe_response(probes[0].token, 200, 1100), None);
        assert_eq!(t.probe_settings(probes[0].token), None, "answered");
        assert_eq!(
            t.on_probe_response(probes[1].token, 100, 1100),
            None,
            "1xx waits"
        );
        assert_eq!(t.on_probe_response(probes[1].token, 404, 1150), None);
        assert_eq!(t.next_wakeup(), Some(2000));
        assert!(t.due_probes(1999).is_empty());
        assert_eq!(t.due_probes(2000).len(), 2);
        // Nothing probed at all: no wake-up.
        let t = HealthTracker::new(policy(None), 0);
        assert_eq!(t.next_wakeup(), None);
    }

    #[test]
    fn down_after_failures_up_after_successes() {
        let p = policy(Some(health(3, 2)));
        let mut t = HealthTracker::new(p.clone(), 0);
        let mut now = 0;
        let round = |t: &mut HealthTracker, code: Option<u16>, now: &mut u64| {
            let probes = t.due_probes(*now);
            assert_eq!(probes.len(), 2, "at {now}");
            // B always answers 200; A answers `code` or times out.
            assert_eq!(
                t.on_probe_response(token(&probes, GW_B), 200, *now + 10),
                None
            );
            let tr = match code {
                Some(c) => t.on_probe_response(token(&probes, GW_A), c, *now + 10),
                None => {
                    let mut v = t.handle_timeouts(*now + 300);
                    assert!(v.len() <= 1);
                    v.pop()
                }
            };
            *now += 1000;
            tr
        };
        assert_eq!(round(&mut t, Some(503), &mut now), None);
        assert_eq!(round(&mut t, None, &mut now), None);
        assert_eq!(targets(&p), [A, B], "two failures: still up");
        // A success resets the count.
        assert_eq!(round(&mut t, Some(200), &mut now), None);
        assert_eq!(round(&mut t, Some(500), &mut now), None);
        assert_eq!(round(&mut t, Some(403), &mut now), None);
        let tr = round(&mut t, None, &mut now).expect("third failure in a row");
        assert_eq!(tr.kind, TransitionKind::Down { failures: 3 });
        assert_eq!(
            (tr.id, &*tr.set, &*tr.uri, tr.routable),
            (GW_A, "gw", A, false)
        );
        assert_eq!(
            tr.to_string(),
            format!("destination {A} of set gw: down after 3 failed probes")
        );
        assert_eq!(targets(&p), [B], "down: skipped");
        // More failures: no new transition.
        assert_eq!(round(&mut t, None, &mut now), None);
        // One success is not enough, a failure resets, then two in a row.
        assert_eq!(round(&mut t, Some(200), &mut now), None);
        assert_eq!(targets(&p), [B]);
        assert_eq!(round(&mut t, None, &mut now), None);
        assert_eq!(
            round(&mut t, Some(486), &mut now),
            None,
            "486 is alive here"
        );
        let tr = round(&mut t, Some(200), &mut now).expect("second success");
        assert_eq!(tr.kind, TransitionKind::Up { successes: 2 });
        assert!(tr.routable);
        assert_eq!(targets(&p), [A, B]);
        let snap = t.snapshot();
        assert_eq!(snap.len(), 3);
        assert!(snap[0].probed && snap[0].health_up && snap[0].routable);
        assert_eq!((snap[0].successes, snap[0].failures), (2, 0));
        assert!(!snap[2].probed);
        assert_eq!(snap[2].last_result_at, None);
    }

    #[test]
    fn stale_and_unknown_tokens_are_ignored() {
        let p = policy(Some(health(1, 1)));
        let mut t = HealthTracker::new(p.clone(), 0);
        let probes = t.due_probes(0);
        let a = token(&probes, GW_A);
        let v = t.handle_timeouts(300);
        assert_eq!(v.len(), 2, "down_after 1: both down on their first timeout");
        assert!(v.iter().all(|tr| !tr.routable));
        assert_eq!(
            targets(&p),
            ["Respond { code: 503, reason: \"Service Unavailable\" }"]
        );
        // The late 200 of the timed-out probe counts for nothing.
        assert_eq!(t.on_probe_response(a, 200, 400), None);
        assert_eq!(t.on_probe_result(a, true, 400), None);
        assert_eq!(t.on_probe_result(987_654, true, 400), None);
        assert!(!p.destination_sets()[0].destinations()[0].state().is_up());
        // The next probe's answer does.
        let probes = t.due_probes(1000);
        let tr = t.on_probe_result(token(&probes, GW_A), true, 1010).unwrap();
        assert_eq!(tr.kind, TransitionKind::Up { successes: 1 });
        assert!(t.handle_timeouts(299).is_empty());
        // Sent 2 + 2 (B is due at 1000 too); failed: the two timeouts; the late and
        // unknown answers count for nothing.
        assert_eq!(
            t.counts(),
            ProbeCounts {
                sent: 4,
                ok: 1,
                failed: 2
            }
        );
    }

    #[test]
    fn admin_override_is_sticky() {
        let p = policy(Some(health(1, 1)));
        let mut t = HealthTracker::new(p.clone(), 0);
        let tr = t.force(GW_A, Some(false)).unwrap().unwrap();
        assert_eq!(tr.kind, TransitionKind::Forced { up: false });
        assert!(!tr.routable);
        assert_eq!(
            tr.to_string(),
            format!("destination {A} of set gw: forced down by an administrator (now down)")
        );
        assert_eq!(t.force(GW_A, Some(false)), Ok(None), "already so");
        assert_eq!(targets(&p), [B]);
        // Probes answer: health up, but the override holds.
        let probes = t.due_probes(0);
        assert_eq!(
            t.on_probe_result(token(&probes, GW_A), true, 5),
            None,
            "already healthy"
        );
        assert_eq!(targets(&p), [B]);
        // Health goes down under the override: reported, routable unchanged.
        let probes = t.due_probes(1000);
        let tr = t
            .on_probe_result(token(&probes, GW_A), false, 1005)
            .unwrap();
        assert_eq!(tr.kind, TransitionKind::Down { failures: 1 });
        assert!(!tr.routable);
        // Forced up: offered although its health is down.
        let tr = t.force(GW_A, Some(true)).unwrap().unwrap();
        assert!(tr.routable);
        assert_eq!(targets(&p), [A, B]);
        let probes = t.due_probes(2000);
        let tr = t.on_probe_result(token(&probes, GW_A), true, 2005).unwrap();
        assert_eq!(tr.kind, TransitionKind::Up { successes: 1 });
        let probes = t.due_probes(3000);
        let tr = t
            .on_probe_result(token(&probes, GW_A), false, 3005)
            .unwrap();
        assert!(tr.routable, "forced up");
        assert!(tr.to_string().ends_with("(overridden: stays up)"), "{tr}");
        // Released: health (down) decides.
        let tr = t.force(GW_A, None).unwrap().unwrap();
        assert_eq!(tr.kind, TransitionKind::Released);
        assert!(!tr.routable);
        assert_eq!(targets(&p), [B]);
        // Unprobed destinations can be forced too; unknown ones are refused.
        let plain = DestinationId { set: 1, index: 0 };
        assert!(t.force(plain, Some(false)).unwrap().is_some());
        assert_eq!(t.snapshot()[2].forced, Some(false));
        let bad = DestinationId { set: 1, index: 1 };
        assert_eq!(t.force(bad, Some(false)), Err(UnknownDestination(bad)));
        assert!(t.force(DestinationId { set: 9, index: 0 }, None).is_err());
    }

    #[test]
    fn replace_policy_keeps_state_of_kept_destinations() {
        let p = policy(Some(health(1, 1)));
        let mut t = HealthTracker::new(p.clone(), 0);
        let probes = t.due_probes(0);
        t.on_probe_result(token(&probes, GW_A), false, 5).unwrap();
        t.force(GW_B, Some(false)).unwrap();
        let in_flight = t.due_probes(1000);
        assert_eq!(
            in_flight.len(),
            1,
            "B's probe answered? no: B is still in flight"
        );
        // A new policy (a reload) with the same destinations and a new one.
        let mut probed =
            DestinationSetConfig::new("gw", Algorithm::Priority, &["sip:10.0.0.9", B, A]);
        probed.health = Some(health(1, 1));
        let p2 = Arc::new(
            Policy::build(&RoutingConfig {
                destination_sets: vec![probed],
                rules: vec![RuleConfig {
                    name: "r".into(),
                    destination_set: Some("gw".into()),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .unwrap(),
        );
        t.replace_policy(p2.clone(), 1001);
        let d = p2.destination_sets()[0].destinations();
        assert!(d[0].state().is_up(), "new one starts up");
        assert_eq!(d[1].state().forced(), Some(false), "B keeps its override");
        assert!(!d[2].state().health_up(), "A keeps its health");
        assert_eq!(targets(&p2), ["sip:10.0.0.9"]);
        // B's probe in flight before the reload still counts (B is now index 1).
        let b_token = token(&probes, GW_B);
        assert_eq!(t.on_probe_result(b_token, true, 1002), None);
        let a_token = in_flight[0].token;
        let tr = t.on_probe_result(a_token, true, 1003).unwrap();
        assert_eq!(tr.id, DestinationId { set: 0, index: 2 });
        assert_eq!(tr.kind, TransitionKind::Up { successes: 1 });
        // The new one is due at once, and B (due at 1000 but in flight then); A, answered
        // at 1003, keeps its schedule (due at 2000).
        let due = t.due_probes(1003);
        assert_eq!(due.iter().map(|p| p.id.index).collect::<Vec<_>>(), [0, 1]);
        assert!(due[0].token > a_token);
        assert_eq!(t.due_probes(1999), []);
        assert_eq!(t.due_probes(2000).len(), 1);
        assert_eq!(t.counts().sent, 6, "counts carried over the reload");
    }
}
