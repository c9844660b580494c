//! What the never-panic test (`tests/never_panic.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/parse_edit.rs`) run on every input: parse, read
//! every accessor, forward-edit, serialize, re-parse, and build responses,
//! a CANCEL and an ACK from the parsed message. A panic anywhere here, or a
//! broken invariant (an `assert!`), is a bug.
//!
//! Depends on `cairn_sip` and `bytes` only, so the fuzz crate can include
//! it with `#[path]`.
#![allow(dead_code)]

use bytes::Bytes;
use cairn_sip::{build, Editor, HeaderName, Limits, Message, NameAddr, Uri};

/// Limits for re-parsing our own output: a message accepted at the edge of
/// the default limits may grow past them by the lines a proxy adds.
pub fn relaxed() -> Limits {
    let d = Limits::default();
    Limits {
        max_size: d.max_size + 4096,
        max_headers: d.max_headers + 8,
        max_line: d.max_line + 4096,
    }
}

/// A well-formed INVITE that responses are matched against for `build::ack`.
pub const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060>\r\n\
Content-Length: 0\r\n\
\r\n";

/// Run everything on one input. Returns whether it parsed.
pub fn exercise(data: &[u8]) -> bool {
    let m = match Message::parse(Bytes::copy_from_slice(data)) {
        Ok(m) => m,
        Err(e) => {
            assert!(
                matches!(e.status, 400 | 505 | 513),
                "unexpected status {}",
                e.status
            );
            assert!(!e.reason.is_empty());
            let _ = e.to_string();
            if let Some(r) = build::error_response(data, &e, b"fuzztag") {
                // Whatever it holds, reading it must not panic either.
                if let Ok(r) = Message::parse(r) {
                    touch(&r);
                }
            }
            return false;
        }
    };
    // The kept bytes are a prefix of the input (trailing octets cut).
    assert!(data.starts_with(m.as_bytes()));
    check_key_fields(&m);
    touch(&m);

    // No edit: the output is the input, byte for byte.
    assert_eq!(&Editor::new(&m).finish()[..], m.as_bytes());

    if m.is_request() {
        forward_request(&m);
        build_from_request(&m);
    } else {
        forward_response(&m);
        let invite = Message::parse(Bytes::from_static(INVITE)).expect("fixed INVITE parses");
        let ack = build::ack(&invite, &m);
        // The response's To is copied into the ACK; it was checked when
        // the response was parsed, so the ACK parses.
        let a = Message::parse_with(ack, &relaxed()).expect("ACK built from a response parses");
        assert_eq!(a.call_id(), invite.call_id());
        touch(&a);
    }
    true
}

/// The fields the parser reads by its one-pass checks (`src/fast.rs`)
/// agree with the general parsers' reading of the same values.
pub fn check_key_fields(m: &Message) {
    for (tag, value) in [(m.from_tag(), m.from_value()), (m.to_tag(), m.to_value())] {
        let a = NameAddr::parse(value).expect("From and To were checked");
        assert_eq!(tag, a.tag());
    }
    assert_eq!(m.values(HeaderName::Via).next(), Some(m.top_via_span()));
    let top = m.top_via();
    assert!(!top.host.is_empty(), "the top Via was checked");
    assert_eq!(m.branch(), top.branch());
}

/// Read every accessor and parse every lazily parsed part.
pub fn touch(m: &Message) {
    let _ = format!("{m:?}");
    let _ = m.start_line();
    let _ = m.method();
    let _ = m.method_bytes();
    let _ = m.status();
    let _ = m.reason_phrase();
    let _ = m.request_uri_bytes();
    if let Some(s) = m.request_uri_span() {
        assert_eq!(m.slice(s), m.request_uri_bytes());
    }
    if let Some(u) = m.request_uri() {
        touch_uri(&u);
    }
    let _ = m.call_id();
    let _ = m.cseq();
    let _ = m.from_tag();
    let _ = m.to_tag();
    let _ = m.max_forwards();
    let _ = m.content_length();
    let _ = m.body();
    let _ = m.buffer().len();
    for v in [m.from_value(), m.to_value()] {
        if let Ok(a) = NameAddr::parse(v) {
            touch_addr(&a);
        }
    }
    let top = m.top_via();
    touch_via(&top);
    let _ = m.share(m.top_via_span());
    let _ = m.branch();
    for v in m.vias() {
        touch_via(&v);
    }
    for a in m.routes().chain(m.record_routes()).chain(m.contact()) {
        touch_addr(&a);
    }
    for h in m.headers() {
        let _ = m.slice(h.name_span());
        let _ = m.slice(h.value);
        let _ = m.slice(h.line());
        let _ = h.name.as_str();
        assert!(h.value.end <= h.line_end());
        assert!(h.name_span().start < h.name_span().end || h.name == HeaderName::Other);
        assert!(h.name_span().end <= h.value.start && h.value.start <= h.value.end);
        assert_eq!(h.line().start, h.name_span().start);
        assert!(h.line_end() as usize <= m.as_bytes().len());
    }
    for name in [
        HeaderName::Via,
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Supported,
        HeaderName::Other,
    ] {
        let _ = m.header(name);
        for s in m.values(name) {
            let _ = m.slice(s);
        }
    }
    let _ = m.headers_by_name(b"x-unknown").count();
    let _ = m.headers_by_name(b"v").count();
    let _ = m.headers_by_name(b"Proxy-Require").count();
}

