//! The proxy core driven on a virtual clock: every message in, every
//! transmit out, no sockets.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cairn_proxy::{CoreConfig, LocalAddr, Output, Peer, Proxy, Transmit};
use cairn_routing::{
    Algorithm, DestinationSetConfig, Policy, RoutingConfig, RoutingSection, RuleConfig, StringList,
};
use cairn_sip::{HeaderName, Message, Method, Transport};

const PROXY: &str = "127.0.0.1:5060";
const CALLER: &str = "127.0.0.2:5061";
const GW1: &str = "127.0.0.1:5071";
const GW2: &str = "127.0.0.1:5072";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct World {
    proxy: Proxy,
    now: u64,
}

fn policy(algorithm: Algorithm, tcp: bool) -> Policy {
    let uris: Vec<String> = [GW1, GW2]
        .iter()
        .map(|g| {
            if tcp {
                format!("sip:{g};transport=tcp")
            } else {
                format!("sip:{g}")
            }
        })
        .collect();
    let uris: Vec<&str> = uris.iter().map(|s| s.as_str()).collect();
    let cfg = RoutingConfig {
        destination_sets: vec![DestinationSetConfig::new("gw", algorithm, &uris)],
        rules: vec![RuleConfig {
            name: "calls".into(),
            ruri_domain: Some(StringList(vec!["example.com".into(), "127.0.0.1".into()])),
            destination_set: Some("gw".into()),
            ..Default::default()
        }],
        routing: RoutingSection::default(),
        ..Default::default()
    };
    Policy::build_seeded(&cfg, 7).unwrap()
}

impl World {
    fn new(algorithm: Algorithm) -> World {
        Self::with(algorithm, false, |_| {})
    }

    fn with(algorithm: Algorithm, tcp: bool, f: impl FnOnce(&mut CoreConfig)) -> World {
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
        f(&mut cfg);
        World {
            proxy: Proxy::new(cfg, Arc::new(policy(algorithm, tcp))),
            now: 1_000,
        }
    }

    /// A world routing with `policy` instead of the default one.
    fn with_policy(policy: Policy) -> World {
        let mut w = Self::new(Algorithm::RoundRobin);
        w.proxy.set_policy(Arc::new(policy));
        w
    }

    fn send(&mut self, from: &str, msg: &str) {
        self.send_t(from, Transport::Udp, msg)
    }

    fn send_t(&mut self, from: &str, t: Transport, msg: &str) {
        let peer = Peer {
            addr: addr(from),
            transport: t,
            conn: None,
        };
        self.proxy.handle_message(
            self.now,
            Bytes::copy_from_slice(msg.as_bytes()),
            peer,
            Some(addr(PROXY)),
        );
    }

    fn out(&mut self) -> Vec<Transmit> {
        let mut v = vec![];
        while let Some(Output::Transmit(t)) = self.proxy.poll_output() {
            v.push(t);
        }
        v
    }

    fn advance(&mut self, ms: u64) -> Vec<Transmit> {
        let end = self.now + ms;
        while let Some(t) = self.proxy.next_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
        }
        self.now = end;
        self.out()
    }
}

