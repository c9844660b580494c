//! Policy-level tests of least-cost routing, time conditions and health through the policy.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::*;

const A1: &str = "sip:10.0.1.1:5060";
const A2: &str = "sip:10.0.1.2:5060";
const B1: &str = "sip:10.0.2.1:5060";
const C1: &str = "sip:10.0.3.1:5060";
const C2: &str = "sip:10.0.3.2:5060";

fn input<'a>(user: Option<&'a str>, call_id: &'a [u8]) -> RouteInput<'a> {
    RouteInput {
        method: "INVITE",
        ruri_user: user,
        ruri_host: "example.com",
        ruri_port: None,
        source: "198.51.100.7:5060".parse().unwrap(),
        call_id,
        now_unix_ms: 1_790_000_000_000,
        transport: cairn_sip::Transport::Udp,
        request: None,
    }
}

fn prefix(p: &str, carrier: &str, priority: u32, weight: u32) -> LcrPrefixConfig {
    LcrPrefixConfig {
        prefix: p.into(),
        carrier: carrier.into(),
        priority,
        weight,
    }
}

fn sets_carrier(name: &str, sets: &[&str]) -> CarrierConfig {
    CarrierConfig {
        name: name.into(),
        destination_sets: Some(sets.iter().copied().collect()),
        ..Default::default()
    }
}

fn own_carrier(name: &str, uris: &[&str]) -> CarrierConfig {
    CarrierConfig {
        name: name.into(),
        destinations: Some(uris.iter().map(|u| DestinationConfig::new(u)).collect()),
        ..Default::default()
    }
}

