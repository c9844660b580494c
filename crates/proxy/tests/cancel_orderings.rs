//! CANCEL in every order it can arrive in (issue 4), on the sans-I/O core with a virtual
//! clock: before any 1xx, crossing a 2xx, during an asynchronous routing lookup, after the
//! final response, retransmitted, before its INVITE, with no INVITE at all, as a flood; and
//! the CANCELs cairn makes itself: the ring timeout, the rule's Reason, the caller's Reason
//! preserved, replaced or dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cairn_proxy::{
    CallerReason, CoreConfig, LocalAddr, Output, Peer, Proxy, Transmit, TxnId, UnmatchedCancel,
};
use cairn_routing::{
    Algorithm, Decision, DestinationSetConfig, Lookup, LookupAnswer, LookupConfig, Policy,
    RoutingConfig, RoutingSection, RuleConfig, StringList,
};
use cairn_sip::{HeaderName, Message, Method, Transport};

const PROXY: &str = "127.0.0.1:5060";
const CALLER: &str = "127.0.0.2:5061";
const GW1: &str = "127.0.0.1:5071";
const GW2: &str = "127.0.0.1:5072";
const LOOKUP_URL: &str = "http://127.0.0.1:8080/route";

const ORIGINATOR: &str = r#"SIP;cause=487;text="ORIGINATOR_CANCEL""#;
const NO_ANSWER: &str = r#"SIP;cause=480;text="NO_ANSWER""#;
const ELSEWHERE: &str = r#"SIP;cause=200;text="Call completed elsewhere""#;
const RULE_REASON: &str = r#"SIP;cause=600;text="Rule says""#;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// How the one rule of a test routes INVITEs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A destination set of GW1 then GW2 with this algorithm.
    Set(Algorithm),
    /// An HTTP lookup (the test answers it with `lookup_done`), fallback: the serial set.
    Lookup,
}

struct Opts {
    route: Route,
    tcp: bool,
    cancel_reason: Option<&'static str>,
    ring_timeout_ms: Option<u64>,
    core: Box<dyn FnOnce(&mut CoreConfig)>,
}

impl Opts {
    fn new(route: Route) -> Opts {
        Opts {
            route,
            tcp: false,
            cancel_reason: None,
            ring_timeout_ms: None,
            core: Box::new(|_| {}),
        }
    }
    fn tcp(mut self) -> Opts {
        self.tcp = true;
        self
    }
    fn cancel_reason(mut self, r: &'static str) -> Opts {
        self.cancel_reason = Some(r);
        self
    }
    fn ring_timeout(mut self, ms: u64) -> Opts {
        self.ring_timeout_ms = Some(ms);
        self
    }
    fn core(mut self, f: impl FnOnce(&mut CoreConfig) + 'static) -> Opts {
        self.core = Box::new(f);
        self
    }
}

fn policy(o: &Opts) -> Policy {
    let uris: Vec<String> = [GW1, GW2]
        .iter()
        .map(|g| {
            if o.tcp {
                format!("sip:{g};transport=tcp")
            } else {
                format!("sip:{g}")
            }
        })
        .collect();
    let uris: Vec<&str> = uris.iter().map(|s| s.as_str()).collect();
    let algorithm = match o.route {
        Route::Set(a) => a,
        Route::Lookup => Algorithm::Priority,
    };
    let mut rule = RuleConfig {
        name: "calls".into(),
        ruri_domain: Some(StringList(vec!["example.com".into()])),
        cancel_reason: o.cancel_reason.map(Into::into),
        ring_timeout_ms: o.ring_timeout_ms,
        ..Default::default()
    };
    match o.route {
        Route::Set(_) => rule.destination_set = Some("gw".into()),
        Route::Lookup => {
            let mut l = LookupConfig::new(LOOKUP_URL);
            l.fallback = Some("gw".into());
            rule.lookup = Some(l);
        }
    }
    let cfg = RoutingConfig {
        destination_sets: vec![DestinationSetConfig::new("gw", algorithm, &uris)],
        rules: vec![rule],
        routing: RoutingSection::default(),
        ..Default::default()
    };
    Policy::build_seeded(&cfg, 7).unwrap()
}

/// The core on a virtual clock, and every output it produced.
struct World {
    proxy: Proxy,
    policy: Arc<Policy>,
    now: u64,
    /// Lookups asked for and not yet consumed by the test.
    lookups: Vec<(TxnId, Lookup, Message)>,
    /// The caller's transport.
    caller_transport: Transport,
}

impl World {
    fn new(route: Route) -> World {
        World::with(Opts::new(route))
    }

    fn with(o: Opts) -> World {
        let mut cfg = CoreConfig {
            listeners: vec![
                LocalAddr {
                    transport: Transport::Udp,
                    addr: addr(PROXY),
                },
                LocalAddr {
                    transport: Transport::Tcp,
                    addr: addr(PROXY),
                },
            ],
            ..Default::default()
        };
        let policy = Arc::new(policy(&o));
        (o.core)(&mut cfg);
        World {
            proxy: Proxy::new(cfg, policy.clone()),
            policy,
            now: 1_000,
            lookups: Vec::new(),
            caller_transport: Transport::Udp,
        }
    }

    fn caller_over_tcp(mut self) -> World {
        self.caller_transport = Transport::Tcp;
        self
    }

