//! The SIPp scenarios checked against each other, SIPp to SIPp on loopback,
//! without cairn in the middle: if one of these fails, the scenario (or the
//! harness) is wrong, not the proxy.

mod common;

use common::*;
use std::time::Duration;

/// Runs `uac` against `uas` directly and returns both results.
fn pair(
    uas: &std::path::Path,
    uac: &std::path::Path,
    t: Transport,
    calls: u64,
) -> (SippResult, SippResult) {
    let net = TestNet::new();
    let server = Sipp::uas(
        uas,
        net.addr(ports::UAS1),
        SippOpts::new(t).timeout(Duration::from_secs(60)),
    );
    let client = Sipp::run_uac(
        uac,
        net.addr(ports::UAC),
        net.addr(ports::UAS1),
        SippOpts::new(t)
            .calls(calls)
            .rate(20.0)
            .timeout(Duration::from_secs(30)),
    );
    let server = server.stop();
    (client, server)
}

fn call_answered(t: Transport) {
    let (uac, uas) = pair(&scenario("uas_answer.xml"), &scenario("uac_call.xml"), t, 3);
    uac.assert_all_ok(3);
    uas.assert_all_ok(3);
    assert_eq!(uas.created, 3, "{uas}");
    for m in ["INVITE", "ACK", "BYE"] {
        assert_eq!(uas.received_requests(m).len(), 3, "UAS got {m} x3:\n{uas}");
    }
    // No proxy: no Record-Route, so the ACK carries no Route and goes to
    // the UAS Contact.
    let ack = uac.sent_requests("ACK")[0];
    assert!(ack.header("Route").is_none(), "{}", ack.text);
    assert!(
        ack.request_uri().unwrap().starts_with("sip:"),
        "{}",
        ack.text
    );
    let via = &uas.received_requests("INVITE")[0].vias()[0];
    assert!(
        via.starts_with(&format!("SIP/2.0/{}", t.via_name())),
        "{via}"
    );
}

#[test]
fn call_answered_udp() {
    call_answered(Transport::Udp);
}

#[test]
fn call_answered_tcp() {
    call_answered(Transport::Tcp);
}

fn busy(t: Transport) {
    let (uac, uas) = pair(&scenario("uas_busy.xml"), &uac_expect(486), t, 2);
    uac.assert_all_ok(2);
    uas.assert_all_ok(2);
    assert_eq!(uac.received_responses(486).len(), 2, "{uac}");
    // The ACK for the 486 belongs to the INVITE transaction: same branch.
    let inv = uac.sent_requests("INVITE")[0];
    let ack = uac.sent_requests("ACK")[0];
    assert_eq!(inv.top_via_branch(), ack.top_via_branch());
}

#[test]
fn busy_udp() {
    busy(Transport::Udp);
}

#[test]
fn busy_tcp() {
    busy(Transport::Tcp);
}

/// uac_expect.xml expects exactly the code the harness writes into it: any
/// other final response fails the call.
#[test]
fn uac_expect_fails_on_another_code() {
    let (uac, uas) = pair(
        &scenario("uas_busy.xml"),
        &uac_expect(404),
        Transport::Udp,
        1,
    );
    assert_eq!(uac.successful, 0, "{uac}");
    assert_eq!(uac.failed, 1, "{uac}");
    assert_ne!(uac.exit_code, Some(0), "{uac}");
    assert_eq!(uas.created, 1, "{uas}");
}

fn caller_cancels(t: Transport) {
    let (uac, uas) = pair(
        &scenario("uas_ring_then_cancel.xml"),
        &scenario("uac_cancel.xml"),
        t,
        2,
    );
    uac.assert_all_ok(2);
    uas.assert_all_ok(2);
    let inv = uas.received_requests("INVITE")[0];
    let cancel = uas.received_requests("CANCEL")[0];
    assert_eq!(inv.request_uri(), cancel.request_uri());
    assert_eq!(inv.top_via_branch(), cancel.top_via_branch());
    assert_eq!(inv.call_id(), cancel.call_id());
    assert_eq!(inv.cseq().unwrap().0, cancel.cseq().unwrap().0);
    assert_eq!(cancel.cseq().unwrap().1, "CANCEL");
    assert_eq!(uac.received_responses(487).len(), 2, "{uac}");
}

