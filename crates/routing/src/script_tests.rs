//! Routing scripts (Lua) and the manipulation keys of rules: decisions, the `cairn`
//! functions, errors with their file and line, limits.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cairn_sip::{Message, Transport};

use crate::lcr_tests::tmp_dir;
use crate::*;

const INVITE: &str = "INVITE sip:+4930123@example.com:5070;user=phone SIP/2.0\r\n\
Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
f: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
X-Tenant: blue\r\n\
s: urgent call\r\n\
Content-Length: 0\r\n\r\n";

fn request() -> Message {
    Message::parse(Bytes::from_static(INVITE.as_bytes())).unwrap()
}

fn input(msg: &Message) -> RouteInput<'_> {
    RouteInput {
        method: "INVITE",
        ruri_user: Some("+4930123"),
        ruri_host: "example.com",
        ruri_port: Some(5070),
        source: "198.51.100.7:5060".parse().unwrap(),
        call_id: msg.call_id(),
        now_unix_ms: 1_790_000_000_000,
        transport: Transport::Tcp,
        request: Some(msg),
    }
}

/// A routing configuration with sets `a` and `b`, and one script rule per
/// `(rule name, function)` calling `route.lua` (written into a fresh directory).
fn config(dir_name: &str, lua: &str, functions: &[(&str, &str)]) -> (RoutingConfig, PathBuf) {
    let dir = tmp_dir(dir_name);
    std::fs::write(dir.join("route.lua"), lua).unwrap();
    let rules = functions
        .iter()
        .map(|(name, function)| RuleConfig {
            name: (*name).into(),
            script: Some(ScriptConfig::new("route.lua", function)),
            ..Default::default()
        })
        .collect();
    let cfg = RoutingConfig {
        destination_sets: vec![
            DestinationSetConfig::new("a", Algorithm::Priority, &["sip:192.0.2.1:5060"]),
            DestinationSetConfig::new("b", Algorithm::Priority, &["sip:192.0.2.2:5060"]),
        ],
        rules,
        base_dir: Some(dir.clone()),
        ..Default::default()
    };
    (cfg, dir)
}

