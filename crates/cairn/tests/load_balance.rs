//! Load balancing and failover across two SIPp gateways: round robin,
//! failover on a configured response code, failover when a gateway hangs
//! (Timer C, then CANCEL) or never answers at all (Timer B, no CANCEL), and
//! a parallel fork where the losing branch is CANCELled.

mod common;

use common::*;
use std::time::Duration;

fn round_robin_splits_evenly(t: Transport) {
    let net = TestNet::new();
    let routing = gateway_set(
        &net,
        t,
        "gateways",
        "round_robin",
        &["5xx", "408"],
        &[(ports::UAS1, ""), (ports::UAS2, "")],
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let long = Duration::from_secs(90);
    let gw1 = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t).timeout(long),
    );
    let gw2 = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS2),
        SippOpts::new(t).timeout(long),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t)
            .calls(100)
            .rate(50.0)
            .timeout(Duration::from_secs(60)),
    );
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(100);
    gw1.assert_all_ok(50);
    gw2.assert_all_ok(50);
    assert_eq!(
        (gw1.created, gw2.created),
        (50, 50),
        "round robin splits 100 calls 50/50:\n{gw1}\n{gw2}"
    );
}

#[test]
fn round_robin_splits_100_calls_evenly_udp() {
    round_robin_splits_evenly(Transport::Udp);
}

#[test]
fn round_robin_splits_100_calls_evenly_tcp() {
    round_robin_splits_evenly(Transport::Tcp);
}

/// Gateway 1 answers 486 to everything; 486 is a failover code, so every
/// call ends up answered by gateway 2 and the caller never sees the 486.
#[test]
fn failover_on_486_udp() {
    let net = TestNet::new();
    let routing = gateway_set(
        &net,
        Transport::Udp,
        "gateways",
        "round_robin",
        &["486", "5xx", "408"],
        &[(ports::UAS1, ""), (ports::UAS2, "")],
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let busy = Sipp::uas(
        &scenario("uas_busy.xml"),
        net.addr(ports::UAS1),
        SippOpts::udp(),
    );
    let good = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS2),
        SippOpts::udp(),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp().calls(10).rate(10.0),
    );
    let (busy, good) = (busy.stop(), good.stop());
    uac.assert_all_ok(10);
    good.assert_all_ok(10);
    assert_eq!(good.created, 10, "{good}");
    // Round robin starts half of the calls at the busy gateway; each of
    // those got its 486 ACKed by cairn (uas_busy.xml waits for the ACK).
    assert!(busy.created >= 1, "the busy gateway was tried:\n{busy}");
    assert_eq!(
        busy.successful, busy.created,
        "cairn ACKed every 486:\n{busy}"
    );
    assert!(
        uac.received_responses(486).is_empty(),
        "the 486 is not relayed:\n{uac}"
    );
}

/// A 486 that is not a failover code goes straight back to the caller.
#[test]
fn no_failover_on_other_codes_udp() {
    let net = TestNet::new();
    let routing = gateway_set(
        &net,
        Transport::Udp,
        "gateways",
        "priority",
        &["5xx", "408"],
        &[(ports::UAS1, "priority = 0"), (ports::UAS2, "priority = 1")],
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let busy = Sipp::uas(
        &scenario("uas_busy.xml"),
        net.addr(ports::UAS1),
        SippOpts::udp(),
    );
    let good = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS2),
        SippOpts::udp(),
    );
    let uac = Sipp::run_uac(
        &uac_expect(486),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp().calls(2),
    );
    let (busy, good) = (busy.stop(), good.stop());
    uac.assert_all_ok(2);
    busy.assert_all_ok(2);
    assert_eq!(good.created, 0, "no failover on 486 here:\n{good}");
}

/// Gateway 1 sends 100 Trying and then nothing (uas_silent.xml). With
/// priority it is always tried first; Timer C (1 s here) fires, cairn
/// CANCELs it (a provisional response was received), ACKs the 487 and
/// fails over to gateway 2 because failover_on_timeout is set.
#[test]
fn failover_on_timer_c_udp() {
    let net = TestNet::new();
    let routing = gateway_set(
        &net,
        Transport::Udp,
        "gateways",
        "priority",
        &["5xx", "408"],
        &[(ports::UAS1, "priority = 0"), (ports::UAS2, "priority = 1")],
    );
    let timers = "t1_ms = 100\nt2_ms = 400\nt4_ms = 500\ntimer_c_ms = 1000\n";
    let _cairn = Cairn::start(&cairn_config(&net, timers, &routing));
    let silent = Sipp::uas(
        &scenario("uas_silent.xml"),
        net.addr(ports::UAS1),
        SippOpts::udp(),
    );
    let good = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS2),
        SippOpts::udp(),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp()
            .calls(3)
            .rate(3.0)
            .timeout(Duration::from_secs(40)),
    );
    let (silent, good) = (silent.stop(), good.stop());
    uac.assert_all_ok(3);
    good.assert_all_ok(3);
    assert_eq!(
        silent.created, 3,
        "every call tried the hung gateway first:\n{silent}"
    );
    silent.assert_all_ok(3);
    assert_eq!(silent.received_requests("CANCEL").len(), 3, "{silent}");
    for c in silent.received_requests("CANCEL") {
        let inv = silent
            .received_requests("INVITE")
            .into_iter()
            .find(|i| i.call_id() == c.call_id())
            .expect("INVITE of the CANCEL");
        assert_eq!(
            c.request_uri(),
            inv.request_uri(),
            "{}\n{}",
            inv.text,
            c.text
        );
        assert_eq!(
            c.top_via_branch(),
            inv.top_via_branch(),
            "{}\n{}",
            inv.text,
            c.text
        );
    }
    assert!(
        uac.received_responses(487).is_empty(),
        "the 487 is not relayed:\n{uac}"
    );
}