#[test]
fn caller_cancels_udp() {
    caller_cancels(Transport::Udp);
}

#[test]
fn caller_cancels_tcp() {
    caller_cancels(Transport::Tcp);
}

/// uac_cancel.xml with the 180 replaced by a mandatory 100: the caller that
/// talks to uas_silent.xml, which only ever sends 100.
fn uac_cancel_after_100() -> std::path::PathBuf {
    let src = std::fs::read_to_string(scenario("uac_cancel.xml")).unwrap();
    let from = "  <recv response=\"100\" optional=\"true\">\n  </recv>\n\n  <recv response=\"180\">\n  </recv>";
    assert!(
        src.contains(from),
        "uac_cancel.xml changed: update this test"
    );
    let out = src.replace(from, "  <recv response=\"100\">\n  </recv>");
    let path = test_dir("scenario").join("uac_cancel_after_100.xml");
    std::fs::write(&path, out).unwrap();
    path
}

fn silent_gateway_cancelled(t: Transport) {
    let (uac, uas) = pair(&scenario("uas_silent.xml"), &uac_cancel_after_100(), t, 2);
    uac.assert_all_ok(2);
    uas.assert_all_ok(2);
    assert_eq!(uas.received_requests("CANCEL").len(), 2, "{uas}");
    let r487 = uac.received_responses(487);
    assert_eq!(r487.len(), 2, "{uac}");
    assert_eq!(r487[0].cseq().unwrap().1, "INVITE");
}

#[test]
fn silent_gateway_cancelled_udp() {
    silent_gateway_cancelled(Transport::Udp);
}

#[test]
fn silent_gateway_cancelled_tcp() {
    silent_gateway_cancelled(Transport::Tcp);
}

/// The 487 of uas_ring_then_cancel.xml carries every Via of the INVITE (as
/// a proxy needs), not just the first one. The UAC here fakes a proxy hop by
/// putting a second Via and a Record-Route into its INVITE.
#[test]
fn final_response_keeps_all_vias_and_record_route() {
    let src = std::fs::read_to_string(scenario("uac_cancel.xml")).unwrap();
    let inv_via = "branch=z9hG4bK-[pid]-[call_number]-inv\n      From:";
    assert!(src.contains(inv_via));
    let out = src.replacen(
        inv_via,
        "branch=z9hG4bK-[pid]-[call_number]-inv\n      Via: SIP/2.0/UDP 127.0.0.9:5999;branch=z9hG4bK-fake-hop\n      Record-Route: <sip:127.0.0.9:5999;lr>\n      From:",
        1,
    );
    let path = test_dir("scenario").join("uac_cancel_two_vias.xml");
    std::fs::write(&path, out).unwrap();
    let (uac, uas) = pair(
        &scenario("uas_ring_then_cancel.xml"),
        &path,
        Transport::Udp,
        1,
    );
    uac.assert_all_ok(1);
    uas.assert_all_ok(1);
    let ringing = uas
        .sent()
        .find(|m| m.status() == Some(180))
        .expect("180 sent");
    assert_eq!(ringing.vias().len(), 2, "{}", ringing.text);
    assert_eq!(
        ringing.header_list("Record-Route").len(),
        1,
        "{}",
        ringing.text
    );
    let r487 = uas
        .sent()
        .find(|m| m.status() == Some(487))
        .expect("487 sent");
    let vias = r487.vias();
    assert_eq!(vias.len(), 2, "{}", r487.text);
    assert!(vias[1].contains("z9hG4bK-fake-hop"), "{}", r487.text);
}

