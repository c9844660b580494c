//! Live reload with the real binary and real SIPp: SIGHUP and `POST /reload`
//! change the routing of new calls while the calls ringing before keep
//! their gateways (their CANCELs go where their INVITEs went); a broken
//! configuration or table is refused with its reason and routing goes on
//! unchanged; sections that need a restart are named and kept.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The admin API's port on each test's address.
const ADMIN: u16 = 8081;
/// The second caller's port (the first one is on ports::UAC).
const UAC2: u16 = 5073;

fn admin_toml(net: &TestNet) -> String {
    format!("\n[admin]\nlisten = \"{}\"\n", net.addr(ADMIN))
}

/// Set "gw" of the one gateway at `port`, and the rule to it.
fn to_gateway(net: &TestNet, t: Transport, port: u16, timers: &str) -> String {
    let routing = gateway_set(net, t, "gw", "priority", &["5xx"], &[(port, "")]);
    format!("{}{}", cairn_config(net, timers, &routing), admin_toml(net))
}

fn metric(net: &TestNet, sample: &str) -> Option<f64> {
    metric_value(&http_get(net.addr(ADMIN), "/metrics")?.1, sample)
}

fn reloads(net: &TestNet, result: &str) -> f64 {
    metric(net, &format!("cairn_reloads_total{{result=\"{result}\"}}")).unwrap_or(-1.0)
}

fn post_reload(net: &TestNet) -> (u16, Value) {
    let (status, body) = http_post(net.addr(ADMIN), "/reload").expect("the admin API answers");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

/// Call-IDs of the INVITEs a gateway received.
fn invite_calls(gw: &SippResult) -> Vec<String> {
    gw.received_requests("INVITE")
        .iter()
        .filter_map(|m| m.call_id().map(str::to_owned))
        .collect()
}

fn ringing_calls_keep_their_gateway_across_a_reload(t: Transport) {
    const CALLS: u64 = 5;
    let net = TestNet::new();
    let cairn = Cairn::start(&to_gateway(&net, t, ports::UAS1, DEFAULT_TIMERS));
    let ring = scenario("uas_ring_then_cancel.xml");
    let gw1 = Sipp::uas(&ring, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&ring, net.addr(ports::UAS2), SippOpts::new(t));
    // Callers that let their calls ring 5 s: the reload happens while they ring.
    let early = Sipp::uac(
        &uac_cancel_after(5000),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(CALLS).rate(50.0),
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            gw1.count_so_far(|m| !m.received && m.status() == Some(180)) == CALLS as usize
        }),
        "the first calls do not ring at gateway 1"
    );

    // The set now names gateway 2 only.
    fs::write(
        &cairn.config_path,
        to_gateway(&net, t, ports::UAS2, DEFAULT_TIMERS),
    )
    .unwrap();
    signal(cairn.pid(), "HUP");
    assert!(
        wait_until(Duration::from_secs(5), || reloads(&net, "ok") == 1.0),
        "no reload"
    );
    assert!(cairn.log().contains("configuration reloaded"));
    let late = Sipp::run_uac(
        &scenario("uac_cancel.xml"),
        net.addr(UAC2),
        net.cairn(),
        SippOpts::new(t).calls(CALLS).rate(50.0),
    );
    late.assert_all_ok(CALLS);
    let early = early.wait();
    early.assert_all_ok(CALLS);
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    gw1.assert_all_ok(CALLS);
    gw2.assert_all_ok(CALLS);

    // The early calls: INVITE and CANCEL at gateway 1, the CANCEL built from the INVITE
    // cairn sent there (same Request-URI, branch, Call-ID, CSeq number).
    let pairs = cancels_with_invites(&gw1);
    assert_eq!(pairs.len(), CALLS as usize, "{gw1}");
    for (c, inv) in &pairs {
        assert_cancel_matches(c, inv);
    }
    let early_calls: Vec<String> = early
        .sent_requests("INVITE")
        .iter()
        .filter_map(|m| m.call_id().map(str::to_owned))
        .collect();
    let mut at_gw1 = invite_calls(&gw1);
    at_gw1.sort();
    at_gw1.dedup();
    let mut want = early_calls.clone();
    want.sort();
    want.dedup();
    assert_eq!(
        at_gw1, want,
        "every early call, and only those, at gateway 1"
    );
    // The late calls: all at gateway 2, none of the early ones there.
    assert_eq!(cancels_with_invites(&gw2).len(), CALLS as usize, "{gw2}");
    for (c, inv) in cancels_with_invites(&gw2) {
        assert_cancel_matches(&c, &inv);
        assert!(!early_calls.contains(&c.call_id().unwrap().to_owned()));
    }
    assert_eq!(
        early.received_responses(487).len(),
        CALLS as usize,
        "{early}"
    );
    drop(cairn);
}

#[test]
fn ringing_calls_keep_their_gateway_across_a_reload_udp() {
    ringing_calls_keep_their_gateway_across_a_reload(Transport::Udp);
}

#[test]
fn ringing_calls_keep_their_gateway_across_a_reload_tcp() {
    ringing_calls_keep_their_gateway_across_a_reload(Transport::Tcp);
}

