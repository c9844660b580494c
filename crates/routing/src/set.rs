//! Destination sets: the destinations, their run-time state, and the algorithms that order
//! them for one request.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use cairn_sip::Transport;

use crate::config::{Algorithm, DestinationSetConfig};
use crate::error::{BuildError, KeyPath};
use crate::failover::{CodeSet, Failover};
use crate::health::HealthSettings;
use crate::policy::{ForkMode, Target};
use crate::rng::{stable_hash, Rng};
use crate::uri::parse_destination_uri;

/// Run-time state of one destination, shared by every request (and by every LCR table
/// that routes through its set): its health (driven by a
/// [`HealthTracker`](crate::HealthTracker) from OPTIONS probes), an administrative override
/// (the admin API), and its dialog count.
#[derive(Debug)]
pub struct DestinationState {
    /// Health: up until probes say otherwise.
    up: AtomicBool,
    /// Administrative override: `ADMIN_NONE`, `ADMIN_UP` or `ADMIN_DOWN`.
    admin: AtomicU8,
    /// Dialogs the proxy holds with this destination now.
    dialogs: AtomicUsize,
    /// `max_dialogs`: a destination with this many dialogs is full.
    max_dialogs: Option<usize>,
}

const ADMIN_NONE: u8 = 0;
const ADMIN_UP: u8 = 1;
const ADMIN_DOWN: u8 = 2;

impl DestinationState {
    fn new(max_dialogs: Option<usize>) -> DestinationState {
        DestinationState {
            up: AtomicBool::new(true),
            admin: AtomicU8::new(ADMIN_NONE),
            dialogs: AtomicUsize::new(0),
            max_dialogs,
        }
    }

    /// Whether the destination is up and not full: only then is it offered.
    pub fn is_available(&self) -> bool {
        self.is_up() && self.max_dialogs.is_none_or(|m| self.dialogs() < m)
    }

    /// Dialogs held with the destination now.
    pub fn dialogs(&self) -> usize {
        self.dialogs.load(Ordering::Relaxed)
    }

    /// The configured dialog limit.
    pub fn max_dialogs(&self) -> Option<usize> {
        self.max_dialogs
    }

    /// A dialog with the destination started (`true`) or ended.
    pub fn dialog_changed(&self, started: bool) {
        if started {
            self.dialogs.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .dialogs
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Whether the destination may be offered to requests: the administrative override
    /// when one is set, else its health. Up when built.
    pub fn is_up(&self) -> bool {
        match self.admin.load(Ordering::Relaxed) {
            ADMIN_UP => true,
            ADMIN_DOWN => false,
            _ => self.up.load(Ordering::Relaxed),
        }
    }

    /// Its health as last set by [`set_up`](DestinationState::set_up), whatever the override.
    pub fn health_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Mark the destination's health up or down (health checking does this). A down
    /// destination is left out of every plan, unless an administrator forced it up.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// The administrative override: `Some(true)` forced up, `Some(false)` forced down.
    pub fn forced(&self) -> Option<bool> {
        match self.admin.load(Ordering::Relaxed) {
            ADMIN_UP => Some(true),
            ADMIN_DOWN => Some(false),
            _ => None,
        }
    }

    /// Force the destination up or down whatever its health (sticky: probes do not change
    /// it), or release the override with `None`. Returns the previous override.
    pub fn force(&self, state: Option<bool>) -> Option<bool> {
        let v = match state {
            None => ADMIN_NONE,
            Some(true) => ADMIN_UP,
            Some(false) => ADMIN_DOWN,
        };
        match self.admin.swap(v, Ordering::Relaxed) {
            ADMIN_UP => Some(true),
            ADMIN_DOWN => Some(false),
            _ => None,
        }
    }
}

/// One destination of a set, compiled from its configuration.
#[derive(Debug, Clone)]
pub struct Destination {
    uri: Arc<str>,
    addr: SocketAddr,
    transport: Transport,
    weight: u32,
    priority: u32,
    rewrite_ruri_host: bool,
    state: Arc<DestinationState>,
}

impl Destination {
    /// The configured URI text (for logs and metrics).
    pub fn uri(&self) -> &Arc<str> {
        &self.uri
    }
    /// Where requests are sent.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// How requests are sent.
    pub fn transport(&self) -> Transport {
        self.transport
    }
    /// The `weight` key (used by `weighted_random`).
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// The `priority` key (used by `priority`).
    pub fn priority(&self) -> u32 {
        self.priority
    }
    /// Whether the Request-URI host is rewritten to this destination.
    pub fn rewrite_ruri_host(&self) -> bool {
        self.rewrite_ruri_host
    }
    /// Run-time state (up/down).
    pub fn state(&self) -> &DestinationState {
        &self.state
    }
}

/// A named, ordered group of destinations and the algorithm that orders them per request.
pub struct DestinationSet {
    name: Arc<str>,
    algorithm: Algorithm,
    failover: Failover,
    health: Option<HealthSettings>,
    destinations: Box<[Destination]>,
    /// Destination indexes sorted by (priority, configuration order).
    by_priority: Box<[usize]>,
    /// Round-robin position, advanced once per request.
    next: AtomicUsize,
}

impl fmt::Debug for DestinationSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationSet")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("failover", &self.failover)
            .field("health", &self.health)
            .field("destinations", &self.destinations)
            .finish_non_exhaustive()
    }
}