fn parse(t: &Transmit) -> Message {
    Message::parse(t.data.clone())
        .unwrap_or_else(|e| panic!("cairn sent a malformed message ({e}): {}", text(&t.data)))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn only(v: Vec<Transmit>) -> (Transmit, Message) {
    assert_eq!(
        v.len(),
        1,
        "expected one transmit, got {}: {:#?}",
        v.len(),
        v.iter().map(|t| text(&t.data)).collect::<Vec<_>>()
    );
    let m = parse(&v[0]);
    (v.into_iter().next().unwrap(), m)
}

fn invite(call: &str, branch: &str) -> String {
    format!(
        "INVITE sip:+15551234@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5061;branch={branch};rport\r\n\
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

/// A response to a forwarded request, as a gateway would send it.
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

#[test]
fn basic_call_with_record_route() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, &invite("c1", "z9hG4bK-c1"));
    let out = w.out();
    assert_eq!(out.len(), 2, "100 Trying and the INVITE");
    let trying = parse(&out[0]);
    assert_eq!(trying.status(), Some(100));
    assert_eq!(out[0].dest, addr(CALLER));
    let inv = parse(&out[1]);
    assert_eq!(inv.method(), Method::Invite);
    assert_eq!(out[1].dest, addr(GW1));
    assert_eq!(inv.max_forwards(), Some(69));
    assert_eq!(inv.vias().count(), 2);
    assert!(inv.branch().unwrap().starts_with(b"z9hG4bKcn"));
    let second = inv.vias().nth(1).unwrap();
    assert_eq!(second.rport(), Some(Some(5061)));
    let rr: Vec<_> = inv.record_routes().map(|r| text(r.uri)).collect();
    assert_eq!(rr, ["sip:127.0.0.1:5060;lr"]);
    assert_eq!(inv.request_uri_bytes(), b"sip:+15551234@example.com");
    assert_eq!(inv.body(), b"v=0\n");

    w.send(GW1, &reply(&inv, 180, "Ringing", "g1"));
    let (t, ringing) = only(w.out());
    assert_eq!(t.dest, addr(CALLER));
    assert_eq!(ringing.status(), Some(180));
    assert_eq!(ringing.vias().count(), 1);
    assert_eq!(ringing.branch(), Some(&b"z9hG4bK-c1"[..]));

    w.send(GW1, &reply(&inv, 200, "OK", "g1"));
    let (_, ok) = only(w.out());
    assert_eq!(ok.status(), Some(200));
    // A retransmitted 200 is relayed too.
    w.send(GW1, &reply(&inv, 200, "OK", "g1"));
    assert_eq!(only(w.out()).1.status(), Some(200));

    // ACK and BYE follow the Record-Route.
    let ack = "ACK sip:gw@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-ack1\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:+15551234@example.com>;tag=g1\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    w.send(CALLER, ack);
    let (t, a) = only(w.out());
    assert_eq!(t.dest, addr(GW1));
    assert_eq!(a.method(), Method::Ack);
    assert_eq!(a.routes().count(), 0, "own Route removed");
    let bye = "BYE sip:gw@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-bye1\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:+15551234@example.com>;tag=g1\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    w.send(CALLER, bye);
    let (t, b) = only(w.out());
    assert_eq!(t.dest, addr(GW1));
    assert_eq!(b.method(), Method::Bye);
    w.send(GW1, &reply(&b, 200, "OK", "g1"));
    let (t, r) = only(w.out());
    assert_eq!(t.dest, addr(CALLER));
    assert_eq!(r.cseq().method, Method::Bye);
}

#[test]
fn invite_retransmission_is_absorbed_and_100_resent() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, &invite("c2", "z9hG4bK-c2"));
    assert_eq!(w.out().len(), 2);
    w.send(CALLER, &invite("c2", "z9hG4bK-c2"));
    let (t, m) = only(w.out());
    assert_eq!(t.dest, addr(CALLER));
    assert_eq!(m.status(), Some(100), "not routed again");
}

#[test]
fn round_robin_alternates() {
    let mut w = World::new(Algorithm::RoundRobin);
    let mut counts = [0; 2];
    for i in 0..100 {
        w.send(
            CALLER,
            &invite(&format!("rr{i}"), &format!("z9hG4bK-rr{i}")),
        );
        let out = w.out();
        let dest = out[1].dest;
        counts[usize::from(dest == addr(GW2))] += 1;
    }
    assert_eq!(counts, [50, 50]);
}

#[test]
fn busy_fails_over_to_the_next_gateway() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, &invite("c3", "z9hG4bK-c3"));
    let first = parse(&w.out()[1]);
    w.send(GW1, &reply(&first, 503, "Service Unavailable", "g1"));
    let out = w.out();
    // ACK to the gateway, INVITE to the other gateway.
    let ack = out
        .iter()
        .find(|t| parse(t).method() == Method::Ack)
        .expect("ACK for the 503");
    assert_eq!(ack.dest, addr(GW1));
    let next = out
        .iter()
        .find(|t| parse(t).method() == Method::Invite)
        .expect("INVITE to GW2");
    assert_eq!(next.dest, addr(GW2));
    let inv2 = parse(next);
    assert_ne!(inv2.branch(), first.branch());
    w.send(GW2, &reply(&inv2, 486, "Busy Here", "g2"));
    let out = w.out();
    let to_caller: Vec<_> = out
        .iter()
        .filter(|t| t.dest == addr(CALLER))
        .map(parse)
        .collect();
    assert_eq!(to_caller.len(), 1);
    assert_eq!(
        to_caller[0].status(),
        Some(486),
        "486 is not a failover code: it goes to the caller"
    );
}

