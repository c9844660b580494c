//! Lua routing benchmark: the cost of one `Policy::route` decision made by a Lua script
//! (`rule.script`), next to the same decision made by a plain rule.
//!
//! ```text
//! cargo run --release -p cairn-routing --example lua_bench -- [--decisions N]
//! ```
//!
//! Every case routes the same parsed INVITE (its `RouteInput` carries the message, as the
//! proxy core passes it) through a policy with two destination sets of two gateways each,
//! `N` times after a warm-up, and prints the mean time per decision (the plan included) and
//! the p50/p99 of 100,000 decisions timed one by one (each timing includes the clock reads).

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use cairn_routing::*;
use cairn_sip::{Message, Transport};

const INVITE: &str = "INVITE sip:+4930123456@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
To: <sip:+4930123456@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@198.51.100.7:5060>\r\n\
X-Tenant: blue\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

/// (name, Lua source or None for a plain rule, extra rule setup)
struct Case {
    name: &'static str,
    lua: Option<&'static str>,
    rule: fn(&mut RuleConfig),
}

fn no_change(_: &mut RuleConfig) {}

fn plain(r: &mut RuleConfig) {
    r.ruri_user_prefix = Some(StringList(vec!["+49".into()]));
    r.destination_set = Some("de".into());
}

fn plain_manipulation(r: &mut RuleConfig) {
    plain(r);
    r.set_ruri_user = Some("004930123456".into());
    r.add_headers = Some(StringList(vec!["X-Lb: cairn".into()]));
    r.remove_headers = Some(StringList(vec!["X-Tenant".into()]));
}

const CASES: &[Case] = &[
    Case {
        name: "plain rule (ruri_user_prefix -> set)",
        lua: None,
        rule: plain,
    },
    Case {
        name: "plain rule + manipulation keys",
        lua: None,
        rule: plain_manipulation,
    },
    Case {
        name: "lua: return \"de\" (call overhead)",
        lua: Some("function route() return 'de' end"),
        rule: no_change,
    },
    Case {
        name: "lua: prefix of ruri_user -> set",
        lua: Some(
            "function route()\n\
               local u = cairn.ruri_user()\n\
               if u:sub(1, 3) == '+49' then return 'de' end\n\
               if u:sub(1, 2) == '+1' then return 'us' end\n\
               return 404\n\
             end",
        ),
        rule: no_change,
    },
    Case {
        name: "lua: header + from_user + 2 edits -> set",
        lua: Some(
            "function route()\n\
               local tenant = cairn.header('X-Tenant')\n\
               local caller = cairn.from_user()\n\
               cairn.set_ruri_user('00' .. cairn.ruri_user():sub(2))\n\
               cairn.add_header('X-Caller', caller)\n\
               if tenant == 'blue' then return 'de' end\n\
               return 'us'\n\
             end",
        ),
        rule: no_change,
    },
    Case {
        name: "lua: list of 2 target URIs",
        lua: Some(
            "local t = {'sip:192.0.2.1:5060', 'sip:192.0.2.2:5060;transport=tcp'}\n\
             function route() return t end",
        ),
        rule: no_change,
    },
    Case {
        name: "lua: respond 486",
        lua: Some("function route() return 486 end"),
        rule: no_change,
    },
];

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--decisions", 1_000_000).max(1);
    let dir = std::env::temp_dir().join(format!("cairn-lua-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let msg = Message::parse(Bytes::from_static(INVITE.as_bytes())).expect("INVITE parses");
    let ruri = msg.request_uri().expect("R-URI");
    let input = RouteInput {
        method: "INVITE",
        ruri_user: ruri.user.and_then(|u| std::str::from_utf8(u).ok()),
        ruri_host: "example.com",
        ruri_port: None,
        source: "198.51.100.7:5060".parse().unwrap(),
        call_id: msg.call_id(),
        now_unix_ms: 1_790_000_000_000,
        transport: Transport::Udp,
        request: Some(&msg),
    };
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "case", "mean ns", "p50 ns", "p99 ns"
    );
    for (i, case) in CASES.iter().enumerate() {
        let mut rule = RuleConfig {
            name: "r".into(),
            ..Default::default()
        };
        if let Some(lua) = case.lua {
            let file = format!("case{i}.lua");
            std::fs::write(dir.join(&file), lua).expect("write script");
            rule.script = Some(ScriptConfig::new(&file, "route"));
        }
        (case.rule)(&mut rule);
        let cfg = RoutingConfig {
            destination_sets: vec![
                DestinationSetConfig::new(
                    "de",
                    Algorithm::RoundRobin,
                    &["sip:192.0.2.1", "sip:192.0.2.2"],
                ),
                DestinationSetConfig::new(
                    "us",
                    Algorithm::RoundRobin,
                    &["sip:192.0.2.3", "sip:192.0.2.4"],
                ),
            ],
            rules: vec![rule],
            base_dir: Some(dir.clone()),
            ..Default::default()
        };
        let policy = Policy::build(&cfg).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        // Check the case decides what it should before timing it.
        match policy.route(&input) {
            Decision::Forward(_) | Decision::Respond { code: 486, .. } => {}
            other => panic!("{}: unexpected decision {other:?}", case.name),
        }
        for _ in 0..n.min(100_000) {
            black_box(policy.route(black_box(&input)));
        }
        let start = Instant::now();
        for _ in 0..n {
            black_box(policy.route(black_box(&input)));
        }
        let mean = start.elapsed().as_nanos() as f64 / n as f64;
        let mut one: Vec<u64> = (0..100_000)
            .map(|_| {
                let t = Instant::now();
                black_box(policy.route(black_box(&input)));
                t.elapsed().as_nanos() as u64
            })
            .collect();
        one.sort_unstable();
        let pct = |p: f64| one[((one.len() as f64 * p) as usize).min(one.len() - 1)];
        assert_eq!(
            policy.script_errors(),
            0,
            "{}: the script failed",
            case.name
        );
        println!(
            "{:<44} {:>12.0} {:>10} {:>10}",
            case.name,
            mean,
            pct(0.50),
            pct(0.99)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
