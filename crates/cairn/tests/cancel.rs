//! CANCEL done right (issue 4), end to end: the real cairn binary between real SIPp
//! callers and gateways, over UDP and TCP, with a real HTTP routing service (hyper)
//! started by the test for the rules that look their destinations up.
//!
//! * 100 ringing calls spread over two gateways by round robin, every caller hangs up:
//!   each CANCEL reaches the gateway that holds its INVITE, with that INVITE's
//!   Request-URI, branch and CSeq number; every caller gets 200 for its CANCEL and 487.
//! * A CANCEL sent 1 ms after the INVITE while the HTTP lookup takes 200 ms: no INVITE
//!   ever reaches a gateway, the caller gets 487.
//! * HTTP lookups that route, answer with a code, fail over to the fallback set, time out.
//! * The Reason header: "Call completed elsewhere" on the losing branch of a parallel fork,
//!   the caller's Reasons preserved (or replaced), a rule's own Reason, the ring timeout's
//!   480.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const ELSEWHERE: &str = r#"SIP;cause=200;text="Call completed elsewhere""#;
const NO_ANSWER: &str = r#"SIP;cause=480;text="NO_ANSWER""#;
const ORIGINATOR: &str = r#"SIP;cause=487;text="ORIGINATOR_CANCEL""#;
const CALLER_Q850: &str = r#"Q.850;cause=16;text="Normal call clearing""#;
const CALLER_SIP: &str = r#"SIP;cause=487;text="Caller hung up""#;

// ---------------------------------------------------------------------------------------
// The HTTP routing service
// ---------------------------------------------------------------------------------------

type Answer = dyn Fn(&Value) -> (u16, String) + Send + Sync;