#[test]
fn no_answer_fails_over_by_timer_b() {
    let mut w = World::with(Algorithm::RoundRobin, false, |c| c.timers.t1 = 50);
    w.send(CALLER, &invite("c4", "z9hG4bK-c4"));
    let out = w.out();
    assert_eq!(out[1].dest, addr(GW1));
    let out = w.advance(3_199);
    assert!(
        out.iter().all(|t| t.dest == addr(GW1)),
        "only retransmissions before timer B"
    );
    assert!(out.len() >= 5, "timer A retransmits");
    let out = w.advance(2);
    let (t, m) = only(out);
    assert_eq!(t.dest, addr(GW2));
    assert_eq!(m.method(), Method::Invite);
    // The second one times out too: the caller gets 408.
    let out = w.advance(4_000);
    let finals: Vec<_> = out
        .iter()
        .filter(|t| t.dest == addr(CALLER))
        .map(parse)
        .collect();
    // The 408, then its retransmissions by timer G (no ACK in this test).
    assert!(!finals.is_empty());
    assert!(finals.iter().all(|f| f.status() == Some(408)));
}

#[test]
fn parallel_fork_cancels_the_other_branch() {
    let mut w = World::new(Algorithm::Parallel);
    w.send(CALLER, &invite("c5", "z9hG4bK-c5"));
    let out = w.out();
    assert_eq!(out.len(), 3);
    let a = parse(&out[1]);
    let b = parse(&out[2]);
    assert_eq!([out[1].dest, out[2].dest], [addr(GW1), addr(GW2)]);
    w.send(GW1, &reply(&a, 180, "Ringing", "g1"));
    w.send(GW2, &reply(&b, 180, "Ringing", "g2"));
    assert_eq!(w.out().len(), 2, "both 180s forwarded");
    w.send(GW1, &reply(&a, 200, "OK", "g1"));
    let out = w.out();
    let ok = out
        .iter()
        .find(|t| t.dest == addr(CALLER))
        .map(parse)
        .unwrap();
    assert_eq!(ok.status(), Some(200));
    let cancel = out
        .iter()
        .find(|t| t.dest == addr(GW2))
        .map(parse)
        .expect("CANCEL to GW2");
    assert_eq!(cancel.method(), Method::Cancel);
    assert_eq!(cancel.branch(), b.branch());
    assert_eq!(cancel.request_uri_bytes(), b.request_uri_bytes());
    assert_eq!(
        cancel.header(HeaderName::Reason),
        Some(&br#"SIP;cause=200;text="Call completed elsewhere""#[..])
    );
    w.send(GW2, &reply(&cancel, 200, "OK", "g2"));
    w.send(GW2, &reply(&b, 487, "Request Terminated", "g2"));
    let out = w.out();
    assert!(
        out.iter().all(|t| t.dest == addr(GW2)),
        "the 487 is ACKed, not forwarded"
    );
    assert_eq!(parse(&out[0]).method(), Method::Ack);
}

#[test]
fn caller_cancel_reaches_the_branch_and_caller_gets_487() {
    let mut w = World::new(Algorithm::RoundRobin);
    let inv = invite("c6", "z9hG4bK-c6");
    w.send(CALLER, &inv);
    let fwd = parse(&w.out()[1]);
    let cancel = "CANCEL sip:+15551234@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-c6;rport\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:+15551234@example.com>\r\nCall-ID: c6\r\nCSeq: 1 CANCEL\r\nReason: Q.850;cause=16;text=\"Normal call clearing\"\r\nContent-Length: 0\r\n\r\n";
    // Before any 1xx: 200 for the CANCEL, but no CANCEL downstream yet (9.1).
    w.send(CALLER, cancel);
    let (t, ok) = only(w.out());
    assert_eq!(t.dest, addr(CALLER));
    assert_eq!((ok.status(), ok.cseq().method), (Some(200), Method::Cancel));
    // The 180 arrives: the CANCEL goes now, carrying the caller's Reason.
    w.send(GW1, &reply(&fwd, 180, "Ringing", "g1"));
    let out = w.out();
    let c = out
        .iter()
        .find(|t| t.dest == addr(GW1))
        .map(parse)
        .expect("CANCEL");
    assert_eq!(c.method(), Method::Cancel);
    assert_eq!(c.branch(), fwd.branch());
    assert_eq!(c.request_uri_bytes(), fwd.request_uri_bytes());
    assert_eq!(
        c.header(HeaderName::Reason),
        Some(&br#"Q.850;cause=16;text="Normal call clearing""#[..])
    );
    // A retransmitted CANCEL is answered again, not sent again.
    w.send(CALLER, cancel);
    let (_, again) = only(w.out());
    assert_eq!(again.status(), Some(200));
    w.send(GW1, &reply(&c, 200, "OK", "g1"));
    assert!(w.out().is_empty());
    w.send(GW1, &reply(&fwd, 487, "Request Terminated", "g1"));
    let out = w.out();
    let to_caller: Vec<_> = out
        .iter()
        .filter(|t| t.dest == addr(CALLER))
        .map(parse)
        .collect();
    assert_eq!(to_caller.len(), 1);
    assert_eq!(to_caller[0].status(), Some(487));
}

#[test]
fn caller_cancel_without_reason_gets_originator_cancel() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, &invite("c7", "z9hG4bK-c7"));
    let fwd = parse(&w.out()[1]);
    w.send(GW1, &reply(&fwd, 183, "Session Progress", "g1"));
    w.out();
    w.send(CALLER, "CANCEL sip:+15551234@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-c7\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:+15551234@example.com>\r\nCall-ID: c7\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n");
    let c = w
        .out()
        .iter()
        .find(|t| t.dest == addr(GW1))
        .map(parse)
        .unwrap();
    assert_eq!(
        c.header(HeaderName::Reason),
        Some(&br#"SIP;cause=487;text="ORIGINATOR_CANCEL""#[..])
    );
}

#[test]
fn cancel_before_1xx_then_timeout_gives_487() {
    let mut w = World::with(Algorithm::RoundRobin, false, |c| c.timers.t1 = 50);
    w.send(CALLER, &invite("c8", "z9hG4bK-c8"));
    w.out();
    w.send(CALLER, "CANCEL sip:+15551234@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-c8\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:+15551234@example.com>\r\nCall-ID: c8\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n");
    w.out();
    let out = w.advance(10_000);
    assert!(
        out.iter().all(|t| parse(t).method() != Method::Cancel),
        "no CANCEL to a branch that never answered"
    );
    let finals: Vec<_> = out
        .iter()
        .filter(|t| t.dest == addr(CALLER))
        .map(parse)
        .collect();
    assert!(!finals.is_empty());
    assert!(
        finals.iter().all(|f| f.status() == Some(487)),
        "487 and its retransmissions"
    );
    assert!(
        out.iter().all(|t| t.dest != addr(GW2)),
        "a cancelled call does not fail over"
    );
}

#[test]
fn unknown_cancel_gets_481() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, "CANCEL sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-none\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.org>;tag=a1\r\nTo: <sip:x@example.com>\r\nCall-ID: none\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n");
    let (_, r) = only(w.out());
    assert_eq!(r.status(), Some(481));
}

