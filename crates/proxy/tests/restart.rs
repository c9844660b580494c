//! Restart safety of the core: records written before the INVITE leaves,
//! and a fresh core rebuilt from them handles CANCELs, retransmissions,
//! late responses and timers as the old one would have.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cairn_proxy::{CoreConfig, LocalAddr, Output, Peer, Proxy, Space, Transmit};
use cairn_routing::{
    Algorithm, DestinationSetConfig, Policy, RoutingConfig, RoutingSection, RuleConfig,
};
use cairn_sip::{HeaderName, Message, Method, Transport};

const PROXY: &str = "127.0.0.1:5060";
const CALLER: &str = "127.0.0.2:5061";
const GW1: &str = "127.0.0.1:5071";
const GW2: &str = "127.0.0.1:5072";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// One staged store operation: (space, key, value; `None` to forget).
type Op = (Space, [u8; 8], Option<Vec<u8>>);

/// A proxy plus the store its driver would keep.
struct Node {
    proxy: Proxy,
    store: BTreeMap<[u8; 8], Vec<u8>>,
    dialogs: BTreeMap<[u8; 8], Vec<u8>>,
    /// Records not committed yet: they wait for an urgent one (or the
    /// driver's delay) like in the driver.
    pending: Vec<Op>,
    now: u64,
}

fn new_proxy(algorithm: Algorithm) -> Proxy {
    proxy_with_rule(
        algorithm,
        RuleConfig {
            name: "all".into(),
            destination_set: Some("gw".into()),
            ..Default::default()
        },
    )
}

fn proxy_with_rule(algorithm: Algorithm, rule: RuleConfig) -> Proxy {
    let mut set = DestinationSetConfig::new(
        "gw",
        algorithm,
        &[&format!("sip:{GW1}"), &format!("sip:{GW2}")],
    );
    set.destinations[0].max_dialogs = Some(1);
    let cfg = RoutingConfig {
        destination_sets: vec![set],
        rules: vec![rule],
        routing: RoutingSection::default(),
        ..Default::default()
    };
    let core = CoreConfig {
        listeners: vec![LocalAddr {
            transport: Transport::Udp,
            addr: addr(PROXY),
        }],
        persist: true,
        dialogs: true,
        timers: cairn_transaction::Timers {
            t1: 50,
            t2: 400,
            t4: 500,
        },
        ..Default::default()
    };
    Proxy::new(core, Arc::new(Policy::build_seeded(&cfg, 1).unwrap()))
}

impl Node {
    fn new(algorithm: Algorithm) -> Node {
        Node {
            proxy: new_proxy(algorithm),
            store: BTreeMap::new(),
            dialogs: BTreeMap::new(),
            pending: Vec::new(),
            now: 1_000_000,
        }
    }

    /// Drain one poll cycle like the driver: stage the records of the
    /// cycle; when one is urgent commit everything staged, then transmit.
    /// Every INVITE that goes out must be covered by a committed record
    /// naming its branch.
    fn out(&mut self) -> Vec<Transmit> {
        let mut sends = vec![];
        let mut urgent = false;
        while let Some(o) = self.proxy.poll_output() {
            match o {
                Output::Transmit(t) => sends.push(t),
                Output::Persist {
                    space,
                    key,
                    value,
                    urgent: u,
                    ..
                } => {
                    urgent |= u;
                    self.pending.push((space, key, Some(value)));
                }
                Output::Forget { space, key } => self.pending.push((space, key, None)),
                Output::Lookup { .. } | Output::FindOwner { .. } => panic!("no lookups here"),
                Output::ProbeResponse { .. } => panic!("no probes here"),
            }
        }
        if urgent {
            self.commit();
        }
        let committed = self.calls();
        for t in &sends {
            let m = parse(t);
            if m.is_request() && m.method() == Method::Invite {
                let branch = m.branch().unwrap().to_vec();
                let covered = committed.iter().any(|r| {
                    r.ctx.iter().flat_map(|c| c.branches.iter()).any(|b| {
                        !b.request.is_empty()
                            && Message::parse(Bytes::from(b.request.clone()))
                                .unwrap()
                                .branch()
                                == Some(&branch[..])
                            && b.target.addr == t.dest
                    })
                });
                assert!(covered, "INVITE {} left without a record", text(&branch));
            }
        }
        sends
    }