fn touch_via(v: &cairn_sip::Via<'_>) {
    let _ = v.transport();
    let _ = v.branch();
    let _ = v.has_rfc3261_branch();
    let _ = v.received();
    let _ = v.rport();
    let _ = v.maddr();
    let _ = v.ttl();
    for p in v.params.iter() {
        let _ = p;
    }
}

fn touch_addr(a: &NameAddr<'_>) {
    let _ = a.tag();
    for p in a.params.iter() {
        let _ = p;
    }
    if let Ok(u) = Uri::parse(a.uri) {
        touch_uri(&u);
    }
}

fn touch_uri(u: &Uri<'_>) {
    let _ = u.is_loose_router();
    let _ = u.host_unbracketed();
    let _ = u.param("transport");
    for p in u.params.iter() {
        let _ = p;
    }
}

/// What a proxy does to a request it forwards, then checks that the
/// result parses and kept what it must.
fn forward_request(m: &Message) {
    let mut e = Editor::new(m);
    e.push_via(b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcairn.fuzz")
        .set_via_received(Some(b"198.51.100.7"), Some(40000))
        .decrement_max_forwards()
        .pop_route()
        .push_record_route(b"<sip:10.0.0.1:5060;lr>")
        .ensure_content_length();
    let expected_len = e.len();
    let out = e.finish();
    assert_eq!(out.len(), expected_len, "Editor::len() is exact");
    let f = match Message::parse_with(out.clone(), &relaxed()) {
        Ok(f) => f,
        Err(err) => panic!(
            "forwarded request does not parse: {err}\n--- in:\n{:?}\n--- out:\n{:?}",
            String::from_utf8_lossy(m.as_bytes()),
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(f.call_id(), m.call_id());
    assert_eq!(f.cseq().number, m.cseq().number);
    assert_eq!(f.method_bytes(), m.method_bytes());
    assert_eq!(f.request_uri_bytes(), m.request_uri_bytes());
    assert_eq!(f.body(), m.body());
    assert_eq!(f.from_tag(), m.from_tag());
    assert_eq!(f.to_tag(), m.to_tag());
    assert_eq!(f.branch(), Some(&b"z9hG4bKcairn.fuzz"[..]));
    assert_eq!(
        f.max_forwards(),
        Some(m.max_forwards().map_or(70, |n| n.saturating_sub(1))),
        "Max-Forwards\n--- in:\n{:?}\n--- out:\n{:?}",
        String::from_utf8_lossy(m.as_bytes()),
        String::from_utf8_lossy(&out)
    );
    touch(&f);

    // A second hop: rewrite the Request-URI, pop our own Via back off.
    let mut e = Editor::new(&f);
    e.set_request_uri(b"sip:bob@10.0.0.9:5071;transport=tcp")
        .pop_via()
        .remove_headers(HeaderName::RecordRoute)
        .set_header(HeaderName::Reason, b"SIP;cause=480");
    let out = e.finish();
    if let Ok(g) = Message::parse_with(out, &relaxed()) {
        assert_eq!(g.call_id(), m.call_id());
        touch(&g);
    }
}

/// A response on its way back: pop the top Via.
fn forward_response(m: &Message) {
    let mut e = Editor::new(m);
    e.pop_via().ensure_content_length();
    let out = e.finish();
    // With a single Via the result has none and is rejected: fine.
    if let Ok(f) = Message::parse_with(out, &relaxed()) {
        assert_eq!(f.call_id(), m.call_id());
        assert_eq!(f.status(), m.status());
        assert_eq!(f.body(), m.body());
        touch(&f);
    }
}

fn build_from_request(m: &Message) {
    for (code, tag) in [(100, None), (180, Some(&b"t1"[..])), (486, Some(b"t2"))] {
        let r = build::response(
            m,
            code,
            build::reason_phrase(code),
            tag,
            &[("Retry-After", b"30")],
        );
        match Message::parse_with(r.clone(), &relaxed()) {
            Ok(r) => {
                assert_eq!(r.status(), Some(code));
                assert_eq!(r.call_id(), m.call_id());
                assert_eq!(r.cseq().number, m.cseq().number);
                touch(&r);
                if m.method() == cairn_sip::Method::Invite && code >= 300 {
                    let a = build::ack(m, &r);
                    let a = Message::parse_with(a.clone(), &relaxed()).unwrap_or_else(|e| {
                        panic!("ACK does not parse: {e}\n{:?}", String::from_utf8_lossy(&a))
                    });
                    assert_eq!(a.call_id(), m.call_id());
                    touch(&a);
                }
            }
            Err(e) => panic!(
                "response built from a parsed request does not parse: {e}\n--- in:\n{:?}\n--- out:\n{:?}",
                String::from_utf8_lossy(m.as_bytes()),
                String::from_utf8_lossy(&r)
            ),
        }
    }
    let c = build::cancel(m, &[b"SIP;cause=487;text=\"ORIGINATOR_CANCEL\""]);
    match Message::parse_with(c.clone(), &relaxed()) {
        Ok(c) => {
            assert_eq!(c.call_id(), m.call_id());
            assert_eq!(c.branch(), m.branch());
            touch(&c);
        }
        Err(e) => panic!(
            "CANCEL built from a parsed request does not parse: {e}\n--- in:\n{:?}\n--- out:\n{:?}",
            String::from_utf8_lossy(m.as_bytes()),
            String::from_utf8_lossy(&c)
        ),
    }
}
