//! Requests cairn must refuse itself: Max-Forwards exhausted (483), a
//! domain no rule serves (404 from `[routing] no_match`), malformed
//! requests (400). None of them may reach a gateway.

mod common;

use common::*;
use std::time::Duration;

fn max_forwards_zero(t: Transport) {
    let net = TestNet::new();
    let routing = gateway_set(
        &net,
        t,
        "gateways",
        "round_robin",
        &["5xx"],
        &[(ports::UAS1, "")],
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let uas = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &uac_expect(483),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(1).max_forwards(0),
    );
    let uas = uas.stop();
    uac.assert_all_ok(1);
    assert_eq!(uac.received_responses(483).len(), 1, "{uac}");
    assert_eq!(uas.created, 0, "nothing forwarded:\n{uas}");
}

#[test]
fn max_forwards_zero_gets_483_udp() {
    max_forwards_zero(Transport::Udp);
}

#[test]
fn max_forwards_zero_gets_483_tcp() {
    max_forwards_zero(Transport::Tcp);
}

/// A rule with ruri_domain = "cairn.test": a call to that domain goes
/// through, a call to another domain gets `no_match` (404).
#[test]
fn unknown_domain_gets_404_udp() {
    let net = TestNet::new();
    let routing = format!(
        "[[destination_set]]\nname = \"gateways\"\nalgorithm = \"round_robin\"\n\
         destinations = [ {{ uri = \"sip:{ip}:{port}\" }} ]\n\n\
         [[rule]]\nname = \"our-domain\"\nmethods = [\"INVITE\"]\nruri_domain = \"cairn.test\"\n\
         destination_set = \"gateways\"\n\n",
        ip = net.ip,
        port = ports::UAS1
    );
    let _cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let uas = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::udp(),
    );
    let rejected = Sipp::run_uac(
        &uac_expect(404),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp().calls(1).ruri_host("unknown.example"),
    );
    let accepted = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp().calls(1).ruri_host("cairn.test"),
    );
    let uas = uas.stop();
    rejected.assert_all_ok(1);
    assert_eq!(rejected.received_responses(404).len(), 1, "{rejected}");
    accepted.assert_all_ok(1);
    assert_eq!(
        uas.created, 1,
        "only the cairn.test call reached the gateway:\n{uas}"
    );
    let inv = uas.received_requests("INVITE");
    assert!(
        inv[0]
            .header("To")
            .is_some_and(|to| to.contains("@cairn.test")),
        "{}",
        inv[0].text
    );
}

/// An INVITE as a raw datagram from `from`, with `cseq` and `max_forwards`
/// as given (to break one of them).
fn raw_invite(
    net: &TestNet,
    from: std::net::SocketAddr,
    call_id: &str,
    branch: &str,
    cseq: &str,
    mf: &str,
) -> String {
    format!(
        "INVITE sip:service@{cairn} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};rport;branch={branch}\r\n\
         From: <sip:raw@{from}>;tag=raw1\r\n\
         To: <sip:service@{cairn}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq}\r\n\
         Contact: <sip:raw@{from}>\r\n\
         Max-Forwards: {mf}\r\n\
         Content-Length: 0\r\n\r\n",
        cairn = net.cairn()
    )
}

/// Malformed requests get "400" back to the sender (Via/rport), with the
/// Via and Call-ID copied; cairn survives garbage and keeps answering; no
/// gateway sees any of it.
#[test]
fn malformed_request_gets_400_udp() {
    let net = TestNet::new();
    let routing = gateway_set(
        &net,
        Transport::Udp,
        "gateways",
        "round_robin",
        &["5xx"],
        &[(ports::UAS1, "")],
    );
    let mut cairn = Cairn::start(&cairn_config(&net, DEFAULT_TIMERS, &routing));
    let uas = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::udp(),
    );
    let sock = RawUdp::bind(net.addr(ports::RAW));

    let cases = [
        ("CSeq number not a number", "abc INVITE", "70"),
        ("CSeq method differs from the request's", "1 BYE", "70"),
        ("Max-Forwards not a number", "1 INVITE", "lots"),
    ];
    for (what, cseq, mf) in cases {
        let call_id = format!("malformed-{}", token());
        let branch = format!("z9hG4bK-{}", token());
        let req = raw_invite(&net, sock.local, &call_id, &branch, cseq, mf);
        let resp = sock
            .request(net.cairn(), &req, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{what}: no final response to\n{req}"));
        assert!(
            resp.first_line().starts_with("SIP/2.0 400 "),
            "{what}: expected 400, got {:?}\n{}",
            resp.first_line(),
            resp.text
        );
        assert_eq!(
            resp.call_id(),
            Some(call_id.as_str()),
            "{what}: Call-ID copied\n{}",
            resp.text
        );
        assert_eq!(
            resp.top_via_branch().as_deref(),
            Some(branch.as_str()),
            "{what}: Via copied\n{}",
            resp.text
        );
    }

    // Garbage and an empty datagram: no answer needed, no crash.
    sock.send(net.cairn(), "this is not SIP\r\n\r\n");
    sock.send(net.cairn(), "\r\n\r\n");
    sock.send(net.cairn(), "INVITE sip:x SIP/2.0\r\nVia: broken\r\n");
    let call_id = format!("after-garbage-{}", token());
    let branch = format!("z9hG4bK-{}", token());
    let req = raw_invite(&net, sock.local, &call_id, &branch, "abc INVITE", "70");
    let resp = sock
        .request(net.cairn(), &req, Duration::from_secs(5))
        .expect("cairn still answers after garbage");
    assert!(
        resp.first_line().starts_with("SIP/2.0 400 "),
        "{}",
        resp.text
    );
    assert!(cairn.is_running(), "cairn exited:\n{}", cairn.log());

    let uas = uas.stop();
    assert_eq!(uas.created, 0, "nothing malformed was forwarded:\n{uas}");
}