#[test]
fn timer_c_cancels_a_ringing_branch_with_480() {
    let mut w = World::with(Algorithm::RoundRobin, false, |c| c.timer_c = 5_000);
    w.send(CALLER, &invite("c9", "z9hG4bK-c9"));
    let fwd = parse(&w.out()[1]);
    w.advance(3_000);
    w.send(GW1, &reply(&fwd, 180, "Ringing", "g1"));
    w.out();
    let out = w.advance(4_999);
    assert!(
        out.iter().all(|t| parse(t).method() != Method::Cancel),
        "timer C restarted by the 180"
    );
    let out = w.advance(2);
    let (t, c) = only(out);
    assert_eq!(t.dest, addr(GW1));
    assert_eq!(
        c.header(HeaderName::Reason),
        Some(&br#"SIP;cause=480;text="NO_ANSWER""#[..])
    );
    w.send(GW1, &reply(&fwd, 487, "Request Terminated", "g1"));
    let out = w.out();
    // The ring timeout counts as a timeout: failover to GW2.
    let next = out
        .iter()
        .find(|t| t.dest == addr(GW2))
        .map(parse)
        .expect("failover after timer C");
    assert_eq!(next.method(), Method::Invite);
}

#[test]
fn validation_errors() {
    let mut w = World::new(Algorithm::RoundRobin);
    let mf0 = invite("v1", "z9hG4bK-v1").replace("Max-Forwards: 70", "Max-Forwards: 0");
    w.send(CALLER, &mf0);
    let out = w.out();
    assert_eq!(parse(out.last().unwrap()).status(), Some(483));

    let unknown =
        invite("v2", "z9hG4bK-v2").replace("@example.com SIP/2.0", "@unknown.example.net SIP/2.0");
    w.send(CALLER, &unknown);
    assert_eq!(parse(w.out().last().unwrap()).status(), Some(404));

    let pr = invite("v3", "z9hG4bK-v3").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nProxy-Require: foo\r\n",
    );
    w.send(CALLER, &pr);
    let r = parse(w.out().last().unwrap());
    assert_eq!(r.status(), Some(420));
    assert_eq!(r.headers_by_name(b"Unsupported").count(), 1);

    let scheme = invite("v4", "z9hG4bK-v4")
        .replace("INVITE sip:+15551234@example.com", "INVITE nobody:opaque");
    w.send(CALLER, &scheme);
    assert_eq!(parse(w.out().last().unwrap()).status(), Some(416));

    let bad = invite("v5", "z9hG4bK-v5").replace("CSeq: 1 INVITE", "CSeq: x INVITE");
    w.send(CALLER, &bad);
    let out = w.out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, addr(CALLER));
    // The 400 echoes the broken CSeq, so it is checked as text.
    let r = text(&out[0].data);
    assert!(r.starts_with("SIP/2.0 400 Bad CSeq number\r\n"), "{r}");
    assert!(r.contains("Call-ID: v5\r\n") && r.contains(";tag="), "{r}");

    let preload = invite("v6", "z9hG4bK-v6").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRoute: <sip:10.9.9.9;lr>\r\n",
    );
    w.send(CALLER, &preload);
    assert_eq!(parse(w.out().last().unwrap()).status(), Some(403));

    // The ACK for cairn's own 4xx is absorbed.
    let ack = "ACK sip:+15551234@unknown.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-v2\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:+15551234@example.com>;tag=x\r\nCall-ID: v2\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    w.send(CALLER, ack);
    assert!(w.out().is_empty());
}

