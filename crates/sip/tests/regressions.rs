//! Inputs that once broke an invariant of `tests/common/mod.rs`, kept as
//! regression tests. Crashing inputs from `fuzz/artifacts/` go into
//! `testdata/regressions/` as they are (`cp`), and every file there is run
//! through `common::exercise`.

mod common;

use bytes::Bytes;
use cairn_sip::{Editor, HeaderName, Message};

/// Found by `tests/never_panic.rs` (a truncation of RFC 4475 3.1.1.11): the
/// last header line has no line end, which the parser accepts (RFC 4475
/// 3.1.2.15). Headers the editor appended ran into it:
/// `CSeq: 1 MESSAGEContent-Length: 0`.
const UNENDED_LAST_LINE: &[u8] = b"MESSAGE sip:kumiko@example.org SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\r\n\
Route: <sip:127.0.0.1:5080>\r\n\
Contact: <sip:fluffy@127.0.0.1:5070>\r\n\
To: <sip:kumiko@example.org>\r\n\
From: <sip:fluffy@example.com>;tag=2fb0dcc9\r\n\
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\r\n\
CSeq: 1 MESSAGE";

#[test]
fn appended_headers_after_an_unended_last_line() {
    let m = Message::parse(Bytes::from_static(UNENDED_LAST_LINE)).unwrap();
    assert_eq!(m.max_forwards(), None);
    let mut e = Editor::new(&m);
    e.decrement_max_forwards()
        .ensure_content_length()
        .append_header(b"X-Added", b"1");
    let out = e.finish();
    assert!(
        out.ends_with(b"CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\nX-Added: 1"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let f = Message::parse(out).unwrap();
    assert_eq!(f.cseq().number, 1);
    assert_eq!(f.method_bytes(), b"MESSAGE");
    assert_eq!(f.max_forwards(), Some(70));
    assert_eq!(f.content_length(), Some(0));
    assert_eq!(f.headers_by_name(b"x-added").count(), 1);
    assert_eq!(f.headers().len(), m.headers().len() + 3);
}

#[test]
fn appended_headers_after_an_ended_last_line_without_empty_line() {
    // Ends with CRLF but has no empty line: the usual insertion applies.
    let raw = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n";
    let m = Message::parse(Bytes::from_static(raw)).unwrap();
    let mut e = Editor::new(&m);
    e.set_header(HeaderName::Reason, b"SIP;cause=200")
        .decrement_max_forwards();
    let out = e.finish();
    assert!(out.ends_with(b"CSeq: 1 OPTIONS\r\nReason: SIP;cause=200\r\nMax-Forwards: 70\r\n"));
    let f = Message::parse(out).unwrap();
    assert_eq!(f.max_forwards(), Some(70));
}

/// Found by the fuzzer (`testdata/regressions/fuzz-crash-9ff5a8313d13-*`):
/// the unended last line is removed by another edit (here `pop_route`; its
/// value holds a bare CR, not a line end), so the output already ends with
/// CRLF where an appended line would have put one: an empty line, and the
/// appended Max-Forwards and Content-Length became the body.
#[test]
fn appended_headers_after_the_unended_last_line_is_removed() {
    let raw = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nRoute: <sip:p;lr>\r$ x";
    let m = Message::parse(Bytes::from_static(raw)).unwrap();
    assert!(m.body().is_empty());
    // In both orders: the removal recorded before and after the appends.
    for pop_first in [true, false] {
        let mut e = Editor::new(&m);
        if pop_first {
            e.pop_route();
        }
        e.decrement_max_forwards().ensure_content_length();
        if !pop_first {
            e.pop_route();
        }
        let len = e.len();
        let out = e.finish();
        assert_eq!(out.len(), len);
        assert!(
            out.ends_with(b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let f = Message::parse(out).unwrap();
        assert!(f.body().is_empty());
        assert_eq!(f.max_forwards(), Some(70));
        assert_eq!(f.routes().count(), 0);
    }
}

#[test]
fn every_invariant_holds_on_the_regressions() {
    assert!(common::exercise(UNENDED_LAST_LINE));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        common::exercise(&data);
        n += 1;
    }
    assert!(n >= 1);
}