    /// Commit what is staged, in order.
    fn commit(&mut self) {
        for (space, key, value) in self.pending.drain(..) {
            let map = match space {
                Space::Transactions => &mut self.store,
                Space::Dialogs => &mut self.dialogs,
            };
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
    }

    /// The calls on record.
    fn calls(&self) -> Vec<cairn_proxy::persist::TxnRecord> {
        let (calls, bad) =
            cairn_proxy::persist::merge_all(self.store.values().map(|v| v.as_slice()));
        assert_eq!(bad, 0, "every record has its other half");
        calls
    }

    fn send(&mut self, from: &str, msg: &str) -> Vec<Transmit> {
        self.proxy.handle_message(
            self.now,
            Bytes::copy_from_slice(msg.as_bytes()),
            Peer::new(addr(from), Transport::Udp),
            Some(addr(PROXY)),
        );
        self.out()
    }

    fn advance(&mut self, ms: u64) -> Vec<Transmit> {
        let end = self.now + ms;
        let mut v = vec![];
        while let Some(t) = self.proxy.next_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
            v.extend(self.out());
        }
        self.now = end;
        v
    }

    /// SIGKILL and start again, the records that were waiting committed
    /// (the kill came later than the driver's delay).
    fn restart(&mut self, algorithm: Algorithm, downtime: u64) {
        self.commit();
        self.crash(algorithm, downtime);
    }

    /// SIGKILL and start again: only the store survives, records still
    /// waiting to be grouped are lost.
    fn crash(&mut self, algorithm: Algorithm, downtime: u64) {
        self.pending.clear();
        self.now += downtime;
        self.proxy = new_proxy(algorithm);
        let calls = self.calls().len();
        let records: Vec<Vec<u8>> = self.store.values().cloned().collect();
        let report = self
            .proxy
            .restore(self.now, records.iter().map(|v| v.as_slice()));
        assert_eq!(report.skipped, 0);
        assert_eq!(report.restored + report.expired, calls);
        let dialogs: Vec<Vec<u8>> = self.dialogs.values().cloned().collect();
        let report = self
            .proxy
            .restore_dialogs(self.now, dialogs.iter().map(|v| v.as_slice()));
        assert_eq!(
            (report.restored + report.expired, report.skipped),
            (self.dialogs.len(), 0)
        );
    }
}