    /// A message from the caller.
    fn caller_sends(&mut self, msg: &str) {
        let t = self.caller_transport;
        let msg = if t == Transport::Tcp {
            msg.replace("SIP/2.0/UDP 127.0.0.2", "SIP/2.0/TCP 127.0.0.2")
        } else {
            msg.to_owned()
        };
        self.send_t(CALLER, t, &msg, Some(1));
    }

    /// A message from a gateway (over the gateways' transport, given by the request).
    fn gw_sends(&mut self, gw: &str, msg: &str) {
        let t = if msg.contains("SIP/2.0/TCP 127.0.0.1:5060") {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        self.send_t(gw, t, msg, None);
    }

    fn send_t(&mut self, from: &str, t: Transport, msg: &str, conn: Option<u64>) {
        let peer = Peer {
            addr: addr(from),
            transport: t,
            conn: if t == Transport::Tcp {
                conn.or(Some(9))
            } else {
                None
            },
        };
        self.proxy.handle_message(
            self.now,
            Bytes::copy_from_slice(msg.as_bytes()),
            peer,
            Some(addr(PROXY)),
        );
    }

    /// Every transmit queued; lookups are kept in `self.lookups`.
    fn out(&mut self) -> Vec<Transmit> {
        let mut v = vec![];
        while let Some(o) = self.proxy.poll_output() {
            match o {
                Output::Transmit(t) => v.push(t),
                Output::Lookup {
                    txn,
                    lookup,
                    request,
                    ..
                } => self.lookups.push((txn, lookup, request)),
                _ => {}
            }
        }
        v
    }

    /// Run the clock forward by `ms`, firing every timer on its deadline.
    fn advance(&mut self, ms: u64) -> Vec<Transmit> {
        let end = self.now + ms;
        let mut v = self.out();
        while let Some(t) = self.proxy.next_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
            v.extend(self.out());
        }
        self.now = end;
        v.extend(self.out());
        v
    }
}

