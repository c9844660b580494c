//! Destination sets: the destinations, their run-time state, and the algorithms that order
//! them for one request.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use cairn_sip::Transport;

use crate::config::{Algorithm, DestinationSetConfig};
use crate::error::{BuildError, KeyPath};
use crate::failover::{CodeSet, Failover};
use crate::policy::{ForkMode, Target};
use crate::rng::{stable_hash, Rng};
use crate::uri::parse_destination_uri;

/// Run-time state of one destination, shared by every request. Today only an up/down flag
/// that nothing in this crate changes; health checks (active OPTIONS pings or passive
/// failure counting, reported back by destination index) will drive it.
#[derive(Debug)]
pub struct DestinationState {
    up: AtomicBool,
    /// Dialogs the proxy holds with this destination now.
    dialogs: AtomicUsize,
    /// `max_dialogs`: a destination with this many dialogs is full.
    max_dialogs: Option<usize>,
}

impl DestinationState {
    fn new(max_dialogs: Option<usize>) -> DestinationState {
        DestinationState {
            up: AtomicBool::new(true),
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

    /// Whether the destination may be offered to requests. Up when built.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Mark the destination up or down. A down destination is left out of every plan.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }
}

/// One destination of a set, compiled from its configuration.
#[derive(Debug)]
pub struct Destination {
    uri: Arc<str>,
    addr: SocketAddr,
    transport: Transport,
    weight: u32,
    priority: u32,
    rewrite_ruri_host: bool,
    state: DestinationState,
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
                state: DestinationState::new(d.max_dialogs.map(|m| m as usize)),
            });
        }
        if cfg.algorithm == Algorithm::WeightedRandom && destinations.iter().all(|d| d.weight == 0)
        {
            return Err(BuildError::new(
                dpath,
                "every destination has weight 0: weighted_random needs at least one weight above 0",
            ));
        }
        let mut by_priority: Vec<usize> = (0..destinations.len()).collect();
        by_priority.sort_by_key(|&i| destinations[i].priority); // stable: ties keep config order
        Ok(DestinationSet {
            name: Arc::from(cfg.name.as_str()),
            algorithm: cfg.algorithm,
            failover: Failover {
                codes,
                on_timeout: cfg.failover_on_timeout,
            },
            destinations: destinations.into_boxed_slice(),
            by_priority: by_priority.into_boxed_slice(),
            next: AtomicUsize::new(0),
        })
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
        let n = self.destinations.len();
        let mut out = Vec::with_capacity(n);
        match self.algorithm {
            Algorithm::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
                self.push_ring(start, &mut out);
            }
            Algorithm::HashCallId => {
                let start = (stable_hash(call_id) % n as u64) as usize;
                self.push_ring(start, &mut out);
            }
            Algorithm::Priority => {
                for &i in self.by_priority.iter() {
                    if self.destinations[i].state.is_available() {
                        out.push(self.target(i));
                    }
                }
            }
            Algorithm::Parallel => self.push_ring(0, &mut out),
            Algorithm::WeightedRandom => self.weighted_order(rng, &mut out),
        }
        out
    }

    /// Weighted random order without replacement: each position is drawn among the
    /// remaining destinations with probability weight / remaining weight. Destinations of
    /// weight 0 come last, in configuration order: backups that get traffic only by failover
    /// (or when every weighted destination is down).
    fn weighted_order(&self, rng: &Rng, out: &mut Vec<Target>) {
        let weight = |t: &Target| u64::from(self.destinations[t.index].weight);
        let mut total = 0u64;
        for (i, d) in self.destinations.iter().enumerate() {
            if d.weight > 0 && d.state.is_available() {
                total += u64::from(d.weight);
                out.push(self.target(i));
            }
        }
        let m = out.len();
        for pos in 0..m {
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