fn parse(t: &Transmit) -> Message {
    Message::parse(t.data.clone()).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn invite(call: &str) -> String {
    format!("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-{call};rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.2:5061>\r\nContent-Length: 0\r\n\r\n")
}

fn cancel(call: &str) -> String {
    format!("CANCEL sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-{call};rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n")
}

fn reply(req: &Message, code: u16, tag: &str) -> String {
    let mut s = format!("SIP/2.0 {code} Whatever\r\n");
    for h in req.headers_named(HeaderName::Via) {
        s += &format!("Via: {}\r\n", text(req.slice(h.value)));
    }
    s += &format!(
        "From: {}\r\nTo: {};tag={tag}\r\nCall-ID: {}\r\nCSeq: {} {}\r\nContent-Length: 0\r\n\r\n",
        text(req.from_value()),
        text(req.to_value()),
        text(req.call_id()),
        req.cseq().number,
        text(req.method_bytes())
    );
    s
}

fn invites_to(out: &[Transmit]) -> Vec<(SocketAddr, Message)> {
    out.iter()
        .map(|t| (t.dest, parse(t)))
        .filter(|(_, m)| m.method() == Method::Invite && m.is_request())
        .collect()
}

#[test]
fn cancel_after_restart_reaches_the_exact_branch() {
    let mut n = Node::new(Algorithm::RoundRobin);
    let mut sent = vec![];
    for i in 0..10 {
        let out = n.send(CALLER, &invite(&format!("r{i}")));
        let (dest, inv) = invites_to(&out).pop().unwrap();
        n.send(&dest.to_string(), &reply(&inv, 180, "g"));
        sent.push((dest, inv));
    }
    assert_eq!(n.calls().len(), 10, "one record per call in flight");
    n.restart(Algorithm::RoundRobin, 2_000);
    for (i, (dest, inv)) in sent.iter().enumerate() {
        let out = n.send(CALLER, &cancel(&format!("r{i}")));
        let ok = out
            .iter()
            .find(|t| t.dest == addr(CALLER))
            .map(parse)
            .unwrap();
        assert_eq!((ok.status(), ok.cseq().method), (Some(200), Method::Cancel));
        let c = out
            .iter()
            .find(|t| t.dest == *dest)
            .map(parse)
            .expect("CANCEL to the INVITE's gateway");
        assert_eq!(c.method(), Method::Cancel);
        assert_eq!(c.request_uri_bytes(), inv.request_uri_bytes());
        assert_eq!(c.branch(), inv.branch());
        assert!(
            out.iter()
                .all(|t| t.dest == *dest || t.dest == addr(CALLER)),
            "nothing to the other gateway"
        );
        let out = n.send(&dest.to_string(), &reply(inv, 487, "g"));
        let fin = out
            .iter()
            .find(|t| t.dest == addr(CALLER))
            .map(parse)
            .expect("487 to the caller");
        assert_eq!(fin.status(), Some(487));
        assert!(
            out.iter()
                .any(|t| t.dest == *dest && parse(t).method() == Method::Ack),
            "the 487 is ACKed"
        );
    }
}

/// The records of a 1xx wait to be grouped with the next urgent one; a
/// kill in that window loses them. The restored branch then does not know
/// it rang: the caller's CANCEL still goes out at once (not held for a
/// 1xx that will not come again), and an INVITE retransmission is still
/// absorbed.
#[test]
fn a_lost_1xx_record_still_cancels_at_once() {
    let mut n = Node::new(Algorithm::RoundRobin);
    let out = n.send(CALLER, &invite("l1"));
    let (dest, inv) = invites_to(&out).pop().unwrap();
    assert!(n.pending.is_empty(), "the INVITE's records are committed");
    n.send(&dest.to_string(), &reply(&inv, 180, "g"));
    assert!(!n.pending.is_empty(), "the 1xx's record waits");
    n.crash(Algorithm::RoundRobin, 1_000);
    let out = n.send(CALLER, &invite("l1"));
    // The restored branch (no 1xx on record) retransmits its INVITE as
    // timer A says: the same request to the same gateway, nothing new.
    for (d, m) in invites_to(&out) {
        assert_eq!((d, m.branch()), (dest, inv.branch()), "not routed again");
    }
    let out = n.send(CALLER, &cancel("l1"));
    let c = out
        .iter()
        .find(|t| t.dest == dest)
        .map(parse)
        .expect("CANCEL at once to the INVITE's gateway");
    assert_eq!(c.method(), Method::Cancel);
    assert_eq!(c.branch(), inv.branch());
    assert_eq!(c.request_uri_bytes(), inv.request_uri_bytes());
    let out = n.send(&dest.to_string(), &reply(&inv, 487, "g"));
    assert!(
        out.iter()
            .any(|t| t.dest == addr(CALLER) && parse(t).status() == Some(487)),
        "the caller gets its 487"
    );
}

#[test]
fn invite_retransmission_after_restart_is_absorbed() {
    let mut n = Node::new(Algorithm::RoundRobin);
    let out = n.send(CALLER, &invite("x1"));
    let (dest, inv) = invites_to(&out).pop().unwrap();
    n.send(&dest.to_string(), &reply(&inv, 180, "g"));
    n.restart(Algorithm::RoundRobin, 1_000);
    let out = n.send(CALLER, &invite("x1"));
    assert!(invites_to(&out).is_empty(), "not routed again");
    let again: Vec<_> = out.iter().map(parse).collect();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].status(),
        Some(180),
        "the last provisional is re-sent"
    );
}

#[test]
fn late_responses_continue_the_aggregation() {
    let mut n = Node::new(Algorithm::Parallel);
    let out = n.send(CALLER, &invite("p1"));
    let inv = invites_to(&out);
    assert_eq!(inv.len(), 2);
    n.send(GW1, &reply(&inv[0].1, 486, "g1"));
    n.restart(Algorithm::Parallel, 500);
    let out = n.send(GW2, &reply(&inv[1].1, 200, "g2"));
    let fin = out
        .iter()
        .find(|t| t.dest == addr(CALLER))
        .map(parse)
        .unwrap();
    assert_eq!(fin.status(), Some(200));
    // And the other way: every branch failing ends with the best final.
    let out = n.send(CALLER, &invite("p2"));
    let inv = invites_to(&out);
    n.send(GW1, &reply(&inv[0].1, 486, "g1"));
    n.restart(Algorithm::Parallel, 500);
    let out = n.send(GW2, &reply(&inv[1].1, 503, "g2"));
    let fin = out
        .iter()
        .find(|t| t.dest == addr(CALLER))
        .map(parse)
        .unwrap();
    assert_eq!(
        fin.status(),
        Some(486),
        "the 486 from before the restart wins over a 503"
    );
}

