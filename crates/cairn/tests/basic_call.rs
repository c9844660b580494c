//! A call through cairn: SIPp UAC -> cairn -> SIPp UAS, over UDP and TCP,
//! with Record-Route, so the ACK and the BYE come through cairn too; and a
//! caller that hangs up while the callee rings (CANCEL).

mod common;

use common::*;

fn one_gateway(net: &TestNet, t: Transport) -> String {
    cairn_config(
        net,
        DEFAULT_TIMERS,
        &gateway_set(
            net,
            t,
            "gateways",
            "round_robin",
            &["5xx", "408"],
            &[(ports::UAS1, "")],
        ),
    )
}

fn basic_call(t: Transport) {
    let net = TestNet::new();
    let _cairn = Cairn::start(&one_gateway(&net, t));
    let uas = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(1),
    );
    let uas = uas.stop();
    uac.assert_all_ok(1);
    uas.assert_all_ok(1);
    assert_eq!(uas.created, 1, "{uas}");

    let cairn = net.cairn();
    let uac_addr = net.addr(ports::UAC);
    let via_kind = format!("SIP/2.0/{}", t.via_name());

    // The INVITE at the UAS: cairn's Via on top of the UAC's, a
    // Record-Route naming cairn, Max-Forwards decremented.
    let inv = uas.received_requests("INVITE");
    assert_eq!(inv.len(), 1, "{uas}");
    let inv = inv[0];
    let vias = inv.vias();
    assert_eq!(
        vias.len(),
        2,
        "two Vias (cairn, UAC) expected:\n{}",
        inv.text
    );
    assert!(
        names(&vias[0], cairn) && vias[0].starts_with(&via_kind),
        "top Via is cairn's:\n{}",
        inv.text
    );
    assert!(
        inv.top_via_branch()
            .is_some_and(|b| b.starts_with("z9hG4bK")),
        "cairn's Via has an RFC 3261 branch:\n{}",
        inv.text
    );
    assert!(
        names(&vias[1], uac_addr),
        "second Via is the UAC's:\n{}",
        inv.text
    );
    let rr = inv.header_list("Record-Route");
    assert!(
        rr.iter()
            .any(|r| names(r, cairn) && uri_param(r, "lr").is_some()),
        "Record-Route with cairn's address and ;lr expected:\n{}",
        inv.text
    );
    assert_eq!(
        inv.max_forwards(),
        Some(69),
        "Max-Forwards 70 - 1:\n{}",
        inv.text
    );

    // The UAC saw the 100 from cairn, the forwarded 180, and a 200 that
    // carries the Record-Route and none of cairn's Vias.
    assert!(
        !uac.received_responses(100).is_empty(),
        "cairn sends 100 Trying:\n{uac}"
    );
    assert_eq!(
        uac.received_responses(180).len(),
        1,
        "180 forwarded:\n{uac}"
    );
    let ok = uac
        .received_responses(200)
        .into_iter()
        .find(|m| m.cseq().is_some_and(|c| c.1 == "INVITE"))
        .expect("200 for the INVITE");
    assert!(
        ok.header_list("Record-Route")
            .iter()
            .any(|r| names(r, cairn)),
        "{}",
        ok.text
    );
    assert_eq!(
        ok.vias().len(),
        1,
        "cairn removes its Via from responses:\n{}",
        ok.text
    );
    assert!(names(&ok.vias()[0], uac_addr), "{}", ok.text);

    // The UAC routed the ACK and the BYE by the Record-Route: first Route
    // entry is cairn.
    for m in ["ACK", "BYE"] {
        let req = uac.sent_requests(m);
        assert_eq!(req.len(), 1, "{uac}");
        let route = req[0].header_list("Route");
        assert!(
            route.first().is_some_and(|r| names(r, cairn)),
            "UAC {m} Route names cairn:\n{}",
            req[0].text
        );
    }

    // ...and both reached the UAS through cairn: cairn's Via on top,
    // cairn's own Route entry removed, Request-URI the UAS Contact.
    for m in ["ACK", "BYE"] {
        let req = uas.received_requests(m);
        assert_eq!(req.len(), 1, "UAS got one {m}:\n{uas}");
        let req = req[0];
        let vias = req.vias();
        assert_eq!(
            vias.len(),
            2,
            "{m} at the UAS: Vias of cairn and the UAC:\n{}",
            req.text
        );
        assert!(
            names(&vias[0], cairn),
            "{m} came through cairn:\n{}",
            req.text
        );
        assert!(names(&vias[1], uac_addr), "{}", req.text);
        assert!(
            !req.header_list("Route").iter().any(|r| names(r, cairn)),
            "cairn pops its own Route entry from the {m}:\n{}",
            req.text
        );
        let ruri = req.request_uri().unwrap();
        assert!(
            names(ruri, net.addr(ports::UAS1)),
            "{m} Request-URI is the UAS Contact: {ruri}"
        );
    }
    // The BYE is a new transaction: its branch differs from the INVITE's.
    assert_ne!(
        uas.received_requests("BYE")[0].top_via_branch(),
        inv.top_via_branch()
    );
}

