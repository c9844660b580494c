use bytes::Bytes;
use cairn_sip::{build, Editor, HeaderName, Message, Method, Transport};

const INVITE: &str = "INVITE sip:+15551234@gw.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5080;branch=z9hG4bK1111, SIP/2.0/TCP 192.0.2.30;branch=z9hG4bK2222\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.example.com;lr>, <sip:next.example.com;lr>\r\n\
Record-Route: <sip:edge.example.com;lr>\r\n\
From: \"Alice, A.\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060>\r\n\
X-Untouched:   weird  ;;,, value  \r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn parse(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.as_bytes())).expect("parses")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn parses_key_fields_at_once() {
    let m = parse(INVITE);
    assert!(m.is_request());
    assert_eq!(m.method(), Method::Invite);
    assert_eq!(
        m.request_uri_bytes(),
        b"sip:+15551234@gw.example.com;user=phone"
    );
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.user, Some(&b"+15551234"[..]));
    assert_eq!(ruri.host, b"gw.example.com");
    assert_eq!(m.branch(), Some(&b"z9hG4bK74bf9"[..]));
    assert_eq!(m.top_via().transport(), Some(Transport::Udp));
    assert_eq!(m.top_via().port, Some(5060));
    assert_eq!(m.from_tag(), Some(&b"9fxced76sl"[..]));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.call_id(), b"3848276298220188511@atlanta.example.com");
    assert_eq!(m.cseq().number, 314159);
    assert_eq!(m.cseq().method, Method::Invite);
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.content_length(), Some(4));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(m.vias().count(), 3);
    let hosts: Vec<_> = m.vias().map(|v| text(v.host)).collect();
    assert_eq!(hosts, ["192.0.2.10", "192.0.2.20", "192.0.2.30"]);
    let routes: Vec<_> = m.routes().map(|r| text(r.uri)).collect();
    assert_eq!(
        routes,
        ["sip:proxy.example.com;lr", "sip:next.example.com;lr"]
    );
    assert_eq!(m.record_routes().count(), 1);
    assert_eq!(m.contact().unwrap().uri, b"sip:alice@192.0.2.10:5060");
    assert_eq!(
        m.header(HeaderName::ContentType),
        Some(&b"application/sdp"[..])
    );
    assert_eq!(m.headers_by_name(b"x-untouched").count(), 1);
}