#[test]
fn loop_is_detected() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, &invite("l1", "z9hG4bK-l1"));
    let fwd = w.out().pop().unwrap();
    // The gateway sends it straight back (same Request-URI).
    let mut looped = text(&fwd.data);
    looped = looped.replacen(
        "Via: ",
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-gw\r\nVia: ",
        1,
    );
    w.send(GW1, &looped);
    let r = parse(w.out().last().unwrap());
    assert_eq!(r.status(), Some(482));
}

#[test]
fn stateless_response_forwarding_after_state_loss() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, &invite("s1", "z9hG4bK-s1"));
    let fwd = parse(&w.out()[1]);
    // A new proxy instance (a restart without state) gets the 200.
    let mut fresh = World::new(Algorithm::RoundRobin);
    fresh.send(GW1, &reply(&fwd, 200, "OK", "g1"));
    let (t, ok) = only(fresh.out());
    assert_eq!(t.dest, addr(CALLER), "by the Via's rport");
    assert_eq!(ok.status(), Some(200));
    // A response whose top Via is not ours is dropped (RFC 4475 bcast).
    fresh.send(GW1, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\nVia: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\r\nCall-ID: b\r\nCSeq: 35 INVITE\r\nFrom: sip:user@example.com;tag=11141343\r\nTo: sip:user@example.edu;tag=2229\r\nContent-Length: 0\r\n\r\n");
    assert!(fresh.out().is_empty());
}

#[test]
fn tcp_targets_get_content_length_and_transport_in_via() {
    let mut w = World::with(Algorithm::RoundRobin, true, |_| {});
    let inv = invite("t1", "z9hG4bK-t1").replace("Content-Length: 4\r\n", "");
    w.send_t(CALLER, Transport::Tcp, &inv);
    let out = w.out();
    assert_eq!(out[1].transport, Transport::Tcp);
    let m = parse(&out[1]);
    assert_eq!(m.top_via().transport(), Some(Transport::Tcp));
    assert_eq!(m.content_length(), Some(4));
    let rr: Vec<_> = m.record_routes().map(|r| text(r.uri)).collect();
    assert_eq!(rr, ["sip:127.0.0.1:5060;transport=tcp;lr"]);
}

#[test]
fn udp_in_tcp_out_double_record_route() {
    let mut w = World::with(Algorithm::RoundRobin, true, |_| {});
    w.send(CALLER, &invite("t2", "z9hG4bK-t2"));
    let m = parse(&w.out()[1]);
    let rr: Vec<_> = m.record_routes().map(|r| text(r.uri)).collect();
    assert_eq!(
        rr,
        [
            "sip:127.0.0.1:5060;transport=tcp;lr",
            "sip:127.0.0.1:5060;lr"
        ]
    );
}