#[test]
fn basic_call_udp() {
    basic_call(Transport::Udp);
}

#[test]
fn basic_call_tcp() {
    basic_call(Transport::Tcp);
}

/// Ten calls in a row over one cairn: nothing is left over from one call
/// that breaks the next.
#[test]
fn ten_calls_udp() {
    let net = TestNet::new();
    let _cairn = Cairn::start(&one_gateway(&net, Transport::Udp));
    let uas = Sipp::uas(
        &scenario("uas_answer.xml"),
        net.addr(ports::UAS1),
        SippOpts::udp(),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_call.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::udp().calls(10).rate(20.0),
    );
    let uas = uas.stop();
    uac.assert_all_ok(10);
    uas.assert_all_ok(10);
    assert_eq!(uas.received_requests("BYE").len(), 10, "{uas}");
}

/// The caller hangs up while the callee rings: cairn answers the CANCEL
/// with 200, CANCELs the branch (same Request-URI, Call-ID, CSeq number and
/// branch as the INVITE it sent), ACKs the 487 and relays it to the caller.
fn caller_cancels(t: Transport) {
    let net = TestNet::new();
    let _cairn = Cairn::start(&one_gateway(&net, t));
    let uas = Sipp::uas(
        &scenario("uas_ring_then_cancel.xml"),
        net.addr(ports::UAS1),
        SippOpts::new(t),
    );
    let uac = Sipp::run_uac(
        &scenario("uac_cancel.xml"),
        net.addr(ports::UAC),
        net.cairn(),
        SippOpts::new(t).calls(2).rate(10.0),
    );
    let uas = uas.stop();
    uac.assert_all_ok(2);
    uas.assert_all_ok(2);

    let invites = uas.received_requests("INVITE");
    let cancels = uas.received_requests("CANCEL");
    assert_eq!(cancels.len(), 2, "{uas}");
    for c in cancels {
        let inv = invites
            .iter()
            .find(|i| i.call_id() == c.call_id())
            .unwrap_or_else(|| panic!("CANCEL for an unknown call:\n{}", c.text));
        assert_eq!(
            c.request_uri(),
            inv.request_uri(),
            "CANCEL Request-URI:\n{}\n{}",
            inv.text,
            c.text
        );
        assert_eq!(
            c.top_via_branch(),
            inv.top_via_branch(),
            "CANCEL branch:\n{}\n{}",
            inv.text,
            c.text
        );
        assert_eq!(c.cseq().map(|x| x.0), inv.cseq().map(|x| x.0));
        assert_eq!(c.cseq().map(|x| x.1).as_deref(), Some("CANCEL"));
        assert_eq!(
            c.vias().len(),
            1,
            "a CANCEL has only the sender's Via:\n{}",
            c.text
        );
        // cairn's ACK for the 487 is part of its INVITE transaction.
        let ack = uas
            .received_requests("ACK")
            .into_iter()
            .find(|a| a.call_id() == c.call_id())
            .unwrap_or_else(|| panic!("no ACK for the 487 of {:?}:\n{uas}", c.call_id()));
        assert_eq!(
            ack.top_via_branch(),
            inv.top_via_branch(),
            "ACK for 487 reuses the branch:\n{}",
            ack.text
        );
    }
    assert_eq!(uac.received_responses(487).len(), 2, "{uac}");
    assert!(
        uac.received_responses(200)
            .iter()
            .all(|m| m.cseq().is_some_and(|c| c.1 == "CANCEL")),
        "the only 200s are for the CANCELs:\n{uac}"
    );
}

#[test]
fn caller_cancels_udp() {
    caller_cancels(Transport::Udp);
}

#[test]
fn caller_cancels_tcp() {
    caller_cancels(Transport::Tcp);
}