/// Sets gw1 (gateway 1) and gw2 (gateway 2), an LCR table "pstn" whose carriers are
/// them, its entries in `lcr.csv`, and the rule: INVITEs by the table.
fn lcr_config(net: &TestNet, timers: &str) -> String {
    let set = |name: &str, port: u16| {
        format!(
            "[[destination_set]]\nname = \"{name}\"\ndestinations = [{{ uri = \"sip:{}:{port}\" }}]\n\n",
            net.ip
        )
    };
    let routing = format!(
        "{}{}[[lcr]]\nname = \"pstn\"\ncarriers = [\n  {{ name = \"one\", destination_sets = [\"gw1\"] }},\n  \
         {{ name = \"two\", destination_sets = [\"gw2\"] }},\n]\nfile = \"lcr.csv\"\n\n\
         [[rule]]\nname = \"calls\"\nmethods = [\"INVITE\"]\nlcr = \"pstn\"\n",
        set("gw1", ports::UAS1),
        set("gw2", ports::UAS2)
    );
    format!("{}{}", cairn_config(net, timers, &routing), admin_toml(net))
}

/// `n` answered calls to a number beginning with 1.
fn calls(net: &TestNet, n: u64) {
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp().calls(n).rate(20.0).service("15551230"),
    );
    uac.assert_all_ok(n);
}

fn invites(gw: &Sipp) -> usize {
    gw.count_so_far(|m| m.received && m.method() == Some("INVITE"))
}

#[test]
fn a_broken_configuration_is_refused_and_routing_goes_on() {
    let t = Transport::Udp;
    let net = TestNet::new();
    let cairn = Cairn::start(&to_gateway(&net, t, ports::UAS1, DEFAULT_TIMERS));
    let csv = cairn.dir.join("lcr.csv");
    let answer = scenario("uas_answer.xml");
    let gw1 = Sipp::uas(&answer, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&answer, net.addr(ports::UAS2), SippOpts::new(t));
    calls(&net, 2);
    assert_eq!((invites(&gw1), invites(&gw2)), (2, 0));

    // SIGHUP with a file that does not parse as a configuration: refused, logged with
    // the file, line and key; the running routing stays (every call to gateway 1).
    let broken = to_gateway(&net, t, ports::UAS2, DEFAULT_TIMERS)
        .replace("algorithm = \"priority\"", "algorithm = \"sideways\"");
    fs::write(&cairn.config_path, &broken).unwrap();
    let line = broken.lines().position(|l| l.contains("sideways")).unwrap() + 1;
    signal(cairn.pid(), "HUP");
    assert!(
        wait_until(Duration::from_secs(5), || reloads(&net, "failed") == 1.0),
        "no refused reload"
    );
    let log = cairn.log();
    assert!(log.contains("configuration reload refused"), "{log}");
    let at = format!(
        "{}:{line}:13: destination_set[0].algorithm: unknown variant `sideways`",
        cairn.config_path.display()
    );
    assert!(log.contains(&at), "{at} not in the log");
    calls(&net, 2);
    assert_eq!((invites(&gw1), invites(&gw2)), (4, 0));

    // POST /reload with a good file naming a broken table: refused with the table's
    // file and line, in the answer.
    fs::write(&csv, "prefix,carrier\n1,three\n").unwrap();
    fs::write(&cairn.config_path, lcr_config(&net, DEFAULT_TIMERS)).unwrap();
    let (status, v) = post_reload(&net);
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["result"], "refused");
    assert_eq!(v["key"], "lcr[0].file", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("lcr.csv:2: no carrier named \"three\""),
        "{v}"
    );
    assert!(v["line"].as_u64().is_some(), "{v}");
    assert_eq!(reloads(&net, "failed"), 2.0);
    assert_eq!(reloads(&net, "ok"), 0.0);
    calls(&net, 2);
    assert_eq!((invites(&gw1), invites(&gw2)), (6, 0));

    // The table fixed: taken, calls by the table (carrier two: gateway 2). The changed
    // [timers] needs a restart: named in the answer and the log, the running value stays.
    fs::write(&csv, "prefix,carrier\n1,two\n").unwrap();
    fs::write(
        &cairn.config_path,
        lcr_config(
            &net,
            "t1_ms = 250\nt2_ms = 4000\nt4_ms = 5000\ntimer_c_ms = 180000\n",
        ),
    )
    .unwrap();
    let (status, v) = post_reload(&net);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "reloaded");
    assert_eq!(v["lcr_tables"], 1);
    assert_eq!(
        v["restart_needed_for"],
        serde_json::json!(["timers"]),
        "{v}"
    );
    assert!(cairn
        .log()
        .contains("[timers] changed, but it is read at start only"));
    calls(&net, 2);
    assert_eq!((invites(&gw1), invites(&gw2)), (6, 2));

    // Only the table changes: a reload reads it again.
    fs::write(&csv, "prefix,carrier\n1,one\n").unwrap();
    let (status, v) = post_reload(&net);
    assert_eq!(status, 200, "{v}");
    calls(&net, 2);
    assert_eq!((invites(&gw1), invites(&gw2)), (8, 2));
    assert_eq!(reloads(&net, "ok"), 2.0);
    assert!(metric(&net, "cairn_reload_seconds").unwrap() > 0.0);
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    gw1.assert_all_ok(8);
    gw2.assert_all_ok(2);
    drop(cairn);
}