#[test]
fn challenges_are_aggregated_in_parallel_forks() {
    let mut w = World::new(Algorithm::Parallel);
    w.send(CALLER, &invite("a1", "z9hG4bK-a1"));
    let out = w.out();
    let (a, b) = (parse(&out[1]), parse(&out[2]));
    let r1 = reply(&a, 407, "Proxy Authentication Required", "g1").replace(
        "Content-Length: 0",
        "Proxy-Authenticate: Digest realm=\"one\"\r\nContent-Length: 0",
    );
    let r2 = reply(&b, 401, "Unauthorized", "g2").replace(
        "Content-Length: 0",
        "WWW-Authenticate: Digest realm=\"two\"\r\nContent-Length: 0",
    );
    w.send(GW1, &r1);
    w.send(GW2, &r2);
    let out = w.out();
    let fin = out
        .iter()
        .filter(|t| t.dest == addr(CALLER))
        .map(parse)
        .next()
        .unwrap();
    assert_eq!(fin.status(), Some(407));
    assert_eq!(fin.headers_named(HeaderName::ProxyAuthenticate).count(), 1);
    assert_eq!(fin.headers_named(HeaderName::WwwAuthenticate).count(), 1);
}

#[test]
fn best_response_prefers_6xx_and_maps_503() {
    let mut w = World::new(Algorithm::Parallel);
    w.send(CALLER, &invite("b1", "z9hG4bK-b1"));
    let out = w.out();
    let (a, b) = (parse(&out[1]), parse(&out[2]));
    w.send(GW1, &reply(&a, 503, "Service Unavailable", "g1"));
    w.send(GW2, &reply(&b, 503, "Service Unavailable", "g2"));
    let fin = w
        .out()
        .iter()
        .filter(|t| t.dest == addr(CALLER))
        .map(parse)
        .next()
        .unwrap();
    assert_eq!(
        fin.status(),
        Some(500),
        "503 is not passed upstream (16.7 item 6)"
    );

    w.send(CALLER, &invite("b2", "z9hG4bK-b2"));
    let out = w.out();
    let (a, b) = (parse(&out[1]), parse(&out[2]));
    w.send(GW1, &reply(&a, 180, "Ringing", "g1"));
    w.send(GW2, &reply(&b, 603, "Decline", "g2"));
    let out = w.out();
    let cancel = out
        .iter()
        .find(|t| t.dest == addr(GW1))
        .map(parse)
        .expect("6xx cancels the others");
    assert_eq!(cancel.method(), Method::Cancel);
    w.send(GW1, &reply(&a, 487, "Request Terminated", "g1"));
    let fin: Vec<_> = w
        .out()
        .iter()
        .filter(|t| t.dest == addr(CALLER))
        .map(parse)
        .collect();
    assert_eq!(fin.last().unwrap().status(), Some(603));
}

#[test]
fn transport_error_on_a_branch_is_a_503_and_fails_over() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, &invite("e1", "z9hG4bK-e1"));
    let out = w.out();
    let token = out[1].token;
    w.proxy.handle_send_failed(w.now, token);
    let (t, m) = only(w.out());
    assert_eq!(t.dest, addr(GW2));
    assert_eq!(m.method(), Method::Invite);
}

#[test]
fn transactions_are_cleaned_up() {
    let mut w = World::new(Algorithm::RoundRobin);
    w.send(CALLER, &invite("g1", "z9hG4bK-g1"));
    let fwd = parse(&w.out()[1]);
    w.send(GW1, &reply(&fwd, 486, "Busy Here", "g1"));
    w.out();
    let (s, c) = w.proxy.transaction_counts();
    assert!(s > 0 && c > 0);
    w.advance(60_000);
    assert_eq!(
        w.proxy.transaction_counts(),
        (0, 0),
        "every transaction ends by its timers"
    );
}

