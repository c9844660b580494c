//! Destination health in the driver: OPTIONS probes sent on the schedule of
//! the routing policy's [`HealthTracker`], their answers, timeouts and send
//! failures reported back, state changes logged and counted, and the
//! administrator's overrides.
//!
//! Everything here runs on the driver's event loop with the time passed in,
//! so it is tested without sockets: [`Prober::poll`] returns the datagrams
//! and stream messages to send.
//!
//! A probe is a non-INVITE request of cairn's own
//! ([`cairn_proxy::probe::options`]); its answer is recognised by the core
//! from its branch and comes back as
//! [`Output::ProbeResponse`](cairn_proxy::Output::ProbeResponse). Over UDP
//! a probe is retransmitted like a non-INVITE request (RFC 3261 17.1.2.2:
//! T1, doubling up to T2) until it is answered or its `timeout_ms` is up.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cairn_proxy::probe::{self, ProbeTarget};
use cairn_proxy::{CoreConfig, Millis};
use cairn_routing::{
    DestinationId, HealthTracker, Policy, ProbeCounts, Transition, TransitionKind,
};
use cairn_sip::Transport;
use cairn_transport::Outgoing;
use tracing::{info, warn};

/// The bit that marks the transmit token of a probe (the core's tokens are
/// transaction ids, counted from 1, far below it).
pub const PROBE_TOKEN_BIT: u64 = 1 << 63;

/// What an administrator asks of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Forced up: offered whatever its probes say.
    Up,
    /// Forced down: never offered.
    Down,
    /// The probes decide (the override is released).
    Auto,
}

impl std::str::FromStr for AdminState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "up" => Ok(AdminState::Up),
            "down" => Ok(AdminState::Down),
            "auto" => Ok(AdminState::Auto),
            _ => Err(format!("unknown state \"{s}\": expected up, down or auto")),
        }
    }
}

/// State changes by kind, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransitionCounts {
    pub down: u64,
    pub up: u64,
    pub forced_down: u64,
    pub forced_up: u64,
    pub released: u64,
}

/// A UDP probe in flight, retransmitted until answered or out of time.
#[derive(Debug)]
struct Retransmit {
    data: Bytes,
    dest: SocketAddr,
    at: Millis,
    interval: Millis,
    /// The probe's deadline: no retransmission after it.
    until: Millis,
}

/// The driver's side of health checking.
pub struct Prober {
    tracker: HealthTracker,
    /// Tells this run's probes from those of an earlier run.
    run: u32,
    retransmits: HashMap<u64, Retransmit>,
    t1: Millis,
    t2: Millis,
    transitions: TransitionCounts,
    /// Probes that could not be built (no listener for the transport).
    unsendable: u64,
}

impl Prober {
    /// Probing for `policy`, every probed destination due at `now`; `run` is
    /// different in each run of cairn (e.g. the start time); `t1` and `t2`
    /// pace UDP retransmissions.
    pub fn new(policy: Arc<Policy>, now: Millis, run: u32, t1: Millis, t2: Millis) -> Prober {
        Prober {
            tracker: HealthTracker::new(policy, now),
            run,
            retransmits: HashMap::new(),
            t1: t1.max(1),
            t2: t2.max(t1.max(1)),
            transitions: TransitionCounts::default(),
            unsendable: 0,
        }
    }