fn parse(t: &Transmit) -> Message {
    Message::parse(t.data.clone())
        .unwrap_or_else(|e| panic!("cairn sent a malformed message ({e}): {}", text(&t.data)))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(v: &[Transmit]) -> Vec<String> {
    v.iter()
        .map(|t| format!("-> {} {}", t.dest, text(parse(t).start_line())))
        .collect()
}

/// The messages sent to `dest`.
fn to(v: &[Transmit], dest: &str) -> Vec<Message> {
    v.iter()
        .filter(|t| t.dest == addr(dest))
        .map(parse)
        .collect()
}

/// The requests of `method` sent to `dest`.
fn requests(v: &[Transmit], dest: &str, method: Method) -> Vec<Message> {
    to(v, dest)
        .into_iter()
        .filter(|m| m.is_request() && m.method() == method)
        .collect()
}

/// The status codes of the responses sent to the caller, in order.
fn caller_codes(v: &[Transmit]) -> Vec<(u16, Method)> {
    to(v, CALLER)
        .iter()
        .filter_map(|m| Some((m.status()?, m.cseq().method)))
        .collect()
}

fn the_one(v: Vec<Message>, what: &str) -> Message {
    assert_eq!(v.len(), 1, "expected one {what}, got {}", v.len());
    v.into_iter().next().unwrap()
}

fn reasons(m: &Message) -> Vec<String> {
    m.headers_named(HeaderName::Reason)
        .map(|h| text(m.slice(h.value)))
        .collect()
}

fn invite(call: &str) -> String {
    format!(
        "INVITE sip:+15551234@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-{call};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.org>;tag=a1\r\n\
To: <sip:+15551234@example.com>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.0.0.2:5061>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n"
    )
}

/// The caller's CANCEL for `invite(call)`, with these Reason header lines.
fn cancel(call: &str, reasons: &[&str]) -> String {
    let mut s = format!(
        "CANCEL sip:+15551234@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-{call};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.org>;tag=a1\r\n\
To: <sip:+15551234@example.com>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 CANCEL\r\n"
    );
    for r in reasons {
        s += &format!("Reason: {r}\r\n");
    }
    s + "Content-Length: 0\r\n\r\n"
}

/// The caller's ACK for a non-2xx final to `invite(call)`.
fn ack(call: &str, to_tag: &str) -> String {
    format!(
        "ACK sip:+15551234@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-{call};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.org>;tag=a1\r\n\
To: <sip:+15551234@example.com>;tag={to_tag}\r\n\
Call-ID: {call}\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// A gateway's response to a request cairn forwarded.
fn reply(req: &Message, code: u16, reason: &str, to_tag: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for h in req.headers_named(HeaderName::Via) {
        s += &format!("Via: {}\r\n", text(req.slice(h.value)));
    }
    for h in req.headers_named(HeaderName::RecordRoute) {
        s += &format!("Record-Route: {}\r\n", text(req.slice(h.value)));
    }
    s += &format!("From: {}\r\n", text(req.from_value()));
    let tag = if code > 100 {
        format!(";tag={to_tag}")
    } else {
        String::new()
    };
    s += &format!("To: {}{}\r\n", text(req.to_value()), tag);
    s += &format!(
        "Call-ID: {}\r\nCSeq: {} {}\r\n",
        text(req.call_id()),
        req.cseq().number,
        text(req.method_bytes())
    );
    if (200..300).contains(&code) {
        s += "Contact: <sip:gw@127.0.0.1:5071>\r\n";
    }
    s + "Content-Length: 0\r\n\r\n"
}

/// The INVITE forwarded to `gw` in `out`.
fn forwarded(out: &[Transmit], gw: &str) -> Message {
    the_one(requests(out, gw, Method::Invite), "INVITE")
}

/// A CANCEL cairn built for the branch `inv` (RFC 3261 9.1): same Request-URI, Call-ID,
/// From, To, CSeq number, and one Via, the branch's.
fn assert_cancel_of(c: &Message, inv: &Message) {
    assert_eq!(c.method(), Method::Cancel);
    assert_eq!(c.request_uri_bytes(), inv.request_uri_bytes());
    assert_eq!(c.call_id(), inv.call_id());
    assert_eq!(c.from_value(), inv.from_value());
    assert_eq!(c.to_value(), inv.to_value());
    assert_eq!(c.cseq().number, inv.cseq().number);
    assert_eq!(c.cseq().method, Method::Cancel);
    assert_eq!(c.vias().count(), 1, "one Via: the branch's");
    assert_eq!(c.branch(), inv.branch());
}

// ---------------------------------------------------------------------------------------
// The caller's CANCEL against the INVITE's state
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_before_any_1xx_waits_for_the_1xx() {
    let mut w = World::new(Route::Set(Algorithm::Priority));
    w.caller_sends(&invite("b1"));
    let inv = forwarded(&w.out(), GW1);

    w.caller_sends(&cancel("b1", &[]));
    let out = w.out();
    assert_eq!(
        caller_codes(&out),
        [(200, Method::Cancel)],
        "{:?}",
        show(&out)
    );
    assert!(
        requests(&out, GW1, Method::Cancel).is_empty(),
        "no CANCEL before the branch answered 1xx (RFC 3261 9.1)"
    );
    // Nothing happens until the 1xx: no CANCEL, no 487, no failover.
    let out = w.advance(400);
    assert!(
        to(&out, GW2).is_empty() && caller_codes(&out).is_empty(),
        "{:?}",
        show(&out)
    );
    assert!(requests(&out, GW1, Method::Cancel).is_empty());

    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    let out = w.out();
    let c = the_one(requests(&out, GW1, Method::Cancel), "CANCEL");
    assert_cancel_of(&c, &inv);
    assert_eq!(reasons(&c), [ORIGINATOR]);
    assert_eq!(
        caller_codes(&out),
        [(180, Method::Invite)],
        "the 180 still goes up"
    );

    w.gw_sends(GW1, &reply(&c, 200, "OK", "g1"));
    assert!(w.out().is_empty(), "the CANCEL's 200 ends at cairn");
    w.gw_sends(GW1, &reply(&inv, 487, "Request Terminated", "g1"));
    let out = w.out();
    assert_eq!(caller_codes(&out), [(487, Method::Invite)]);
    assert_eq!(
        requests(&out, GW1, Method::Ack).len(),
        1,
        "cairn ACKs the 487"
    );
    assert!(
        to(&out, GW2).is_empty(),
        "a cancelled call never fails over"
    );
    let s = w.proxy.stats();
    assert_eq!((s.cancels_matched, s.cancels_out), (1, 1));
}

#[test]
fn cancel_before_any_1xx_on_a_branch_that_never_answers() {
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).core(|c| c.timers.t1 = 50));
    w.caller_sends(&invite("b2"));
    forwarded(&w.out(), GW1);
    w.caller_sends(&cancel("b2", &[]));
    assert_eq!(caller_codes(&w.out()), [(200, Method::Cancel)]);
    // Timer B (64*T1 = 3.2 s) ends the branch: 487 to the caller, and no CANCEL at all.
    let out = w.advance(10_000);
    assert!(
        out.iter().all(|t| parse(t).method() != Method::Cancel),
        "no CANCEL storm: {:?}",
        show(&out)
    );
    assert!(to(&out, GW2).is_empty(), "no failover after a CANCEL");
    let codes = caller_codes(&out);
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == (487, Method::Invite)),
        "{codes:?}"
    );
    w.caller_sends(&ack("b2", "x"));
    assert!(w.out().is_empty(), "the ACK for the 487 is absorbed");
}

#[test]
fn cancel_crossing_a_2xx_relays_the_2xx() {
    for tcp in [false, true] {
        let o = Opts::new(Route::Set(Algorithm::Priority));
        let mut w = World::with(if tcp { o.tcp() } else { o });
        w.caller_sends(&invite("x1"));
        let inv = forwarded(&w.out(), GW1);
        w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
        w.out();
        w.caller_sends(&cancel("x1", &[]));
        let out = w.out();
        assert_eq!(caller_codes(&out), [(200, Method::Cancel)]);
        let c = the_one(requests(&out, GW1, Method::Cancel), "CANCEL");
        // The callee answered before it saw the CANCEL: its 2xx crosses our CANCEL.
        w.gw_sends(GW1, &reply(&inv, 200, "OK", "g1"));
        let out = w.out();
        assert_eq!(
            caller_codes(&out),
            [(200, Method::Invite)],
            "tcp={tcp}: the 2xx is relayed"
        );
        w.gw_sends(GW1, &reply(&c, 200, "OK", "g1"));
        // A 2xx retransmission is relayed too; and the caller never gets a 487.
        w.gw_sends(GW1, &reply(&inv, 200, "OK", "g1"));
        let out = w.advance(40_000);
        let codes = caller_codes(&out);
        assert!(
            codes.contains(&(200, Method::Invite)),
            "tcp={tcp}: {codes:?}"
        );
        assert!(
            codes.iter().all(|c| c.0 == 200),
            "tcp={tcp}: no 487 after a 2xx: {codes:?}"
        );
    }
}

