//! Restart and crash safety (issue 5), end to end: the real cairn binary between real
//! SIPp callers and gateways, killed with SIGKILL while calls are in flight and started
//! again on the same configuration and the same state store directory.
//!
//! * 50 calls ringing on a round-robin set, SIGKILL, restart, the callers CANCEL: each
//!   CANCEL reaches the gateway that holds its INVITE with that INVITE's Request-URI and
//!   branch; 50 callers get 200 for the CANCEL and 487 (at `buffered` and `strict`).
//! * The gateways answer 200 while cairn is down: the retransmitted 2xx is relayed after
//!   the restart, and ACK and BYE are routed.
//! * An INVITE retransmitted after the restart is absorbed (the 180 re-sent), never routed
//!   again: each gateway sees one INVITE per Call-ID.
//! * A dialog confirmed before the kill is listed by `GET /dialogs` after it, and its BYE
//!   is routed and ends it.
//! * A rule's ring timeout started before the kill fires at its stored deadline after it.
//! * A crash loop under bounded load (20 calls/s for 20 s, ringing 1 to 3 s, then answered
//!   or cancelled), SIGKILL at random moments, at least 5 times: no CANCEL misrouted, no
//!   INVITE forwarded to two gateways, and every call completes.
//! * A corrupt store: a clear log line, the store moved aside, cairn starts and proxies;
//!   `/metrics` has `cairn_records_restored`.
//! * A TCP caller whose connection died with cairn gets its 487 over a new connection
//!   to its Via sent-by.
//!
//! Over UDP only for the SIGKILL tests with SIPp: a TCP connection cannot outlive the
//! process that holds one end of it, and SIPp ties each call to its connection (a SIPp UAS
//! drops the calls of a closed connection; a SIPp UAC loses the message that finds its
//! connection dead), so a SIPp-to-SIPp call over TCP cannot survive any proxy restart.
//! The corrupt-store test runs over UDP and TCP, and the TCP caller test uses plain
//! sockets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The admin API's port on each test's address.
const ADMIN: u16 = 8081;
/// How long the callers of the CANCEL tests let the gateways ring before they hang up:
/// the kill and the restart happen in that window.
const RING_MS: u64 = 5000;

// ---------------------------------------------------------------------------------------
// Configs and the admin API
// ---------------------------------------------------------------------------------------

/// A round-robin set over the two gateways, a store in `state/` next to the config
/// (relative path: the same after a restart), the admin API, dialogs as asked.
fn config(net: &TestNet, t: Transport, durability: &str, dialogs: bool) -> String {
    config_with(net, t, durability, dialogs, "")
}

/// [`config`] plus `more` after the set and its rule: more rules and sections.
fn config_with(net: &TestNet, t: Transport, durability: &str, dialogs: bool, more: &str) -> String {
    let mut routing = gateway_set(
        net,
        t,
        "gateways",
        "round_robin",
        &["5xx", "408"],
        &[(ports::UAS1, ""), (ports::UAS2, "")],
    );
    routing.push_str(more);
    format!(
        "{}\n[store]\npath = \"state\"\ndurability = \"{durability}\"\n\n\
         [dialogs]\nenabled = {dialogs}\n\n[admin]\nlisten = \"{}\"\n",
        cairn_config(net, DEFAULT_TIMERS, &routing),
        net.addr(ADMIN)
    )
}

