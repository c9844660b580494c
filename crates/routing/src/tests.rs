//! Policy-level tests: algorithms, matchers, rule order, build errors.

use std::collections::HashMap;
use std::net::SocketAddr;

use cairn_sip::Transport;

use crate::*;

fn set(name: &str, algorithm: Algorithm, uris: &[&str]) -> DestinationSetConfig {
    DestinationSetConfig::new(name, algorithm, uris)
}

fn forward(name: &str, set: &str) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        destination_set: Some(set.into()),
        ..Default::default()
    }
}

fn respond(name: &str, code: u16, reason: &str) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        respond: Some(ResponseConfig::new(code, reason)),
        ..Default::default()
    }
}

fn cfg(sets: Vec<DestinationSetConfig>, rules: Vec<RuleConfig>) -> RoutingConfig {
    RoutingConfig {
        destination_sets: sets,
        rules,
        routing: RoutingSection::default(),
        ..Default::default()
    }
}

fn policy(sets: Vec<DestinationSetConfig>, rules: Vec<RuleConfig>) -> Policy {
    Policy::build_seeded(&cfg(sets, rules), 42).unwrap()
}

fn build_err(sets: Vec<DestinationSetConfig>, rules: Vec<RuleConfig>) -> BuildError {
    Policy::build(&cfg(sets, rules)).unwrap_err()
}

struct Req {
    method: &'static str,
    user: Option<&'static str>,
    host: &'static str,
    source: SocketAddr,
    call_id: String,
}

impl Req {
    fn invite() -> Req {
        Req {
            method: "INVITE",
            user: Some("+15551234"),
            host: "example.com",
            source: "198.51.100.7:5060".parse().unwrap(),
            call_id: "a84b4c76e66710@pc33.atlanta.com".into(),
        }
    }
    fn input(&self) -> RouteInput<'_> {
        RouteInput {
            method: self.method,
            ruri_user: self.user,
            ruri_host: self.host,
            ruri_port: None,
            source: self.source,
            call_id: self.call_id.as_bytes(),
            now_unix_ms: 1_790_000_000_000,
            transport: cairn_sip::Transport::Udp,
            request: None,
        }
    }
}