/// A routing service: an HTTP/1.1 server (hyper) on its own thread and runtime, that
/// records every JSON request, waits `delay`, then answers what `answer` says.
struct RoutingService {
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    answered: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RoutingService {
    fn start(
        addr: SocketAddr,
        delay: Duration,
        answer: impl Fn(&Value) -> (u16, String) + Send + Sync + 'static,
    ) -> RoutingService {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let answer: Arc<Answer> = Arc::new(answer);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (reqs, done) = (requests.clone(), answered.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .unwrap_or_else(|e| panic!("routing service: bind {addr}: {e}"));
                ready_tx.send(()).unwrap();
                loop {
                    let stream = tokio::select! {
                        s = listener.accept() => match s {
                            Ok((s, _)) => s,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => break,
                    };
                    let (reqs, done, answer) = (reqs.clone(), done.clone(), answer.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<Incoming>| {
                            let (reqs, done, answer) = (reqs.clone(), done.clone(), answer.clone());
                            async move {
                                let ok_method = req.method() == hyper::Method::POST;
                                let json_type = req
                                    .headers()
                                    .get(hyper::header::CONTENT_TYPE)
                                    .is_some_and(|v| v == "application/json");
                                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                let v: Value = body
                                    .ok()
                                    .and_then(|b| serde_json::from_slice(&b).ok())
                                    .unwrap_or(Value::Null);
                                reqs.lock().unwrap().push(v.clone());
                                tokio::time::sleep(delay).await;
                                let (code, text) = if ok_method && json_type {
                                    answer(&v)
                                } else {
                                    (400, "expected a JSON POST".into())
                                };
                                done.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(StatusCode::from_u16(code).unwrap())
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(text)))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("routing service did not start");
        RoutingService {
            url: format!("http://{addr}/route"),
            requests,
            answered,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A service answering every request with these targets (serial).
    fn targets(addr: SocketAddr, delay: Duration, targets: &[String]) -> RoutingService {
        let body = json!({ "targets": targets }).to_string();
        RoutingService::start(addr, delay, move |_| (200, body.clone()))
    }

    fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for RoutingService {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// `sip:IP:PORT[;transport=tcp]` of a gateway of this test.
fn gw_uri(net: &TestNet, t: Transport, port: u16) -> String {
    format!("sip:{}:{port}{}", net.ip, t.uri_param())
}

/// A destination set `name` of the gateways at `ports`, and a rule for INVITEs with the
/// action `action` (TOML lines) plus `extra` rule keys.
fn set_and_rule(
    net: &TestNet,
    t: Transport,
    algorithm: &str,
    ports: &[u16],
    action: &str,
    extra: &str,
) -> String {
    let dests: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "    {{ uri = \"{}\", priority = {i} }},",
                gw_uri(net, t, *p)
            )
        })
        .collect();
    format!(
        "[[destination_set]]\nname = \"gateways\"\nalgorithm = \"{algorithm}\"\n\
         destinations = [\n{}\n]\n\n\
         [[rule]]\nname = \"calls\"\nmethods = [\"INVITE\"]\n{action}\n{extra}\n",
        dests.join("\n")
    )
}

/// The Reason values of a message, every header line and comma-separated value apart.
fn reasons(m: &SipMsg) -> Vec<String> {
    m.header_list("Reason")
}

/// Responses of `code` to `method` that a SIPp received.
fn responses_to(r: &SippResult, code: u16, method: &str) -> usize {
    r.received_responses(code)
        .into_iter()
        .filter(|m| m.cseq().is_some_and(|c| c.1 == method))
        .count()
}

// ---------------------------------------------------------------------------------------
// 100 calls, round robin, every caller cancels
// ---------------------------------------------------------------------------------------

fn hundred_cancels_on_round_robin(t: Transport) {
    const CALLS: u64 = 100;
    let net = TestNet::new();
    let routing = set_and_rule(
        &net,
        t,
        "round_robin",
        &[ports::UAS1, ports::UAS2],
        "destination_set = \"gateways\"",
        "",
    );
    let cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let gw1 = Sipp::uas(
        &scenario("uas_ring_then_cancel.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let gw2 = Sipp::uas(
        &scenario("uas_ring_then_cancel.xml"),
        net.addr(ports::UAS2),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_cancel.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t)
            .calls(CALLS)
            .rate(50.0)
            .timeout(Duration::from_secs(60)),
    );
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(CALLS);
    assert_eq!(responses_to(&uac, 200, "CANCEL"), CALLS as usize, "{uac}");
    assert_eq!(responses_to(&uac, 487, "INVITE"), CALLS as usize, "{uac}");
    gw1.assert_all_ok(CALLS / 2);
    gw2.assert_all_ok(CALLS / 2);
    assert_eq!((gw1.created, gw2.created), (50, 50), "{gw1}\n{gw2}");

    let mut cancelled_calls = Vec::new();
    for gw in [&gw1, &gw2] {
        let pairs = cancels_with_invites(gw);
        assert_eq!(
            pairs.len(),
            50,
            "each gateway cancels its own 50 calls:\n{gw}"
        );
        for (c, inv) in &pairs {
            assert_cancel_matches(c, inv);
            assert_eq!(reasons(c), [ORIGINATOR], "{}", c.text);
            cancelled_calls.push(c.call_id().unwrap().to_string());
        }
    }
    cancelled_calls.sort();
    cancelled_calls.dedup();
    assert_eq!(
        cancelled_calls.len(),
        CALLS as usize,
        "every call cancelled exactly once"
    );
    let sent: Vec<String> = uac
        .sent_requests("CANCEL")
        .iter()
        .filter_map(|m| m.call_id().map(str::to_string))
        .collect();
    for id in &sent {
        assert!(
            cancelled_calls.contains(id),
            "the CANCEL of {id} reached no gateway"
        );
    }
    drop(cairn);
}

#[test]
fn hundred_cancels_reach_the_gateway_of_their_invite_udp() {
    hundred_cancels_on_round_robin(Transport::Udp);
}

#[test]
fn hundred_cancels_reach_the_gateway_of_their_invite_tcp() {
    hundred_cancels_on_round_robin(Transport::Tcp);
}

// ---------------------------------------------------------------------------------------
// HTTP lookups and the race with a CANCEL
// ---------------------------------------------------------------------------------------

fn lookup_action(url: &str, timeout_ms: u64, more: &str) -> String {
    format!("lookup = {{ url = \"{url}\", timeout_ms = {timeout_ms}{more} }}")
}

/// The CANCEL arrives 1 ms after the INVITE, while the routing lookup takes 200 ms: cairn
/// answers 200 and 487 at once and never forwards the INVITE when the lookup answers.
fn cancel_during_lookup(t: Transport) {
    const CALLS: u64 = 10;
    let net = TestNet::new();
    let service = RoutingService::targets(
        net.addr(8080),
        Duration::from_millis(200),
        &[gw_uri(&net, t, ports::UAS1)],
    );
    let routing = set_and_rule(
        &net,
        t,
        "priority",
        &[ports::UAS2],
        &lookup_action(&service.url, 2000, ", fallback = \"gateways\""),
        "",
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let gw1 = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let gw2 = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS2),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario("cancel_uac_immediate.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(CALLS).rate(20.0),
    );
    uac.assert_all_ok(CALLS);
    assert_eq!(responses_to(&uac, 200, "CANCEL"), CALLS as usize, "{uac}");
    assert_eq!(responses_to(&uac, 487, "INVITE"), CALLS as usize, "{uac}");
    // Every lookup was made and answered (with a gateway to send to) ...
    assert!(
        wait_until(Duration::from_secs(5), || service.answered()
            == CALLS as usize),
        "{} of {CALLS} lookups answered",
        service.answered()
    );
    assert_eq!(service.requests().len(), CALLS as usize);
    // ... give cairn time to act on the last answers, then: no INVITE anywhere.
    std::thread::sleep(Duration::from_millis(500));
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    for gw in [&gw1, &gw2] {
        assert_eq!(gw.created, 0, "no INVITE may reach a gateway:\n{gw}");
        assert!(gw.received_requests("INVITE").is_empty(), "{gw}");
    }
    // The CANCEL was sent right after the 100, long before the lookup's answer.
    for m in uac.received_responses(487) {
        assert!(
            m.header("To").is_some_and(|to| to.contains("tag=")),
            "{}",
            m.text
        );
    }
}

#[test]
fn cancel_1ms_after_invite_during_a_200ms_lookup_tcp() {
    cancel_during_lookup(Transport::Tcp);
}

#[test]
fn cancel_1ms_after_invite_during_a_200ms_lookup_udp() {
    cancel_during_lookup(Transport::Udp);
}

/// The control case of the race: the lookup answers, the call goes where it says, and a
/// caller's CANCEL then follows the INVITE there. The service sees the call's key fields.
fn lookup_routes_the_call_and_its_cancel(t: Transport) {
    let net = TestNet::new();
    let service = RoutingService::targets(
        net.addr(8080),
        Duration::from_millis(50),
        &[gw_uri(&net, t, ports::UAS2)],
    );
    let routing = set_and_rule(
        &net,
        t,
        "priority",
        &[ports::UAS1],
        &lookup_action(&service.url, 2000, ", fallback = \"gateways\""),
        "",
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let gw1 = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let gw2 = Sipp::uas(
        &scenario("uas_ring_then_cancel.xml"),
        net.addr(ports::UAS2),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_cancel.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(3).rate(10.0),
    );
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(3);
    gw2.assert_all_ok(3);
    assert_eq!(gw1.created, 0, "the fallback set is not used:\n{gw1}");
    for (c, inv) in cancels_with_invites(&gw2) {
        assert_cancel_matches(&c, &inv);
    }
    let reqs = service.requests();
    assert_eq!(reqs.len(), 3);
    let inv = uac.sent_requests("INVITE")[0];
    let r = reqs
        .iter()
        .find(|r| r["call_id"].as_str() == inv.call_id())
        .unwrap_or_else(|| panic!("no lookup for {:?}: {reqs:?}", inv.call_id()));
    assert_eq!(r["method"], "INVITE");
    assert_eq!(r["request_uri"].as_str(), inv.request_uri());
    assert_eq!(r["from"], format!("sip:sipp@{}", net.addr(ports::UAC)));
    assert!(r["to"].as_str().unwrap().starts_with("sip:service@"), "{r}");
    assert!(r["from_tag"].as_str().unwrap().contains("SIPpTag00"), "{r}");
    assert_eq!(r["source"], net.addr(ports::UAC).to_string());
    assert_eq!(r["transport"], t.via_name().to_ascii_lowercase());
}

#[test]
fn lookup_routes_the_call_and_its_cancel_udp() {
    lookup_routes_the_call_and_its_cancel(Transport::Udp);
}

#[test]
fn lookup_routes_the_call_and_its_cancel_tcp() {
    lookup_routes_the_call_and_its_cancel(Transport::Tcp);
}

/// The service answers with a response code, fails (HTTP 500), or is too slow: the caller
/// gets the code; the fallback set takes the call; the rule's failure response.
#[test]
fn lookup_answers_code_fallback_and_timeout_udp() {
    let t = Transport::Udp;
    // A code.
    let net = TestNet::new();
    let service = RoutingService::start(net.addr(8080), Duration::ZERO, |_| {
        (200, json!({"code": 486, "reason": "Busy Here"}).to_string())
    });
    let routing = set_and_rule(
        &net,
        t,
        "priority",
        &[ports::UAS1],
        &lookup_action(&service.url, 1000, ", fallback = \"gateways\""),
        "",
    );
    let cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let uac = Sipp::run_uac(
        &uac_expect(486),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(2).rate(10.0),
    );
    uac.assert_all_ok(2);
    drop((cairn, service));

    // HTTP 500: the fallback set answers.
    let net = TestNet::new();
    let service = RoutingService::start(net.addr(8080), Duration::ZERO, |_| (500, "oops".into()));
    let routing = set_and_rule(
        &net,
        t,
        "priority",
        &[ports::UAS1],
        &lookup_action(&service.url, 1000, ", fallback = \"gateways\""),
        "",
    );
    let cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let gw = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(2).rate(10.0),
    );
    let gw = gw.stop();
    uac.assert_all_ok(2);
    gw.assert_all_ok(2);
    assert_eq!(service.requests().len(), 2);
    assert!(
        cairn.log().contains("routing lookup failed") && cairn.log().contains("HTTP status 500"),
        "the failure is logged with its cause:\n{}",
        cairn.log()
    );
    drop((cairn, service));

    // Too slow (500 ms for a 100 ms timeout), no fallback: the failure response.
    let net = TestNet::new();
    let service = RoutingService::targets(
        net.addr(8080),
        Duration::from_millis(500),
        &[gw_uri(&net, t, ports::UAS1)],
    );
    let routing = set_and_rule(
        &net,
        t,
        "priority",
        &[ports::UAS1],
        &lookup_action(
            &service.url,
            100,
            ", failure = { code = 480, reason = \"Routing Down\" }",
        ),
        "",
    );
    let cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let gw = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &uac_expect(480),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(2).rate(10.0),
    );
    uac.assert_all_ok(2);
    let r = uac.received_responses(480)[0];
    assert!(r.first_line().ends_with("Routing Down"), "{}", r.text);
    std::thread::sleep(Duration::from_millis(600));
    let gw = gw.stop();
    assert_eq!(gw.created, 0, "a late answer is not used:\n{gw}");
    assert!(
        cairn.log().contains("no answer within 100 ms"),
        "{}",
        cairn.log()
    );
}

// ---------------------------------------------------------------------------------------
// The Reason header
// ---------------------------------------------------------------------------------------

/// Parallel fork: gateway 1 rings 500 ms and answers, gateway 2 rings until cancelled and
/// gets "Call completed elsewhere".
fn parallel_fork_completed_elsewhere(t: Transport) {
    let net = TestNet::new();
    let routing = set_and_rule(
        &net,
        t,
        "parallel",
        &[ports::UAS1, ports::UAS2],
        "destination_set = \"gateways\"",
        "",
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let winner = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t).pause_ms(500),
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
    assert!(winner.received_requests("CANCEL").is_empty(), "{winner}");
    let pairs = cancels_with_invites(&loser);
    assert_eq!(pairs.len(), 2, "{loser}");
    for (c, inv) in &pairs {
        assert_cancel_matches(c, inv);
        assert_eq!(reasons(c), [ELSEWHERE], "{}", c.text);
    }
}

#[test]
fn parallel_fork_loser_gets_call_completed_elsewhere_udp() {
    parallel_fork_completed_elsewhere(Transport::Udp);
}

#[test]
fn parallel_fork_loser_gets_call_completed_elsewhere_tcp() {
    parallel_fork_completed_elsewhere(Transport::Tcp);
}

/// One ringing gateway, callers cancel with `uac`; returns the Reasons of each CANCEL the
/// gateway got.
fn cancel_reasons_at_gateway(
    t: Transport,
    uac_scenario: &str,
    cancel_section: &str,
    rule_extra: &str,
) -> Vec<Vec<String>> {
    let net = TestNet::new();
    let routing = format!(
        "{cancel_section}\n{}",
        set_and_rule(
            &net,
            t,
            "priority",
            &[ports::UAS1],
            "destination_set = \"gateways\"",
            rule_extra,
        )
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let gw = Sipp::uas(
        &scenario("uas_ring_then_cancel.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario(uac_scenario),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(2).rate(10.0),
    );
    let gw = gw.stop();
    uac.assert_all_ok(2);
    gw.assert_all_ok(2);
    let pairs = cancels_with_invites(&gw);
    assert_eq!(pairs.len(), 2, "{gw}");
    pairs
        .iter()
        .map(|(c, inv)| {
            assert_cancel_matches(c, inv);
            reasons(c)
        })
        .collect()
}

fn callers_reason_preserved(t: Transport) {
    for r in cancel_reasons_at_gateway(t, "cancel_uac_with_reason.xml", "", "") {
        assert_eq!(
            r,
            [CALLER_Q850, CALLER_SIP],
            "both values, in order, intact"
        );
    }
    // Configured to replace it: cairn's own.
    for r in cancel_reasons_at_gateway(
        t,
        "cancel_uac_with_reason.xml",
        "[cancel]\ncaller_reason = \"replace\"\n",
        "",
    ) {
        assert_eq!(r, [ORIGINATOR]);
    }
}

#[test]
fn callers_reason_preserved_downstream_udp() {
    callers_reason_preserved(Transport::Udp);
}

#[test]
fn callers_reason_preserved_downstream_tcp() {
    callers_reason_preserved(Transport::Tcp);
}

fn rules_own_reason(t: Transport) {
    let custom = r#"SIP;cause=487;text="Cancelled by the carrier rule""#;
    for r in cancel_reasons_at_gateway(
        t,
        "uac_cancel.xml",
        "",
        &format!("cancel_reason = '{custom}'"),
    ) {
        assert_eq!(r, [custom]);
    }
}

#[test]
fn rules_own_reason_on_a_caller_cancel_udp() {
    rules_own_reason(Transport::Udp);
}

#[test]
fn rules_own_reason_on_a_caller_cancel_tcp() {
    rules_own_reason(Transport::Tcp);
}

/// Gateway 1 rings past the rule's ring timeout (1 s): cairn cancels it with Reason 480
/// and fails over to gateway 2, which answers.
fn ring_timeout(t: Transport) {
    let net = TestNet::new();
    let routing = set_and_rule(
        &net,
        t,
        "priority",
        &[ports::UAS1, ports::UAS2],
        "destination_set = \"gateways\"",
        "ring_timeout_ms = 1000",
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let ringing = Sipp::uas(
        &scenario("uas_ring_then_cancel.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let answering = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS2),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(2).rate(5.0),
    );
    let (ringing, answering) = (ringing.stop(), answering.stop());
    uac.assert_all_ok(2);
    ringing.assert_all_ok(2);
    answering.assert_all_ok(2);
    let pairs = cancels_with_invites(&ringing);
    assert_eq!(pairs.len(), 2, "{ringing}");
    for (c, inv) in &pairs {
        assert_cancel_matches(c, inv);
        assert_eq!(reasons(c), [NO_ANSWER], "{}", c.text);
    }
    assert!(uac.received_responses(487).is_empty(), "{uac}");
}

#[test]
fn ring_timeout_cancels_with_480_and_fails_over_udp() {
    ring_timeout(Transport::Udp);
}

#[test]
fn ring_timeout_cancels_with_480_and_fails_over_tcp() {
    ring_timeout(Transport::Tcp);
}