/// With a Record-Route in the 200 (as cairn adds), uac_call.xml sends the
/// ACK and BYE to the UAS Contact with a Route header (reversed set).
#[test]
fn uac_call_honours_record_route() {
    let src = std::fs::read_to_string(scenario("uac_call.xml")).unwrap();
    let out = src.replacen(
        "      CSeq: 1 INVITE\n",
        "      CSeq: 1 INVITE\n      Record-Route: <sip:127.0.0.21:5060;lr>\n      Record-Route: <sip:127.0.0.22:5060;lr>\n",
        1,
    );
    let path = test_dir("scenario").join("uac_call_rr.xml");
    std::fs::write(&path, out).unwrap();
    let (uac, uas) = pair(&scenario("uas_answer.xml"), &path, Transport::Udp, 1);
    uac.assert_all_ok(1);
    uas.assert_all_ok(1);
    let ok = uac.received_responses(200)[0];
    assert_eq!(ok.header_list("Record-Route").len(), 2, "{}", ok.text);
    for m in ["ACK", "BYE"] {
        let req = uas.received_requests(m)[0];
        assert_eq!(
            req.header_list("Route"),
            vec![
                "<sip:127.0.0.22:5060;lr>".to_string(),
                "<sip:127.0.0.21:5060;lr>".to_string()
            ],
            "{}",
            req.text
        );
        assert!(
            req.request_uri()
                .unwrap()
                .contains(&format!(":{}", ports::UAS1)),
            "{}",
            req.text
        );
    }
}

#[test]
fn black_hole_counts_and_never_answers() {
    let net = TestNet::new();
    let hole = BlackHole::bind(net.addr(ports::RAW));
    let uac = Sipp::run_uac(
        &uac_expect(408),
        net.addr(ports::UAC),
        hole.addr,
        SippOpts::udp().calls(1).timeout(Duration::from_secs(3)),
    );
    assert_ne!(uac.exit_code, Some(0), "{uac}");
    assert!(
        hole.count("INVITE") >= 2,
        "retransmissions expected, got {}",
        hole.count("INVITE")
    );
}

#[test]
fn message_log_parser() {
    let log = "----------------------------------------------- 2026-01-01 00:00:00.000000\n\
UDP message received [10] bytes :\n\n\
INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK-1, SIP/2.0/UDP 5.6.7.8;branch=z9hG4bK-2\r\n\
v: SIP/2.0/TCP 9.9.9.9;branch=z9hG4bK-3\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n\n\n\
----------------------------------------------- 2026-01-01 00:00:00.000001\n\
UDP message sent (10 bytes):\n\nSIP/2.0 100 Trying\r\nCall-ID: x\r\n\r\n\n";
    let msgs = parse_message_log(log);
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].received && !msgs[1].received);
    assert_eq!(msgs[0].method(), Some("INVITE"));
    assert_eq!(msgs[0].vias().len(), 3);
    assert_eq!(msgs[0].top_via_branch().as_deref(), Some("z9hG4bK-1"));
    assert_eq!(msgs[0].cseq(), Some((7, "INVITE".to_string())));
    assert_eq!(msgs[1].status(), Some(100));
    assert_eq!(msgs[1].call_id(), Some("x"));
}

#[test]
fn listen_sections_are_found() {
    let l = listeners_in(
        "[log]\nlevel = \"info\"\n[[listen]]\ntransport = \"udp\"\naddress = \"127.9.9.1:5060\"\n\
         [[listen]]\naddress = \"127.9.9.1:5061\" # comment\ntransport = \"tcp\"\n[proxy]\nrecord_route = true\n",
    );
    assert_eq!(
        l,
        vec![
            (Transport::Udp, "127.9.9.1:5060".parse().unwrap()),
            (Transport::Tcp, "127.9.9.1:5061".parse().unwrap())
        ]
    );
}