#[test]
fn cancel_pending_then_a_2xx_without_any_1xx() {
    let mut w = World::new(Route::Set(Algorithm::Priority));
    w.caller_sends(&invite("x2"));
    let inv = forwarded(&w.out(), GW1);
    w.caller_sends(&cancel("x2", &[]));
    w.out();
    w.gw_sends(GW1, &reply(&inv, 200, "OK", "g1"));
    let out = w.advance(40_000);
    assert_eq!(
        caller_codes(&out)[0],
        (200, Method::Invite),
        "{:?}",
        show(&out)
    );
    assert!(
        requests(&out, GW1, Method::Cancel).is_empty(),
        "a branch that answered 2xx is not cancelled any more"
    );
}

/// The 2xx arrives after the caller already got its 487 (a forking proxy downstream sends
/// a late 2xx from another of its branches): it is still relayed to the caller, over a
/// reliable transport where the branch's client transaction is gone by then.
#[test]
fn a_2xx_after_the_487_went_out_is_relayed_tcp() {
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).tcp());
    w.caller_sends(&invite("x3"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    w.caller_sends(&cancel("x3", &[]));
    let c = the_one(requests(&w.out(), GW1, Method::Cancel), "CANCEL");
    w.gw_sends(GW1, &reply(&c, 200, "OK", "g1"));
    w.gw_sends(GW1, &reply(&inv, 487, "Request Terminated", "g1"));
    assert_eq!(caller_codes(&w.out()), [(487, Method::Invite)]);
    w.gw_sends(GW1, &reply(&inv, 200, "OK", "g1b"));
    let out = w.out();
    assert_eq!(
        caller_codes(&out),
        [(200, Method::Invite)],
        "{:?}",
        show(&out)
    );
    let ok = the_one(to(&out, CALLER), "200");
    assert_eq!(ok.vias().count(), 1, "cairn's Via removed");
}

/// The same over UDP, where the branch's client transaction is still in Completed (Timer
/// D) when the 2xx comes: it must pass the 2xx on, not absorb it as a retransmission.
#[test]
fn a_2xx_after_the_487_went_out_is_relayed_udp() {
    let mut w = World::new(Route::Set(Algorithm::Priority));
    w.caller_sends(&invite("u1"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    w.caller_sends(&cancel("u1", &[]));
    let c = the_one(requests(&w.out(), GW1, Method::Cancel), "CANCEL");
    w.gw_sends(GW1, &reply(&c, 200, "OK", "g1"));
    w.gw_sends(GW1, &reply(&inv, 487, "Request Terminated", "g1"));
    assert_eq!(caller_codes(&w.out()), [(487, Method::Invite)]);
    w.gw_sends(GW1, &reply(&inv, 200, "OK", "g1b"));
    let out = w.out();
    assert_eq!(
        caller_codes(&out),
        [(200, Method::Invite)],
        "the late 2xx must reach the caller over UDP as it does over TCP: {:?}",
        show(&out)
    );
}

/// RFC 3261 9.1: when no final response arrives within 64*T1 after a CANCEL, the
/// transaction is considered cancelled. A ringing branch that answers the CANCEL with 200
/// but never sends its 487 (a broken gateway, a 487 lost with a dead TCP connection) still
/// ends: the caller gets its 487 and every transaction of the call is freed.
#[test]
fn a_cancelled_branch_that_never_sends_its_final_ends_after_64_t1() {
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).core(|c| {
        c.timers.t1 = 50;
        c.timer_c = 10_000;
    }));
    w.caller_sends(&invite("s1"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    w.caller_sends(&cancel("s1", &[]));
    let c = the_one(requests(&w.out(), GW1, Method::Cancel), "CANCEL");
    w.gw_sends(GW1, &reply(&c, 200, "OK", "g1"));
    w.out();
    // 64*T1 is 3.2 s here, timer C 10 s: wait a minute.
    let out = w.advance(60_000);
    let codes = caller_codes(&out);
    assert!(
        codes.contains(&(487, Method::Invite)),
        "the caller must get its 487 even when the gateway never sends one: {:?}",
        show(&out)
    );
    let out = w.advance(60_000);
    drop(out);
    assert_eq!(
        w.proxy.transaction_counts(),
        (0, 0),
        "every transaction of the call is freed"
    );
}

#[test]
fn cancel_after_the_final_response_changes_nothing() {
    // 486 is no failover code: it is the caller's final.
    let mut w = World::new(Route::Set(Algorithm::Priority));
    w.caller_sends(&invite("f1"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 486, "Busy Here", "g1"));
    assert_eq!(caller_codes(&w.out()), [(486, Method::Invite)]);
    w.caller_sends(&cancel("f1", &[]));
    let out = w.out();
    // RFC 3261 9.2: the CANCEL matches the transaction and is answered 200, with no effect.
    assert_eq!(
        caller_codes(&out),
        [(200, Method::Cancel)],
        "{:?}",
        show(&out)
    );
    assert!(requests(&out, GW1, Method::Cancel).is_empty());
    assert!(to(&out, GW2).is_empty());

    // After a 2xx: the same.
    let mut w = World::new(Route::Set(Algorithm::Priority));
    w.caller_sends(&invite("f2"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    w.gw_sends(GW1, &reply(&inv, 200, "OK", "g1"));
    w.out();
    w.caller_sends(&cancel("f2", &[]));
    let out = w.out();
    assert!(
        requests(&out, GW1, Method::Cancel).is_empty(),
        "an answered call is not cancelled: {:?}",
        show(&out)
    );
    assert!(
        !caller_codes(&out).contains(&(487, Method::Invite)),
        "{:?}",
        show(&out)
    );
}

#[test]
fn cancel_retransmitted_is_answered_again_never_sent_again() {
    let mut w = World::new(Route::Set(Algorithm::Priority));
    w.caller_sends(&invite("r1"));
    let inv = forwarded(&w.out(), GW1);
    // Retransmitted before the 1xx, and after.
    w.caller_sends(&cancel("r1", &[]));
    w.caller_sends(&cancel("r1", &[]));
    let out = w.out();
    assert_eq!(
        caller_codes(&out),
        [(200, Method::Cancel), (200, Method::Cancel)]
    );
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    let out = w.out();
    let c = the_one(requests(&out, GW1, Method::Cancel), "CANCEL");
    for _ in 0..3 {
        w.caller_sends(&cancel("r1", &[]));
    }
    let out = w.out();
    assert_eq!(caller_codes(&out), [(200, Method::Cancel); 3]);
    assert!(
        requests(&out, GW1, Method::Cancel).is_empty(),
        "{:?}",
        show(&out)
    );
    w.gw_sends(GW1, &reply(&c, 200, "OK", "g1"));
    w.gw_sends(GW1, &reply(&inv, 487, "Request Terminated", "g1"));
    assert_eq!(caller_codes(&w.out()), [(487, Method::Invite)]);
    // Once answered, a late retransmission still gets 200, and nothing goes downstream.
    w.caller_sends(&cancel("r1", &[]));
    let out = w.out();
    assert_eq!(caller_codes(&out), [(200, Method::Cancel)]);
    assert!(to(&out, GW1).is_empty() && to(&out, GW2).is_empty());
    assert_eq!(w.proxy.stats().cancels_out, 1);
}

// ---------------------------------------------------------------------------------------
// The race with asynchronous routing
// ---------------------------------------------------------------------------------------

fn lookup_answer(targets: &[&str]) -> LookupAnswer {
    LookupAnswer {
        targets: Some(targets.iter().map(|t| t.to_string()).collect()),
        ..Default::default()
    }
}

#[test]
fn cancel_during_routing_answers_487_and_forwards_nothing() {
    // Over TCP: a single CANCEL, no retransmission to rely on.
    let mut w = World::new(Route::Lookup).caller_over_tcp();
    w.caller_sends(&invite("l1"));
    let out = w.out();
    assert_eq!(
        caller_codes(&out),
        [(100, Method::Invite)],
        "100 at once, then the lookup"
    );
    assert!(to(&out, GW1).is_empty() && to(&out, GW2).is_empty());
    let (txn, lookup, request) = w.lookups.pop().expect("a lookup is asked for");
    assert_eq!(&*lookup.url, LOOKUP_URL);
    assert_eq!(&*lookup.rule, "calls");
    assert_eq!(request.call_id(), b"l1");

    w.now += 1;
    w.caller_sends(&cancel("l1", &[]));
    let out = w.out();
    assert_eq!(
        caller_codes(&out),
        [(200, Method::Cancel), (487, Method::Invite)],
        "200 for the CANCEL and 487 at once"
    );
    assert_eq!(w.proxy.stats().cancelled_while_routing, 1);

    // The lookup answers 200 ms later: nothing is forwarded.
    w.now += 200;
    let d = w
        .policy
        .lookup_answer(&lookup, &lookup_answer(&["sip:127.0.0.1:5071"]), b"l1");
    assert!(matches!(d, Decision::Forward(_)));
    w.proxy.lookup_done(w.now, txn, d);
    let out = w.advance(40_000);
    assert!(
        to(&out, GW1).is_empty() && to(&out, GW2).is_empty(),
        "{:?}",
        show(&out)
    );
    assert!(caller_codes(&out).iter().all(|c| c.0 == 487));
    w.caller_sends(&ack("l1", "x"));
    assert!(w.out().is_empty());
    assert_eq!(w.proxy.stats().requests_forwarded, 0);
}

#[test]
fn cancel_during_routing_then_the_fallback_or_a_response_is_dropped_too() {
    for failed in [true, false] {
        let mut w = World::new(Route::Lookup);
        w.caller_sends(&invite("l2"));
        w.out();
        let (txn, lookup, _) = w.lookups.pop().unwrap();
        w.caller_sends(&cancel("l2", &[]));
        assert_eq!(
            caller_codes(&w.out()),
            [(200, Method::Cancel), (487, Method::Invite)]
        );
        let d = if failed {
            w.policy.lookup_failed(&lookup, b"l2")
        } else {
            Decision::Respond {
                code: 486,
                reason: "Busy Here".into(),
            }
        };
        w.proxy.lookup_done(w.now, txn, d);
        let out = w.out();
        assert!(out.is_empty(), "{:?}", show(&out));
    }
}

#[test]
fn lookup_answer_without_cancel_is_forwarded() {
    // The control case of the race: the same lookup, no CANCEL.
    let mut w = World::new(Route::Lookup);
    w.caller_sends(&invite("l3"));
    w.out();
    let (txn, lookup, _) = w.lookups.pop().unwrap();
    let d = w
        .policy
        .lookup_answer(&lookup, &lookup_answer(&["sip:127.0.0.1:5072"]), b"l3");
    w.proxy.lookup_done(w.now, txn, d);
    let inv = forwarded(&w.out(), GW2);
    // And a CANCEL now is routed from the transaction, to where the lookup sent it.
    w.gw_sends(GW2, &reply(&inv, 180, "Ringing", "g2"));
    w.caller_sends(&cancel("l3", &[]));
    let out = w.out();
    let c = the_one(requests(&out, GW2, Method::Cancel), "CANCEL");
    assert_cancel_of(&c, &inv);
    assert!(to(&out, GW1).is_empty());
}

// ---------------------------------------------------------------------------------------
// CANCELs that match no INVITE
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_before_its_invite_gets_481_and_the_invite_487() {
    let mut w = World::new(Route::Set(Algorithm::RoundRobin));
    w.caller_sends(&cancel("o1", &[]));
    let out = w.out();
    assert_eq!(
        caller_codes(&out),
        [(481, Method::Cancel)],
        "{:?}",
        show(&out)
    );
    assert_eq!(w.proxy.remembered_cancels(), 1);
    // The INVITE, reordered behind its CANCEL, arrives 5 ms later.
    w.now += 5;
    w.caller_sends(&invite("o1"));
    let out = w.out();
    assert_eq!(
        caller_codes(&out),
        [(100, Method::Invite), (487, Method::Invite)],
        "{:?}",
        show(&out)
    );
    assert!(
        to(&out, GW1).is_empty() && to(&out, GW2).is_empty(),
        "never forwarded"
    );
    assert_eq!(w.proxy.stats().cancelled_before_invite, 1);
    assert_eq!(w.proxy.remembered_cancels(), 0, "used once");
    // Its retransmission is answered by its transaction: still 487, still not forwarded.
    w.caller_sends(&invite("o1"));
    let out = w.out();
    assert_eq!(caller_codes(&out), [(487, Method::Invite)]);
    w.caller_sends(&ack("o1", "x"));
    w.caller_sends(&invite("o1"));
    let out = w.advance(40_000);
    assert!(
        to(&out, GW1).is_empty() && to(&out, GW2).is_empty(),
        "{:?}",
        show(&out)
    );

    // Another INVITE (other Call-ID) is not affected.
    w.caller_sends(&invite("o2"));
    assert_eq!(w.out().len(), 2, "100 and the forwarded INVITE");
}

#[test]
fn cancel_before_its_invite_is_forgotten_after_the_window() {
    let mut w = World::with(
        Opts::new(Route::Set(Algorithm::Priority)).core(|c| c.cancel.unmatched_window = 2_000),
    );
    w.caller_sends(&cancel("o3", &[]));
    w.out();
    w.advance(2_001);
    w.caller_sends(&invite("o3"));
    let out = w.out();
    forwarded(&out, GW1);
}

#[test]
fn cancel_with_no_invite_at_all() {
    // Default: 481, nothing forwarded.
    let mut w = World::new(Route::Set(Algorithm::RoundRobin));
    w.caller_sends(&cancel("n1", &[]));
    let out = w.advance(40_000);
    assert_eq!(
        caller_codes(&out),
        [(481, Method::Cancel)],
        "{:?}",
        show(&out)
    );
    assert!(to(&out, GW1).is_empty() && to(&out, GW2).is_empty());

    // Forward: statelessly, where the rules send its Request-URI (RFC 3261 16.10), and
    // still remembered for a reordered INVITE.
    let mut w = World::with(
        Opts::new(Route::Set(Algorithm::Priority))
            .core(|c| c.cancel.unmatched = UnmatchedCancel::Forward),
    );
    w.caller_sends(&cancel("n2", &[]));
    let out = w.out();
    assert!(
        caller_codes(&out).is_empty(),
        "no 481 when forwarding: {:?}",
        show(&out)
    );
    let c = the_one(requests(&out, GW1, Method::Cancel), "CANCEL");
    assert_eq!(c.vias().count(), 2, "cairn's Via on top of the caller's");
    assert_eq!(c.max_forwards(), Some(69));
    assert_eq!(c.request_uri_bytes(), b"sip:+15551234@example.com");
    // The gateway's 481 goes back to the caller by the Via.
    w.gw_sends(
        GW1,
        &reply(&c, 481, "Call/Transaction Does Not Exist", "g1"),
    );
    assert_eq!(caller_codes(&w.out()), [(481, Method::Cancel)]);
    w.caller_sends(&invite("n2"));
    let out = w.out();
    assert!(to(&out, GW1).is_empty(), "{:?}", show(&out));
    assert_eq!(
        caller_codes(&out),
        [(100, Method::Invite), (487, Method::Invite)]
    );
}

#[test]
fn a_flood_of_unmatched_cancels_is_bounded() {
    const MEMORY: usize = 1_000;
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).core(|c| {
        c.cancel.unmatched_memory = MEMORY;
        c.timers.t1 = 50; // keep the CANCEL transactions short-lived
    }));
    let mut max_seen = 0;
    let mut answered = 0;
    for i in 0..100_000u32 {
        w.caller_sends(&cancel(&format!("flood{i}"), &[]));
        if i % 1000 == 0 {
            w.now += 10;
            w.proxy.handle_timeout(w.now);
        }
        for t in w.out() {
            let m = parse(&t);
            assert_eq!(m.status(), Some(481));
            answered += 1;
        }
        max_seen = max_seen.max(w.proxy.remembered_cancels());
    }
    assert_eq!(answered, 100_000, "every CANCEL answered 481");
    assert!(
        max_seen <= MEMORY,
        "remembered {max_seen} CANCELs, memory is {MEMORY}"
    );
    assert_eq!(w.proxy.remembered_cancels(), MEMORY);
    // The most recent are the ones remembered: their INVITE gets 487; the oldest is
    // forgotten, its INVITE forwarded.
    w.caller_sends(&invite("flood99999"));
    assert_eq!(
        caller_codes(&w.out()),
        [(100, Method::Invite), (487, Method::Invite)]
    );
    w.caller_sends(&invite("flood0"));
    forwarded(&w.out(), GW1);
    // After the window, a remembered CANCEL no longer stops its INVITE, and the next
    // unmatched CANCEL clears the expired entries.
    w.advance(33_000);
    w.caller_sends(&invite("flood99998"));
    forwarded(&w.out(), GW1);
    w.caller_sends(&cancel("late", &[]));
    w.out();
    assert_eq!(
        w.proxy.remembered_cancels(),
        1,
        "expired entries are dropped"
    );
}

// ---------------------------------------------------------------------------------------
// CANCELs cairn makes: ring timeout, parallel forks, Reasons
// ---------------------------------------------------------------------------------------

#[test]
fn ring_timeout_cancels_with_480_then_fails_over() {
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).ring_timeout(5_000));
    w.caller_sends(&invite("t1"));
    let inv = forwarded(&w.out(), GW1);
    w.advance(1_000);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    w.out();
    // The ring timeout counts from when the branch was sent, and a 1xx does not restart it.
    let out = w.advance(3_999);
    assert!(
        requests(&out, GW1, Method::Cancel).is_empty(),
        "{:?}",
        show(&out)
    );
    let out = w.advance(1);
    let c = the_one(requests(&out, GW1, Method::Cancel), "CANCEL");
    assert_cancel_of(&c, &inv);
    assert_eq!(reasons(&c), [NO_ANSWER]);
    assert!(
        to(&out, GW2).is_empty(),
        "failover waits for the branch's final"
    );
    w.gw_sends(GW1, &reply(&c, 200, "OK", "g1"));
    w.gw_sends(GW1, &reply(&inv, 487, "Request Terminated", "g1"));
    let out = w.out();
    assert_eq!(requests(&out, GW1, Method::Ack).len(), 1);
    assert!(caller_codes(&out).is_empty(), "the 487 is not the caller's");
    let inv2 = forwarded(&out, GW2);
    w.gw_sends(GW2, &reply(&inv2, 200, "OK", "g2"));
    assert_eq!(caller_codes(&w.out()), [(200, Method::Invite)]);
}

#[test]
fn ring_timeout_on_the_last_branch_answers_the_caller() {
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).ring_timeout(2_000));
    w.caller_sends(&invite("t2"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    w.out();
    let c = the_one(requests(&w.advance(2_000), GW1, Method::Cancel), "CANCEL");
    w.gw_sends(GW1, &reply(&c, 200, "OK", "g1"));
    w.gw_sends(GW1, &reply(&inv, 487, "Request Terminated", "g1"));
    let inv2 = forwarded(&w.out(), GW2);
    w.gw_sends(GW2, &reply(&inv2, 180, "Ringing", "g2"));
    w.out();
    let c2 = the_one(requests(&w.advance(2_000), GW2, Method::Cancel), "CANCEL");
    assert_eq!(reasons(&c2), [NO_ANSWER]);
    w.gw_sends(GW2, &reply(&c2, 200, "OK", "g2"));
    w.gw_sends(GW2, &reply(&inv2, 487, "Request Terminated", "g2"));
    // The caller did not cancel: no 487, but the timeout's 408.
    assert_eq!(caller_codes(&w.out()), [(408, Method::Invite)]);
}

#[test]
fn ring_timeout_on_a_branch_without_1xx_sends_no_cancel() {
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).ring_timeout(1_000));
    w.caller_sends(&invite("t3"));
    forwarded(&w.out(), GW1);
    let out = w.advance(1_000);
    assert!(
        requests(&out, GW1, Method::Cancel).is_empty(),
        "{:?}",
        show(&out)
    );
    forwarded(&out, GW2);
}