    /// When [`Prober::poll`] must run next.
    pub fn next_wakeup(&self) -> Option<Millis> {
        let r = self.retransmits.values().map(|r| r.at).min();
        match (self.tracker.next_wakeup(), r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fail the probes whose time is up, and queue in `out` the probes due
    /// and the retransmissions due at `now`.
    pub fn poll(&mut self, now: Millis, cfg: &CoreConfig, out: &mut Vec<Outgoing>) {
        for t in self.tracker.handle_timeouts(now) {
            self.note(&t, "no answer in time");
        }
        self.retransmits.retain(|_, r| r.until > now);
        for (&token, r) in self.retransmits.iter_mut() {
            if r.at > now {
                continue;
            }
            out.push(Outgoing {
                dest: r.dest,
                transport: Transport::Udp,
                conn: None,
                data: r.data.clone(),
                token: token | PROBE_TOKEN_BIT,
            });
            r.interval = (r.interval * 2).min(self.t2);
            r.at = now + r.interval;
        }
        for p in self.tracker.due_probes(now) {
            let target = ProbeTarget {
                uri: &p.uri,
                addr: p.addr,
                transport: p.transport,
                run: self.run,
                token: p.token,
            };
            let Some(data) = probe::options(cfg, &target) else {
                self.unsendable += 1;
                if let Some(t) = self.tracker.on_probe_result(p.token, false, now) {
                    self.note(&t, "the probe cannot be sent");
                }
                continue;
            };
            if p.transport == Transport::Udp {
                let until = self
                    .tracker
                    .probe_settings(p.token)
                    .map_or(now, |s| now + s.timeout_ms());
                self.retransmits.insert(
                    p.token,
                    Retransmit {
                        data: data.clone(),
                        dest: p.addr,
                        at: now + self.t1,
                        interval: self.t1,
                        until,
                    },
                );
            }
            out.push(Outgoing {
                dest: p.addr,
                transport: p.transport,
                conn: None,
                data,
                token: p.token | PROBE_TOKEN_BIT,
            });
        }
    }

    /// An answer to a probe (from [`cairn_proxy::Output::ProbeResponse`]).
    /// Answers to probes of another run, and provisional ones, change
    /// nothing.
    pub fn on_response(&mut self, run: u32, token: u64, code: u16, now: Millis) {
        if run != self.run || code < 200 {
            return;
        }
        self.retransmits.remove(&token);
        if let Some(t) = self.tracker.on_probe_response(token, code, now) {
            self.note(&t, &format!("answered {code}"));
        }
    }

    /// A transmit failed; `true` when it was a probe's (it then fails).
    pub fn on_send_failed(&mut self, token: u64, now: Millis) -> bool {
        if token & PROBE_TOKEN_BIT == 0 {
            return false;
        }
        let token = token & !PROBE_TOKEN_BIT;
        self.retransmits.remove(&token);
        if let Some(t) = self.tracker.on_probe_result(token, false, now) {
            self.note(&t, "the probe could not be sent");
        }
        true
    }

    /// An administrator's override of the destination `dest` of set `set`:
    /// `dest` is the destination's URI as configured or its position in the
    /// set (from 0). The answer is the destination's state after it, as
    /// JSON; the error says what was not found.
    pub fn force(
        &mut self,
        set: &str,
        dest: &str,
        state: AdminState,
    ) -> Result<serde_json::Value, String> {
        let id = self.find(set, dest)?;
        let want = match state {
            AdminState::Up => Some(true),
            AdminState::Down => Some(false),
            AdminState::Auto => None,
        };
        match self.tracker.force(id, want) {
            Ok(Some(t)) => self.note(&t, "admin API"),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        Ok(self.destinations_json(Some(id)).remove(0))
    }

    fn find(&self, set: &str, dest: &str) -> Result<DestinationId, String> {
        let policy = self.tracker.policy();
        let (s, ds) = policy
            .destination_sets()
            .iter()
            .enumerate()
            .find(|(_, d)| &**d.name() == set)
            .ok_or_else(|| format!("no destination set named \"{set}\""))?;
        let by_uri = ds.destinations().iter().position(|d| &**d.uri() == dest);
        let by_index = dest
            .parse::<usize>()
            .ok()
            .filter(|&i| i < ds.destinations().len());
        let index = by_uri.or(by_index).ok_or_else(|| {
            format!(
                "set \"{set}\" has no destination \"{dest}\" (give its URI as configured, or its position from 0 to {})",
                ds.destinations().len().saturating_sub(1)
            )
        })?;
        Ok(DestinationId { set: s, index })
    }

    /// Move to a reloaded policy: destinations it keeps keep their health,
    /// override and schedule; new ones start up and are probed at once.
    pub fn replace_policy(&mut self, policy: Arc<Policy>, now: Millis) {
        self.tracker.replace_policy(policy, now);
    }

    /// Log and count a change.
    fn note(&mut self, t: &Transition, why: &str) {
        let c = &mut self.transitions;
        match t.kind {
            TransitionKind::Down { .. } => c.down += 1,
            TransitionKind::Up { .. } => c.up += 1,
            TransitionKind::Forced { up: true } => c.forced_up += 1,
            TransitionKind::Forced { up: false } => c.forced_down += 1,
            TransitionKind::Released => c.released += 1,
        }
        let state = if t.routable { "up" } else { "down" };
        if matches!(t.kind, TransitionKind::Down { .. }) && !t.routable {
            warn!(set = %t.set, destination = %t.uri, state, reason = why, "{t}");
        } else {
            info!(set = %t.set, destination = %t.uri, state, reason = why, "{t}");
        }
    }

    /// Probes sent, answered and failed.
    pub fn counts(&self) -> ProbeCounts {
        self.tracker.counts()
    }

    pub fn transitions(&self) -> TransitionCounts {
        self.transitions
    }

    /// Every destination (or only `only`) with its state, for the admin API.
    pub fn destinations_json(&self, only: Option<DestinationId>) -> Vec<serde_json::Value> {
        self.tracker
            .snapshot()
            .into_iter()
            .filter(|d| only.is_none_or(|id| d.id == id))
            .map(|d| {
                let state = &self.tracker.policy().destination_sets()[d.id.set].destinations()
                    [d.id.index]
                    .state();
                serde_json::json!({
                    "set": &*d.set,
                    "index": d.id.index,
                    "uri": &*d.uri,
                    "state": if d.routable { "up" } else { "down" },
                    "probed": d.probed,
                    "health": if d.health_up { "up" } else { "down" },
                    "admin": match d.forced {
                        Some(true) => "up",
                        Some(false) => "down",
                        None => "auto",
                    },
                    "failures": d.failures,
                    "successes": d.successes,
                    "last_probe_result_ms": d.last_result_at,
                    "dialogs": state.dialogs(),
                })
            })
            .collect()
    }

    /// The health metrics, in the Prometheus text format.
    pub fn metrics(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP cairn_destination_up Whether a destination is offered to requests (1) or not (0).\n# TYPE cairn_destination_up gauge"
        );
        for d in self.tracker.snapshot() {
            let _ = writeln!(
                out,
                "cairn_destination_up{{set=\"{}\",destination=\"{}\"}} {}",
                escape(&d.set),
                escape(&d.uri),
                u8::from(d.routable)
            );
        }
        let c = self.counts();
        let _ = writeln!(
            out,
            "# HELP cairn_health_probes_total OPTIONS probes sent, answered alive, failed.\n# TYPE cairn_health_probes_total counter\n\
             cairn_health_probes_total{{result=\"sent\"}} {}\n\
             cairn_health_probes_total{{result=\"ok\"}} {}\n\
             cairn_health_probes_total{{result=\"failed\"}} {}",
            c.sent, c.ok, c.failed
        );
        let t = self.transitions;
        let _ = writeln!(
            out,
            "# HELP cairn_health_transitions_total Destination state changes: by probes (down, up) and by administrators.\n# TYPE cairn_health_transitions_total counter\n\
             cairn_health_transitions_total{{kind=\"down\"}} {}\n\
             cairn_health_transitions_total{{kind=\"up\"}} {}\n\
             cairn_health_transitions_total{{kind=\"forced_down\"}} {}\n\
             cairn_health_transitions_total{{kind=\"forced_up\"}} {}\n\
             cairn_health_transitions_total{{kind=\"released\"}} {}",
            t.down, t.up, t.forced_down, t.forced_up, t.released
        );
    }
}

/// A Prometheus label value: backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proxy::LocalAddr;
    use cairn_routing::{Algorithm, DestinationSetConfig, HealthConfig, RoutingConfig, RuleConfig};
    use cairn_sip::Message;

    const A: &str = "sip:10.0.0.1:5070";
    const B: &str = "sip:10.0.0.2:5070;transport=tcp";

    fn policy() -> Arc<Policy> {
        let mut set = DestinationSetConfig::new("gw", Algorithm::Priority, &[A, B]);
        set.health = Some(HealthConfig {
            interval_ms: 1000,
            timeout_ms: 900,
            down_after: 2,
            up_after: 1,
            ..HealthConfig::default()
        });
        Arc::new(
            Policy::build(&RoutingConfig {
                destination_sets: vec![set],
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

    fn core(tcp: bool) -> CoreConfig {
        let mut listeners = vec![LocalAddr {
            transport: Transport::Udp,
            addr: "127.0.0.1:5060".parse().unwrap(),
        }];
        if tcp {
            listeners.push(LocalAddr {
                transport: Transport::Tcp,
                addr: "127.0.0.1:5060".parse().unwrap(),
            });
        }
        CoreConfig {
            listeners,
            ..CoreConfig::default()
        }
    }

    /// (run, token) of a probe's branch.
    fn ids(o: &Outgoing) -> (u32, u64) {
        let m = Message::parse(o.data.clone()).unwrap();
        probe::parse_branch(m.top_via().branch().unwrap()).unwrap()
    }

    fn up(p: &Prober, i: usize) -> bool {
        p.tracker.policy().destination_sets()[0].destinations()[i]
            .state()
            .is_up()
    }

    #[test]
    fn probes_retransmit_over_udp_and_fail_on_timeout() {
        let cfg = core(true);
        let mut p = Prober::new(policy(), 0, 77, 100, 400);
        let mut out = vec![];
        p.poll(0, &cfg, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].transport, Transport::Udp);
        assert_eq!(out[1].transport, Transport::Tcp);
        assert!(out.iter().all(|o| o.token & PROBE_TOKEN_BIT != 0));
        let (run, a) = ids(&out[0]);
        let (_, b) = ids(&out[1]);
        assert_eq!(run, 77);
        // B answers over TCP at once; A (UDP) is resent at 100, 300, 700 ms (T1 doubling,
        // T2 = 400 caps the interval), then fails at 900.
        p.on_response(77, b, 200, 5);
        assert_eq!(p.next_wakeup(), Some(100));
        let mut resent = vec![];
        let mut now = 0;
        while let Some(t) = p.next_wakeup().filter(|&t| t < 1000) {
            now = t;
            let mut o = vec![];
            p.poll(now, &cfg, &mut o);
            for x in &o {
                assert_eq!(ids(x), (77, a), "only A is resent");
                assert_eq!(x.data, out[0].data, "the same request");
                resent.push(now);
            }
        }
        assert_eq!(resent, [100, 300, 700]);
        assert_eq!(now, 900, "the timeout");
        assert_eq!(p.counts().failed, 1);
        assert!(up(&p, 0), "down_after 2: one failure is not enough");
        // Next round: A is probed at 1000, fails again by a 503: down.
        let mut o = vec![];
        p.poll(1000, &cfg, &mut o);
        assert_eq!(o.len(), 2);
        let a2 = ids(&o[0]).1;
        assert_ne!(a2, a);
        // An answer of an earlier run, or a 1xx, changes nothing.
        p.on_response(76, a2, 503, 1001);
        p.on_response(77, a2, 180, 1001);
        assert!(up(&p, 0));
        p.on_response(77, a2, 503, 1002);
        assert!(!up(&p, 0));
        assert_eq!(p.transitions().down, 1);
        // No retransmission of an answered probe.
        let mut o = vec![];
        p.poll(1100, &cfg, &mut o);
        assert!(o.is_empty(), "{o:?}");
        let json = p.destinations_json(None);
        assert_eq!(json[0]["state"], "down");
        assert_eq!(json[0]["health"], "down");
        assert_eq!(json[0]["failures"], 2);
        assert_eq!(json[1]["state"], "up");
        let mut m = String::new();
        p.metrics(&mut m);
        assert!(
            m.contains(&format!(
                "cairn_destination_up{{set=\"gw\",destination=\"{A}\"}} 0\n"
            )),
            "{m}"
        );
        assert!(m.contains("cairn_health_transitions_total{kind=\"down\"} 1\n"));
        assert!(m.contains("cairn_health_probes_total{result=\"failed\"} 2\n"));
    }

    #[test]
    fn send_failures_fail_the_probe() {
        let cfg = core(true);
        let mut p = Prober::new(policy(), 0, 1, 500, 4000);
        let mut out = vec![];
        p.poll(0, &cfg, &mut out);
        assert!(!p.on_send_failed(5, 1), "not a probe's token");
        assert!(p.on_send_failed(out[1].token, 1));
        assert_eq!(p.counts().failed, 1);
        p.poll(1000, &cfg, &mut out);
        let b2 = out.last().unwrap().token;
        assert!(p.on_send_failed(b2, 1001));
        assert!(!up(&p, 1), "two failed sends: down");
        // A destination over a transport cairn does not listen on cannot be probed: fails.
        let mut p = Prober::new(policy(), 0, 1, 500, 4000);
        let mut out = vec![];
        p.poll(0, &core(false), &mut out);
        assert_eq!(out.len(), 1, "only the UDP one");
        assert_eq!(p.unsendable, 1);
        assert_eq!(p.counts().failed, 1);
    }

    #[test]
    fn admin_overrides_by_uri_or_index() {
        let mut p = Prober::new(policy(), 0, 1, 500, 4000);
        let d = p.force("gw", B, AdminState::Down).unwrap();
        assert_eq!(
            (d["state"].as_str(), d["admin"].as_str()),
            (Some("down"), Some("down"))
        );
        assert!(!up(&p, 1));
        let d = p.force("gw", "1", AdminState::Auto).unwrap();
        assert_eq!(d["state"], "up");
        assert!(up(&p, 1));
        p.force("gw", "0", AdminState::Up).unwrap();
        assert_eq!(p.transitions().forced_down, 1);
        assert_eq!(p.transitions().released, 1);
        assert_eq!(p.transitions().forced_up, 1);
        let e = p.force("gw", "2", AdminState::Down).unwrap_err();
        assert!(e.contains("no destination \"2\""), "{e}");
        let e = p.force("nope", "0", AdminState::Down).unwrap_err();
        assert!(e.contains("no destination set named \"nope\""), "{e}");
        assert_eq!(
            "sideways".parse::<AdminState>(),
            Err("unknown state \"sideways\": expected up, down or auto".into())
        );
    }
}
