//! Destination health with the real binary and real SIPp gateways: OPTIONS
//! probes take a gateway that stops answering out of routing and put it back
//! when it answers again; an administrator's override holds whatever the
//! probes say, and across a reload.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The admin API's port on each test's address.
const ADMIN: u16 = 8081;
/// Probing fast enough for a test: every 200 ms, 150 ms to answer, down after two
/// failures, up after two answers.
const HEALTH: &str =
    "health = { interval_ms = 200, timeout_ms = 150, down_after = 2, up_after = 2 }\n";

/// A round-robin set "gw" of the two gateways, probed, with the admin API.
fn config(net: &TestNet, t: Transport) -> String {
    let routing = gateway_set(
        net,
        t,
        "gw",
        "round_robin",
        &["5xx", "408"],
        &[(ports::UAS1, ""), (ports::UAS2, "")],
    )
    .replacen("destinations = [", &format!("{HEALTH}destinations = ["), 1);
    format!(
        "{}\n[admin]\nlisten = \"{}\"\n",
        cairn_config(net, DEFAULT_TIMERS, &routing),
        net.addr(ADMIN)
    )
}

fn gw_uri(net: &TestNet, t: Transport, port: u16) -> String {
    format!("sip:{}:{port}{}", net.ip, t.uri_param())
}

fn admin(net: &TestNet) -> SocketAddr {
    net.addr(ADMIN)
}

/// GET /destinations: the entry of the destination with this URI.
fn destination(net: &TestNet, uri: &str) -> Value {
    let (status, body) = http_get(admin(net), "/destinations").expect("the admin API answers");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["uri"] == uri)
        .cloned()
        .unwrap_or_else(|| panic!("{uri} not in {v}"))
}

fn state(net: &TestNet, uri: &str) -> String {
    destination(net, uri)["state"].as_str().unwrap().to_owned()
}

fn metrics(net: &TestNet) -> String {
    http_get(admin(net), "/metrics").expect("metrics").1
}

fn metric(net: &TestNet, sample: &str) -> f64 {
    let m = metrics(net);
    metric_value(&m, sample).unwrap_or_else(|| panic!("no {sample} in\n{m}"))
}

fn up_metric(uri: &str) -> String {
    format!("cairn_destination_up{{set=\"gw\",destination=\"{uri}\"}}")
}

/// A gateway of this test that answers probes and calls.
fn gateway(net: &TestNet, t: Transport, port: u16) -> Sipp {
    Sipp::uas(
        &scenario("uas_answer_options.xml"),
        net.addr(port),
        SippOpts::new(t),
    )
}

/// `n` calls from the SIPp UAC, all answered.
fn calls(net: &TestNet, t: Transport, n: u64) {
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(n).rate(20.0),
    );
    uac.assert_all_ok(n);
}

/// INVITEs a running gateway has received so far.
fn invites(gw: &Sipp) -> usize {
    gw.count_so_far(|m| m.received && m.method() == Some("INVITE"))
}

fn options_answered(gw: &Sipp) -> usize {
    gw.count_so_far(|m| !m.received && m.cseq().is_some_and(|c| c.1 == "OPTIONS"))
}

#[test]
fn a_gateway_that_stops_answering_probes_gets_no_calls_until_it_answers_again() {
    let t = Transport::Udp;
    let net = TestNet::new();
    let cairn = Cairn::start(&config(&net, t));
    let (uri1, uri2) = (gw_uri(&net, t, ports::UAS1), gw_uri(&net, t, ports::UAS2));
    let gw1 = gateway(&net, t, ports::UAS1);
    let gw2 = gateway(&net, t, ports::UAS2);
    // Both answer their probes.
    assert!(
        wait_until(Duration::from_secs(5), || options_answered(&gw1) >= 2
            && options_answered(&gw2) >= 2),
        "no probes answered"
    );
    let d = destination(&net, &uri1);
    assert_eq!(
        (d["state"].as_str(), d["probed"].as_bool()),
        (Some("up"), Some(true)),
        "{d}"
    );
    // A probe as the gateway got it: a non-INVITE request of cairn's own.
    let probe = gw1
        .messages_so_far()
        .into_iter()
        .find(|m| m.received && m.method() == Some("OPTIONS"))
        .unwrap();
    assert_eq!(probe.request_uri(), Some(uri1.as_str()));
    assert_eq!(probe.max_forwards(), Some(70));
    assert_eq!(probe.vias().len(), 1, "{}", probe.text);
    assert!(names(&probe.vias()[0], net.cairn()), "{}", probe.text);
    assert!(probe.top_via_branch().unwrap().starts_with("z9hG4bKcnp"));
    assert!(param(probe.header("From").unwrap(), "tag").is_some());
    assert_eq!(probe.cseq().map(|c| c.1), Some("OPTIONS".into()));
    assert_eq!(metric(&net, &up_metric(&uri1)), 1.0);
    assert!(metric(&net, "cairn_health_probes_total{result=\"ok\"}") >= 4.0);

    // Gateway 1 goes silent: a socket that takes everything and answers nothing.
    let gw1 = gw1.stop();
    assert!(gw1.received_requests("OPTIONS").len() >= 2, "{gw1}");
    let hole = BlackHole::bind(net.addr(ports::UAS1));
    assert!(
        wait_until(Duration::from_secs(5), || state(&net, &uri1) == "down"),
        "not marked down: {}",
        destination(&net, &uri1)
    );
    let d = destination(&net, &uri1);
    assert_eq!(
        (d["health"].as_str(), d["admin"].as_str()),
        (Some("down"), Some("auto"))
    );
    assert!(d["failures"].as_u64().unwrap() >= 2, "{d}");
    assert_eq!(state(&net, &uri2), "up");
    assert!(hole.count("OPTIONS") >= 2, "probes keep coming");
    assert_eq!(metric(&net, &up_metric(&uri1)), 0.0);
    assert_eq!(
        metric(&net, "cairn_health_transitions_total{kind=\"down\"}"),
        1.0
    );
    assert!(metric(&net, "cairn_health_probes_total{result=\"failed\"}") >= 2.0);
    assert!(
        cairn.log().contains(&format!(
            "destination {uri1} of set gw: down after 2 failed probes"
        )),
        "the change is logged"
    );

    // Every call goes to gateway 2, none is even tried at the silent one.
    let before = invites(&gw2);
    calls(&net, t, 6);
    assert_eq!(invites(&gw2) - before, 6);
    assert_eq!(hole.count("INVITE"), 0, "a down gateway gets no INVITE");

    // Gateway 1 answers again: up after two answered probes, and back in the rotation.
    drop(hole);
    let gw1 = gateway(&net, t, ports::UAS1);
    assert!(
        wait_until(Duration::from_secs(5), || state(&net, &uri1) == "up"),
        "not up again: {}",
        destination(&net, &uri1)
    );
    assert_eq!(
        metric(&net, "cairn_health_transitions_total{kind=\"up\"}"),
        1.0
    );
    assert_eq!(metric(&net, &up_metric(&uri1)), 1.0);
    let before = invites(&gw2);
    calls(&net, t, 6);
    assert_eq!(invites(&gw1), 3, "round robin again");
    assert_eq!(invites(&gw2) - before, 3);
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    assert_eq!(gw1.failed + gw2.failed, 0, "{gw1}\n{gw2}");
    drop(cairn);
}