/// Sets `a` (A1, A2 by priority) and `b` (B1); table `pstn` with carriers `acme` (set a),
/// `bell` (set b) and `cell` (own C1, C2).
fn config(prefixes: Vec<LcrPrefixConfig>) -> RoutingConfig {
    RoutingConfig {
        destination_sets: vec![
            DestinationSetConfig::new("a", Algorithm::Priority, &[A1, A2]),
            DestinationSetConfig::new("b", Algorithm::RoundRobin, &[B1]),
        ],
        lcr: vec![LcrConfig::new(
            "pstn",
            vec![
                sets_carrier("acme", &["a"]),
                sets_carrier("bell", &["b"]),
                own_carrier("cell", &[C1, C2]),
            ],
            prefixes,
        )],
        rules: vec![RuleConfig {
            name: "calls".into(),
            lcr: Some("pstn".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn policy(cfg: &RoutingConfig) -> Policy {
    Policy::build_seeded(cfg, 42).unwrap_or_else(|e| panic!("{e}"))
}

fn route(p: &Policy, user: &str) -> Decision {
    p.route(&input(Some(user), b"call-1@host"))
}

fn names(p: &Policy, user: &str) -> Vec<String> {
    match route(p, user) {
        Decision::Forward(plan) => plan.targets.iter().map(|t| t.name.to_string()).collect(),
        Decision::Respond { code, reason } => vec![format!("{code} {reason}")],
        Decision::Lookup(l) => vec![format!("lookup {}", l.url)],
    }
}

#[test]
fn carriers_by_priority_each_in_its_order() {
    let p = policy(&config(vec![
        prefix("+1", "bell", 2, 1),
        prefix("+1", "acme", 1, 1),
        prefix("+1", "cell", 3, 1),
    ]));
    let Decision::Forward(plan) = route(&p, "+15551234") else {
        panic!()
    };
    assert_eq!(plan.mode, ForkMode::Serial);
    assert_eq!(&*plan.rule, "calls");
    assert_eq!(&*plan.set, "pstn");
    let n: Vec<&str> = plan.targets.iter().map(|t| &*t.name).collect();
    assert_eq!(n, [A1, A2, B1, C1, C2]);
    assert!(plan.failover.should_failover(503) && plan.failover.on_timeout());
    // The plan's set and index name each destination, sharing its state with its own set.
    let view = p.destination_set(&plan.set).unwrap();
    for t in &plan.targets {
        let d = &view.destinations()[t.index];
        assert_eq!((&**d.uri(), d.addr()), (&*t.name, t.addr));
    }
    let c2 = &plan.targets[4];
    view.destinations()[c2.index].state().dialog_changed(true);
    let own = p.destination_set("pstn.cell").unwrap();
    assert_eq!(own.destinations()[1].state().dialogs(), 1, "shared state");
    assert_eq!(
        p.destination_sets().len(),
        3,
        "a, b and the carrier's own pstn.cell"
    );
    let t = p.lcr_table("pstn").unwrap();
    assert_eq!((t.len(), t.route_count(), t.carriers().len()), (1, 3, 3));
    assert_eq!(t.carriers()[0].sets().collect::<Vec<_>>(), [0]);
    assert_eq!(t.carriers()[2].sets().collect::<Vec<_>>(), [2]);
}

#[test]
fn longest_prefix_wins_and_overlaps() {
    let p = policy(&config(vec![
        prefix("+1", "acme", 0, 1),
        prefix("+1555", "bell", 0, 1),
        prefix("+15551", "cell", 0, 1),
        prefix("+1555", "acme", 1, 1),
        prefix("+44", "cell", 0, 1),
        prefix("", "bell", 0, 1),
    ]));
    assert_eq!(names(&p, "+15551234"), [C1, C2]);
    assert_eq!(names(&p, "+15559999"), [B1, A1, A2]);
    assert_eq!(names(&p, "+1212"), [A1, A2]);
    assert_eq!(names(&p, "+4420"), [C1, C2]);
    assert_eq!(names(&p, "+33"), [B1], "the empty prefix catches the rest");
    let t = p.lcr_table("pstn").unwrap();
    let m = t.lookup("+15559999").unwrap();
    assert_eq!(m.prefix(), "+1555");
    let routes: Vec<(&str, u32)> = m.routes().map(|r| (r.carrier, r.priority)).collect();
    assert_eq!(routes, [("bell", 0), ("acme", 1)]);
}

#[test]
fn no_match_no_user_and_all_down() {
    let mut cfg = config(vec![prefix("+1", "acme", 0, 1), prefix("+1", "bell", 1, 1)]);
    let p = policy(&cfg);
    assert_eq!(names(&p, "+44123"), ["404 Not Found"]);
    assert_eq!(
        p.route(&input(None, b"x")),
        Decision::Respond {
            code: 404,
            reason: "Not Found".into()
        }
    );
    cfg.lcr[0].no_match = ResponseConfig::new(484, "Address Incomplete");
    let p = policy(&cfg);
    assert_eq!(names(&p, "+44123"), ["484 Address Incomplete"]);
    // Down destinations are skipped; all down: 503.
    let a = p.destination_set("a").unwrap();
    a.destinations()[0].state().set_up(false);
    assert_eq!(names(&p, "+1555"), [A2, B1]);
    a.destinations()[1].state().set_up(false);
    assert_eq!(names(&p, "+1555"), [B1]);
    p.destination_set("b").unwrap().destinations()[0]
        .state()
        .force(Some(false));
    assert_eq!(names(&p, "+1555"), ["503 Service Unavailable"]);
}

#[test]
fn same_gateway_in_two_carriers_is_tried_once() {
    let mut cfg = config(vec![prefix("+1", "acme", 0, 1), prefix("+1", "dup", 1, 1)]);
    cfg.lcr[0]
        .carriers
        .push(own_carrier("dup", &[A2, "sip:10.0.9.9"]));
    let p = policy(&cfg);
    assert_eq!(names(&p, "+1"), [A1, A2, "sip:10.0.9.9"]);
}

#[test]
fn normalisation() {
    let mut cfg = config(vec![
        prefix("+49", "acme", 0, 1),
        prefix("+4930", "bell", 0, 1),
        prefix("+1", "cell", 0, 1),
    ]);
    cfg.lcr[0].normalize = vec![
        // Numbers in international form stay as they are (else the last rule would
        // apply to them too).
        NormalizeRule {
            strip: "+".into(),
            prefix: "+".into(),
        },
        NormalizeRule {
            strip: "00".into(),
            prefix: "+".into(),
        },
        NormalizeRule {
            strip: "0".into(),
            prefix: "+49".into(),
        },
        NormalizeRule {
            strip: "".into(),
            prefix: "+4930".into(),
        },
    ];
    let p = policy(&cfg);
    let t = p.lcr_table("pstn").unwrap();
    for (user, want) in [
        ("004930123", "+4930123"),
        ("030123", "+4930123"),
        ("089123", "+4989123"),
        ("123", "+4930123"),
        ("+1 (555) 123-4567", "+15551234567"),
        ("+49-30-123;phone-context=example.com", "+4930123"),
        ("%2B1555", "+1555"),
        ("%2b1555", "+1555"),
        ("%2B+1555", "+1555"),
        ("00 1 555", "+1555"),
        ("1+2", "+493012"),
        ("abc", "+4930"),
        ("", "+4930"),
    ] {
        assert_eq!(t.normalize(user), want, "{user}");
    }
    assert_eq!(names(&p, "0049 30 123"), [B1]);
    assert_eq!(names(&p, "0891234"), [A1, A2]);
    assert_eq!(names(&p, "001-555-1234"), [C1, C2]);
    // Very long users are cut, not refused; no prefix can tell the difference.
    let long = format!("+1{}", "5".repeat(10_000));
    assert_eq!(names(&p, &long), [C1, C2]);
    assert_eq!(t.normalize(&long).len(), 96);

    // Without digits_only the user is used as received (cut at ';').
    let mut cfg = config(vec![prefix("+1", "acme", 0, 1)]);
    cfg.lcr[0].digits_only = false;
    let p = policy(&cfg);
    let t = p.lcr_table("pstn").unwrap();
    assert_eq!(t.normalize("+1-555;x=y"), "+1-555");
    assert_eq!(t.normalize("%2B1-555"), "+1-555");
    assert_eq!(names(&p, "+1-555"), [A1, A2]);
    assert_eq!(names(&p, " +1555"), ["404 Not Found"]);
}

#[test]
fn equal_priorities_in_weighted_random_order() {
    let mut cfg = config(vec![
        prefix("+1", "acme", 0, 1),
        prefix("+1", "bell", 0, 3),
        prefix("+1", "cell", 0, 0),
    ]);
    cfg.destination_sets[1].algorithm = Algorithm::Priority;
    let p = policy(&cfg);
    let mut first: HashMap<String, usize> = HashMap::new();
    let n = 20_000;
    for _ in 0..n {
        let got = names(&p, "+1555");
        assert_eq!(got.len(), 5);
        assert_eq!(&got[3..], [C1, C2], "weight 0 comes last");
        *first.entry(got[0].clone()).or_default() += 1;
    }
    let share = first[B1] as f64 / n as f64;
    assert!((share - 0.75).abs() < 0.02, "bell first {share}");
    assert_eq!(first.get(C1), None);
    // Reproducible from a seed.
    let run = |p: &Policy| {
        (0..30)
            .map(|_| names(p, "+1")[0].clone())
            .collect::<Vec<_>>()
    };
    let (p1, p2) = (policy(&cfg), policy(&cfg));
    assert_eq!(run(&p1), run(&p2));
}

/// A fresh directory for one test's files (removed by the test when it passes).
pub(crate) fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-routing-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn prefixes_from_a_csv_file() {
    let dir = tmp_dir("csv");
    std::fs::write(
        dir.join("lcr.csv"),
        "\u{feff}prefix,carrier,priority,weight\r\n# US\r\n+1,acme,1,10\r\n+1, bell ,2\r\n\r\n+1555,cell\r\n+44,bell,,5\r\n",
    )
    .unwrap();
    let mut cfg = config(vec![prefix("+33", "cell", 0, 1)]);
    cfg.lcr[0].file = Some("lcr.csv".into());
    cfg.base_dir = Some(dir.clone());
    let p = policy(&cfg);
    assert_eq!(names(&p, "+1212"), [A1, A2, B1]);
    assert_eq!(names(&p, "+15551"), [C1, C2]);
    assert_eq!(names(&p, "+4420"), [B1]);
    assert_eq!(
        names(&p, "+331"),
        [C1, C2],
        "config and file entries together"
    );
    let t = p.lcr_table("pstn").unwrap();
    let r: Vec<(&str, u32, u32)> = t
        .lookup("+44")
        .unwrap()
        .routes()
        .map(|r| (r.carrier, r.priority, r.weight))
        .collect();
    assert_eq!(r, [("bell", 0, 5)]);
    // An absolute path ignores base_dir; no base_dir: relative to the current directory.
    cfg.lcr[0].file = Some(dir.join("lcr.csv").display().to_string());
    cfg.base_dir = Some(PathBuf::from("/nonexistent"));
    assert!(Policy::build(&cfg).is_ok());
    assert_eq!(
        resolve_lcr_path("x.csv", Some(std::path::Path::new("/etc/cairn"))),
        PathBuf::from("/etc/cairn/x.csv")
    );
    assert_eq!(resolve_lcr_path("x.csv", None), PathBuf::from("x.csv"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn csv_errors_name_file_and_line() {
    let dir = tmp_dir("csv-errors");
    for (text, want) in [
        ("+1,acme\n+2,nope\n", "lcr[0].file: lcr.csv:2: no carrier named \"nope\" in this table (known: acme, bell, cell)"),
        ("# c\n\n+1x,acme\n", "lcr[0].file: lcr.csv:3: prefix \"+1x\" is not a number prefix"),
        ("+1,acme,high\n", "lcr[0].file: lcr.csv:1: priority \"high\" is not a whole number"),
        ("+1,acme,1,-2\n", "lcr.csv:1: weight \"-2\" is not a whole number"),
        ("+1,acme,1,2,3\n", "lcr.csv:1: too many fields"),
        ("+1\n", "lcr.csv:1: expected prefix,carrier"),
        ("\"+1\",acme\n", "lcr.csv:1: quoted fields are not supported"),
        ("+1,acme\n+1,bell\n+1,acme,5\n", "lcr[0].file: lcr.csv:3: prefix \"+1\" names carrier \"acme\" again (first at lcr.csv:1)"),
        ("+123456789012345678901234567890123,acme\n", "lcr.csv:1: prefix \"+123456789012345678901234567890123\" is longer than 32"),
        ("prefix,carrier\n", "lcr[0].prefixes: the table has no prefix entries"),
    ] {
        std::fs::write(dir.join("lcr.csv"), text).unwrap();
        let mut cfg = config(vec![]);
        cfg.lcr[0].file = Some("lcr.csv".into());
        cfg.base_dir = Some(dir.clone());
        let e = Policy::build(&cfg).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}\nwant {want}");
    }
    // A file entry that repeats a config entry names both places.
    std::fs::write(dir.join("lcr.csv"), "+1,acme\n").unwrap();
    let mut cfg = config(vec![prefix("+1", "acme", 0, 1)]);
    cfg.lcr[0].file = Some("lcr.csv".into());
    cfg.base_dir = Some(dir.clone());
    let e = Policy::build(&cfg).unwrap_err().to_string();
    assert_eq!(
        e,
        "lcr[0].file: lcr.csv:1: prefix \"+1\" names carrier \"acme\" again (first at prefixes[0])"
    );
    // A missing file.
    cfg.lcr[0].file = Some("missing.csv".into());
    let e = Policy::build(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("lcr[0].file: cannot read "), "{e}");
    assert!(e.contains("missing.csv"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn build_errors_name_the_key() {
    type Edit = Box<dyn Fn(&mut RoutingConfig)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c| c.lcr[0].prefixes[0].carrier = "zed".into()),
            "lcr[0].prefixes[0].carrier: no carrier named \"zed\" in this table (known: acme, bell, cell)",
        ),
        (
            Box::new(|c| c.lcr[0].prefixes[0].prefix = "1-800".into()),
            "lcr[0].prefixes[0].prefix: prefix \"1-800\" is not a number prefix",
        ),
        (
            Box::new(|c| c.lcr[0].prefixes.push(prefix("+1", "acme", 3, 1))),
            "lcr[0].prefixes[1]: prefix \"+1\" names carrier \"acme\" again (first at prefixes[0])",
        ),
        (
            Box::new(|c| c.lcr[0].prefixes.clear()),
            "lcr[0].prefixes: the table has no prefix entries: give prefixes or a file",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[0].destination_sets = Some(["a", "zz"].into_iter().collect())),
            "lcr[0].carriers[0].destination_sets[1]: no destination set named \"zz\" (known: a, b)",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[0].destination_sets = Some(["a", "a"].into_iter().collect())),
            "lcr[0].carriers[0].destination_sets[1]: destination set \"a\" is listed twice",
        ),
        (
            Box::new(|c| c.destination_sets[0].algorithm = Algorithm::Parallel),
            "lcr[0].carriers[0].destination_sets[0]: destination set \"a\" is parallel",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[0].destinations = Some(vec![])),
            "lcr[0].carriers[0]: a carrier has exactly one of destination_sets",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[0].algorithm = Some(Algorithm::RoundRobin)),
            "lcr[0].carriers[0].algorithm: algorithm goes with the carrier's own destinations",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[2].algorithm = Some(Algorithm::Parallel)),
            "lcr[0].carriers[2].algorithm: parallel cannot order a carrier",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[2].destinations.as_mut().unwrap()[1].uri = "sip:host.example".into()),
            "lcr[0].carriers[2].destinations[1].uri:",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[2].destinations = Some(vec![])),
            "lcr[0].carriers[2].destinations: a destination set needs at least one destination",
        ),
        (
            Box::new(|c| {
                c.lcr[0].carriers[2].health = Some(HealthConfig {
                    down_after: 0,
                    ..Default::default()
                })
            }),
            "lcr[0].carriers[2].health.down_after: 0 is out of range",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[1].name = "acme".into()),
            "lcr[0].carriers[1].name: duplicate carrier name \"acme\" (already carriers[0])",
        ),
        (
            Box::new(|c| c.lcr[0].carriers[1].name = "b c".into()),
            "lcr[0].carriers[1].name: \"b c\": a name may contain only",
        ),
        (
            Box::new(|c| c.lcr[0].carriers.clear()),
            "lcr[0].carriers: a table needs at least one carrier",
        ),
        (
            Box::new(|c| c.lcr[0].name = "a".into()),
            "lcr[0].name: \"a\" is already the name of a destination set",
        ),
        (
            Box::new(|c| {
                let t = c.lcr[0].clone();
                c.lcr.push(t)
            }),
            "lcr[1].name: duplicate lcr table name \"pstn\" (already lcr[0])",
        ),
        (
            Box::new(|c| {
                c.destination_sets
                    .push(DestinationSetConfig::new("pstn.cell", Algorithm::Priority, &[C1]))
            }),
            "lcr[0].carriers[2].name: the carrier's destination set would be named \"pstn.cell\"",
        ),
        (
            Box::new(|c| {
                c.lcr[0].normalize = vec![NormalizeRule {
                    strip: "0".into(),
                    prefix: "+49 ".into(),
                }]
            }),
            "lcr[0].normalize[0].prefix: \"+49 \": only digits and '+' are allowed",
        ),
        (
            Box::new(|c| c.lcr[0].failover_codes = vec!["2xx".into()]),
            "lcr[0].failover_codes[0]:",
        ),
        (
            Box::new(|c| c.lcr[0].no_match = ResponseConfig::new(200, "OK")),
            "lcr[0].no_match.code:",
        ),
        (
            Box::new(|c| c.rules[0].lcr = Some("intl".into())),
            "rule[0].lcr: no lcr table named \"intl\" (known: pstn)",
        ),
        (
            Box::new(|c| c.rules[0].destination_set = Some("a".into())),
            "rule[0]: a rule has exactly one action: set destination_set, respond, lookup, lcr or script, not both destination_set and lcr",
        ),
        (
            Box::new(|c| c.rules[0].time = Some(TimeConditions(vec![]))),
            "rule[0].time: empty list of time windows never holds",
        ),
        (
            Box::new(|c| {
                c.rules[0].time = Some(TimeConditions(vec![TimeWindowConfig {
                    zone: Some("Europe/Nowhere".into()),
                    ..Default::default()
                }]))
            }),
            "rule[0].time.zone: unknown time zone \"Europe/Nowhere\"",
        ),
        (
            Box::new(|c| {
                let ok = TimeWindowConfig::default();
                let bad = TimeWindowConfig {
                    from: Some("25:00".into()),
                    ..Default::default()
                };
                c.rules[0].time = Some(TimeConditions(vec![ok, bad]))
            }),
            "rule[0].time[1].from: \"25:00\" is not a time of day",
        ),
    ];
    for (edit, want) in cases {
        let mut cfg = config(vec![prefix("+1", "acme", 0, 1)]);
        edit(&mut cfg);
        let e = Policy::build(&cfg).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}\nwant {want}");
    }
}