#[test]
fn restored_branch_times_out_and_fails_over() {
    let mut n = Node::new(Algorithm::RoundRobin);
    let out = n.send(CALLER, &invite("t1"));
    let (dest, _) = invites_to(&out).pop().unwrap();
    assert_eq!(dest, addr(GW1));
    n.restart(Algorithm::RoundRobin, 1_000);
    // Timer B (64*T1 = 3.2 s) counts from when the INVITE first went out.
    let out = n.advance(2_100);
    let before = invites_to(&out);
    assert!(
        !before.is_empty(),
        "retransmissions resume after the restart"
    );
    assert!(before.iter().all(|(d, _)| *d == addr(GW1)));
    let out = n.advance(200);
    let next = invites_to(&out);
    assert!(!next.is_empty(), "failover after the restored timer B");
    assert!(
        next.iter().all(|(d, _)| *d == addr(GW2)),
        "the INVITE and its retransmissions go to GW2"
    );
}

#[test]
fn records_are_forgotten_when_calls_end() {
    let mut n = Node::new(Algorithm::RoundRobin);
    let out = n.send(CALLER, &invite("f1"));
    let (dest, inv) = invites_to(&out).pop().unwrap();
    n.send(&dest.to_string(), &reply(&inv, 486, "g"));
    n.send(&dest.to_string(), &reply(&inv, 486, "g"));
    n.commit();
    assert_eq!(n.calls().len(), 1);
    let ack = "ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-f1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>;tag=g\r\nCall-ID: f1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    n.send(CALLER, ack);
    n.advance(60_000);
    n.commit();
    assert!(n.store.is_empty(), "the store holds only calls in flight");
    assert_eq!(n.proxy.transaction_counts(), (0, 0));
}

#[test]
fn a_2xx_retransmitted_after_restart_is_relayed() {
    let mut n = Node::new(Algorithm::RoundRobin);
    let out = n.send(CALLER, &invite("o1"));
    let (dest, inv) = invites_to(&out).pop().unwrap();
    n.send(&dest.to_string(), &reply(&inv, 180, "g"));
    // The gateway answers while cairn is down; its retransmission arrives after.
    n.restart(Algorithm::RoundRobin, 3_000);
    let out = n.send(&dest.to_string(), &reply(&inv, 200, "g"));
    let ok = out
        .iter()
        .find(|t| t.dest == addr(CALLER))
        .map(parse)
        .unwrap();
    assert_eq!(ok.status(), Some(200));
}

#[test]
fn damaged_records_are_skipped() {
    let mut p = new_proxy(Algorithm::RoundRobin);
    let report = p.restore(1_000, [&b"\x01garbage"[..], b"", b"\x09other-version"]);
    assert_eq!((report.restored, report.skipped), (0, 3));
}

fn in_dialog(method: &str, call: &str, cseq: u32, to_tag: &str) -> String {
    format!("{method} sip:gw@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-{call}-{cseq};rport\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>;tag={to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n")
}

#[test]
fn dialogs_survive_a_restart_and_end_by_bye() {
    let mut n = Node::new(Algorithm::RoundRobin);
    let out = n.send(CALLER, &invite("d1"));
    let (dest, inv) = invites_to(&out).pop().unwrap();
    n.send(&dest.to_string(), &reply(&inv, 180, "gd"));
    assert_eq!(n.proxy.dialogs().len(), 1, "early dialog");
    n.send(&dest.to_string(), &reply(&inv, 200, "gd"));
    let d = n.proxy.dialogs().iter().next().unwrap().clone();
    assert_eq!(d.state, cairn_proxy::dialog::DialogState::Confirmed);
    assert_eq!(d.destination_addr, dest);
    assert_eq!(
        n.proxy.dialogs().per_destination().collect::<Vec<_>>(),
        vec![(d.destination.as_str(), 1)]
    );
    n.send(CALLER, &in_dialog("ACK", "d1", 1, "gd"));
    n.restart(Algorithm::RoundRobin, 5_000);
    assert_eq!(n.proxy.dialogs().len(), 1, "listed after the restart");
    let out = n.send(CALLER, &in_dialog("BYE", "d1", 2, "gd"));
    let bye = out
        .iter()
        .find(|t| t.dest == dest)
        .map(parse)
        .expect("BYE routed to the gateway");
    assert_eq!(bye.method(), Method::Bye);
    assert_eq!(n.proxy.dialogs().len(), 0, "the BYE ends it");
    n.commit();
    assert!(n.dialogs.is_empty(), "and its record");
}