fn plan(p: &Policy, r: &Req) -> Plan {
    match p.route(&r.input()) {
        Decision::Forward(plan) => plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

fn first(p: &Policy, r: &Req) -> String {
    plan(p, r).targets[0].name.to_string()
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.targets.iter().map(|t| &*t.name).collect()
}

fn rule_of(p: &Policy, r: &Req) -> String {
    match p.route(&r.input()) {
        Decision::Forward(plan) => plan.rule.to_string(),
        Decision::Respond { code, reason } => format!("{code} {reason}"),
        Decision::Lookup(l) => format!("lookup {} {}", l.rule, l.url),
    }
}

const A: &str = "sip:10.0.0.1:5060";
const B: &str = "sip:10.0.0.2:5060";
const C: &str = "sip:10.0.0.3:5060";

#[test]
fn policy_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Policy>();
    check::<Decision>();
}

#[test]
fn round_robin_alternates_exactly() {
    let p = policy(
        vec![set("gw", Algorithm::RoundRobin, &[A, B])],
        vec![forward("r", "gw")],
    );
    let r = Req::invite();
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut prev = String::new();
    for _ in 0..100 {
        let plan = plan(&p, &r);
        assert_eq!(plan.mode, ForkMode::Serial);
        assert_eq!(
            plan.targets.len(),
            2,
            "the other destination stays for failover"
        );
        let f = plan.targets[0].name.to_string();
        assert_ne!(f, prev, "consecutive calls alternate");
        assert_ne!(plan.targets[0].addr, plan.targets[1].addr);
        *count.entry(f.clone()).or_default() += 1;
        prev = f;
    }
    assert_eq!(count[A], 50);
    assert_eq!(count[B], 50);
}

#[test]
fn round_robin_rotates_over_three() {
    let p = policy(
        vec![set("gw", Algorithm::RoundRobin, &[A, B, C])],
        vec![forward("r", "gw")],
    );
    let r = Req::invite();
    assert_eq!(names(&plan(&p, &r)), [A, B, C]);
    assert_eq!(names(&plan(&p, &r)), [B, C, A]);
    assert_eq!(names(&plan(&p, &r)), [C, A, B]);
    assert_eq!(names(&plan(&p, &r)), [A, B, C]);
}

#[test]
fn weighted_random_follows_weights() {
    let mut s = set("gw", Algorithm::WeightedRandom, &[A, B, C]);
    s.destinations[0].weight = 1;
    s.destinations[1].weight = 3;
    s.destinations[2].weight = 0; // backup
    let p = policy(vec![s], vec![forward("r", "gw")]);
    let r = Req::invite();
    let n = 20_000;
    let mut firsts: HashMap<String, usize> = HashMap::new();
    for _ in 0..n {
        let plan = plan(&p, &r);
        assert_eq!(plan.targets.len(), 3);
        assert_eq!(&*plan.targets[2].name, C, "weight 0 is tried last");
        *firsts.entry(plan.targets[0].name.to_string()).or_default() += 1;
    }
    let share_b = firsts[B] as f64 / n as f64;
    assert!(
        (share_b - 0.75).abs() < 0.02,
        "B first in {share_b}, want 0.75"
    );
    assert_eq!(firsts.get(C), None, "weight 0 is never first");
}

#[test]
fn weighted_random_is_reproducible_with_a_seed() {
    let mut s = set("gw", Algorithm::WeightedRandom, &[A, B, C]);
    s.destinations[0].weight = 5;
    let c = cfg(vec![s], vec![forward("r", "gw")]);
    let r = Req::invite();
    let run = |p: &Policy| (0..50).map(|_| first(p, &r)).collect::<Vec<_>>();
    let p1 = Policy::build_seeded(&c, 7).unwrap();
    let p2 = Policy::build_seeded(&c, 7).unwrap();
    let a = run(&p1);
    assert_eq!(a, run(&p2));
    p1.reseed(7);
    assert_eq!(a, run(&p1));
    // A different seed gives a different sequence (overwhelmingly likely over 50 draws).
    let p3 = Policy::build_seeded(&c, 8).unwrap();
    assert_ne!(a, run(&p3));
}

#[test]
fn weighted_random_whole_order_is_weighted() {
    // With weights 1 and 9, the light one is second nearly always, and the plan always
    // holds both.
    let mut s = set("gw", Algorithm::WeightedRandom, &[A, B]);
    s.destinations[1].weight = 9;
    let p = policy(vec![s], vec![forward("r", "gw")]);
    let r = Req::invite();
    let mut a_first = 0;
    for _ in 0..10_000 {
        let plan = plan(&p, &r);
        let mut n = names(&plan);
        if n[0] == A {
            a_first += 1;
        }
        n.sort();
        assert_eq!(n, [A, B]);
    }
    assert!(
        (800..1200).contains(&a_first),
        "A first {a_first} times of 10000"
    );
}

#[test]
fn hash_call_id_is_stable_and_spreads() {
    let p = policy(
        vec![set("gw", Algorithm::HashCallId, &[A, B, C])],
        vec![forward("r", "gw")],
    );
    let mut r = Req::invite();
    let mut count: HashMap<String, usize> = HashMap::new();
    for i in 0..3000 {
        r.call_id = format!("call-{i}@host");
        let one = names(&plan(&p, &r)).join(",");
        for _ in 0..3 {
            assert_eq!(
                names(&plan(&p, &r)).join(","),
                one,
                "same Call-ID, same order"
            );
        }
        *count.entry(first(&p, &r)).or_default() += 1;
    }
    for d in [A, B, C] {
        assert!((800..1200).contains(&count[d]), "{d}: {count:?}");
    }
    // A second policy built from the same config agrees (no per-process random key).
    let p2 = policy(
        vec![set("gw", Algorithm::HashCallId, &[A, B, C])],
        vec![forward("r", "gw")],
    );
    r.call_id = "fixed@host".into();
    assert_eq!(names(&plan(&p, &r)), names(&plan(&p2, &r)));
    // The rest follows the ring from the start.
    let order = names(&plan(&p, &r))
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    let start = [A, B, C].iter().position(|d| *d == order[0]).unwrap();
    for (k, name) in order.iter().enumerate() {
        assert_eq!(name, [A, B, C][(start + k) % 3]);
    }
}

#[test]
fn priority_orders_ascending_ties_in_config_order() {
    let mut s = set("gw", Algorithm::Priority, &[A, B, C, "sip:10.0.0.4"]);
    s.destinations[0].priority = 10;
    s.destinations[1].priority = 0;
    s.destinations[2].priority = 10;
    s.destinations[3].priority = 5;
    let p = policy(vec![s], vec![forward("r", "gw")]);
    for _ in 0..3 {
        let plan = plan(&p, &Req::invite());
        assert_eq!(names(&plan), [B, "sip:10.0.0.4", A, C]);
        assert_eq!(plan.mode, ForkMode::Serial);
        let idx: Vec<usize> = plan.targets.iter().map(|t| t.index).collect();
        assert_eq!(idx, [1, 3, 0, 2]);
    }
}

#[test]
fn parallel_gives_every_target() {
    let p = policy(
        vec![set("all", Algorithm::Parallel, &[A, B, C])],
        vec![forward("r", "all")],
    );
    let plan = plan(&p, &Req::invite());
    assert_eq!(plan.mode, ForkMode::Parallel);
    assert_eq!(names(&plan), [A, B, C]);
    assert_eq!(plan.set.as_ref(), "all");
    assert_eq!(plan.rule.as_ref(), "r");
}

#[test]
fn targets_carry_transport_and_rewrite() {
    let mut s = set(
        "gw",
        Algorithm::Priority,
        &[
            "sip:10.0.0.1;transport=tcp",
            "sip:[2001:db8::1]:5080",
            "sips:10.0.0.3",
        ],
    );
    s.rewrite_ruri_host = true;
    s.destinations[1].rewrite_ruri_host = Some(false);
    s.destinations[1].transport = Some("TCP".into());
    let p = policy(vec![s], vec![forward("r", "gw")]);
    let t = plan(&p, &Req::invite()).targets;
    assert_eq!(t[0].addr, "10.0.0.1:5060".parse().unwrap());
    assert_eq!(t[0].transport, Transport::Tcp);
    assert!(t[0].rewrite_ruri_host);
    assert_eq!(t[1].addr, "[2001:db8::1]:5080".parse().unwrap());
    assert_eq!(
        t[1].transport,
        Transport::Tcp,
        "transport key overrides the uri"
    );
    assert!(!t[1].rewrite_ruri_host, "destination overrides the set");
    assert_eq!(t[2].addr, "10.0.0.3:5061".parse().unwrap());
    assert_eq!(t[2].transport, Transport::Tls);
}

#[test]
fn down_destinations_are_skipped() {
    let p = policy(
        vec![set("gw", Algorithm::RoundRobin, &[A, B, C])],
        vec![forward("r", "gw")],
    );
    let s = p.destination_set("gw").unwrap();
    s.destinations()[1].state().set_up(false);
    for _ in 0..6 {
        let plan = plan(&p, &Req::invite());
        assert!(!names(&plan).contains(&B));
        assert_eq!(plan.targets.len(), 2);
    }
    for d in s.destinations() {
        d.state().set_up(false);
    }
    assert_eq!(
        p.route(&Req::invite().input()),
        Decision::Respond {
            code: 503,
            reason: "Service Unavailable".into()
        }
    );
    s.destinations()[2].state().set_up(true);
    assert_eq!(names(&plan(&p, &Req::invite())), [C]);
}

#[test]
fn failover_codes_from_config() {
    let mut s = set("gw", Algorithm::RoundRobin, &[A]);
    s.failover_codes = vec!["5xx".into(), "486".into(), CodePattern("408".into())];
    s.failover_on_timeout = false;
    let p = policy(
        vec![s, set("d", Algorithm::RoundRobin, &[B])],
        vec![forward("r", "gw")],
    );
    let f = plan(&p, &Req::invite()).failover;
    assert!(f.should_failover(503));
    assert!(f.should_failover(500));
    assert!(f.should_failover(486));
    assert!(f.should_failover(408));
    assert!(!f.should_failover(404));
    assert!(!f.should_failover(487));
    assert!(!f.should_failover(603));
    assert!(!f.should_failover(200));
    assert!(!f.on_timeout());
    let d = p.destination_set("d").unwrap().failover();
    assert!(d.should_failover(502) && d.should_failover(408) && !d.should_failover(486));
    assert!(d.on_timeout(), "default: fail over on timeout");
}

fn rule_with(f: impl FnOnce(&mut RuleConfig)) -> RuleConfig {
    let mut r = forward("m", "gw");
    f(&mut r);
    r
}

fn matches(rule: RuleConfig, req: &Req) -> bool {
    let p = policy(vec![set("gw", Algorithm::RoundRobin, &[A])], vec![rule]);
    matches!(p.route(&req.input()), Decision::Forward(_))
}

#[test]
fn method_matcher_is_case_sensitive() {
    let r = || rule_with(|r| r.methods = Some(["INVITE", "MESSAGE"].into_iter().collect()));
    let mut req = Req::invite();
    assert!(matches(r(), &req));
    req.method = "MESSAGE";
    assert!(matches(r(), &req));
    req.method = "OPTIONS";
    assert!(!matches(r(), &req));
    req.method = "invite";
    assert!(!matches(r(), &req));
    // Unknown but valid extension methods are fine.
    let x = rule_with(|r| r.methods = Some(["X-FOO"].into_iter().collect()));
    req.method = "X-FOO";
    assert!(matches(x, &req));
}

#[test]
fn user_prefix_matcher() {
    let r = || rule_with(|r| r.ruri_user_prefix = Some(["+1555", "00"].into_iter().collect()));
    let mut req = Req::invite();
    assert!(matches(r(), &req));
    req.user = Some("0044123");
    assert!(matches(r(), &req));
    req.user = Some("+1666");
    assert!(!matches(r(), &req));
    req.user = Some("+155");
    assert!(!matches(r(), &req), "shorter than the prefix");
    req.user = None;
    assert!(!matches(r(), &req), "no user part never matches a prefix");
}

#[test]
fn domain_matcher_is_case_insensitive() {
    let r = || {
        rule_with(|r| {
            r.ruri_domain = Some(
                ["Example.com", "192.0.2.1", "2001:db8::1"]
                    .into_iter()
                    .collect(),
            )
        })
    };
    let mut req = Req::invite();
    for host in [
        "example.com",
        "EXAMPLE.COM",
        "eXample.Com",
        "192.0.2.1",
        "[2001:db8::1]",
    ] {
        req.host = host;
        assert!(matches(r(), &req), "{host}");
    }
    for host in [
        "example.org",
        "sub.example.com",
        "192.0.2.2",
        "[2001:db8::2]",
        "",
    ] {
        req.host = host;
        assert!(!matches(r(), &req), "{host}");
    }
}

#[test]
fn source_matcher_v4_and_v6() {
    let r = || {
        rule_with(|r| {
            r.source = Some(
                ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
                    .into_iter()
                    .collect(),
            )
        })
    };
    let mut req = Req::invite();
    for (src, want) in [
        ("10.20.30.40:5060", true),
        ("192.0.2.7:1234", true),
        ("[2001:db8:1::5]:5060", true),
        ("[::ffff:10.1.1.1]:5060", true),
        ("11.0.0.1:5060", false),
        ("192.0.2.8:5060", false),
        ("[2001:db9::1]:5060", false),
    ] {
        req.source = src.parse().unwrap();
        assert_eq!(matches(r(), &req), want, "{src}");
    }
}

#[test]
fn matchers_combine_with_and() {
    let r = || {
        rule_with(|r| {
            r.methods = Some(["INVITE"].into_iter().collect());
            r.ruri_domain = Some(["example.com"].into_iter().collect());
        })
    };
    let mut req = Req::invite();
    assert!(matches(r(), &req));
    req.method = "MESSAGE";
    assert!(!matches(r(), &req));
    req.method = "INVITE";
    req.host = "other.com";
    assert!(!matches(r(), &req));
}

#[test]
fn first_match_wins_and_no_match_answers() {
    let block = RuleConfig {
        source: Some(["203.0.113.0/24"].into_iter().collect()),
        ..respond("block", 403, "Forbidden")
    };
    let emergency = RuleConfig {
        ruri_user_prefix: Some(["911"].into_iter().collect()),
        ..forward("emergency", "priority-gw")
    };
    let invites = RuleConfig {
        methods: Some(["INVITE"].into_iter().collect()),
        ..forward("invites", "gw")
    };
    let p = policy(
        vec![
            set("gw", Algorithm::RoundRobin, &[A, B]),
            set("priority-gw", Algorithm::Priority, &[C]),
        ],
        vec![block, emergency, invites],
    );
    let mut req = Req::invite();
    assert_eq!(rule_of(&p, &req), "invites");
    req.user = Some("911");
    assert_eq!(rule_of(&p, &req), "emergency");
    assert_eq!(first(&p, &req), C);
    req.source = "203.0.113.9:5060".parse().unwrap();
    assert_eq!(rule_of(&p, &req), "403 Forbidden", "earlier rule wins");
    req.source = "198.51.100.1:5060".parse().unwrap();
    req.user = Some("123");
    req.method = "OPTIONS";
    assert_eq!(rule_of(&p, &req), "404 Not Found", "default no_match");

    let mut c = cfg(vec![], vec![]);
    c.routing.no_match = ResponseConfig {
        code: 480,
        reason: None,
    };
    let p = Policy::build(&c).unwrap();
    assert_eq!(rule_of(&p, &req), "480 Temporarily Unavailable");
}

#[test]
fn respond_reason_defaults_to_standard_phrase() {
    let mut r = respond("r", 603, "x");
    r.respond.as_mut().unwrap().reason = None;
    let p = policy(vec![], vec![r]);
    assert_eq!(rule_of(&p, &Req::invite()), "603 Decline");
}

fn assert_err(e: BuildError, path: &str, msg: &str) {
    assert_eq!(e.path.to_string(), path, "{e}");
    assert!(e.message.contains(msg), "{e}: wanted {msg:?}");
}

#[test]
fn build_errors_name_the_key() {
    let gw = || set("gw", Algorithm::RoundRobin, &[A]);

    assert_err(
        build_err(vec![gw()], vec![forward("a", "gw"), forward("b", "gw2")]),
        "rule[1].destination_set",
        "no destination set named \"gw2\" (known: gw)",
    );
    assert_err(
        build_err(vec![], vec![forward("a", "gw")]),
        "rule[0].destination_set",
        "none are defined",
    );
    let mut both = forward("a", "gw");
    both.respond = Some(ResponseConfig::new(403, "Forbidden"));
    assert_err(
        build_err(vec![gw()], vec![both]),
        "rule[0]",
        "not both destination_set and respond",
    );
    let neither = RuleConfig {
        name: "a".into(),
        ..Default::default()
    };
    assert_err(
        build_err(vec![gw()], vec![neither]),
        "rule[0]",
        "needs an action",
    );
    assert_err(
        build_err(vec![gw()], vec![respond("a", 200, "OK")]),
        "rule[0].respond.code",
        "expected 300 to 699",
    );
    assert_err(
        build_err(
            vec![gw()],
            vec![respond("a", 403, "Forbidden\r\nX-Evil: 1")],
        ),
        "rule[0].respond.reason",
        "line breaks",
    );
    let mut r = respond("a", 499, "x");
    r.respond.as_mut().unwrap().reason = None;
    assert_err(
        build_err(vec![gw()], vec![r]),
        "rule[0].respond.reason",
        "no standard reason phrase",
    );
    assert_err(
        build_err(
            vec![set("gw", Algorithm::RoundRobin, &["sip:gw.example.com"])],
            vec![],
        ),
        "destination_set[0].destinations[0].uri",
        "DNS names are not supported yet",
    );
    let mut s = gw();
    s.failover_codes = vec!["5xx".into(), "2xx".into()];
    assert_err(
        build_err(vec![s], vec![]),
        "destination_set[0].failover_codes[1]",
        "final non-2xx",
    );
    let mut s = gw();
    s.destinations[0].transport = Some("sctp".into());
    assert_err(
        build_err(vec![s], vec![]),
        "destination_set[0].destinations[0].transport",
        "unknown transport 'sctp'",
    );
    assert_err(
        build_err(vec![set("gw", Algorithm::RoundRobin, &[])], vec![]),
        "destination_set[0].destinations",
        "at least one destination",
    );
    assert_err(
        build_err(
            vec![set("gw", Algorithm::RoundRobin, &[A, "sip:10.0.0.1"])],
            vec![],
        ),
        "destination_set[0].destinations[1].uri",
        "already destinations[0]",
    );
    let mut s = set("gw", Algorithm::WeightedRandom, &[A, B]);
    s.destinations.iter_mut().for_each(|d| d.weight = 0);
    assert_err(
        build_err(vec![s], vec![]),
        "destination_set[0].destinations",
        "weight 0",
    );
    assert_err(
        build_err(vec![gw(), gw()], vec![]),
        "destination_set[1].name",
        "duplicate destination set name \"gw\"",
    );
    assert_err(
        build_err(vec![gw()], vec![forward("a", "gw"), forward("a", "gw")]),
        "rule[1].name",
        "duplicate rule name",
    );
    assert_err(
        build_err(vec![set("my gw", Algorithm::RoundRobin, &[A])], vec![]),
        "destination_set[0].name",
        "only letters",
    );
    assert_err(
        build_err(
            vec![gw()],
            vec![rule_with(|r| {
                r.methods = Some(["INVITE", "invite"].into_iter().collect())
            })],
        ),
        "rule[0].methods[1]",
        "did you mean \"INVITE\"",
    );
    assert_err(
        build_err(
            vec![gw()],
            vec![rule_with(|r| {
                r.methods = Some(["IN VITE"].into_iter().collect())
            })],
        ),
        "rule[0].methods[0]",
        "not a SIP method token",
    );
    assert_err(
        build_err(
            vec![gw()],
            vec![rule_with(|r| r.methods = Some(StringList(vec![])))],
        ),
        "rule[0].methods",
        "empty list matches nothing",
    );
    assert_err(
        build_err(
            vec![gw()],
            vec![rule_with(|r| {
                r.source = Some(["10.0.0.0/8", "10.0.0.1/8"].into_iter().collect())
            })],
        ),
        "rule[0].source[1]",
        "did you mean 10.0.0.0/8",
    );
    assert_err(
        build_err(
            vec![gw()],
            vec![rule_with(|r| {
                r.ruri_domain = Some(["example.com:5060"].into_iter().collect())
            })],
        ),
        "rule[0].ruri_domain[0]",
        "port is not allowed",
    );
    assert_err(
        build_err(
            vec![gw()],
            vec![rule_with(|r| {
                r.ruri_user_prefix = Some([""].into_iter().collect())
            })],
        ),
        "rule[0].ruri_user_prefix[0]",
        "empty prefix",
    );
    let mut c = cfg(vec![], vec![]);
    c.routing.no_match = ResponseConfig::new(100, "Trying");
    assert_err(
        Policy::build(&c).unwrap_err(),
        "routing.no_match.code",
        "300 to 699",
    );
}

// ----- lookups, cancel_reason, ring_timeout_ms -----

const URL: &str = "http://127.0.0.1:8080/route";

fn lookup_rule(name: &str, f: impl FnOnce(&mut LookupConfig)) -> RuleConfig {
    let mut l = LookupConfig::new(URL);
    f(&mut l);
    RuleConfig {
        name: name.into(),
        lookup: Some(l),
        ..Default::default()
    }
}

fn lookup_of(p: &Policy, r: &Req) -> Lookup {
    match p.route(&r.input()) {
        Decision::Lookup(l) => l,
        other => panic!("expected a lookup, got {other:?}"),
    }
}

fn targets_answer(uris: &[&str]) -> LookupAnswer {
    LookupAnswer {
        targets: Some(uris.iter().map(|u| u.to_string()).collect()),
        ..Default::default()
    }
}

#[test]
fn lookup_rule_asks_for_a_lookup() {
    let emergency = RuleConfig {
        ruri_user_prefix: Some(["911"].into_iter().collect()),
        ..forward("emergency", "gw")
    };
    let p = policy(
        vec![set("gw", Algorithm::RoundRobin, &[A])],
        vec![emergency, lookup_rule("dynamic", |l| l.timeout_ms = 250)],
    );
    let l = lookup_of(&p, &Req::invite());
    assert_eq!(&*l.rule, "dynamic");
    assert_eq!(l.rule_index, 1);
    assert_eq!(&*l.url, URL);
    assert_eq!(l.timeout_ms, 250);
    assert_eq!(p.rules()[1].name().as_ref(), "dynamic");
    assert!(
        matches!(p.rules()[1].action(), Action::Lookup(a) if a.fallback.is_none() && a.failure_code == 503)
    );
    let mut r = Req::invite();
    r.user = Some("911");
    assert_eq!(rule_of(&p, &r), "emergency", "rules before it still win");
    // Default timeout.
    let p = policy(vec![], vec![lookup_rule("d", |_| {})]);
    assert_eq!(
        lookup_of(&p, &Req::invite()).timeout_ms,
        DEFAULT_LOOKUP_TIMEOUT_MS
    );
}

#[test]
fn lookup_answer_with_targets_is_a_plan() {
    let mut rule = lookup_rule("dynamic", |_| {});
    rule.cancel_reason = Some("SIP;cause=480;text=\"Routed elsewhere\"".into());
    rule.ring_timeout_ms = Some(15_000);
    let p = policy(vec![], vec![rule]);
    let l = lookup_of(&p, &Req::invite());
    let d = p.lookup_answer(
        &l,
        &targets_answer(&[
            "sip:127.0.0.1:5071;transport=tcp",
            "sip:[::1]",
            "sip:10.0.0.9:5080",
        ]),
        b"call",
    );
    let Decision::Forward(plan) = d else {
        panic!("{d:?}")
    };
    assert_eq!(plan.mode, ForkMode::Serial, "serial by default");
    assert_eq!(&*plan.rule, "dynamic");
    assert_eq!(&*plan.set, LOOKUP_SET_NAME);
    let t = &plan.targets;
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].addr, "127.0.0.1:5071".parse().unwrap());
    assert_eq!(t[0].transport, Transport::Tcp);
    assert_eq!(t[1].addr, "[::1]:5060".parse().unwrap());
    assert_eq!(t[1].transport, Transport::Udp);
    assert_eq!(&*t[2].name, "sip:10.0.0.9:5080");
    assert_eq!(t.iter().map(|t| t.index).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(plan.failover.should_failover(503) && plan.failover.should_failover(408));
    assert!(!plan.failover.should_failover(486) && plan.failover.on_timeout());
    assert_eq!(
        plan.cancel_reason.as_deref(),
        Some("SIP;cause=480;text=\"Routed elsewhere\""),
        "the rule's cancel_reason goes into plans from answers too"
    );
    assert_eq!(plan.ring_timeout_ms, Some(15_000));

    let mut a = targets_answer(&[A, B]);
    a.mode = Some(LookupMode::Parallel);
    let Decision::Forward(plan) = p.lookup_answer(&l, &a, b"call") else {
        panic!()
    };
    assert_eq!(plan.mode, ForkMode::Parallel);
    assert_eq!(names(&plan), [A, B]);
}

