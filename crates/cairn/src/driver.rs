//! The tokio driver: a thin shell that feeds transport events and timers
//! to the sans-I/O proxy core and carries out what it asks.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_proxy::{CoreConfig, LocalAddr, Millis, Output, Peer, Proxy};
use cairn_transport::{Event, Listener, Outgoing, Transports};
use tracing::{debug, info, warn};

use cairn_store::{Durability, StoreConfig};
use tokio::sync::mpsc;

use crate::admin::{self, AdminRequest, DriverMetrics, Query, Reply};
use crate::config::Config;
use crate::health::{AdminState, Prober};
use crate::lookup::{LookupRequest, Lookups};
use crate::reload::{LoadResult, Reloader};
use crate::state::{Grouping, StateStore};

/// The core's clock: milliseconds since the UNIX epoch, advancing with the
/// monotonic clock (so a wall-clock step never fires timers early).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_ms: Millis,
}

impl Clock {
    pub fn new() -> Clock {
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis);
        Clock {
            start: Instant::now(),
            start_ms,
        }
    }

    pub fn now(&self) -> Millis {
        self.start_ms + self.start.elapsed().as_millis() as Millis
    }

    pub fn instant(&self, at: Millis) -> tokio::time::Instant {
        let offset = at.saturating_sub(self.start_ms);
        tokio::time::Instant::from_std(self.start + Duration::from_millis(offset))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a graceful shutdown waits for calls being set up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The core's settings from the configuration and the bound listeners.
fn core_config(cfg: &Config, transports: &Transports) -> CoreConfig {
    CoreConfig {
        listeners: transports
            .listeners()
            .iter()
            .map(|l| LocalAddr {
                transport: l.transport,
                addr: l.addr,
            })
            .collect(),
        advertise: cfg.proxy.advertise.as_ref().map(|h| h.to_string()),
        aliases: cfg
            .proxy
            .aliases
            .iter()
            .map(|a| match a.port {
                Some(p) => format!("{}:{}", a.host, p),
                None => a.host.to_string(),
            })
            .collect(),
        record_route: cfg.proxy.record_route,
        timers: cairn_transaction::Timers {
            t1: cfg.timers.t1.as_millis() as Millis,
            t2: cfg.timers.t2.as_millis() as Millis,
            t4: cfg.timers.t4.as_millis() as Millis,
        },
        timer_c: cfg.timers.timer_c.as_millis() as Millis,
        max_message_size: cfg.proxy.max_message_size,
        cancel: cfg.cancel.clone(),
        persist: cfg.store.durability != Durability::Off,
        dialogs: cfg.dialogs.enabled,
        dialog_timeout: cfg.dialogs.timeout_s * 1000,
        node: cfg.cluster.node_id,
        peers: cfg.cluster.nodes.clone(),
    }
}

/// The nodes whose records this node takes over at start: those whose
/// `[cluster] nodes` address it listens on (it took their address over).
fn nodes_to_adopt(cfg: &Config) -> Vec<u16> {
    cfg.cluster
        .nodes
        .iter()
        .filter(|(id, addr)| {
            *id != cfg.cluster.node_id && cfg.listen.iter().any(|l| l.address == *addr)
        })
        .map(|(id, _)| *id)
        .collect()
}

/// A finished owner lookup (cluster mode), back to the event loop.
struct OwnerFound {
    request: cairn_sip::Message,
    peer: Peer,
    local: Option<cairn_proxy::LocalAddr>,
    owner: Result<Option<u16>, String>,
}

/// Bind the listeners, restore the state of a previous run, and run the
/// proxy until `shutdown` resolves; then drain (refuse new calls, finish
/// those being set up) and stop. `config_path` is the file `cfg` was read
/// from: SIGHUP and `POST /reload` read it again.
pub async fn run(
    cfg: Config,
    config_path: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    // The store first: a store that cannot be opened stops cairn before it
    // takes any call.
    let store_cfg = StoreConfig {
        durability: cfg.store.durability,
        sync_interval_ms: cfg.store.sync_interval_ms,
        ..StoreConfig::new(&cfg.store.path)
    };
    let mut store = match &cfg.store.redis {
        Some(r) => {
            let adopt = nodes_to_adopt(&cfg);
            StateStore::open_redis(r, &adopt, Clock::new().now(), Grouping::of(&cfg.store))?
        }
        None => StateStore::open(&store_cfg, Grouping::of(&cfg.store))?,
    };
    let other_nodes: Vec<u16> = cfg
        .cluster
        .nodes
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != cfg.cluster.node_id)
        .collect();
    let (owner_tx, mut owner_rx) = mpsc::unbounded_channel::<OwnerFound>();
    let mut resync_tick = tokio::time::interval(Duration::from_millis(100));
    resync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let redis = cfg.store.redis.is_some();
    let listeners: Vec<Listener> = cfg
        .listen
        .iter()
        .map(|l| Listener {
            transport: l.transport,
            addr: l.address,
        })
        .collect();
    let tcfg = cairn_transport::Config {
        listeners,
        max_message_size: cfg.proxy.max_message_size,
        ..Default::default()
    };
    let (transports, mut events) = Transports::bind(tcfg)
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    for l in transports.listeners() {
        info!(transport = %l.transport, address = %l.addr, "listening");
    }
    let core_cfg = core_config(&cfg, &transports);
    let (mut reloader, mut reload_done) = Reloader::new(config_path, &cfg);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot catch SIGHUP: {e}"))?;
    let policy = Arc::new(cfg.routing);
    let mut proxy = Proxy::new(core_cfg, policy.clone());
    let clock = Clock::new();
    // A run id for the probes' branches: answers to an earlier run's probes are ignored.
    let run_id = (clock.now() as u32) ^ std::process::id().rotate_left(16);
    let timers = &proxy.config().timers;
    let mut prober = Prober::new(policy.clone(), clock.now(), run_id, timers.t1, timers.t2);
    let mut metrics = DriverMetrics::default();
    // Every unfinished transaction is back before a socket is read.
    store.restore(&mut proxy, clock.now(), &mut metrics)?;
    if redis {
        info!(
            node = cfg.cluster.node_id,
            nodes = cfg.cluster.nodes.len(),
            "state store open (redis)"
        );
    } else {
        info!(durability = %store.durability(), path = %cfg.store.path.display(), "state store open");
    }

    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminRequest>(16);
    if let Some(addr) = cfg.admin.listen {
        admin::serve(addr, admin_tx).await?;
    }
    let listen_transports: Vec<_> = transports.listeners().iter().map(|l| l.transport).collect();
    let (mut lookups, mut lookup_done) = Lookups::new(policy, &listen_transports);
    let mut shutdown = pin!(shutdown);
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut sends: Vec<Outgoing> = Vec::with_capacity(64);
    info!("cairn ready");

    loop {
        let next = match (proxy.next_timeout(), prober.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|t| clock.instant(t));
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                let now = clock.now();
                handle_event(&mut proxy, &mut prober, now, ev, &mut metrics);
                // Take what else is queued: one group commit for all of it.
                for _ in 0..64 {
                    match events.try_recv() {
                        Ok(ev) => handle_event(&mut proxy, &mut prober, now, ev, &mut metrics),
                        Err(_) => break,
                    }
                }
            }
            done = lookup_done.recv() => {
                if let Some(done) = done {
                    lookups.finished();
                    proxy.lookup_done(clock.now(), done.txn, done.decision);
                }
            }
            _ = sleep => proxy.handle_timeout(clock.now()),
            found = owner_rx.recv() => {
                if let Some(f) = found {
                    let owner = f.owner.unwrap_or_else(|e| {
                        metrics.owner_lookup_failures += 1;
                        debug!(error = %e, "owner lookup failed: handled as matching nothing");
                        None
                    });
                    proxy.owner_found(clock.now(), f.request, f.peer, f.local, owner);
                }
            }
            _ = resync_tick.tick(), if redis => {
                // Redis is back after an outage: write every live record again.
                if store.take_resync() {
                    info!("writing every live record to Redis again");
                    proxy.persist_all(clock.now());
                }
            }
            _ = async {
                match store.deadline() {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
            req = admin_rx.recv() => {
                if let Some(req) = req {
                    metrics.lookup_failures = lookups.stats().totals().2;
                    metrics.store_staged = store.staged() as u64;
                    store.fill_metrics(&mut metrics);
                    match req.query {
                        Query::Reload => reloader.request(Some(req.reply)),
                        Query::SetDestination { set, destination, state } => {
                            let reply = match state.parse::<AdminState>() {
                                Err(e) => Reply::error(400, &e),
                                Ok(st) => match prober.force(&set, &destination, st) {
                                    Ok(d) => Reply::ok(d.to_string()),
                                    Err(e) => Reply::error(404, &e),
                                },
                            };
                            let _ = req.reply.send(reply);
                        }
                        q => {
                            let _ = req.reply.send(admin::answer(&proxy, &prober, clock.now(), &q, &metrics));
                        }
                    }
                }
            }
            Some(()) = hangup.recv() => {
                info!("SIGHUP");
                reloader.request(None);
            }
            done = reload_done.recv() => {
                if let Some(done) = done {
                    let reply = apply_reload(done, &reloader, &mut proxy, &mut prober, &mut lookups, clock.now(), &mut metrics);
                    reloader.finished(&reply);
                }
            }
            _ = &mut shutdown, if drain_until.is_none() => {
                info!("shutting down: new calls get 503, waiting for calls being set up");
                proxy.set_draining(true);
                drain_until = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            _ = async { tokio::time::sleep_until(drain_until.unwrap_or_else(tokio::time::Instant::now)).await }, if drain_until.is_some() => {
                warn!("drain timeout: stopping with calls still being set up");
                break;
            }
        }
        let now = clock.now();
        if prober.next_wakeup().is_some_and(|t| t <= now) {
            prober.poll(now, proxy.config(), &mut sends);
        }
        // Records first, then the messages they cover.
        while let Some(out) = proxy.poll_output() {
            match out {
                Output::Transmit(t) => sends.push(Outgoing {
                    dest: t.dest,
                    transport: t.transport,
                    conn: t.conn.map(cairn_transport::ConnId::from_u64),
                    data: t.data,
                    token: t.token,
                }),
                Output::Persist {
                    space,
                    key,
                    value,
                    expires_at,
                    urgent,
                    fresh,
                } => store.put(space, key, value, expires_at, urgent, fresh),
                Output::Forget { space, key } => store.forget(space, key),
                Output::Lookup {
                    txn,
                    lookup,
                    request,
                    peer,
                } => {
                    let req = LookupRequest::new(&request, peer.addr, peer.transport);
                    lookups.start(txn, lookup, req);
                }
                Output::ProbeResponse { run, token, code } => {
                    prober.on_response(run, token, code, clock.now())
                }
                Output::FindOwner {
                    key,
                    request,
                    peer,
                    local,
                } => match store.finder() {
                    Some(finder) => {
                        let tx = owner_tx.clone();
                        finder.find(
                            cairn_store::Space::Transactions,
                            key.to_vec(),
                            other_nodes.clone(),
                            move |owner| {
                                let _ = tx.send(OwnerFound {
                                    request,
                                    peer,
                                    local,
                                    owner,
                                });
                            },
                        );
                    }
                    None => {
                        let _ = owner_tx.send(OwnerFound {
                            request,
                            peer,
                            local,
                            owner: Ok(None),
                        });
                    }
                },
            }
        }
        store.commit_if_due(&mut metrics);
        // Messages wait behind a record not committed yet, and what comes
        // after them waits too (order kept).
        if !store.holds_messages() {
            for o in sends.drain(..) {
                transports.send(o);
            }
        }
        // A request being looked up is in flight too: its routing is not decided yet.
        if drain_until.is_some() && !proxy.has_pending_requests() && lookups.in_flight() == 0 {
            info!("no call being set up: stopping");
            break;
        }
    }
    store.close(&mut metrics);
    for o in sends.drain(..) {
        transports.send(o);
    }
    transports.shutdown().await;
    let s = proxy.stats();
    info!(
        requests = s.requests_in,
        responses = s.responses_in,
        forwarded = s.requests_forwarded,
        lookups = lookups.stats().totals().0,
        lookups_failed = lookups.stats().totals().2,
        "stopped"
    );
    Ok(())
}

/// Swap in a configuration read for a reload, or refuse it: the answer to
/// whoever asked.
fn apply_reload(
    done: LoadResult,
    reloader: &Reloader,
    proxy: &mut Proxy,
    prober: &mut Prober,
    lookups: &mut Lookups,
    now: Millis,
    metrics: &mut DriverMetrics,
) -> Reply {
    let loaded = match done {
        Ok(l) => l,
        Err(e) => {
            metrics.reloads_failed += 1;
            return reloader.refused(&e);
        }
    };
    let start = Instant::now();
    let new = loaded.config;
    let kept = reloader.restart_only_changes(&new);
    let (rules, sets, lcr) = (
        new.routing.rules().len(),
        new.routing.destination_sets().len(),
        new.routing.lcr_tables().len(),
    );
    let policy = Arc::new(new.routing);
    // Health first: the new policy's destinations get their state before
    // any request is routed by it.
    prober.replace_policy(policy.clone(), now);
    // The script error counter lives in the policy: keep its count.
    metrics.script_errors_before_reload += proxy.policy().script_errors();
    proxy.set_policy(policy.clone());
    proxy.set_cancel_config(new.cancel);
    lookups.set_policy(policy);
    let total = loaded.load_time + start.elapsed();
    metrics.reloads_ok += 1;
    metrics.reload_seconds = total.as_secs_f64();
    info!(
        file = %reloader.path().display(),
        rules,
        destination_sets = sets,
        lcr_tables = lcr,
        load_ms = loaded.load_time.as_millis() as u64,
        swap_us = start.elapsed().as_micros() as u64,
        "configuration reloaded"
    );
    Reply::ok(
        serde_json::json!({
            "result": "reloaded",
            "rules": rules,
            "destination_sets": sets,
            "lcr_tables": lcr,
            "load_ms": loaded.load_time.as_secs_f64() * 1000.0,
            "swap_ms": start.elapsed().as_secs_f64() * 1000.0,
            "restart_needed_for": kept,
        })
        .to_string(),
    )
}

fn handle_event(
    proxy: &mut Proxy,
    prober: &mut Prober,
    now: Millis,
    ev: Event,
    metrics: &mut DriverMetrics,
) {
    match ev {
        Event::Message(m) => {
            let peer = Peer {
                addr: m.source,
                transport: m.transport,
                conn: m.conn.map(|c| c.as_u64()),
            };
            proxy.handle_message(now, m.data, peer, Some(m.local));
        }
        Event::SendFailed {
            token,
            dest,
            transport,
            error,
        } => {
            debug!(%dest, %transport, %error, "send failed");
            metrics.send_failures += 1;
            if prober.on_send_failed(token, now) {
                return;
            }
            if token != 0 {
                proxy.handle_send_failed(now, token);
            }
        }
        Event::Closed { conn, remote } => debug!(%conn, %remote, "connection closed"),
        Event::FramingError {
            source,
            conn,
            error,
        } => {
            warn!(%source, %conn, %error, "stream framing error: connection closed")
        }
    }
}
