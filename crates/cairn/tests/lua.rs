//! Routing in Lua and the manipulation of the forwarded request, with the
//! real cairn binary between SIPp callers and SIPp gateways: a script that
//! routes by Request-URI user prefix to two gateways, a script that fails
//! at run time (the call gets the rule's failure response, the proxy goes
//! on), and a rule whose Request-URI and header changes show in the
//! gateway's message log.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

/// Writes `lua` into a directory of its own and returns the file's path.
fn script(label: &str, lua: &str) -> PathBuf {
    let path = test_dir(label).join("route.lua");
    std::fs::write(&path, lua).unwrap();
    path
}

/// A cairn config with the set `gw1` (gateway 1) and one `[[rule]]` for
/// INVITEs with `rule` as its action and extra keys.
fn config(net: &TestNet, rule: &str) -> String {
    let routing = format!(
        "[[destination_set]]\nname = \"gw1\"\ndestinations = [ {{ uri = \"sip:{ip}:{p1}\" }} ]\n\n\
         [[rule]]\nname = \"lua\"\nmethods = [\"INVITE\"]\n{rule}\n\n",
        ip = net.ip,
        p1 = ports::UAS1,
    );
    cairn_config(net, DEFAULT_TIMERS, &routing)
}

fn uas(net: &TestNet, port: u16) -> Sipp {
    Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(port),
        SippOpts::udp().timeout(Duration::from_secs(120)),
    )
}

fn calls(net: &TestNet, user: &str, n: u64) -> SippResult {
    Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp()
            .service(user)
            .calls(n)
            .rate(20.0)
            .timeout(Duration::from_secs(60)),
    )
}

#[test]
fn lua_routes_by_user_prefix_to_two_gateways() {
    let net = TestNet::new();
    let lua = script(
        "lua-prefix",
        &format!(
            r#"
-- +49 goes to the set gw1, +1 to gateway 2 by URI, the rest is refused.
function route()
    local user = cairn.ruri_user() or ""
    cairn.add_header("X-Routed-By", "lua " .. cairn.transport())
    if user:sub(1, 3) == "+49" then return "gw1" end
    if user:sub(1, 2) == "+1" then return {{"sip:{ip}:{p2}"}} end
    return 404, "No Route For " .. user
end
"#,
            ip = net.ip,
            p2 = ports::UAS2
        ),
    );
    let _cairn = Cairn::start(&config(
        &net,
        &format!(
            "script = {{ file = \"{}\", function = \"route\" }}",
            lua.display()
        ),
    ));
    let (gw1, gw2) = (uas(&net, ports::UAS1), uas(&net, ports::UAS2));
    let de = calls(&net, "+4930123", 10);
    let us = calls(&net, "+15551234", 10);
    let fr = Sipp::run_uac(
        &uac_expect(404),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp()
            .service("+33123")
            .calls(2)
            .timeout(Duration::from_secs(30)),
    );
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    de.assert_all_ok(10);
    us.assert_all_ok(10);
    fr.assert_all_ok(2);
    gw1.assert_all_ok(10);
    gw2.assert_all_ok(10);
    let check = |gw: &SippResult, prefix: &str| {
        let invites = gw.received_requests("INVITE");
        assert_eq!(invites.len(), 10, "{gw}");
        for inv in invites {
            assert!(
                inv.request_uri().unwrap().starts_with(prefix),
                "{}",
                inv.text
            );
            assert_eq!(inv.header("X-Routed-By"), Some("lua udp"), "{}", inv.text);
        }
    };
    check(&gw1, "sip:+49");
    check(&gw2, "sip:+1");
    let refused = fr.received_responses(404);
    assert!(!refused.is_empty());
    assert!(
        refused[0].first_line().ends_with("No Route For +33123"),
        "{}",
        refused[0].text
    );
}

#[test]
fn lua_runtime_error_gets_the_failure_response_and_cairn_goes_on() {
    let net = TestNet::new();
    let lua = script(
        "lua-error",
        r#"function route()
    local user = cairn.ruri_user()
    if user == "666" then error("cursed number " .. user) end
    return "gw1"
end
"#,
    );
    let admin = net.addr(8081);
    let cairn = Cairn::start(&format!(
        "{}\n[admin]\nlisten = \"{admin}\"\n",
        config(
            &net,
            &format!("script = {{ file = \"{}\" }}", lua.display()),
        )
    ));
    let gw1 = uas(&net, ports::UAS1);
    let failed = Sipp::run_uac(
        &uac_expect(500),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp()
            .service("666")
            .calls(3)
            .timeout(Duration::from_secs(30)),
    );
    failed.assert_all_ok(3);
    let ok = calls(&net, "+4930123", 5);
    let gw1 = gw1.stop();
    ok.assert_all_ok(5);
    gw1.assert_all_ok(5);
    assert_eq!(gw1.received_requests("INVITE").len(), 5, "{gw1}");
    let log = cairn.log();
    // The file as configured (Lua keeps the last 60 characters of a long name).
    let line = "route.lua:3: cursed number 666";
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("routing script failed") && l.contains(line))
            .count(),
        3,
        "each failed call is logged with the script's line:\n{log}"
    );
    let (_, m) = http_get(admin, "/metrics").expect("GET /metrics");
    assert_eq!(metric(&m, "cairn_script_errors_total"), 3.0, "{m}");
}

#[test]
fn manipulation_shows_at_the_gateway() {
    let net = TestNet::new();
    let _cairn = Cairn::start(&config(
        &net,
        "destination_set = \"gw1\"\n\
         set_ruri_user = \"004930123\"\n\
         set_ruri_host = \"carrier.example.net:5090\"\n\
         add_headers = [\"X-Lb: cairn\", \"X-Tenant: blue\"]\n\
         remove_headers = [\"Subject\"]",
    ));
    let gw1 = uas(&net, ports::UAS1);
    let uac = calls(&net, "+4930123", 3);
    let gw1 = gw1.stop();
    uac.assert_all_ok(3);
    gw1.assert_all_ok(3);
    // What the caller sent: the Subject is there, the Request-URI as written.
    let sent = uac.sent_requests("INVITE");
    assert_eq!(sent[0].header("Subject"), Some("cairn test call"));
    assert!(sent[0].request_uri().unwrap().starts_with("sip:+4930123@"));
    let invites = gw1.received_requests("INVITE");
    assert_eq!(invites.len(), 3, "{gw1}");
    for inv in invites {
        assert_eq!(
            inv.request_uri(),
            Some("sip:004930123@carrier.example.net:5090"),
            "{}",
            inv.text
        );
        assert_eq!(inv.header("X-Lb"), Some("cairn"), "{}", inv.text);
        assert_eq!(inv.header("X-Tenant"), Some("blue"), "{}", inv.text);
        assert_eq!(inv.header("Subject"), None, "{}", inv.text);
        // The To header is the caller's: only the Request-URI changes.
        assert!(
            inv.header("To").unwrap().contains("+4930123"),
            "{}",
            inv.text
        );
    }
}