#[test]
fn lookup_answer_with_a_code_is_a_response() {
    let p = policy(vec![], vec![lookup_rule("d", |_| {})]);
    let l = lookup_of(&p, &Req::invite());
    let answer = LookupAnswer {
        code: Some(486),
        reason: Some("Busy".into()),
        ..Default::default()
    };
    assert_eq!(
        p.lookup_answer(&l, &answer, b"c"),
        Decision::Respond {
            code: 486,
            reason: "Busy".into()
        }
    );
    let answer = LookupAnswer {
        code: Some(404),
        ..Default::default()
    };
    assert_eq!(
        p.lookup_answer(&l, &answer, b"c"),
        Decision::Respond {
            code: 404,
            reason: "Not Found".into()
        },
        "standard phrase by default"
    );
}

#[test]
fn invalid_lookup_answers_fail_the_lookup() {
    let mut fb = set("fallback", Algorithm::RoundRobin, &[C]);
    fb.failover_codes = vec!["5xx".into()];
    let with_fallback = lookup_rule("with-fallback", |l| l.fallback = Some("fallback".into()));
    let mut with_failure = lookup_rule("with-failure", |l| {
        l.failure = Some(ResponseConfig::new(480, "Routing Down"))
    });
    with_failure.methods = Some(["MESSAGE"].into_iter().collect());
    let mut bare = lookup_rule("bare", |_| {});
    bare.methods = Some(["OPTIONS"].into_iter().collect());
    let mut fb_rule = with_fallback;
    fb_rule.methods = Some(["INVITE"].into_iter().collect());
    fb_rule.cancel_reason = Some("Q.850;cause=31".into());
    let p = policy(vec![fb], vec![fb_rule, with_failure, bare]);
    let mut r = Req::invite();
    let l_fb = lookup_of(&p, &r);
    r.method = "MESSAGE";
    let l_fail = lookup_of(&p, &r);
    r.method = "OPTIONS";
    let l_bare = lookup_of(&p, &r);

    let code = |code: Option<u16>, reason: Option<&str>| LookupAnswer {
        code,
        reason: reason.map(Into::into),
        ..Default::default()
    };
    let bad: Vec<(LookupAnswer, &str)> = vec![
        (
            targets_answer(&["sip:gw.example.com"]),
            "targets[0]: DNS names are not supported",
        ),
        (targets_answer(&[A, "tel:+1555"]), "targets[1]"),
        (targets_answer(&["sip:alice@10.0.0.1"]), "user part"),
        (targets_answer(&[A, "sip:10.0.0.1"]), "already targets[0]"),
        (targets_answer(&[]), "targets is empty"),
        (
            LookupAnswer {
                targets: Some((1..=17).map(|p| format!("sip:10.0.0.1:{p}")).collect()),
                ..Default::default()
            },
            "at most 16",
        ),
        (LookupAnswer::default(), "neither targets nor code"),
        (
            LookupAnswer {
                code: Some(486),
                ..targets_answer(&[A])
            },
            "both targets and code",
        ),
        (code(Some(200), Some("OK")), "expected 300 to 699"),
        (code(Some(499), None), "no standard reason phrase"),
        (code(Some(486), Some("Busy\r\nX-Evil: 1")), "line breaks"),
        (
            LookupAnswer {
                mode: Some(LookupMode::Parallel),
                ..code(Some(486), None)
            },
            "mode goes with targets",
        ),
        (
            LookupAnswer {
                reason: Some("x".into()),
                ..targets_answer(&[A])
            },
            "reason goes with code",
        ),
    ];
    for (answer, want) in &bad {
        match p.try_lookup_answer(&l_fb, answer) {
            Err(LookupError::InvalidAnswer(m)) => assert!(m.contains(want), "{answer:?}: {m}"),
            other => panic!("{answer:?}: accepted: {other:?}"),
        }
        // With a fallback set: its plan, with the rule's cancel_reason.
        let Decision::Forward(plan) = p.lookup_answer(&l_fb, answer, b"c") else {
            panic!("{answer:?}")
        };
        assert_eq!(&*plan.set, "fallback");
        assert_eq!(names(&plan), [C]);
        assert_eq!(plan.cancel_reason.as_deref(), Some("Q.850;cause=31"));
        assert!(plan.failover.should_failover(502) && !plan.failover.should_failover(408));
        // With a failure response, or the default 503.
        assert_eq!(
            p.lookup_answer(&l_fail, answer, b"c"),
            Decision::Respond {
                code: 480,
                reason: "Routing Down".into()
            }
        );
        assert_eq!(
            p.lookup_answer(&l_bare, answer, b"c"),
            Decision::Respond {
                code: 503,
                reason: "Service Unavailable".into()
            }
        );
    }
    assert_eq!(
        p.lookup_failed(&l_bare, b"c"),
        Decision::Respond {
            code: 503,
            reason: "Service Unavailable".into()
        }
    );

    // A fallback set whose destinations are all down: 503.
    p.destination_set("fallback").unwrap().destinations()[0]
        .state()
        .set_up(false);
    assert_eq!(
        p.lookup_failed(&l_fb, b"c"),
        Decision::Respond {
            code: 503,
            reason: "Service Unavailable".into()
        }
    );

    // A lookup whose rule is gone (another policy): 503, never another rule's action.
    let other = policy(vec![], vec![respond("with-fallback", 403, "Forbidden")]);
    assert_eq!(
        other.try_lookup_answer(&l_fb, &targets_answer(&[A])),
        Err(LookupError::UnknownRule)
    );
    assert_eq!(
        other.lookup_failed(&l_fb, b"c"),
        Decision::Respond {
            code: 503,
            reason: "Service Unavailable".into()
        }
    );
}