#[test]
fn a_full_destination_is_skipped() {
    let mut n = Node::new(Algorithm::Priority);
    let out = n.send(CALLER, &invite("m1"));
    let (dest, inv) = invites_to(&out).pop().unwrap();
    assert_eq!(dest, addr(GW1));
    n.send(GW1, &reply(&inv, 200, "g1"));
    assert_eq!(n.proxy.dialogs().len(), 1);
    let d = n.proxy.dialogs().iter().next().unwrap();
    assert_eq!((d.set.as_str(), d.destination_index), ("gw", 0));
    let st = n
        .proxy
        .policy()
        .destination_set("gw")
        .unwrap()
        .destinations()[0]
        .state();
    assert_eq!(st.dialogs(), 1);
    // GW1 allows one dialog: the next call goes to GW2 although GW1 has priority.
    let out = n.send(CALLER, &invite("m2"));
    assert_eq!(invites_to(&out).pop().unwrap().0, addr(GW2));
    // After the BYE, GW1 takes calls again.
    n.send(CALLER, &in_dialog("BYE", "m1", 2, "g1"));
    let out = n.send(CALLER, &invite("m3"));
    assert_eq!(invites_to(&out).pop().unwrap().0, addr(GW1));
}

/// The rule's manipulation is part of the record: a branch started after a
/// restart (failover) carries it, although the restarted proxy's rule no
/// longer has it.
#[test]
fn manipulation_survives_a_restart() {
    let mut n = Node::new(Algorithm::RoundRobin);
    n.proxy = proxy_with_rule(
        Algorithm::RoundRobin,
        RuleConfig {
            name: "all".into(),
            destination_set: Some("gw".into()),
            set_ruri_user: Some("carol".into()),
            add_headers: Some(vec!["X-Lb: 1".to_string()].into_iter().collect()),
            ..Default::default()
        },
    );
    let out = n.send(CALLER, &invite("mr1"));
    let (dest, first) = invites_to(&out).pop().unwrap();
    assert_eq!(dest, addr(GW1));
    assert_eq!(text(first.request_uri_bytes()), "sip:carol@example.com");
    n.restart(Algorithm::RoundRobin, 1_000);
    let out = n.send(GW1, &reply(&first, 503, "g1"));
    let (dest, second) = invites_to(&out).pop().expect("failover INVITE");
    assert_eq!(dest, addr(GW2));
    assert_eq!(text(second.request_uri_bytes()), "sip:carol@example.com");
    assert_eq!(second.headers_by_name(b"X-Lb").count(), 1);
}

/// The failover codes are part of the record (kept as runs of codes): after
/// a restart a 408 or a 503 still moves on to the next destination and a
/// 486 does not.
#[test]
fn failover_codes_survive_a_restart() {
    for (code, fails_over) in [(408, true), (503, true), (486, false), (600, false)] {
        let mut n = Node::new(Algorithm::RoundRobin);
        let call = format!("fc{code}");
        let out = n.send(CALLER, &invite(&call));
        let (dest, first) = invites_to(&out).pop().unwrap();
        assert_eq!(dest, addr(GW1));
        n.restart(Algorithm::RoundRobin, 1_000);
        let out = n.send(GW1, &reply(&first, code, "g1"));
        // (The restored branch's INVITE retransmission to GW1 may be
        // among them.)
        let next = invites_to(&out);
        let to_gw2 = next.iter().filter(|(d, _)| *d == addr(GW2)).count();
        if fails_over {
            assert_eq!(to_gw2, 1, "{code} fails over");
        } else {
            assert_eq!(to_gw2, 0, "{code} does not fail over");
            assert!(
                out.iter().any(|t| t.dest == addr(CALLER)
                    && text(&t.data).starts_with(&format!("SIP/2.0 {code} "))),
                "{code} goes to the caller"
            );
        }
    }
}