#[test]
fn compact_forms_and_case() {
    let m = parse(
        "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bKx\r\nf: <sip:c@d>;tag=1\r\nT: sip:a@b\r\ni: cid\r\ncseq: 1 OPTIONS\r\nl: 0\r\n\r\n",
    );
    assert_eq!(m.call_id(), b"cid");
    assert_eq!(m.top_via().transport(), Some(Transport::Tcp));
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn responses() {
    let m = parse("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKa, SIP/2.0/UDP u;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(m.status(), Some(180));
    assert_eq!(m.reason_phrase(), b"Ringing");
    assert_eq!(m.method(), Method::Invite);
    assert_eq!(m.to_tag(), Some(&b"2"[..]));
    let out = {
        let mut e = Editor::new(&m);
        e.pop_via();
        e.finish()
    };
    let fwd = Message::parse(out).unwrap();
    assert_eq!(fwd.vias().count(), 1);
    assert_eq!(fwd.branch(), Some(&b"z9hG4bKb"[..]));
}

#[test]
fn forward_edit_keeps_other_bytes() {
    let m = parse(INVITE);
    let mut e = Editor::new(&m);
    e.push_via(b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcairn.1")
        .set_via_received(Some(b"198.51.100.7"), Some(40000))
        .decrement_max_forwards()
        .pop_route()
        .push_record_route(b"<sip:10.0.0.1:5060;lr>")
        .set_request_uri(b"sip:+15551234@10.0.0.9:5071");
    let out = e.finish();
    let s = text(&out);
    let f = Message::parse(out.clone()).unwrap();
    assert_eq!(f.request_uri_bytes(), b"sip:+15551234@10.0.0.9:5071");
    assert_eq!(f.branch(), Some(&b"z9hG4bKcairn.1"[..]));
    let second = f.vias().nth(1).unwrap();
    assert_eq!(second.received(), Some(&b"198.51.100.7"[..]));
    assert_eq!(second.rport(), Some(Some(40000)));
    assert_eq!(f.max_forwards(), Some(69));
    let routes: Vec<_> = f.routes().map(|r| text(r.uri)).collect();
    assert_eq!(routes, ["sip:next.example.com;lr"]);
    let rr: Vec<_> = f.record_routes().map(|r| text(r.uri)).collect();
    assert_eq!(rr, ["sip:10.0.0.1:5060;lr", "sip:edge.example.com;lr"]);
    // Untouched lines are byte-identical.
    for l in [
        "X-Untouched:   weird  ;;,, value  \r\n",
        "From: \"Alice, A.\" <sip:alice@example.com>;tag=9fxced76sl\r\n",
        "Via: SIP/2.0/UDP 192.0.2.20:5080;branch=z9hG4bK1111, SIP/2.0/TCP 192.0.2.30;branch=z9hG4bK2222\r\n",
        "\r\n\r\nv=0\n",
    ] {
        assert!(s.contains(l), "missing {l:?} in {s}");
    }
    assert!(s.starts_with("INVITE sip:+15551234@10.0.0.9:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcairn.1\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport=40000;received=198.51.100.7\r\n"), "{s}");
}

#[test]
fn no_edit_round_trip_is_identical() {
    let m = parse(INVITE);
    assert_eq!(&Editor::new(&m).finish()[..], INVITE.as_bytes());
}

#[test]
fn headers_added_replaced_removed() {
    let m = parse("CANCEL sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: sip:a@b\r\nCall-ID: cid\r\nCSeq: 1 CANCEL\r\nReason: Q.850;cause=16\r\nReason: SIP;cause=200\r\n\r\n");
    let mut e = Editor::new(&m);
    e.set_header(
        HeaderName::Reason,
        b"SIP;cause=487;text=\"ORIGINATOR_CANCEL\"",
    )
    .ensure_content_length();
    let f = Message::parse(e.finish()).unwrap();
    let reasons: Vec<_> = f
        .headers_named(HeaderName::Reason)
        .map(|h| text(f.slice(h.value)))
        .collect();
    assert_eq!(reasons, ["SIP;cause=487;text=\"ORIGINATOR_CANCEL\""]);
    assert_eq!(f.content_length(), Some(0));
    assert_eq!(f.max_forwards(), None);
    let mut e = Editor::new(&f);
    e.remove_headers(HeaderName::Reason)
        .decrement_max_forwards();
    let g = Message::parse(e.finish()).unwrap();
    assert_eq!(g.header(HeaderName::Reason), None);
    assert_eq!(g.max_forwards(), Some(70));
}

#[test]
fn strict_router_edits() {
    let m = parse("INVITE sip:proxy.example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nRoute: <sip:a.example.com>, <sip:bob@b.example.com>\r\nFrom: <sip:c@d>;tag=1\r\nTo: sip:bob@b\r\nCall-ID: cid\r\nCSeq: 1 INVITE\r\nMax-Forwards: 5\r\n\r\n");
    let mut e = Editor::new(&m);
    e.set_request_uri(b"sip:bob@b.example.com")
        .remove_last_route();
    let f = Message::parse(e.finish()).unwrap();
    let routes: Vec<_> = f.routes().map(|r| text(r.uri)).collect();
    assert_eq!(routes, ["sip:a.example.com"]);
    let mut e = Editor::new(&f);
    e.push_route(b"<sip:x.example.com;lr>");
    let g = Message::parse(e.finish()).unwrap();
    assert_eq!(g.routes().count(), 2);
}

#[test]
fn build_response_cancel_ack() {
    let m = parse(INVITE);
    let r = build::response(
        &m,
        486,
        "Busy Here",
        Some(b"abc"),
        &[("Retry-After", b"30")],
    );
    let r = Message::parse(r).unwrap();
    assert_eq!(r.status(), Some(486));
    assert_eq!(r.to_tag(), Some(&b"abc"[..]));
    assert_eq!(r.vias().count(), 3);
    assert_eq!(r.cseq().number, 314159);
    assert_eq!(r.cseq().method, Method::Invite);
    assert_eq!(r.headers_by_name(b"retry-after").count(), 1);
    let trying = Message::parse(build::response(&m, 100, "Trying", Some(b"abc"), &[])).unwrap();
    assert_eq!(trying.to_tag(), None);

    let c = Message::parse(build::cancel(
        &m,
        &[
            b"SIP;cause=487;text=\"ORIGINATOR_CANCEL\"",
            b"Q.850;cause=16",
        ],
    ))
    .unwrap();
    assert_eq!(c.method(), Method::Cancel);
    assert_eq!(c.request_uri_bytes(), m.request_uri_bytes());
    assert_eq!(c.vias().count(), 1);
    assert_eq!(c.branch(), m.branch());
    assert_eq!(c.cseq().number, 314159);
    assert_eq!(c.cseq().method, Method::Cancel);
    assert_eq!(c.from_value(), m.from_value());
    assert_eq!(c.to_value(), m.to_value());
    assert_eq!(c.routes().count(), 2);
    assert_eq!(c.headers_named(HeaderName::Reason).count(), 2);

    let resp = parse("SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9\r\nFrom: \"Alice, A.\" <sip:alice@example.com>;tag=9fxced76sl\r\nTo: Bob <sip:bob@example.com>;tag=xyz\r\nCall-ID: 3848276298220188511@atlanta.example.com\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n");
    let a = Message::parse(build::ack(&m, &resp)).unwrap();
    assert_eq!(a.method(), Method::Ack);
    assert_eq!(a.to_tag(), Some(&b"xyz"[..]));
    assert_eq!(a.branch(), m.branch());
    assert_eq!(a.cseq().method, Method::Ack);
    assert_eq!(a.request_uri_bytes(), m.request_uri_bytes());
}

#[test]
fn error_response_from_garbage_request() {
    let raw = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKq\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nBroken header line\r\n\r\n";
    let err = Message::parse(Bytes::from_static(raw)).unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.reason.contains("colon"), "{}", err.reason);
    let resp = build::error_response(raw, &err, b"t1").unwrap();
    let r = Message::parse(resp).unwrap();
    assert_eq!(r.status(), Some(400));
    assert_eq!(r.to_tag(), Some(&b"t1"[..]));
    assert!(text(r.reason_phrase()).contains("colon"));
    // Not for responses, nor when Call-ID is missing.
    assert!(build::error_response(b"SIP/2.0 200 OK\r\n\r\n", &err, b"t").is_none());
    assert!(build::error_response(
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
        &err,
        b"t"
    )
    .is_none());
}

#[test]
fn limits_and_errors() {
    let cases: &[(&str, u16, &str)] = &[
        ("", 400, "Empty"),
        ("\r\n\r\n", 400, "Empty"),
        ("INVITE sip:a@b SIP/2.0\r\n", 400, "Missing Via"),
        ("INVITE sip:a@b SIP/3.0\r\n\r\n", 505, "Version"),
        ("INVITE  sip:a@b SIP/2.0\r\n\r\n", 400, "request line"),
        ("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n", 400, "Missing From"),
        ("SIP/2.0 1000 Huge\r\n\r\n", 400, "status code"),
        ("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:c@d>\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 10\r\n\r\nabc", 400, "Content-Length larger"),
        ("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:c@d>\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", 400, "CSeq method"),
        ("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:c@d>\r\nTo: <sip:a@b>\r\nTo: <sip:a@c>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", 400, "Multiple To"),
        (" continuation\r\n", 400, ""),
    ];
    for (msg, status, needle) in cases {
        let err = Message::parse(Bytes::copy_from_slice(msg.as_bytes())).unwrap_err();
        assert_eq!(err.status, *status, "{msg:?}: {err}");
        assert!(err.reason.contains(needle), "{msg:?}: {err}");
    }
    let big = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nX: {}\r\n\r\n",
        "a".repeat(70000)
    );
    assert_eq!(Message::parse(Bytes::from(big)).unwrap_err().status, 513);
    let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
    let msg = format!("OPTIONS sip:a@b SIP/2.0\r\n{many}\r\n");
    assert!(Message::parse(Bytes::from(msg))
        .unwrap_err()
        .reason
        .contains("Too many"));
}

#[test]
fn ipv6_via_and_uri() {
    let m = parse("INVITE sip:bob@[2001:db8::5]:5070 SIP/2.0\r\nVia: SIP/2.0/TCP [2001:db8::1]:5062;branch=z9hG4bKv6\r\nFrom: <sip:a@[2001:db8::1]>;tag=1\r\nTo: <sip:bob@[2001:db8::5]>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(m.top_via().host, b"[2001:db8::1]");
    assert_eq!(m.top_via().port, Some(5062));
    let u = m.request_uri().unwrap();
    assert_eq!(u.host_unbracketed(), b"2001:db8::5");
    assert_eq!(u.port, Some(5070));
}

/// More header lines than a message holds in place (24): the index moves
/// to the heap and keeps every line, in order, with folding across the
/// move and the key headers found past it.
#[test]
fn many_headers_past_the_inline_index() {
    for extra in [22, 23, 24, 25, 40] {
        let mut s = String::from("INVITE sip:bob@example.com SIP/2.0\r\n");
        s.push_str("Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKmany\r\n");
        for k in 0..extra {
            s.push_str(&format!("X-Extra-{k}: value {k}\r\n"));
            if k % 7 == 3 {
                // A folded line: a continuation of the header above.
                s.push_str(&format!("  folded {k}\r\n"));
            }
        }
        s.push_str("From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n");
        s.push_str("Call-ID: many@example.com\r\nCSeq: 1 INVITE\r\nMax-Forwards: 9\r\n");
        s.push_str("Content-Length: 0\r\n\r\n");
        let m = parse(&s);
        assert_eq!(m.headers().len(), extra + 7, "{extra}");
        for k in 0..extra {
            let h = &m.headers()[1 + k];
            assert_eq!(text(m.slice(h.name_span())), format!("X-Extra-{k}"));
            let want = if k % 7 == 3 {
                format!("value {k}\r\n  folded {k}")
            } else {
                format!("value {k}")
            };
            assert_eq!(text(m.slice(h.value)), want, "{extra} {k}");
        }
        assert_eq!(m.from_tag(), Some(&b"1"[..]));
        assert_eq!(m.call_id(), b"many@example.com");
        assert_eq!(m.max_forwards(), Some(9));
        assert_eq!(
            m.header(HeaderName::To),
            Some(&b"<sip:bob@example.com>"[..])
        );
        assert_eq!(m.content_length(), Some(0));
        // Every line survives a forward edit.
        let mut e = Editor::new(&m);
        e.decrement_max_forwards();
        let out = e.finish();
        let f = Message::parse(out).expect("forwarded copy parses");
        assert_eq!(f.headers().len(), extra + 7);
        assert_eq!(f.max_forwards(), Some(8));
    }
}

/// A header line is at most `MAX_LINE_LIMIT` bytes whatever `Limits`
/// asks: a longer one is refused, one just under it is kept whole.
#[test]
fn line_length_limit_is_capped() {
    use cairn_sip::{Limits, MAX_LINE_LIMIT};
    let limits = Limits {
        max_size: 1 << 20,
        max_headers: 256,
        max_line: 1 << 20,
    };
    let msg = |value_len: usize| {
        let mut s = String::from(
            "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\n\
             CSeq: 1 OPTIONS\r\n",
        );
        s.push_str("X-Long: ");
        s.push_str(&"v".repeat(value_len));
        s.push_str("   \r\n  folded\r\nContent-Length: 0\r\n\r\n");
        Bytes::from(s)
    };
    // "X-Long: " + value + "   " + CRLF + "  folded" + CRLF
    let over = MAX_LINE_LIMIT;
    let err = Message::parse_with(msg(over), &limits).unwrap_err();
    assert!(err.to_string().contains("Header line too long"), "{err}");
    let fits = MAX_LINE_LIMIT - 40;
    let m = Message::parse_with(msg(fits), &limits).expect("a line under the cap parses");
    let h = m.headers_by_name(b"x-long").next().expect("X-Long");
    assert_eq!(m.slice(h.value).len(), fits + "   \r\n  folded".len());
    assert_eq!(m.slice(h.name_span()), b"X-Long");
    assert_eq!(&m.slice(h.line())[h.line().len() - 10..], b"  folded\r\n");
}