#[test]
fn rule_cancel_reason_and_ring_timeout_go_into_plans() {
    let mut r = forward("r", "gw");
    r.cancel_reason = Some("  SIP;cause=486;text=\"Rule says\"  ".into());
    r.ring_timeout_ms = Some(20_000);
    let p = policy(vec![set("gw", Algorithm::Parallel, &[A, B])], vec![r]);
    let plan = plan(&p, &Req::invite());
    assert_eq!(
        plan.cancel_reason.as_deref(),
        Some("SIP;cause=486;text=\"Rule says\""),
        "trimmed"
    );
    assert_eq!(plan.ring_timeout_ms, Some(20_000));
    assert_eq!(p.rules()[0].ring_timeout_ms(), Some(20_000));
    assert!(p.rules()[0].cancel_reason().is_some());
    // Without them: None (the global defaults apply).
    let p = policy(
        vec![set("gw", Algorithm::Parallel, &[A])],
        vec![forward("r", "gw")],
    );
    let plan = plan_of(&p);
    assert_eq!((plan.cancel_reason, plan.ring_timeout_ms), (None, None));
}

fn plan_of(p: &Policy) -> Plan {
    plan(p, &Req::invite())
}

#[test]
fn lookup_and_cancel_build_errors_name_the_key() {
    let gw = || set("gw", Algorithm::RoundRobin, &[A]);
    let e = |rule: RuleConfig| build_err(vec![gw()], vec![rule]);

    let mut both = lookup_rule("a", |_| {});
    both.destination_set = Some("gw".into());
    assert_err(e(both), "rule[0]", "not both destination_set and lookup");
    let mut both = lookup_rule("a", |_| {});
    both.respond = Some(ResponseConfig::new(403, "Forbidden"));
    assert_err(e(both), "rule[0]", "not both respond and lookup");
    assert_err(
        e(RuleConfig {
            name: "a".into(),
            ..Default::default()
        }),
        "rule[0]",
        "lookup = { url = \"http://...\" }, lcr = \"TABLE\" or script",
    );
    assert_err(
        e(lookup_rule("a", |l| {
            l.url = "https://10.0.0.1/route".into()
        })),
        "rule[0].lookup.url",
        "no TLS",
    );
    assert_err(
        e(lookup_rule("a", |l| l.url = "10.0.0.1/route".into())),
        "rule[0].lookup.url",
        "not a URL",
    );
    assert_err(
        e(lookup_rule("a", |l| l.timeout_ms = 0)),
        "rule[0].lookup.timeout_ms",
        "expected 1 to 60000",
    );
    assert_err(
        e(lookup_rule("a", |l| l.timeout_ms = 60_001)),
        "rule[0].lookup.timeout_ms",
        "out of range",
    );
    assert_err(
        e(lookup_rule("a", |l| l.fallback = Some("gw2".into()))),
        "rule[0].lookup.fallback",
        "no destination set named \"gw2\" (known: gw)",
    );
    assert_err(
        e(lookup_rule("a", |l| {
            l.failure = Some(ResponseConfig::new(200, "OK"))
        })),
        "rule[0].lookup.failure.code",
        "300 to 699",
    );
    assert_err(
        e(lookup_rule("a", |l| {
            l.failure = Some(ResponseConfig::new(503, "a\nb"))
        })),
        "rule[0].lookup.failure.reason",
        "line breaks",
    );

    let with = |f: fn(&mut RuleConfig)| {
        let mut r = forward("a", "gw");
        f(&mut r);
        e(r)
    };
    assert_err(
        with(|r| r.cancel_reason = Some("SIP;cause=480\r\nX-Evil: 1".into())),
        "rule[0].cancel_reason",
        "line breaks",
    );
    assert_err(
        with(|r| r.cancel_reason = Some("just some text".into())),
        "rule[0].cancel_reason",
        "not a protocol token",
    );
    assert_err(
        with(|r| r.cancel_reason = Some("SIP".into())),
        "rule[0].cancel_reason",
        "expected protocol;params",
    );
    assert_err(
        with(|r| r.ring_timeout_ms = Some(0)),
        "rule[0].ring_timeout_ms",
        "out of range",
    );
    assert_err(
        with(|r| r.ring_timeout_ms = Some(86_400_001)),
        "rule[0].ring_timeout_ms",
        "out of range",
    );
    let mut r = respond("a", 403, "Forbidden");
    r.cancel_reason = Some("SIP;cause=480".into());
    assert_err(
        e(r),
        "rule[0].cancel_reason",
        "a respond rule sends no CANCEL",
    );
    let mut r = respond("a", 403, "Forbidden");
    r.ring_timeout_ms = Some(1000);
    assert_err(
        e(r),
        "rule[0].ring_timeout_ms",
        "a respond rule rings nothing",
    );
    // On a lookup rule both are fine.
    let mut r = lookup_rule("a", |_| {});
    r.cancel_reason = Some("SIP;cause=480".into());
    r.ring_timeout_ms = Some(1000);
    Policy::build(&cfg(vec![gw()], vec![r])).unwrap();
}