/// Gateway 1 never answers at all (not even 100). Timer B (64*T1 = 3.2 s
/// with t1_ms = 50) ends the branch as if by 408: no CANCEL may be sent
/// (RFC 3261 9.1, 16.8) and cairn fails over to gateway 2.
#[test]
fn failover_on_unresponsive_gateway_udp() {
    let net = TestNet::new();
    let routing = gateway_set(
        &net,
        Transport::Udp,
        "gateways",
        "priority",
        &["5xx", "408"],
        &[(ports::RAW, "priority = 0"), (ports::UAS2, "priority = 1")],
    );
    let timers = "t1_ms = 50\nt2_ms = 400\nt4_ms = 500\ntimer_c_ms = 180000\n";
    let hole = BlackHole::bind(net.addr(ports::RAW));
    let _cairn = Cairn::start(&cairn_config(&net, timers, &routing));
    let good = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS2),
        SippOpts::udp(),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp()
            .calls(2)
            .rate(2.0)
            .timeout(Duration::from_secs(40)),
    );
    let good = good.stop();
    uac.assert_all_ok(2);
    good.assert_all_ok(2);
    let invites = hole.count("INVITE");
    assert!(
        invites >= 4,
        "2 INVITEs and their Timer A retransmissions expected, got {invites}"
    );
    assert_eq!(
        hole.count("CANCEL"),
        0,
        "no CANCEL without a provisional response"
    );
}

/// algorithm = "parallel": both gateways get the INVITE; gateway 1 rings
/// 300 ms and answers, gateway 2 rings until CANCELled. cairn relays one
/// 200, CANCELs gateway 2 (same Request-URI and branch as the INVITE it
/// sent there) and ACKs its 487.
fn parallel_fork(t: Transport) {
    let net = TestNet::new();
    let routing = gateway_set(
        &net,
        t,
        "fork",
        "parallel",
        &["5xx", "408"],
        &[(ports::UAS1, ""), (ports::UAS2, "")],
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let winner = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t).pause_ms(300),
    );
    let loser = Sipp::uas(
        &scenario("uas_ring_then_cancel.xml"),
        net.addr(ports::UAS2),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(2).rate(5.0),
    );
    let (winner, loser) = (winner.stop(), loser.stop());
    uac.assert_all_ok(2);
    winner.assert_all_ok(2);
    loser.assert_all_ok(2);
    let invite_200s = uac
        .received_responses(200)
        .into_iter()
        .filter(|m| m.cseq().is_some_and(|c| c.1 == "INVITE"))
        .count();
    assert_eq!(
        invite_200s, 2,
        "one 200 per call reaches the caller:\n{uac}"
    );
    let cancels = loser.received_requests("CANCEL");
    assert_eq!(cancels.len(), 2, "{loser}");
    for c in cancels {
        let inv = loser
            .received_requests("INVITE")
            .into_iter()
            .find(|i| i.call_id() == c.call_id())
            .expect("INVITE of the CANCEL");
        assert_eq!(
            c.request_uri(),
            inv.request_uri(),
            "CANCEL Request-URI = INVITE's:\n{}\n{}",
            inv.text,
            c.text
        );
        assert_eq!(
            c.top_via_branch(),
            inv.top_via_branch(),
            "{}\n{}",
            inv.text,
            c.text
        );
        assert_eq!(c.cseq().map(|x| x.0), inv.cseq().map(|x| x.0));
    }
    assert!(uac.received_responses(487).is_empty(), "{uac}");
}

#[test]
fn parallel_fork_cancels_the_other_branch_udp() {
    parallel_fork(Transport::Udp);
}

#[test]
fn parallel_fork_cancels_the_other_branch_tcp() {
    parallel_fork(Transport::Tcp);
}