#[test]
fn rule_cancel_reason_on_a_caller_cancel_without_reason() {
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).cancel_reason(RULE_REASON));
    w.caller_sends(&invite("c1"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 183, "Session Progress", "g1"));
    w.caller_sends(&cancel("c1", &[]));
    let c = the_one(requests(&w.out(), GW1, Method::Cancel), "CANCEL");
    assert_eq!(reasons(&c), [RULE_REASON]);

    // With a Reason of its own, the caller's is preserved (the default).
    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).cancel_reason(RULE_REASON));
    w.caller_sends(&invite("c2"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    w.caller_sends(&cancel("c2", &["Q.850;cause=16"]));
    let c = the_one(requests(&w.out(), GW1, Method::Cancel), "CANCEL");
    assert_eq!(reasons(&c), ["Q.850;cause=16"]);
}

#[test]
fn rule_cancel_reason_on_a_parallel_fork_cancel() {
    for (rule, want) in [(None, ELSEWHERE), (Some(RULE_REASON), RULE_REASON)] {
        let o = Opts::new(Route::Set(Algorithm::Parallel));
        let mut w = World::with(match rule {
            Some(r) => o.cancel_reason(r),
            None => o,
        });
        w.caller_sends(&invite("p1"));
        let out = w.out();
        let (a, b) = (forwarded(&out, GW1), forwarded(&out, GW2));
        w.gw_sends(GW1, &reply(&a, 180, "Ringing", "g1"));
        w.gw_sends(GW2, &reply(&b, 180, "Ringing", "g2"));
        w.out();
        w.gw_sends(GW1, &reply(&a, 200, "OK", "g1"));
        let out = w.out();
        assert_eq!(caller_codes(&out), [(200, Method::Invite)]);
        let c = the_one(requests(&out, GW2, Method::Cancel), "CANCEL");
        assert_cancel_of(&c, &b);
        assert_eq!(reasons(&c), [want]);
        assert!(requests(&out, GW1, Method::Cancel).is_empty());
    }
}

#[test]
fn parallel_fork_branch_without_1xx_is_cancelled_when_it_rings() {
    let mut w = World::new(Route::Set(Algorithm::Parallel));
    w.caller_sends(&invite("p2"));
    let out = w.out();
    let (a, b) = (forwarded(&out, GW1), forwarded(&out, GW2));
    w.gw_sends(GW1, &reply(&a, 200, "OK", "g1"));
    let out = w.out();
    assert!(
        requests(&out, GW2, Method::Cancel).is_empty(),
        "GW2 has not answered 1xx yet"
    );
    w.gw_sends(GW2, &reply(&b, 180, "Ringing", "g2"));
    let out = w.out();
    let c = the_one(requests(&out, GW2, Method::Cancel), "CANCEL");
    assert_eq!(reasons(&c), [ELSEWHERE]);
}

#[test]
fn several_caller_reasons_pass_intact() {
    let mut w = World::new(Route::Set(Algorithm::Parallel));
    w.caller_sends(&invite("m1"));
    let out = w.out();
    let (a, b) = (forwarded(&out, GW1), forwarded(&out, GW2));
    w.gw_sends(GW1, &reply(&a, 180, "Ringing", "g1"));
    w.gw_sends(GW2, &reply(&b, 180, "Ringing", "g2"));
    w.out();
    let sip = r#"SIP;cause=200;text="Call completed elsewhere""#;
    let q850 = r#"Q.850;cause=16;text="Normal call clearing""#;
    w.caller_sends(&cancel("m1", &[sip, q850]));
    let out = w.out();
    for (gw, inv) in [(GW1, &a), (GW2, &b)] {
        let c = the_one(requests(&out, gw, Method::Cancel), "CANCEL");
        assert_cancel_of(&c, inv);
        assert_eq!(reasons(&c), [sip, q850], "{gw}");
    }
}

#[test]
fn caller_reason_replace_and_drop() {
    let run = |caller: CallerReason, rule: Option<&'static str>| -> Vec<String> {
        let o = Opts::new(Route::Set(Algorithm::Priority)).core(move |c| {
            c.cancel.reasons.caller = caller;
        });
        let mut w = World::with(match rule {
            Some(r) => o.cancel_reason(r),
            None => o,
        });
        w.caller_sends(&invite("rd"));
        let inv = forwarded(&w.out(), GW1);
        w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
        w.caller_sends(&cancel("rd", &["Q.850;cause=16", "SIP;cause=200"]));
        let c = the_one(requests(&w.out(), GW1, Method::Cancel), "CANCEL");
        reasons(&c)
    };
    assert_eq!(
        run(CallerReason::Preserve, None),
        ["Q.850;cause=16", "SIP;cause=200"]
    );
    assert_eq!(run(CallerReason::Replace, None), [ORIGINATOR]);
    assert_eq!(run(CallerReason::Replace, Some(RULE_REASON)), [RULE_REASON]);
    assert!(run(CallerReason::Drop, None).is_empty());
    assert!(run(CallerReason::Drop, Some(RULE_REASON)).is_empty());
}

#[test]
fn configured_default_reasons_are_used() {
    let mut w = World::with(
        Opts::new(Route::Set(Algorithm::Priority))
            .ring_timeout(1_000)
            .core(|c| {
                c.cancel.reasons.no_answer = Arc::from("Q.850;cause=19");
                c.cancel.reasons.originator = Arc::from("SIP;cause=487;text=\"Bye\"");
            }),
    );
    w.caller_sends(&invite("d1"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    let c = the_one(requests(&w.advance(1_000), GW1, Method::Cancel), "CANCEL");
    assert_eq!(reasons(&c), ["Q.850;cause=19"]);

    let mut w = World::with(Opts::new(Route::Set(Algorithm::Priority)).core(|c| {
        c.cancel.reasons.originator = Arc::from("SIP;cause=487;text=\"Bye\"");
    }));
    w.caller_sends(&invite("d2"));
    let inv = forwarded(&w.out(), GW1);
    w.gw_sends(GW1, &reply(&inv, 180, "Ringing", "g1"));
    w.caller_sends(&cancel("d2", &[]));
    let c = the_one(requests(&w.out(), GW1, Method::Cancel), "CANCEL");
    assert_eq!(reasons(&c), ["SIP;cause=487;text=\"Bye\""]);
}