impl DestinationSet {
    /// The set's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
    /// The ordering algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// The failover policy given to serial plans.
    pub fn failover(&self) -> Failover {
        self.failover
    }
    /// Health probing of the destinations, when configured.
    pub fn health(&self) -> Option<&HealthSettings> {
        self.health.as_ref()
    }
    /// The destinations in configuration order; [`Target::index`] indexes this slice.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }
    /// Serial for every algorithm but `parallel`.
    pub fn mode(&self) -> ForkMode {
        match self.algorithm {
            Algorithm::Parallel => ForkMode::Parallel,
            _ => ForkMode::Serial,
        }
    }

    pub(crate) fn build(cfg: &DestinationSetConfig, path: &KeyPath) -> Result<Self, BuildError> {
        crate::policy::check_name(&cfg.name, &path.key("name"))?;
        let mut codes = CodeSet::empty();
        for (k, pattern) in cfg.failover_codes.iter().enumerate() {
            codes
                .parse_pattern(&pattern.0)
                .map_err(|m| BuildError::new(path.key("failover_codes").index(k), m))?;
        }
        let dpath = path.key("destinations");
        if cfg.destinations.is_empty() {
            return Err(BuildError::new(
                dpath,
                "a destination set needs at least one destination",
            ));
        }
        let mut destinations: Vec<Destination> = Vec::with_capacity(cfg.destinations.len());
        for (j, d) in cfg.destinations.iter().enumerate() {
            let p = dpath.index(j);
            let uri =
                parse_destination_uri(&d.uri).map_err(|m| BuildError::new(p.key("uri"), m))?;
            let explicit = match &d.transport {
                None => None,
                Some(t) => Some(
                    t.parse::<Transport>()
                        .map_err(|m| BuildError::new(p.key("transport"), m))?,
                ),
            };
            let (addr, transport) = uri.resolve(explicit).map_err(|m| {
                let key = if explicit.is_some() {
                    "transport"
                } else {
                    "uri"
                };
                BuildError::new(p.key(key), m)
            })?;
            if let Some(k) = destinations
                .iter()
                .position(|o| o.addr == addr && o.transport == transport)
            {
                return Err(BuildError::new(
                    p.key("uri"),
                    format!(
                        "{transport} {addr} is already destinations[{k}] of this set (use weight to send it more traffic)"
                    ),
                ));
            }
            destinations.push(Destination {
                uri: Arc::from(d.uri.as_str()),
                addr,
                transport,
                weight: d.weight,
                priority: d.priority,
                rewrite_ruri_host: d.rewrite_ruri_host.unwrap_or(cfg.rewrite_ruri_host),
                state: Arc::new(DestinationState::new(d.max_dialogs.map(|m| m as usize))),
            });
        }
        if cfg.algorithm == Algorithm::WeightedRandom && destinations.iter().all(|d| d.weight == 0)
        {
            return Err(BuildError::new(
                dpath,
                "every destination has weight 0: weighted_random needs at least one weight above 0",
            ));
        }
        let health = match &cfg.health {
            None => None,
            Some(h) => Some(HealthSettings::build(h, &path.key("health"))?),
        };
        let mut by_priority: Vec<usize> = (0..destinations.len()).collect();
        by_priority.sort_by_key(|&i| destinations[i].priority); // stable: ties keep config order
        Ok(DestinationSet {
            name: Arc::from(cfg.name.as_str()),
            algorithm: cfg.algorithm,
            failover: Failover {
                codes,
                on_timeout: cfg.failover_on_timeout,
            },
            health,
            destinations: destinations.into_boxed_slice(),
            by_priority: by_priority.into_boxed_slice(),
            next: AtomicUsize::new(0),
        })
    }