fn admin_json(net: &TestNet, path: &str) -> Value {
    let (status, body) = http_get(net.addr(ADMIN), path)
        .unwrap_or_else(|| panic!("GET {path}: the admin API does not answer"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn metrics(net: &TestNet) -> String {
    let (status, body) = http_get(net.addr(ADMIN), "/metrics").expect("GET /metrics: no answer");
    assert_eq!(status, 200, "{body}");
    body
}

#[track_caller]
fn metric(text: &str, sample: &str) -> f64 {
    metric_value(text, sample).unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
}

/// Waits until cairn has committed every record it staged: the records
/// of a 1xx, a final or a dialog may wait up to `state_delay_ms` (10 ms by
/// default) to be grouped with others, so a kill right after a caller
/// heard ringing may find that ringing not on record yet (what a restart
/// then does is in docs/durability.md; the crash-loop test kills at any
/// moment).
fn wait_records_committed(net: &TestNet) {
    wait_for("staged records committed", Duration::from_secs(5), || {
        metric(&metrics(net), "cairn_store_staged_records") == 0.0
    });
}

fn restored_transactions(net: &TestNet) -> f64 {
    metric(
        &metrics(net),
        "cairn_records_restored{space=\"transactions\"}",
    )
}

/// The Call-IDs in a `GET /dialogs` answer, with their states.
fn dialog_states(v: &Value) -> BTreeMap<String, String> {
    v["dialogs"]
        .as_array()
        .unwrap_or_else(|| panic!("no dialogs array: {v}"))
        .iter()
        .map(|d| {
            (
                d["call_id"].as_str().unwrap_or_default().to_string(),
                d["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Trace checks
// ---------------------------------------------------------------------------------------

fn received_180(m: &SipMsg) -> bool {
    m.received && m.status() == Some(180)
}

fn sent_request(method: &'static str) -> impl Fn(&SipMsg) -> bool {
    move |m| !m.received && m.method() == Some(method)
}

/// A 200 to an INVITE that a gateway sent.
fn sent_invite_200(m: &SipMsg) -> bool {
    !m.received && m.status() == Some(200) && m.cseq().is_some_and(|c| c.1 == "INVITE")
}

/// Responses of `code` to `method` that a SIPp received.
fn responses_to(r: &SippResult, code: u16, method: &str) -> usize {
    r.received_responses(code)
        .into_iter()
        .filter(|m| m.cseq().is_some_and(|c| c.1 == method))
        .count()
}

/// The Call-IDs of the requests of `method` a gateway received, with how many arrived.
fn calls_of(gw: &SippResult, method: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in gw.received_requests(method) {
        *out.entry(m.call_id().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    out
}

/// Every CANCEL a gateway received matches an INVITE that the same gateway received
/// before it: same Call-ID, Request-URI, top Via branch and CSeq number (RFC 3261 9.1).
/// Returns the cancelled Call-IDs.
#[track_caller]
fn assert_cancels_match_invites(gw: &SippResult) -> BTreeSet<String> {
    let mut cancelled = BTreeSet::new();
    let mut invites: BTreeMap<String, Vec<&SipMsg>> = BTreeMap::new();
    for m in gw.received() {
        let id = m.call_id().unwrap_or_default().to_string();
        match m.method() {
            Some("INVITE") => invites.entry(id).or_default().push(m),
            Some("CANCEL") => {
                let invs = invites.get(&id).unwrap_or_else(|| {
                    panic!(
                        "{}: a CANCEL for a call whose INVITE it never got (misrouted):\n{}",
                        gw.name, m.text
                    )
                });
                for inv in invs {
                    assert_eq!(
                        (m.request_uri(), m.top_via_branch()),
                        (inv.request_uri(), inv.top_via_branch()),
                        "{}: CANCEL and INVITE differ in Request-URI or branch:\n{}\n---\n{}",
                        gw.name,
                        inv.text,
                        m.text
                    );
                    assert_eq!(m.cseq().map(|c| c.0), inv.cseq().map(|c| c.0));
                }
                assert_eq!(m.vias().len(), 1, "one Via, the branch's:\n{}", m.text);
                cancelled.insert(id);
            }
            _ => {}
        }
    }
    cancelled
}

/// No Call-ID reached two gateways, and the INVITEs of one Call-ID at one gateway all
/// carry the same branch (a restored branch retransmitting, never a new one).
#[track_caller]
fn assert_one_gateway_per_call(gws: &[&SippResult]) -> usize {
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    for gw in gws {
        let mut branches: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for inv in gw.received_requests("INVITE") {
            let id = inv.call_id().unwrap_or_default().to_string();
            branches
                .entry(id.clone())
                .or_default()
                .insert(inv.top_via_branch().unwrap_or_default());
            if let Some(other) = owner.insert(id.clone(), &gw.name) {
                assert_eq!(
                    other, gw.name,
                    "the INVITE of {id} was forwarded to two gateways: {other} and {}",
                    gw.name
                );
            }
        }
        for (id, b) in branches {
            assert_eq!(b.len(), 1, "{}: {id} arrived with branches {b:?}", gw.name);
        }
    }
    owner.len()
}

/// The INVITE transactions of a `GET /transactions` answer.
fn invite_transactions(v: &Value) -> Vec<&Value> {
    v["transactions"]
        .as_array()
        .unwrap_or_else(|| panic!("no transactions array: {v}"))
        .iter()
        .filter(|t| t["method"] == "INVITE")
        .collect()
}

/// Waits until `cond`, or panics naming `what`.
#[track_caller]
fn wait_for(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, cond),
        "timed out after {timeout:?}: {what}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. 50 ringing calls, SIGKILL, restart, the callers CANCEL
// ---------------------------------------------------------------------------------------

fn fifty_cancels_across_a_sigkill(durability: &str) {
    const CALLS: u64 = 50;
    let t = Transport::Udp;
    let net = TestNet::new();
    let mut cairn = Cairn::start(&config(&net, t, durability, true));
    let ring = scenario("uas_ring_then_cancel.xml");
    let gw1 = Sipp::uas(&ring, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&ring, net.addr(ports::UAS2), SippOpts::new(t));
    let uac = Sipp::uac(
        &scenario("restart_uac_cancel.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t)
            .calls(CALLS)
            .rate(50.0)
            .pause_ms(RING_MS)
            .timeout(Duration::from_secs(90)),
    );
    // Every call rings: the caller has its 180, and cairn has recorded the branch's 1xx.
    wait_for("50 callers hear ringing", Duration::from_secs(30), || {
        uac.count_so_far(received_180) >= CALLS as usize
    });
    wait_records_committed(&net);
    assert_eq!(
        admin_json(&net, "/transactions")["count"],
        CALLS,
        "50 INVITE transactions in flight before the kill"
    );
    cairn.kill9();
    let at_kill = (
        gw1.count_so_far(|m| m.received && m.method() == Some("INVITE")),
        gw2.count_so_far(|m| m.received && m.method() == Some("INVITE")),
    );
    assert_eq!(
        at_kill,
        (25, 25),
        "INVITEs at the gateways when cairn was killed"
    );
    cairn.restart().unwrap_or_else(|e| panic!("{e}"));
    // The test is only meaningful if every CANCEL comes after the restart.
    assert_eq!(
        uac.count_so_far(sent_request("CANCEL")),
        0,
        "test timing: a caller hung up before cairn was back (raise RING_MS)"
    );
    assert_eq!(restored_transactions(&net), CALLS as f64);
    // The early dialogs came back with their transactions.
    let d = admin_json(&net, "/dialogs");
    let states = dialog_states(&d);
    assert_eq!(states.len(), CALLS as usize, "{d}");
    assert!(states.values().all(|s| s == "Early"), "{d}");

    let uac = uac.wait();
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(CALLS);
    assert_eq!(responses_to(&uac, 200, "CANCEL"), CALLS as usize, "{uac}");
    assert_eq!(responses_to(&uac, 487, "INVITE"), CALLS as usize, "{uac}");
    gw1.assert_all_ok(CALLS / 2);
    gw2.assert_all_ok(CALLS / 2);
    let mut cancelled = BTreeSet::new();
    for gw in [&gw1, &gw2] {
        let c = assert_cancels_match_invites(gw);
        assert_eq!(c.len(), 25, "each gateway cancels its own 25 calls:\n{gw}");
        cancelled.extend(c);
    }
    assert_eq!(cancelled.len(), CALLS as usize, "50 of 50 CANCELs arrived");
    assert_eq!(assert_one_gateway_per_call(&[&gw1, &gw2]), CALLS as usize);
    // Cancelled: no dialog left.
    wait_for("the early dialogs end", Duration::from_secs(5), || {
        admin_json(&net, "/dialogs")["count"] == 0
    });
}

#[test]
fn fifty_ringing_calls_cancelled_after_sigkill_and_restart_udp() {
    fifty_cancels_across_a_sigkill("buffered");
}

#[test]
fn fifty_ringing_calls_cancelled_after_sigkill_and_restart_strict_udp() {
    fifty_cancels_across_a_sigkill("strict");
}

// ---------------------------------------------------------------------------------------
// 2. The gateways answer while cairn is down
// ---------------------------------------------------------------------------------------

#[test]
fn gateways_answer_while_cairn_is_down_udp() {
    const CALLS: u64 = 50;
    /// How long the gateways ring before they answer: cairn is killed in that window.
    const ANSWER_MS: u64 = 3000;
    let t = Transport::Udp;
    let net = TestNet::new();
    let mut cairn = Cairn::start(&config(&net, t, "buffered", false));
    let answer = scenario("uas_answer.xml");
    let gw1 = Sipp::uas(
        &answer,
        net.addr(ports::UAS1),
        SippOpts::new(t).pause_ms(ANSWER_MS),
    );
    let gw2 = Sipp::uas(
        &answer,
        net.addr(ports::UAS2),
        SippOpts::new(t).pause_ms(ANSWER_MS),
    );
    let uac = Sipp::uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t)
            .calls(CALLS)
            .rate(50.0)
            .timeout(Duration::from_secs(90)),
    );
    wait_for("50 callers hear ringing", Duration::from_secs(30), || {
        uac.count_so_far(received_180) >= CALLS as usize
    });
    wait_records_committed(&net);
    cairn.kill9();
    assert_eq!(
        gw1.count_so_far(sent_invite_200) + gw2.count_so_far(sent_invite_200),
        0,
        "test timing: a gateway answered before cairn was killed (raise ANSWER_MS)"
    );
    // Every gateway answers while cairn is down (and retransmits its 200).
    let answered = |gw: &Sipp| {
        gw.messages_so_far()
            .iter()
            .filter(|m| sent_invite_200(m))
            .filter_map(|m| m.call_id().map(str::to_string))
            .collect::<BTreeSet<_>>()
            .len()
    };
    wait_for(
        "the gateways answer every call while cairn is down",
        Duration::from_secs(20),
        || answered(&gw1) + answered(&gw2) == CALLS as usize,
    );
    assert_eq!(
        uac.count_so_far(|m| m.received && m.status() == Some(200)),
        0
    );
    cairn.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(restored_transactions(&net), CALLS as f64);
    let listed = admin_json(&net, "/transactions");
    let invites = invite_transactions(&listed);
    assert_eq!(invites.len(), CALLS as usize, "{listed}");
    // Restored as they were (ringing); a gateway's 200 retransmission may
    // already have reached the restarted cairn before this listing.
    assert!(
        invites.iter().all(|t| (t["state"] == "Proceeding"
            && t["branches"][0]["state"] == "ringing")
            || (t["state"] == "Accepted" && t["branches"][0]["state"] == "done")),
        "restored as they were: ringing (or already answered)\n{listed}"
    );

    let uac = uac.wait();
    // The 2xx continued the restored transactions (a 2xx without its transaction would
    // be relayed statelessly by its Via, and the restored one would go on ringing).
    let listed = admin_json(&net, "/transactions");
    let invites = invite_transactions(&listed);
    assert_eq!(invites.len(), CALLS as usize, "{listed}");
    assert!(
        invites.iter().all(|t| t["state"] == "Accepted"
            && t["last_status"] == 200
            && t["branches"][0]["state"] == "done"),
        "every restored transaction got its 2xx\n{listed}"
    );
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    // Every 2xx was relayed (the caller ACKed it), every ACK and BYE was routed.
    uac.assert_all_ok(CALLS);
    gw1.assert_all_ok(CALLS / 2);
    gw2.assert_all_ok(CALLS / 2);
    for gw in [&gw1, &gw2] {
        let invites = calls_of(gw, "INVITE");
        let acks = calls_of(gw, "ACK");
        let byes = calls_of(gw, "BYE");
        assert_eq!(invites.len(), 25, "{gw}");
        assert!(
            invites
                .keys()
                .all(|id| acks.contains_key(id) && byes.contains_key(id)),
            "{}: a call without its ACK or BYE\nINVITEs {invites:?}\nACKs {acks:?}\nBYEs {byes:?}",
            gw.name
        );
    }
    assert_eq!(assert_one_gateway_per_call(&[&gw1, &gw2]), CALLS as usize);
    assert_eq!(responses_to(&uac, 200, "BYE"), CALLS as usize, "{uac}");
}

// ---------------------------------------------------------------------------------------
// 3. An INVITE retransmitted after the restart is not routed again
// ---------------------------------------------------------------------------------------

#[test]
fn invite_retransmitted_after_restart_is_absorbed_udp() {
    const CALLS: u64 = 50;
    let t = Transport::Udp;
    let net = TestNet::new();
    let mut cairn = Cairn::start(&config(&net, t, "buffered", false));
    let ring = scenario("uas_ring_then_cancel.xml");
    let gw1 = Sipp::uas(&ring, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&ring, net.addr(ports::UAS2), SippOpts::new(t));
    let uac = Sipp::uac(
        &scenario("restart_uac_retransmit.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t)
            .calls(CALLS)
            .rate(50.0)
            .pause_ms(RING_MS)
            .timeout(Duration::from_secs(90))
            .arg("-nr"),
    );
    wait_for("50 callers hear ringing", Duration::from_secs(30), || {
        uac.count_so_far(received_180) >= CALLS as usize
    });
    wait_records_committed(&net);
    cairn.kill9();
    cairn.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        uac.count_so_far(sent_request("INVITE")),
        CALLS as usize,
        "test timing: an INVITE was retransmitted before cairn was back (raise RING_MS)"
    );
    assert_eq!(restored_transactions(&net), CALLS as f64);

    let uac = uac.wait();
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    // Each caller retransmitted its INVITE after the restart and got its 180 again
    // (restart_uac_retransmit.xml fails the call otherwise), then cancelled.
    uac.assert_all_ok(CALLS);
    assert_eq!(
        uac.sent_requests("INVITE").len(),
        2 * CALLS as usize,
        "{uac}"
    );
    assert_eq!(responses_to(&uac, 487, "INVITE"), CALLS as usize, "{uac}");
    let m = metrics(&net);
    assert!(
        metric(&m, "cairn_retransmissions_received_total") >= CALLS as f64,
        "{m}"
    );
    assert_eq!(metric(&m, "cairn_requests_forwarded_total"), 0.0, "{m}");
    for gw in [&gw1, &gw2] {
        let invites = calls_of(gw, "INVITE");
        assert_eq!(invites.len(), 25, "{gw}");
        assert!(
            invites.values().all(|&n| n == 1),
            "{}: an INVITE routed twice: {invites:?}",
            gw.name
        );
        assert_eq!(assert_cancels_match_invites(gw).len(), 25, "{gw}");
    }
    gw1.assert_all_ok(CALLS / 2);
    gw2.assert_all_ok(CALLS / 2);
    assert_eq!(assert_one_gateway_per_call(&[&gw1, &gw2]), CALLS as usize);
}

// ---------------------------------------------------------------------------------------
// 4. A dialog established before the kill
// ---------------------------------------------------------------------------------------

#[test]
fn dialog_confirmed_before_sigkill_is_listed_and_ended_by_its_bye_udp() {
    const CALLS: u64 = 10;
    let t = Transport::Udp;
    let net = TestNet::new();
    let mut cairn = Cairn::start(&config(&net, t, "buffered", true));
    let answer = scenario("uas_answer.xml");
    let gw1 = Sipp::uas(&answer, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&answer, net.addr(ports::UAS2), SippOpts::new(t));
    // Talk for 6 s between ACK and BYE: the kill and the restart happen meanwhile.
    let uac = Sipp::uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t)
            .calls(CALLS)
            .rate(10.0)
            .pause_ms(6000)
            .timeout(Duration::from_secs(60)),
    );
    let acked = |gw: &Sipp| gw.count_so_far(|m| m.received && m.method() == Some("ACK"));
    wait_for(
        "10 calls answered and ACKed",
        Duration::from_secs(30),
        || acked(&gw1) + acked(&gw2) >= CALLS as usize,
    );
    let before = dialog_states(&admin_json(&net, "/dialogs"));
    assert_eq!(before.len(), CALLS as usize, "{before:?}");
    assert!(before.values().all(|s| s == "Confirmed"), "{before:?}");
    wait_records_committed(&net);
    cairn.kill9();
    cairn.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        uac.count_so_far(sent_request("BYE")),
        0,
        "test timing: a BYE was sent before cairn was back"
    );
    // Listed after the restart: the same dialogs, confirmed, counted per destination.
    let after = admin_json(&net, "/dialogs");
    assert_eq!(dialog_states(&after), before, "{after}");
    assert_eq!(after["count"], CALLS, "{after}");
    let per_dest: u64 = after["per_destination"]
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(per_dest, CALLS, "{after}");
    let m = metrics(&net);
    assert_eq!(
        metric(&m, "cairn_records_restored{space=\"dialogs\"}"),
        CALLS as f64
    );
    assert_eq!(metric(&m, "cairn_dialogs"), CALLS as f64);

    let uac = uac.wait();
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(CALLS);
    gw1.assert_all_ok(CALLS / 2);
    gw2.assert_all_ok(CALLS / 2);
    let byes: BTreeSet<String> = [&gw1, &gw2]
        .iter()
        .flat_map(|gw| calls_of(gw, "BYE").into_keys())
        .collect();
    assert_eq!(
        byes,
        before.keys().cloned().collect::<BTreeSet<_>>(),
        "every BYE routed"
    );
    assert_eq!(responses_to(&uac, 200, "BYE"), CALLS as usize, "{uac}");
    wait_for("the BYEs end the dialogs", Duration::from_secs(5), || {
        admin_json(&net, "/dialogs")["count"] == 0
    });
    let m = metrics(&net);
    assert_eq!(
        metric(&m, "cairn_dialog_events_total{event=\"ended\"}"),
        CALLS as f64,
        "{m}"
    );
}

// ---------------------------------------------------------------------------------------
// 4b. Timers resume from their stored deadlines
// ---------------------------------------------------------------------------------------

/// A rule's ring timeout (4 s) started before the kill fires at its stored deadline after
/// the restart, not 4 s after the restart: every branch is CANCELed with the no-answer
/// Reason and every caller gets 408.
#[test]
fn ring_timeout_fires_at_its_stored_deadline_after_restart_udp() {
    const CALLS: u64 = 10;
    const RING_TIMEOUT_MS: u64 = 4000;
    let t = Transport::Udp;
    let net = TestNet::new();
    let routing = format!(
        "[[destination_set]]\nname = \"gateways\"\nalgorithm = \"round_robin\"\n\
         failover_on_timeout = false\ndestinations = [\n    {{ uri = \"sip:{ip}:{p1}\" }},\n    \
         {{ uri = \"sip:{ip}:{p2}\" }},\n]\n\n[[rule]]\nname = \"ringing\"\nmethods = [\"INVITE\"]\n\
         destination_set = \"gateways\"\nring_timeout_ms = {RING_TIMEOUT_MS}\n\n",
        ip = net.ip,
        p1 = ports::UAS1,
        p2 = ports::UAS2
    );
    let cfg = format!(
        "{}\n[store]\npath = \"state\"\n\n[admin]\nlisten = \"{}\"\n",
        cairn_config(&net, DEFAULT_TIMERS, &routing),
        net.addr(ADMIN)
    );
    let mut cairn = Cairn::start(&cfg);
    let ring = scenario("uas_ring_then_cancel.xml");
    let gw1 = Sipp::uas(&ring, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&ring, net.addr(ports::UAS2), SippOpts::new(t));
    let started = Instant::now();
    let uac = Sipp::uac(
        &uac_expect(408),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t)
            .calls(CALLS)
            .rate(50.0)
            .timeout(Duration::from_secs(60)),
    );
    wait_for("10 callers hear ringing", Duration::from_secs(20), || {
        uac.count_so_far(received_180) >= CALLS as usize
    });
    wait_records_committed(&net);
    cairn.kill9();
    // Down for a while: a timer restarted from the restore would fire 4 s after it.
    std::thread::sleep(Duration::from_millis(1000));
    cairn.restart().unwrap_or_else(|e| panic!("{e}"));
    let restarted = started.elapsed();
    assert_eq!(restored_transactions(&net), CALLS as f64);
    let cancels = |gw: &Sipp| gw.count_so_far(|m| m.received && m.method() == Some("CANCEL"));
    wait_for(
        "the ring timeouts CANCEL every branch",
        Duration::from_secs(15),
        || cancels(&gw1) + cancels(&gw2) >= CALLS as usize,
    );
    let cancelled_at = started.elapsed();
    // The last INVITE left about 0.2 s after `started`; its deadline is 4 s later. From
    // the restart it would be at least `restarted` + 4 s.
    assert!(
        cancelled_at
            < restarted + Duration::from_millis(RING_TIMEOUT_MS) - Duration::from_millis(500),
        "the ring timeouts fired {cancelled_at:?} after the first call, the restart was done at \
         {restarted:?}: timers restarted instead of resuming"
    );
    let uac = uac.wait();
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(CALLS);
    for gw in [&gw1, &gw2] {
        assert_eq!(assert_cancels_match_invites(gw).len(), 5, "{gw}");
        for c in gw.received_requests("CANCEL") {
            assert_eq!(
                c.header_list("Reason"),
                [r#"SIP;cause=480;text="NO_ANSWER""#],
                "{}",
                c.text
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5. Crash loop under load
// ---------------------------------------------------------------------------------------

/// A small deterministic generator (the seed is printed, `CAIRN_CRASH_SEED` replays it).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

#[test]
fn crash_loop_under_load_never_misroutes_udp() {
    /// Calls per caller: 2 callers at 10 calls/s each, 20 s.
    const CALLS: u64 = 200;
    const MIN_KILLS: usize = 5;
    let t = Transport::Udp;
    let seed = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash loop: CAIRN_CRASH_SEED={seed}");
    let mut rng = Lcg(seed);
    let net = TestNet::new();
    // A CANCEL that matches no INVITE is forwarded by the rules (round robin) instead of
    // answered 481: if a restart lost an INVITE's record, its CANCEL would go to either
    // gateway, and the traces would show it.
    let cfg = config_with(
        &net,
        t,
        "buffered",
        true,
        "[[rule]]\nname = \"unmatched-cancels\"\nmethods = [\"CANCEL\"]\n\
         destination_set = \"gateways\"\n\n[cancel]\nunmatched = \"forward\"\n\n",
    );
    let mut cairn = Cairn::start(&cfg);
    let mixed = scenario("restart_uas_mixed.xml");
    let gw_opts = SippOpts::new(t).timeout(Duration::from_secs(240));
    let gw1 = Sipp::uas(&mixed, net.addr(ports::UAS1), gw_opts.clone());
    let gw2 = Sipp::uas(&mixed, net.addr(ports::UAS2), gw_opts);
    // A call that gets stuck fails after 40 s (-recv_timeout) instead of holding the run
    // until the -timeout.
    let uac_opts = |service: &str| {
        SippOpts::new(t)
            .service(service)
            .calls(CALLS)
            .rate(10.0)
            .timeout(Duration::from_secs(150))
            .arg("-recv_timeout")
            .arg("40000")
    };
    let hangups = Sipp::uac(
        &scenario("restart_uac_hangup.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        uac_opts("cancel"),
    );
    let answered = Sipp::uac(
        &scenario("uac_call.xml"),
        net.addr(5073),
        net.cairn(),
        uac_opts("answer"),
    );
    let start = Instant::now();
    let mut kills = Vec::new();
    while start.elapsed() < Duration::from_secs(21) && kills.len() < 12 {
        std::thread::sleep(Duration::from_millis(rng.range(1200, 3200)));
        let up = cairn.pid();
        cairn.kill9();
        let down = rng.range(0, 400);
        kills.push((start.elapsed().as_millis(), up, down));
        std::thread::sleep(Duration::from_millis(down));
        cairn.restart().unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("crash loop: kills at (ms, pid, ms down): {kills:?}");
    assert!(kills.len() >= MIN_KILLS, "only {} kills", kills.len());

    let (hangups, answered) = (hangups.wait(), answered.wait());
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    eprintln!(
        "crash loop: cancelled calls {} ok / {} failed, answered calls {} ok / {} failed, \
         gateways {} and {} calls",
        hangups.successful,
        hangups.failed,
        answered.successful,
        answered.failed,
        gw1.created,
        gw2.created
    );
    // The properties: no CANCEL misrouted, no INVITE at two gateways.
    let mut cancelled = BTreeSet::new();
    for gw in [&gw1, &gw2] {
        cancelled.extend(assert_cancels_match_invites(gw));
    }
    let routed = assert_one_gateway_per_call(&[&gw1, &gw2]);
    // Every CANCEL a gateway got belongs to a caller that hung up.
    let hung_up: BTreeSet<String> = hangups
        .sent_requests("CANCEL")
        .iter()
        .filter_map(|m| m.call_id().map(str::to_string))
        .collect();
    assert!(
        cancelled.is_subset(&hung_up),
        "CANCELs for calls nobody cancelled: {:?}",
        cancelled.difference(&hung_up).collect::<Vec<_>>()
    );
    // And the load was real: every call reached a gateway.
    assert_eq!(routed, 2 * CALLS as usize, "calls that reached a gateway");
    // Every call placed had its outcome, as if nothing had happened.
    assert!(
        hangups.successful == CALLS && answered.successful == CALLS,
        "calls failed across the restarts (seed {seed}):\n{hangups}\n{answered}"
    );
}

// ---------------------------------------------------------------------------------------
// 6. A corrupt store
// ---------------------------------------------------------------------------------------

/// Bytes that are no store file of any kind.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut g = Lcg(seed);
    (0..len).map(|_| g.next() as u8).collect()
}

/// The state store was unreadable: cairn says so (one `ERROR` line naming where the
/// store went), moves it aside next to its path, `dir/state`, starts empty and proxies.
#[track_caller]
fn assert_moved_aside_and_proxies(
    cairn: &Cairn,
    dir: &std::path::Path,
    net: &TestNet,
    t: Transport,
) {
    let aside: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.broken-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the broken store is kept aside, once: {aside:?}"
    );
    let log = cairn.log();
    let line = log
        .lines()
        .find(|l| l.contains("the state store was unreadable: started empty"))
        .unwrap_or_else(|| panic!("no log line about the unreadable store:\n{log}"));
    assert!(
        line.contains("ERROR") && line.contains("moved_to") && line.contains(&aside[0]),
        "the line names the level and where the store went: {line}"
    );
    let m = metrics(net);
    assert_eq!(
        metric(&m, "cairn_records_restored{space=\"transactions\"}"),
        0.0
    );
    assert_eq!(metric(&m, "cairn_records_restored{space=\"dialogs\"}"), 0.0);

    let answer = scenario("uas_answer.xml");
    let gw1 = Sipp::uas(&answer, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&answer, net.addr(ports::UAS2), SippOpts::new(t));
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(10).rate(20.0),
    );
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(10);
    gw1.assert_all_ok(5);
    gw2.assert_all_ok(5);
    let m = metrics(net);
    assert_eq!(metric(&m, "cairn_store_commit_errors_total"), 0.0, "{m}");
    assert!(metric(&m, "cairn_store_commits_total") > 0.0, "{m}");
}

/// A store directory filled with garbage before the first start.
#[test]
fn garbage_store_is_moved_aside_and_cairn_proxies_udp() {
    let t = Transport::Udp;
    let net = TestNet::new();
    // The config's store path is absolute here: the directory must exist, full of
    // garbage, before cairn first starts.
    let dir = test_dir("garbage-store");
    let store = dir.join("state");
    std::fs::create_dir_all(store.join("keyspaces/1")).unwrap();
    std::fs::write(store.join("version"), garbage(64, 1)).unwrap();
    std::fs::write(store.join("0.jnl"), garbage(100_000, 2)).unwrap();
    std::fs::write(store.join("keyspaces/1/0"), garbage(10_000, 3)).unwrap();
    let cfg = config(&net, t, "buffered", true).replace(
        "path = \"state\"",
        &format!("path = \"{}\"", store.display()),
    );
    let cairn = Cairn::start(&cfg);
    assert_moved_aside_and_proxies(&cairn, &dir, &net, t);
    let aside = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("state.broken-"))
        .unwrap();
    assert_eq!(
        std::fs::read(aside.path().join("version")).unwrap(),
        garbage(64, 1),
        "the garbage is kept aside, untouched"
    );
}

/// A real store, from a run with calls in flight, damaged after a SIGKILL (its version
/// marker and journal overwritten): the restart moves it aside and proxies, over TCP.
#[test]
fn damaged_store_is_moved_aside_on_restart_and_cairn_proxies_tcp() {
    let t = Transport::Tcp;
    let net = TestNet::new();
    let mut cairn = Cairn::start(&config(&net, t, "buffered", true));
    // Some records: calls ringing (over UDP, which survives the kill; irrelevant here).
    let ring = scenario("uas_ring_then_cancel.xml");
    let gw = Sipp::uas(&ring, net.addr(ports::UAS1), SippOpts::new(Transport::Tcp));
    let uac = Sipp::uac(
        &scenario("restart_uac_cancel.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(Transport::Tcp)
            .calls(4)
            .rate(20.0)
            .pause_ms(30_000)
            .timeout(Duration::from_secs(5)),
    );
    wait_for("4 callers hear ringing", Duration::from_secs(20), || {
        uac.count_so_far(received_180) >= 4
    });
    wait_records_committed(&net);
    cairn.kill9();
    drop(uac);
    drop(gw);
    let store = cairn.dir.join("state");
    assert!(
        store.join("version").is_file(),
        "no store at {}",
        store.display()
    );
    std::fs::write(store.join("version"), garbage(16, 4)).unwrap();
    for e in std::fs::read_dir(&store).unwrap().filter_map(|e| e.ok()) {
        if e.file_name().to_string_lossy().ends_with(".jnl") {
            std::fs::write(e.path(), garbage(4096, 5)).unwrap();
        }
    }
    cairn.restart().unwrap_or_else(|e| panic!("{e}"));
    let dir = cairn.dir.clone();
    assert_moved_aside_and_proxies(&cairn, &dir, &net, t);
}

// ---------------------------------------------------------------------------------------
// 7. A TCP caller after the restart (plain sockets)
// ---------------------------------------------------------------------------------------

/// A TCP connection from `ip` (any port) to `to`: bound first, so that the caller's
/// source address is the test's own.
fn tcp_connect_from(ip: std::net::IpAddr, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip, 0)).unwrap();
        sock.connect(to).await
    });
    let s = s
        .unwrap_or_else(|e| panic!("connect {to}: {e}"))
        .into_std()
        .unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// Reads SIP messages from a stream (framed by Content-Length).
struct SipReader {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl SipReader {
    fn new(stream: TcpStream) -> SipReader {
        SipReader {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next message within `timeout`; `None` on timeout or when the peer closed.
    fn next(&mut self, timeout: Duration) -> Option<SipMsg> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let m = SipMsg::parse(&head, true);
                let len: usize = m
                    .header("Content-Length")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let text = String::from_utf8_lossy(&self.buf[..end + 4 + len]).into_owned();
                    self.buf.drain(..end + 4 + len);
                    return Some(SipMsg::parse(&text, true));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// Skips messages until one satisfies `pred`.
    fn until(&mut self, timeout: Duration, pred: impl Fn(&SipMsg) -> bool) -> Option<SipMsg> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.next(deadline.saturating_duration_since(Instant::now()))?;
            if pred(&m) {
                return Some(m);
            }
        }
    }
}

/// A TCP caller rings a gateway through cairn; cairn is SIGKILLed (the caller's
/// connection dies with it) and restarted; the caller connects again and CANCELs.
///
/// cairn must then send the INVITE's 487 somewhere the caller can get it. RFC 3261
/// 18.2.2: when the connection the request came on is gone, the server "SHOULD open a
/// connection to the IP address in the received parameter, if present, using the port in
/// the sent-by value" — here the caller's listening socket at its Via sent-by, 5070.
#[test]
fn tcp_caller_gets_its_487_after_restart() {
    let net = TestNet::new();
    let mut cairn = Cairn::start(&config(&net, Transport::Udp, "buffered", false));
    let gw = Sipp::uas(
        &scenario("uas_ring_then_cancel.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(Transport::Udp),
    );
    // The caller listens at its Via sent-by and calls from another port.
    let sent_by = net.addr(ports::UAC);
    let listener = TcpListener::bind(sent_by).unwrap();
    listener.set_nonblocking(true).unwrap();
    let call = token();
    let branch = format!("z9hG4bK-{call}");
    let ruri = format!("sip:bob@{}", net.cairn());
    let head = |method: &str| {
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP {sent_by};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{sent_by}>;tag=a-{call}\r\nTo: <{ruri}>\r\n\
             Call-ID: {call}\r\nCSeq: 1 {method}\r\n"
        )
    };
    let invite = format!(
        "{}Contact: <sip:alice@{sent_by};transport=tcp>\r\nContent-Length: 0\r\n\r\n",
        head("INVITE")
    );
    let mut c1 = tcp_connect_from(net.ip, net.cairn());
    c1.write_all(invite.as_bytes()).unwrap();
    let mut r1 = SipReader::new(c1.try_clone().unwrap());
    r1.until(Duration::from_secs(10), |m| m.status() == Some(180))
        .expect("the caller hears ringing");
    wait_records_committed(&net);
    cairn.kill9();
    assert!(
        r1.next(Duration::from_secs(2)).is_none(),
        "connection closed"
    );
    drop((r1, c1));
    cairn.restart().unwrap_or_else(|e| panic!("{e}"));

    let mut c2 = tcp_connect_from(net.ip, net.cairn());
    let cancel = format!("{}Content-Length: 0\r\n\r\n", head("CANCEL"));
    c2.write_all(cancel.as_bytes()).unwrap();
    let mut r2 = SipReader::new(c2.try_clone().unwrap());
    let ok = r2.until(Duration::from_secs(5), |m| m.status().is_some());
    assert_eq!(
        ok.as_ref().and_then(|m| m.status()),
        Some(200),
        "200 to the CANCEL on its connection: {ok:?}"
    );
    // The 487: on the new connection, or on a connection cairn opens to the sent-by.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut accepted: Vec<SipReader> = Vec::new();
    let mut got = None;
    while Instant::now() < deadline && got.is_none() {
        if let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(false).unwrap();
            accepted.push(SipReader::new(s));
        }
        for r in std::iter::once(&mut r2).chain(accepted.iter_mut()) {
            if let Some(m) = r.next(Duration::from_millis(50)) {
                if m.status() == Some(487) {
                    got = Some(m);
                }
            }
        }
    }
    let gw = gw.stop();
    assert_eq!(
        assert_cancels_match_invites(&gw).len(),
        1,
        "the CANCEL reached the gateway:\n{gw}"
    );
    assert!(
        got.is_some(),
        "the TCP caller never got its 487 after the restart ({} connection(s) accepted at \
         its sent-by)",
        accepted.len()
    );
}