fn an_administrator_takes_a_gateway_out_and_gives_it_back(t: Transport) {
    let net = TestNet::new();
    let cairn = Cairn::start(&config(&net, t));
    let (uri1, uri2) = (gw_uri(&net, t, ports::UAS1), gw_uri(&net, t, ports::UAS2));
    let gw1 = gateway(&net, t, ports::UAS1);
    let gw2 = gateway(&net, t, ports::UAS2);
    assert!(wait_until(Duration::from_secs(5), || options_answered(
        &gw1
    ) >= 2));

    // Down, by URI.
    let (status, body) = http_post(admin(&net), &format!("/destinations/gw/{uri1}/down")).unwrap();
    assert_eq!(status, 200, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (d["state"].as_str(), d["admin"].as_str()),
        (Some("down"), Some("down")),
        "{d}"
    );
    // Sticky: the gateway answers every probe, it stays down.
    let answered = options_answered(&gw1);
    assert!(wait_until(Duration::from_secs(5), || options_answered(
        &gw1
    ) >= answered + 4));
    let d = destination(&net, &uri1);
    assert_eq!(
        (d["state"].as_str(), d["health"].as_str()),
        (Some("down"), Some("up")),
        "{d}"
    );
    calls(&net, t, 6);
    assert_eq!((invites(&gw1), invites(&gw2)), (0, 6));

    // A reload keeps the override of a destination that remains.
    signal(cairn.pid(), "HUP");
    assert!(wait_until(Duration::from_secs(5), || {
        metric_value(&metrics(&net), "cairn_reloads_total{result=\"ok\"}") == Some(1.0)
    }));
    assert_eq!(destination(&net, &uri1)["admin"], "down");
    calls(&net, t, 2);
    assert_eq!((invites(&gw1), invites(&gw2)), (0, 8));

    // Bad requests are refused with the reason.
    let (status, body) = http_post(admin(&net), "/destinations/gw/0/sideways").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("expected up, down or auto"), "{body}");
    let (status, body) = http_post(admin(&net), "/destinations/nope/0/up").unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no destination set named"), "{body}");
    let (status, body) = http_post(admin(&net), "/destinations/gw/7/up").unwrap();
    assert_eq!(status, 404, "{body}");

    // Back to its probes, by position: calls reach it again.
    let (status, body) = http_post(admin(&net), "/destinations/gw/0/auto").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(state(&net, &uri1), "up");
    calls(&net, t, 6);
    assert_eq!((invites(&gw1), invites(&gw2)), (3, 11));
    // Forced up, it is offered whatever it says (it answers anyway); admin state shown.
    let (status, _) = http_post(admin(&net), &format!("/destinations/gw/{uri2}/up")).unwrap();
    assert_eq!(status, 200);
    assert_eq!(destination(&net, &uri2)["admin"], "up");
    let m = metrics(&net);
    for (kind, n) in [("forced_down", 1.0), ("released", 1.0), ("forced_up", 1.0)] {
        let sample = format!("cairn_health_transitions_total{{kind=\"{kind}\"}}");
        assert_eq!(metric_value(&m, &sample), Some(n), "{sample}\n{m}");
    }
    assert!(cairn.log().contains("forced down by an administrator"));
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    assert_eq!(gw1.failed + gw2.failed, 0, "{gw1}\n{gw2}");
    drop(cairn);
}

#[test]
fn an_administrator_takes_a_gateway_out_and_gives_it_back_udp() {
    an_administrator_takes_a_gateway_out_and_gives_it_back(Transport::Udp);
}

/// Probes over TCP: cairn's own connection to each gateway.
#[test]
fn an_administrator_takes_a_gateway_out_and_gives_it_back_tcp() {
    an_administrator_takes_a_gateway_out_and_gives_it_back(Transport::Tcp);
}