#[test]
fn probe_answers_are_handed_back_never_forwarded() {
    use cairn_proxy::probe::{self, ProbeTarget};
    let mut w = World::new(Algorithm::RoundRobin);
    let req = probe::options(
        w.proxy.config(),
        &ProbeTarget {
            uri: "sip:127.0.0.1:5071",
            addr: addr(GW1),
            transport: Transport::Udp,
            run: 9,
            token: 5,
        },
    )
    .unwrap();
    let opts = Message::parse(req).unwrap();
    // The gateway answers 200, then (a retransmission) 200 again, then a 1xx.
    for (code, reason) in [(200, "OK"), (200, "OK"), (100, "Trying")] {
        w.send(GW1, &reply(&opts, code, reason, "gw"));
        let mut outs = vec![];
        while let Some(o) = w.proxy.poll_output() {
            outs.push(o);
        }
        assert_eq!(outs.len(), 1, "one output, no transmit: {outs:?}");
        match &outs[0] {
            Output::ProbeResponse {
                run,
                token,
                code: c,
            } => {
                assert_eq!((*run, *token, *c), (9, 5, code));
            }
            other => panic!("{other:?}"),
        }
    }
    // A response whose probe branch is not the only Via is not ours to take: dropped.
    let two_vias = reply(&opts, 200, "OK", "gw").replacen(
        "From: ",
        "Via: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bKx\r\nFrom: ",
        1,
    );
    assert!(two_vias.contains("z9hG4bKcnp"), "{two_vias}");
    w.send(GW1, &two_vias);
    assert!(w.proxy.poll_output().is_none());
    assert_eq!(w.proxy.stats().responses_forwarded, 0);
}