    /// A set made of other sets' destinations (sharing their state), in the given order:
    /// the view an LCR table gives of all its carriers' gateways, so that a plan's
    /// `set` and [`Target::index`] name a destination as for any set.
    pub(crate) fn union(
        name: Arc<str>,
        failover: Failover,
        destinations: Vec<Destination>,
    ) -> Self {
        let n = destinations.len();
        DestinationSet {
            name,
            algorithm: Algorithm::Priority,
            failover,
            health: None,
            destinations: destinations.into_boxed_slice(),
            by_priority: (0..n).collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn target(&self, index: usize) -> Target {
        let d = &self.destinations[index];
        Target {
            addr: d.addr,
            transport: d.transport,
            rewrite_ruri_host: d.rewrite_ruri_host,
            name: d.uri.clone(),
            index,
        }
    }

    /// Push the up destinations, walking the ring from `start`.
    fn push_ring(&self, start: usize, out: &mut Vec<Target>) {
        let n = self.destinations.len();
        for k in 0..n {
            let i = (start + k) % n;
            if self.destinations[i].state.is_available() {
                out.push(self.target(i));
            }
        }
    }

    /// The targets for one request, in the order to try them (serial) or all at once
    /// (parallel). Down destinations are left out; empty when all are down.
    pub(crate) fn targets(&self, call_id: &[u8], rng: &Rng) -> Vec<Target> {
        let mut out = Vec::with_capacity(self.destinations.len());
        self.push_targets(call_id, rng, &mut out);
        out
    }

    /// [`targets`](DestinationSet::targets), appended to `out`.
    pub(crate) fn push_targets(&self, call_id: &[u8], rng: &Rng, out: &mut Vec<Target>) {
        let n = self.destinations.len();
        match self.algorithm {
            Algorithm::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
                self.push_ring(start, out);
            }
            Algorithm::HashCallId => {
                let start = (stable_hash(call_id) % n as u64) as usize;
                self.push_ring(start, out);
            }
            Algorithm::Priority => {
                for &i in self.by_priority.iter() {
                    if self.destinations[i].state.is_available() {
                        out.push(self.target(i));
                    }
                }
            }
            Algorithm::Parallel => self.push_ring(0, out),
            Algorithm::WeightedRandom => self.weighted_order(rng, out),
        }
    }

    /// Weighted random order without replacement: each position is drawn among the
    /// remaining destinations with probability weight / remaining weight. Destinations of
    /// weight 0 come last, in configuration order: backups that get traffic only by failover
    /// (or when every weighted destination is down).
    fn weighted_order(&self, rng: &Rng, out: &mut Vec<Target>) {
        let weight = |t: &Target| u64::from(self.destinations[t.index].weight);
        let base = out.len();
        let mut total = 0u64;
        for (i, d) in self.destinations.iter().enumerate() {
            if d.weight > 0 && d.state.is_available() {
                total += u64::from(d.weight);
                out.push(self.target(i));
            }
        }
        for pos in base..out.len() {
            let mut r = rng.below(total);
            let mut j = pos;
            while r >= weight(&out[j]) {
                r -= weight(&out[j]);
                j += 1;
            }
            total -= weight(&out[j]);
            out.swap(pos, j);
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if d.weight == 0 && d.state.is_available() {
                out.push(self.target(i));
            }
        }
    }
}