fn policy(dir_name: &str, lua: &str) -> Policy {
    let (cfg, _) = config(dir_name, lua, &[("lua", "route")]);
    Policy::build(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn route(p: &Policy) -> Decision {
    let msg = request();
    p.route(&input(&msg))
}

fn plan(p: &Policy) -> Plan {
    match route(p) {
        Decision::Forward(plan) => plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

fn respond(code: u16, reason: &str) -> Decision {
    Decision::Respond {
        code,
        reason: Arc::from(reason),
    }
}

#[test]
fn policy_with_scripts_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Policy>();
}

#[test]
fn decisions_by_request_uri_user_prefix() {
    let p = policy(
        "prefix",
        r#"
        function route()
            local user = cairn.ruri_user()
            if user == nil then return 404, "No User" end
            if user:sub(1, 3) == "+49" then return "a" end
            if user:sub(1, 2) == "+1" then return "b" end
            return 403
        end
        "#,
    );
    let p1 = plan(&p);
    assert_eq!((&*p1.rule, &*p1.set), ("lua", "a"));
    assert_eq!(p1.targets[0].addr, "192.0.2.1:5060".parse().unwrap());
    let msg = request();
    let mut i = input(&msg);
    i.ruri_user = Some("+15550000");
    let Decision::Forward(p2) = p.route(&i) else {
        panic!()
    };
    assert_eq!(&*p2.set, "b");
    i.ruri_user = Some("+3312");
    assert_eq!(p.route(&i), respond(403, "Forbidden"));
    i.ruri_user = None;
    assert_eq!(p.route(&i), respond(404, "No User"));
    assert_eq!(p.script_errors(), 0);
}

#[test]
fn targets_and_fork_modes() {
    let p = policy(
        "targets",
        r#"
        function route()
            if cairn.transport() == "tcp" then
                return {"sip:192.0.2.10:5080;transport=tcp", "sip:192.0.2.11"}, "parallel"
            end
            return {"sip:192.0.2.12"}
        end
        "#,
    );
    let pl = plan(&p);
    assert_eq!(pl.mode, ForkMode::Parallel);
    assert_eq!(&*pl.set, SCRIPT_SET_NAME);
    let t: Vec<_> = pl
        .targets
        .iter()
        .map(|t| (t.addr.to_string(), t.transport, t.index))
        .collect();
    assert_eq!(
        t,
        vec![
            ("192.0.2.10:5080".into(), Transport::Tcp, 0),
            ("192.0.2.11:5060".into(), Transport::Udp, 1)
        ]
    );
    assert!(pl.failover.should_failover(503) && pl.failover.on_timeout());
    let msg = request();
    let mut i = input(&msg);
    i.transport = Transport::Udp;
    let Decision::Forward(serial) = p.route(&i) else {
        panic!()
    };
    assert_eq!(serial.mode, ForkMode::Serial);
    assert_eq!(&*serial.targets[0].name, "sip:192.0.2.12");
}

#[test]
fn nil_lets_the_next_rule_decide() {
    let (mut cfg, _) = config(
        "nil",
        "function route() if cairn.method() == 'OPTIONS' then return 'b' end end",
        &[("lua", "route")],
    );
    cfg.rules.push(RuleConfig {
        name: "rest".into(),
        destination_set: Some("a".into()),
        ..Default::default()
    });
    let p = Policy::build(&cfg).unwrap();
    let pl = plan(&p);
    assert_eq!((&*pl.rule, &*pl.set), ("rest", "a"));
    let msg = request();
    let mut i = input(&msg);
    i.method = "OPTIONS";
    let Decision::Forward(pl) = p.route(&i) else {
        panic!()
    };
    assert_eq!((&*pl.rule, &*pl.set), ("lua", "b"));
}

#[test]
fn accessors_read_the_request() {
    let p = policy(
        "accessors",
        r#"
        function route()
            local got = table.concat({
                cairn.method(), cairn.ruri(), cairn.ruri_user(), cairn.ruri_host(),
                tostring(cairn.ruri_port()), cairn.from_user(), cairn.to_user(),
                cairn.call_id(), cairn.header("x-tenant"), cairn.header("Subject"),
                cairn.header("From"), tostring(cairn.header("X-Missing")),
                cairn.source_ip(), tostring(cairn.source_port()), cairn.transport(),
            }, "|")
            return 480, got
        end
        "#,
    );
    let Decision::Respond { code: 480, reason } = route(&p) else {
        panic!()
    };
    assert_eq!(
        &*reason,
        "INVITE|sip:+4930123@example.com:5070;user=phone|+4930123|example.com|5070|alice|bob|\
         a84b4c76e66710@pc33.atlanta.com|blue|urgent call|\"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774|\
         nil|198.51.100.7|5060|tcp"
    );
    // Without the request, what only the request has reads as nil.
    let msg = request();
    let mut i = input(&msg);
    i.request = None;
    let p = policy(
        "accessors-none",
        "function route() return 480, tostring(cairn.ruri()) .. tostring(cairn.header('To')) .. cairn.ruri_user() end",
    );
    assert_eq!(p.route(&i), respond(480, "nilnil+4930123"));
}

#[test]
fn script_manipulation_and_cancel_reason() {
    let (mut cfg, _) = config(
        "manip",
        r#"
        function route()
            cairn.set_ruri_user("0049" .. cairn.ruri_user():sub(4))
            cairn.set_ruri_host("gw.example.net", 5080)
            cairn.remove_header("X-Tenant")
            cairn.add_header("X-Tenant", "green")
            cairn.add_header("X-Routed-By: lua")
            cairn.set_cancel_reason('SIP;cause=200;text="Call completed elsewhere"')
            return "a"
        end
        "#,
        &[("lua", "route")],
    );
    cfg.rules[0].remove_headers = Some(StringList(vec!["Subject".into()]));
    cfg.rules[0].set_ruri_host = Some("static.example.net".into());
    let p = Policy::build(&cfg).unwrap();
    let pl = plan(&p);
    assert_eq!(
        pl.cancel_reason.as_deref(),
        Some("SIP;cause=200;text=\"Call completed elsewhere\"")
    );
    let m = pl.manipulation.expect("manipulation");
    assert_eq!(m.ruri_user.as_deref(), Some("004930123"));
    assert_eq!(
        m.ruri_host.as_deref(),
        Some("gw.example.net:5080"),
        "the script wins"
    );
    assert_eq!(
        m.remove_headers
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
        vec!["Subject", "X-Tenant"],
        "the rule's first, then the script's"
    );
    assert_eq!(m.add_headers.len(), 2);
    assert_eq!(
        m.rewrite_ruri(b"sip:+4930123@example.com:5070;user=phone")
            .map(|v| String::from_utf8(v).unwrap())
            .as_deref(),
        Some("sip:004930123@gw.example.net:5080;user=phone")
    );
    // The next call starts clean: nothing of the last call's manipulation is left.
    let (cfg2, _) = config(
        "manip-clean",
        "n = 0\nfunction route() n = n + 1; if n == 1 then cairn.add_header('X-First: 1') end; return 'a' end",
        &[("lua", "route")],
    );
    let p = Policy::build(&cfg2).unwrap();
    assert!(plan(&p).manipulation.is_some());
    let second = plan(&p);
    assert_eq!(second.manipulation, None);
    assert_eq!(second.cancel_reason, None);
}

#[test]
fn static_manipulation_keys() {
    let mut rule = RuleConfig {
        name: "r".into(),
        destination_set: Some("a".into()),
        set_ruri_user: Some("+4930123".into()),
        set_ruri_host: Some("[2001:db8::1]:5080".into()),
        add_headers: Some(StringList(vec!["X-Foo: bar".into(), "X-Baz:qux".into()])),
        remove_headers: Some(StringList(vec!["X-Secret".into(), "s".into()])),
        ..Default::default()
    };
    let cfg = |rule: &RuleConfig| RoutingConfig {
        destination_sets: vec![DestinationSetConfig::new(
            "a",
            Algorithm::Priority,
            &["sip:192.0.2.1"],
        )],
        rules: vec![rule.clone()],
        ..Default::default()
    };
    let p = Policy::build(&cfg(&rule)).unwrap();
    let pl = plan(&p);
    let m = pl.manipulation.unwrap();
    assert_eq!(
        m.add_headers
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>(),
        vec!["X-Foo=bar", "X-Baz=qux"]
    );
    assert_eq!(
        p.rules()[0].manipulation().map(|m| m.ruri_host.clone()),
        Some(Some("[2001:db8::1]:5080".into()))
    );

    let bad = |f: &dyn Fn(&mut RuleConfig)| {
        let mut r = rule.clone();
        f(&mut r);
        Policy::build(&cfg(&r)).unwrap_err().to_string()
    };
    for (e, want) in [
        (
            bad(&|r| r.set_ruri_user = Some("a@b".into())),
            "rule[0].set_ruri_user: \"a@b\": '@' is not allowed",
        ),
        (
            bad(&|r| r.set_ruri_host = Some("gw:99999".into())),
            "rule[0].set_ruri_host: \"gw:99999\"",
        ),
        (
            bad(&|r| r.add_headers = Some(StringList(vec!["X-A: 1".into(), "X-B".into()]))),
            "rule[0].add_headers[1]: \"X-B\" is not a header line",
        ),
        (
            bad(&|r| r.remove_headers = Some(StringList(vec!["v".into()]))),
            "rule[0].remove_headers[0]: Via is kept by the proxy",
        ),
        (
            bad(&|r| r.remove_headers = Some(StringList(vec![]))),
            "rule[0].remove_headers: empty list",
        ),
        (
            bad(&|r| {
                r.destination_set = None;
                r.respond = Some(ResponseConfig::new(403, "Forbidden"));
                r.set_ruri_user = None;
                r.set_ruri_host = None;
                r.add_headers = None;
            }),
            "rule[0].remove_headers: a respond rule forwards nothing",
        ),
    ] {
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
    rule.remove_headers = None;
}

#[test]
fn load_errors_name_the_key_the_file_and_the_line() {
    let err = |dir: &str, lua: &str, function: &str| {
        let (cfg, dir) = config(dir, lua, &[("lua", function)]);
        let e = Policy::build(&cfg).unwrap_err();
        (e.to_string(), dir.join("route.lua").display().to_string())
    };
    let (e, _) = err(
        "syntax",
        "function route()\n  return 'a'\nend end\n",
        "route",
    );
    assert!(e.starts_with("rule[0].script.file: route.lua:3:"), "{e}");
    assert!(e.contains("<eof> expected near 'end'"), "{e}");
    let (e, _) = err("toplevel", "local x = nil\nx.y = 1\n", "route");
    assert!(
        e.starts_with("rule[0].script.file: route.lua:2: attempt to index"),
        "{e}"
    );
    let (e, file) = err("nofunc", "function other() end\n", "route");
    assert_eq!(
        e,
        format!("rule[0].script.function: {file} defines no global function \"route\"")
    );
    let (e, _) = err("notfunc", "route = 42\n", "route");
    assert!(
        e.contains("\"route\" of") && e.contains("is a integer, not a function"),
        "{e}"
    );
    let (e, _) = err("loop", "while true do end\n", "route");
    assert!(
        e.contains(":1: instruction limit of 1000000 reached"),
        "{e}"
    );

    let (mut cfg, dir) = config("missing", "function route() end", &[("lua", "route")]);
    cfg.rules[0].script = Some(ScriptConfig::new("nope.lua", "route"));
    let e = Policy::build(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "rule[0].script.file: cannot read {}",
            dir.join("nope.lua").display()
        )),
        "{e}"
    );
    cfg.rules[0].script = Some(ScriptConfig::new("route.lua", "route"));
    cfg.rules[0].destination_set = Some("a".into());
    let e = Policy::build(&cfg).unwrap_err().to_string();
    assert!(e.contains("not both destination_set and script"), "{e}");
    cfg.rules[0].destination_set = None;
    cfg.routing.script_max_instructions = 10;
    let e = Policy::build(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("routing.script_max_instructions: 10 is out of range"),
        "{e}"
    );
    cfg.routing.script_max_instructions = DEFAULT_SCRIPT_MAX_INSTRUCTIONS;
    cfg.routing.script_max_memory_kb = 1;
    let e = Policy::build(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("routing.script_max_memory_kb: 1 is out of range"),
        "{e}"
    );
    cfg.routing.script_max_memory_kb = DEFAULT_SCRIPT_MAX_MEMORY_KB;
    let mut failure = ScriptConfig::new("route.lua", "route");
    failure.failure = Some(ResponseConfig {
        code: 200,
        reason: None,
    });
    cfg.rules[0].script = Some(failure);
    let e = Policy::build(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("rule[0].script.failure.code: 200"), "{e}");
}

#[test]
fn run_time_errors_answer_with_the_failure_response() {
    let lua = r#"
        function boom()
            local t = nil
            return t.field
        end
        function bad_return() return true end
        function unknown_set() return "c" end
        function bad_code() return 200 end
        function bad_target() return {"sip:gw.example.com"} end
        function bad_arg()
            cairn.set_ruri_user("a b")
            return "a"
        end
        function bad_reason()
            cairn.set_cancel_reason("SIP;cause=x")
            return "a"
        end
        function raise() error("no route for " .. cairn.ruri_user()) end
        function fine() return "a" end
    "#;
    let names = [
        "boom",
        "bad_return",
        "unknown_set",
        "bad_code",
        "bad_target",
        "bad_arg",
        "bad_reason",
        "raise",
        "fine",
    ];
    let rules: Vec<(&str, &str)> = names.iter().map(|n| (*n, *n)).collect();
    let (cfg, _) = config("runtime", lua, &rules);
    let p = Policy::build(&cfg).unwrap();
    let msg = request();
    let i = input(&msg);
    for (k, name) in names.iter().enumerate() {
        // Only rule k matches: the others are for another method.
        let mut cfg = cfg.clone();
        for (j, r) in cfg.rules.iter_mut().enumerate() {
            if j != k {
                r.methods = Some(StringList(vec!["BYE".into()]));
            }
        }
        if *name == "raise" {
            let mut sc = ScriptConfig::new("route.lua", "raise");
            sc.failure = Some(ResponseConfig::new(503, "Script Failed"));
            cfg.rules[k].script = Some(sc);
        }
        let p = Policy::build(&cfg).unwrap();
        let d = p.route(&i);
        match *name {
            "fine" => {
                assert!(matches!(d, Decision::Forward(_)), "{d:?}");
                assert_eq!(p.script_errors(), 0);
            }
            "raise" => {
                assert_eq!(d, respond(503, "Script Failed"));
                assert_eq!(p.script_errors(), 1);
            }
            _ => {
                assert_eq!(d, respond(500, "Server Internal Error"), "{name}");
                assert_eq!(p.script_errors(), 1, "{name}");
            }
        }
    }
    // The first rule fails: the state stays usable for the next call.
    assert_eq!(p.route(&i), respond(500, "Server Internal Error"));
    assert_eq!(p.route(&i), respond(500, "Server Internal Error"));
    assert_eq!(p.script_errors(), 2);
}

#[test]
fn error_messages_carry_the_line() {
    // Drive the engine directly to see the message the log gets.
    let (cfg, dir) = config(
        "lines",
        "function a()\n  local t\n  return t.x\nend\nfunction b()\n  cairn.add_header('Via: x')\n  return 'a'\nend\nfunction c()\n  while true do end\nend\nfunction d() return {} end\nfunction e() local t = {}; for i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end end\n",
        &[("a", "a"), ("b", "b"), ("c", "c"), ("d", "d"), ("e", "e")],
    );
    let _ = dir;
    let file = "route.lua";
    let mut engine = crate::script::ScriptEngine::new(
        DEFAULT_SCRIPT_MAX_INSTRUCTIONS,
        DEFAULT_SCRIPT_MAX_MEMORY_KB,
        Default::default(),
    )
    .unwrap();
    let path = KeyPath::root("rule").index(0).key("script");
    let idx: Vec<usize> = cfg
        .rules
        .iter()
        .map(|r| {
            engine
                .add(r.script.as_ref().unwrap(), cfg.base_dir.as_deref(), &path)
                .unwrap()
        })
        .collect();
    let msg = request();
    let i = input(&msg);
    let err = |k: usize| engine.run(idx[k], &i).decision.unwrap_err();
    assert!(
        err(0).starts_with(&format!("{file}:3: attempt to index a nil value")),
        "{}",
        err(0)
    );
    assert_eq!(
        err(1),
        format!("{file}:6: cairn.add_header: Via is kept by the proxy as the caller sent it and cannot be added")
    );
    assert_eq!(
        err(2),
        format!(
            "{file}:10: instruction limit of 1000000 reached (routing.script_max_instructions)"
        )
    );
    assert_eq!(err(3), "returned an empty list of targets");
    assert_eq!(
        err(4),
        "memory limit reached (routing.script_max_memory_kb)"
    );
    assert_eq!(engine.errors(), 5);
}

#[test]
fn limits_stop_runaway_scripts() {
    let (mut cfg, _) = config(
        "limits",
        r#"
        calls = 0
        function spin() calls = calls + 1; while true do end end
        function hog()
            local t = {}
            for i = 1, 1e9 do t[i] = string.rep("x", 1024) .. i end
        end
        function catch()
            -- No way to catch the limit: pcall is not there.
            return pcall(function() while true do end end)
        end
        function io_free() return 480, tostring(io) .. tostring(os) .. tostring(require) .. tostring(load) end
        function count() return 480, tostring(calls) end
        "#,
        &[
            ("spin", "spin"),
            ("hog", "hog"),
            ("catch", "catch"),
            ("io_free", "io_free"),
            ("count", "count"),
        ],
    );
    cfg.routing.script_max_instructions = 100_000;
    cfg.routing.script_max_memory_kb = 4096;
    let msg = request();
    let only = |k: usize| {
        let mut c = cfg.clone();
        for (j, r) in c.rules.iter_mut().enumerate() {
            if j != k {
                r.methods = Some(StringList(vec!["BYE".into()]));
            }
        }
        Policy::build(&c).unwrap()
    };
    let p = only(0);
    for _ in 0..3 {
        assert_eq!(p.route(&input(&msg)), respond(500, "Server Internal Error"));
    }
    let p = only(1);
    assert_eq!(p.route(&input(&msg)), respond(500, "Server Internal Error"));
    // The memory is given back: the next call fails the same way, not worse.
    assert_eq!(p.route(&input(&msg)), respond(500, "Server Internal Error"));
    assert_eq!(p.script_errors(), 2);
    let p = only(2);
    assert_eq!(p.route(&input(&msg)), respond(500, "Server Internal Error"));
    let p = only(3);
    assert_eq!(p.route(&input(&msg)), respond(480, "nilnilnilnil"));

    // Each call gets the whole budget: 99 loops of 900 instructions pass one after the other.
    let (mut cfg, _) = config(
        "budget",
        "function route() local n = 0; for i = 1, 300 do n = n + i end; return 'a' end",
        &[("lua", "route")],
    );
    cfg.routing.script_max_instructions = 2_000;
    let p = Policy::build(&cfg).unwrap();
    for _ in 0..100 {
        assert!(matches!(route(&p), Decision::Forward(_)));
    }
    assert_eq!(p.script_errors(), 0);
}

#[test]
fn files_have_their_own_globals_and_load_once() {
    let dir = tmp_dir("two-files");
    std::fs::write(
        dir.join("one.lua"),
        "loads = (loads or 0) + 1\nname = 'a'\nfunction route() return name end\nfunction loaded() return 480, tostring(loads) end",
    )
    .unwrap();
    std::fs::write(
        dir.join("two.lua"),
        "name = 'b'\nfunction route() return name end",
    )
    .unwrap();
    let rule = |name: &str, file: &str, function: &str, method: &str| RuleConfig {
        name: name.into(),
        methods: Some(StringList(vec![method.into()])),
        script: Some(ScriptConfig::new(file, function)),
        ..Default::default()
    };
    let cfg = RoutingConfig {
        destination_sets: vec![
            DestinationSetConfig::new("a", Algorithm::Priority, &["sip:192.0.2.1"]),
            DestinationSetConfig::new("b", Algorithm::Priority, &["sip:192.0.2.2"]),
        ],
        rules: vec![
            rule("one", "one.lua", "route", "INVITE"),
            rule("two", "two.lua", "route", "MESSAGE"),
            rule("loads", "one.lua", "loaded", "OPTIONS"),
        ],
        base_dir: Some(dir),
        ..Default::default()
    };
    let p = Policy::build(&cfg).unwrap();
    let msg = request();
    let mut i = input(&msg);
    let set = |p: &Policy, i: &RouteInput| match p.route(i) {
        Decision::Forward(plan) => plan.set.to_string(),
        other => format!("{other:?}"),
    };
    assert_eq!(set(&p, &i), "a");
    i.method = "MESSAGE";
    assert_eq!(set(&p, &i), "b");
    i.method = "OPTIONS";
    assert_eq!(p.route(&i), respond(480, "1"), "one.lua ran once");
}

#[test]
fn lcr_tables_by_name() {
    let (mut cfg, _) = config(
        "lcr",
        "function route() return 'cheap' end",
        &[("lua", "route")],
    );
    cfg.lcr.push(LcrConfig::new(
        "cheap",
        vec![CarrierConfig {
            name: "c1".into(),
            destination_sets: Some(StringList(vec!["b".into()])),
            ..Default::default()
        }],
        vec![LcrPrefixConfig::new("+49", "c1")],
    ));
    let p = Policy::build(&cfg).unwrap();
    let pl = plan(&p);
    assert_eq!(&*pl.set, "cheap");
    assert_eq!(pl.targets[0].addr, "192.0.2.2:5060".parse().unwrap());
}