#[test]
fn a_new_policy_counts_the_dialogs_in_flight_at_their_destinations() {
    let mut w = World::with(Algorithm::RoundRobin, false, |c| c.dialogs = true);
    w.send(CALLER, &invite("c1", "z9hG4bK-c1"));
    let inv = parse(&w.out()[1]);
    w.send(GW1, &reply(&inv, 200, "OK", "g1"));
    w.out();
    let dialogs =
        |p: &Policy, i: usize| p.destination_sets()[0].destinations()[i].state().dialogs();
    assert_eq!(dialogs(w.proxy.policy(), 0), 1);
    // The reloaded policy lists the gateways the other way round, plus a new one.
    let cfg = RoutingConfig {
        destination_sets: vec![DestinationSetConfig::new(
            "gw",
            Algorithm::RoundRobin,
            &[
                "sip:127.0.0.1:5073",
                &format!("sip:{GW2}"),
                &format!("sip:{GW1}"),
            ],
        )],
        rules: vec![RuleConfig {
            name: "calls".into(),
            destination_set: Some("gw".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let new = Arc::new(Policy::build(&cfg).unwrap());
    w.proxy.set_policy(new.clone());
    assert_eq!(
        (dialogs(&new, 0), dialogs(&new, 1), dialogs(&new, 2)),
        (0, 0, 1)
    );
    // The BYE's 200 ends the dialog: counted out of GW1 in the new policy.
    let bye = "BYE sip:gw@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-bye1\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:+15551234@example.com>;tag=g1\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    w.send(CALLER, bye);
    let (_, b) = only(w.out());
    w.send(GW1, &reply(&b, 200, "OK", "g1"));
    w.out();
    assert_eq!(w.proxy.dialogs().len(), 0);
    assert_eq!(
        (dialogs(&new, 0), dialogs(&new, 1), dialogs(&new, 2)),
        (0, 0, 0)
    );
}

/// A rule that rewrites the Request-URI and edits headers: every branch of
/// the INVITE carries the changes (a destination's `rewrite_ruri_host`
/// comes after the rule's host), and the CANCEL of a branch has the
/// Request-URI and branch of the INVITE as sent on that branch.
#[test]
fn manipulation_reaches_every_branch_and_the_cancel() {
    let mut set = DestinationSetConfig::new(
        "gw",
        Algorithm::Priority,
        &[&format!("sip:{GW1}"), &format!("sip:{GW2}")],
    );
    set.destinations[1].rewrite_ruri_host = Some(true);
    let cfg = RoutingConfig {
        destination_sets: vec![set],
        rules: vec![RuleConfig {
            name: "lb".into(),
            destination_set: Some("gw".into()),
            set_ruri_user: Some("004930123".into()),
            set_ruri_host: Some("carrier.example.net:5090".into()),
            add_headers: Some(StringList(vec!["X-Lb: cairn".into()])),
            remove_headers: Some(StringList(vec!["X-Secret".into(), "subject".into()])),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut w = World::with_policy(Policy::build(&cfg).unwrap());
    let inv = invite("m1", "z9hG4bK-m1").replace(
        "Content-Type:",
        "X-Secret: s3cr3t\r\nx-secret: again\r\ns: private\r\nContent-Type:",
    );
    w.send(CALLER, &inv);
    let out = w.out();
    assert_eq!(out.len(), 2);
    let first = parse(&out[1]);
    assert_eq!(out[1].dest, addr(GW1));
    assert_eq!(
        text(first.request_uri_bytes()),
        "sip:004930123@carrier.example.net:5090"
    );
    let first_text = text(first.as_bytes());
    assert!(
        !first_text.to_ascii_lowercase().contains("x-secret"),
        "{first_text}"
    );
    assert!(!first_text.contains("s: private"), "{first_text}");
    assert_eq!(first.headers_by_name(b"X-Lb").count(), 1, "{first_text}");
    assert_eq!(first.body(), b"v=0\n");

    // GW1 is busy: the second branch gets the same changes, with GW2's own
    // address as host (its rewrite_ruri_host).
    w.send(GW1, &reply(&first, 503, "Service Unavailable", "g1"));
    let out = w.out();
    let second = out
        .iter()
        .find(|t| t.dest == addr(GW2))
        .map(parse)
        .expect("INVITE to GW2");
    assert_eq!(
        text(second.request_uri_bytes()),
        format!("sip:004930123@{GW2}")
    );
    assert_eq!(second.headers_by_name(b"X-Lb").count(), 1);
    assert_eq!(second.headers_by_name(b"X-Secret").count(), 0);

    // The caller gives up after the 180: the CANCEL names the INVITE's
    // Request-URI and branch on GW2.
    w.send(GW2, &reply(&second, 180, "Ringing", "g2"));
    let _ = w.out();
    let cancel = "CANCEL sip:+15551234@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-m1;rport\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:+15551234@example.com>\r\nCall-ID: m1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    w.send(CALLER, cancel);
    let out = w.out();
    let c = out
        .iter()
        .find(|t| t.dest == addr(GW2))
        .map(parse)
        .expect("CANCEL to GW2");
    assert_eq!(c.method(), Method::Cancel);
    assert_eq!(c.request_uri_bytes(), second.request_uri_bytes());
    assert_eq!(c.branch(), second.branch());
    assert_ne!(c.branch(), first.branch());
}

/// A Lua rule decides in the core: the script reads a header and the
/// Request-URI user, rewrites the user and adds a header; the forwarded
/// INVITE shows both and a script failure answers with the failure code.
#[test]
fn lua_rule_routes_and_manipulates_in_the_core() {
    let dir = std::env::temp_dir().join(format!("cairn-proxy-lua-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("route.lua"),
        format!(
            r#"
function route()
    if cairn.header("X-Fail") then error("asked to fail") end
    local user = cairn.ruri_user()
    cairn.set_ruri_user("00" .. user:sub(2))
    cairn.add_header("X-Caller", cairn.from_user())
    if user:sub(1, 2) == "+1" then return {{"sip:{GW2}"}} end
    return "gw"
end
"#
        ),
    )
    .unwrap();
    let mut rule = RuleConfig {
        name: "lua".into(),
        script: Some(cairn_routing::ScriptConfig::new("route.lua", "route")),
        ..Default::default()
    };
    rule.script.as_mut().unwrap().failure =
        Some(cairn_routing::ResponseConfig::new(503, "Script Error"));
    let cfg = RoutingConfig {
        destination_sets: vec![DestinationSetConfig::new(
            "gw",
            Algorithm::Priority,
            &[&format!("sip:{GW1}")],
        )],
        rules: vec![rule],
        base_dir: Some(dir),
        ..Default::default()
    };
    let mut w = World::with_policy(Policy::build(&cfg).unwrap());
    w.send(CALLER, &invite("l1", "z9hG4bK-l1"));
    let out = w.out();
    assert_eq!(out[1].dest, addr(GW2), "+1 goes to the script's target");
    let fwd = parse(&out[1]);
    assert_eq!(text(fwd.request_uri_bytes()), "sip:0015551234@example.com");
    assert_eq!(
        fwd.headers_by_name(b"X-Caller")
            .map(|h| text(fwd.slice(h.value)))
            .collect::<Vec<_>>(),
        vec!["alice"]
    );
    w.send(
        CALLER,
        &invite("l2", "z9hG4bK-l2").replace("Call-ID: l2", "Call-ID: l2\r\nX-Fail: yes"),
    );
    let out = w.out();
    let last = parse(out.last().unwrap());
    assert_eq!(last.status(), Some(503));
    assert_eq!(last.reason_phrase(), b"Script Error");
    assert_eq!(w.proxy.policy().script_errors(), 1);
}