#[test]
fn config_keys_deserialize() {
    let cfg: LcrConfig = serde_json::from_str(
        r#"{"name": "pstn", "file": "lcr.csv", "digits_only": false,
            "normalize": [{"strip": "00", "prefix": "+"}],
            "carriers": [{"name": "a", "destination_sets": "gw"},
                         {"name": "b", "destinations": [{"uri": "sip:10.0.0.1"}],
                          "algorithm": "weighted_random", "health": {"interval_ms": 5000}}],
            "prefixes": [{"prefix": "+1", "carrier": "a", "priority": 1, "weight": 10},
                         {"prefix": "+44", "carrier": "b"}],
            "failover_codes": ["5xx", 486], "no_match": {"code": 484}}"#,
    )
    .unwrap();
    assert_eq!(cfg.prefixes[1], LcrPrefixConfig::new("+44", "b"));
    assert_eq!(cfg.carriers[1].health.as_ref().unwrap().down_after, 3);
    assert!(
        serde_json::from_str::<LcrConfig>(r#"{"name": "x", "carriers": [], "prefix": []}"#)
            .is_err()
    );
    let r: RuleConfig = serde_json::from_str(
        r#"{"name": "r", "lcr": "pstn", "time": {"zone": "Europe/Berlin", "days": ["mon..fri"], "from": "08:00", "to": "18:00"}}"#,
    )
    .unwrap();
    assert_eq!(r.time.as_ref().unwrap().0.len(), 1);
    let r: RuleConfig = serde_json::from_str(
        r#"{"name": "r", "lcr": "pstn", "time": [{"days": "sat"}, {"dates": ["12-24..12-26"], "invert": true}]}"#,
    )
    .unwrap();
    assert_eq!(r.time.as_ref().unwrap().0.len(), 2);
    let e = serde_json::from_str::<RuleConfig>(
        r#"{"name": "r", "time": {"zone": "UTC", "day": "mon"}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `day`"), "{e}");
    assert!(serde_json::from_str::<RuleConfig>(r#"{"name": "r", "time": "mon"}"#).is_err());
    let s: DestinationSetConfig = serde_json::from_str(
        r#"{"name": "gw", "destinations": [{"uri": "sip:10.0.0.1"}],
            "health": {"interval_ms": 5000, "timeout_ms": 1000, "down_after": 2, "up_after": 1, "alive_codes": ["2xx", 404, "486"]}}"#,
    )
    .unwrap();
    assert_eq!(s.health.unwrap().alive_codes.len(), 3);
}

#[test]
fn time_conditions_choose_the_rule() {
    let night = RuleConfig {
        name: "night".into(),
        respond: Some(ResponseConfig::new(480, "Closed")),
        time: Some(TimeConditions(vec![
            TimeWindowConfig {
                zone: Some("Europe/Berlin".into()),
                from: Some("18:00".into()),
                to: Some("08:00".into()),
                ..Default::default()
            },
            TimeWindowConfig {
                zone: Some("Europe/Berlin".into()),
                days: Some(["sat..sun"].into_iter().collect()),
                ..Default::default()
            },
        ])),
        ..Default::default()
    };
    let mut cfg = config(vec![prefix("+1", "acme", 0, 1)]);
    cfg.rules.insert(0, night);
    let p = policy(&cfg);
    let at = |rfc3339: &str| -> String {
        let ts: jiff::Timestamp = rfc3339.parse().unwrap();
        let mut i = input(Some("+1555"), b"c");
        i.now_unix_ms = ts.as_millisecond() as u64;
        match p.route(&i) {
            Decision::Forward(plan) => plan.rule.to_string(),
            Decision::Respond { code, .. } => code.to_string(),
            other => format!("{other:?}"),
        }
    };
    // Thursday 2026-03-26 (CET, UTC+1) and Monday 2026-03-30 (CEST, UTC+2).
    assert_eq!(at("2026-03-26T06:59:59Z"), "480");
    assert_eq!(at("2026-03-26T07:00:00Z"), "calls");
    assert_eq!(at("2026-03-26T16:59:59Z"), "calls");
    assert_eq!(at("2026-03-26T17:00:00Z"), "480");
    assert_eq!(at("2026-03-30T05:59:59Z"), "480");
    assert_eq!(at("2026-03-30T06:00:00Z"), "calls");
    assert_eq!(at("2026-03-28T12:00:00Z"), "480", "saturday");
}

#[test]
fn carrier_health_and_admin_through_the_policy() {
    let mut cfg = config(vec![prefix("+1", "cell", 0, 1), prefix("+1", "acme", 1, 1)]);
    cfg.lcr[0].carriers[2].health = Some(HealthConfig {
        interval_ms: 1000,
        timeout_ms: 500,
        down_after: 1,
        up_after: 1,
        alive_codes: vec!["2xx".into()],
    });
    let p = Arc::new(policy(&cfg));
    let mut t = HealthTracker::new(p.clone(), 0);
    let probes = t.due_probes(0);
    assert_eq!(
        probes.iter().map(|p| &*p.uri).collect::<Vec<_>>(),
        [C1, C2],
        "only the carrier with health is probed"
    );
    assert!(probes.iter().all(|p| &*p.set == "pstn.cell"));
    let tr = t.on_probe_response(probes[0].token, 503, 10).unwrap();
    assert_eq!(tr.kind, TransitionKind::Down { failures: 1 });
    assert_eq!(names(&p, "+1"), [C2, A1, A2]);
    // The admin API names destinations by set and index, URI or address.
    let id = p.destination_id("a", A2).unwrap();
    assert_eq!(id, DestinationId { set: 0, index: 1 });
    assert_eq!(p.destination_id("a", "1"), Some(id));
    assert_eq!(p.destination_id("a", "10.0.1.2:5060"), Some(id));
    assert_eq!(p.destination_id("a", "2"), None);
    assert_eq!(p.destination_id("a", "10.0.1.9:5060"), None);
    assert_eq!(p.destination_id("pstn", "0"), None, "not the table's view");
    assert_eq!(
        p.destination_id("pstn.cell", C2),
        Some(DestinationId { set: 2, index: 1 })
    );
    assert_eq!(&**p.destination(id).unwrap().uri(), A2);
    t.force(id, Some(false)).unwrap();
    assert_eq!(names(&p, "+1"), [C2, A1]);
}

/// A small deterministic generator for the large tests.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

#[test]
fn half_a_million_prefixes_match_like_a_naive_scan() {
    let mut rng = SplitMix(7);
    let mut seen = HashSet::new();
    let mut prefixes = Vec::with_capacity(500_000);
    while prefixes.len() < 500_000 {
        // Country-code-like heads with national digits: lengths 2 to 12.
        let len = 1 + rng.below(11) as usize;
        let p = format!("+{}", rng.digits(len));
        if seen.insert(p.clone()) {
            let carrier = ["acme", "bell", "cell"][rng.below(3) as usize];
            prefixes.push(prefix(&p, carrier, 0, 1));
        }
    }
    let cfg = config(prefixes.clone());
    let p = policy(&cfg);
    let t = p.lcr_table("pstn").unwrap();
    assert_eq!(t.len(), 500_000);
    let all: Vec<&str> = prefixes.iter().map(|e| e.prefix.as_str()).collect();
    let set: HashMap<&str, &str> = prefixes
        .iter()
        .map(|e| (e.prefix.as_str(), e.carrier.as_str()))
        .collect();
    // Numbers: a random prefix extended by random digits (so matches of every length
    // occur), or wholly random.
    let mut numbers = Vec::new();
    for k in 0..20_000 {
        let n = if k % 4 == 0 {
            let len = 1 + rng.below(15) as usize;
            format!("+{}", rng.digits(len))
        } else {
            let base = all[rng.below(all.len() as u64) as usize];
            let extra = rng.below(6) as usize;
            format!("{base}{}", rng.digits(extra))
        };
        numbers.push(n);
    }
    // Against a scan of every prefix, on a sample (a scan costs 500,000 comparisons).
    for n in numbers.iter().step_by(200) {
        let naive = all
            .iter()
            .filter(|p| n.starts_with(**p))
            .max_by_key(|p| p.len())
            .copied();
        assert_eq!(
            t.lookup(n).map(|m| m.prefix().to_owned()).as_deref(),
            naive,
            "{n}"
        );
    }
    // Against a hash set probe of every length, on all of them.
    let mut matched = 0;
    for n in &numbers {
        let want = (0..=n.len())
            .rev()
            .map(|l| &n[..l])
            .find(|x| set.contains_key(x));
        let got = t.lookup(n).map(|m| m.prefix().to_owned());
        assert_eq!(got.as_deref(), want, "{n}");
        if let Some(m) = got {
            matched += 1;
            let carrier = t.lookup(n).unwrap().routes().next().unwrap().carrier;
            assert_eq!(carrier, set[m.as_str()]);
        }
    }
    assert!(matched > 15_000, "{matched}");
    assert!(t.heap_bytes() < 500_000 * 48, "{}", t.heap_bytes());
}

/// The example of docs/configuration.md (`[[lcr]]` and time conditions), as TOML.
#[test]
fn documented_example_builds_and_routes() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        destination_set: Vec<DestinationSetConfig>,
        lcr: Vec<LcrConfig>,
        rule: Vec<RuleConfig>,
    }
    let text = r#"
[[destination_set]]
name = "acme-gw"
algorithm = "round_robin"
destinations = [{ uri = "sip:192.0.2.10" }, { uri = "sip:192.0.2.11" }]
health = { interval_ms = 5000, alive_codes = ["2xx", "404"] }

[[destination_set]]
name = "office"
destinations = [{ uri = "sip:192.0.2.50" }]

[[lcr]]
name = "pstn"
normalize = [
  { strip = "+", prefix = "+" },        # already international: unchanged
  { strip = "00", prefix = "+" },       # 0049... -> +49...
  { strip = "0", prefix = "+49" },      # 030...  -> +4930...
]
carriers = [
  { name = "acme", destination_sets = ["acme-gw"] },
  { name = "globex", destinations = [{ uri = "sip:198.51.100.20" }, { uri = "sip:198.51.100.21", priority = 1 }] },
]
prefixes = [
  { prefix = "+1", carrier = "acme", priority = 1 },
  { prefix = "+1", carrier = "globex", priority = 2 },
  { prefix = "+49", carrier = "globex", priority = 1, weight = 3 },
  { prefix = "+49", carrier = "acme", priority = 1, weight = 1 },
]
file = "lcr.csv"                        # more entries, relative to this file's directory

[[rule]]
name = "closed"
time = [
  { zone = "Europe/Berlin", from = "22:00", to = "06:00" },              # every night
  { zone = "Europe/Berlin", dates = ["12-24..12-26", "2026-12-31"] },     # holidays
]
respond = { code = 480, reason = "Closed" }

[[rule]]
name = "office-hours"
time = { zone = "Europe/Berlin", days = ["mon..fri"], from = "08:00", to = "18:00" }
destination_set = "office"

[[rule]]
name = "pstn-calls"
methods = ["INVITE"]
lcr = "pstn"
"#;
    let f: File = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp_dir("doc");
    std::fs::write(
        dir.join("lcr.csv"),
        "prefix,carrier,priority,weight\n# United Kingdom\n+44,acme,1,10\n+44,globex,2\n+4420,globex\n+33,acme,,5\n",
    )
    .unwrap();
    let cfg = RoutingConfig {
        destination_sets: f.destination_set,
        lcr: f.lcr,
        rules: f.rule,
        base_dir: Some(dir.clone()),
        ..Default::default()
    };
    let p = policy(&cfg);
    assert!(p.destination_set("pstn.globex").is_some());
    let at = |user: &str, rfc3339: &str| -> Vec<String> {
        let ts: jiff::Timestamp = rfc3339.parse().unwrap();
        let mut i = input(Some(user), b"c");
        i.now_unix_ms = ts.as_millisecond() as u64;
        match p.route(&i) {
            Decision::Forward(plan) => plan.targets.iter().map(|t| t.name.to_string()).collect(),
            Decision::Respond { code, reason } => vec![format!("{code} {reason}")],
            other => vec![format!("{other:?}")],
        }
    };
    // Saturday 2026-11-07 12:00 in Berlin: no office hours, not closed: LCR.
    let sat = "2026-11-07T11:00:00Z";
    let globex = ["sip:198.51.100.20", "sip:198.51.100.21"];
    assert_eq!(
        at("+12125551234", sat)[2..],
        globex,
        "acme first, then globex"
    );
    assert_eq!(at("0044 20 1234", sat), globex, "+4420 from the file");
    assert_eq!(
        at("+44 161 1234", sat)[2..],
        globex,
        "+44: acme then globex"
    );
    assert_eq!(at("030 1234", sat).len(), 4, "+49: both carriers");
    assert_eq!(at("+33 1 2345", sat).len(), 2, "+33: acme");
    assert_eq!(at("+7 495", sat), ["404 Not Found"]);
    assert_eq!(at("+1", "2026-11-06T23:30:00Z"), ["480 Closed"], "night");
    assert_eq!(at("+1", "2026-12-25T11:00:00Z"), ["480 Closed"], "holiday");
    assert_eq!(
        at("+1", "2026-11-09T09:00:00Z"),
        ["sip:192.0.2.50"],
        "office hours"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn arbitrary_users_never_panic() {
    let mut cfg = config(vec![prefix("+1", "acme", 0, 1), prefix("", "bell", 1, 0)]);
    cfg.lcr[0].normalize = vec![NormalizeRule {
        strip: "00".into(),
        prefix: "+".into(),
    }];
    let strict = policy(&cfg);
    cfg.lcr[0].digits_only = false;
    let loose = policy(&cfg);
    let alphabet = [
        '0', '1', '9', '+', '%', '2', 'B', ';', 'é', '€', ' ', '-', '\0', 'x',
    ];
    let mut rng = SplitMix(99);
    for _ in 0..20_000 {
        let len = rng.below(200) as usize;
        let user: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        for p in [&strict, &loose] {
            let d = p.route(&input(Some(&user), b"c"));
            assert!(matches!(d, Decision::Forward(_)), "{user:?}: {d:?}");
            let t = p.lcr_table("pstn").unwrap();
            let _ = t.normalize(&user);
        }
    }
}
