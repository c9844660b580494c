//! The benchmark workload, shared by `benches/forward.rs` (time) and
//! `examples/alloc_count.rs` (heap allocations): one typical INVITE
//! parsed and forwarded by cairn-sip, and the same with ezk-sip-types.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use cairn_sip::{Editor, Message};

/// A typical INVITE: 933 bytes, 2 Via, Max-Forwards, Record-Route, Route,
/// From/To/Call-ID/CSeq/Contact/Allow/Supported, a 253-byte SDP body.
pub const INVITE: &[u8] = include_bytes!("../../testdata/messages/invite-bench.sip");

pub const OUR_VIA: &[u8] = b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK.cairn.1a2b3c4d";
pub const OUR_RR: &[u8] = b"<sip:10.0.0.1:5060;lr>";
pub const SOURCE_IP: &[u8] = b"198.51.100.7";
pub const SOURCE_PORT: u16 = 40000;

/// (a) parse. The buffer is a `Bytes` as a receive path hands it over;
/// cloning it is a reference-count increment.
pub fn cairn_parse(buf: &Bytes) -> Message {
    Message::parse(buf.clone()).expect("bench INVITE parses")
}

/// (b) parse + forward edit + serialize: the proxy's request path (RFC
/// 3261 16.6): received/rport on the top Via, our Via on top, Max-Forwards
/// decremented, our Record-Route on top.
pub fn cairn_forward(buf: &Bytes) -> Bytes {
    let m = cairn_parse(buf);
    let mut e = Editor::new(&m);
    e.set_via_received(Some(SOURCE_IP), Some(SOURCE_PORT))
        .push_via(OUR_VIA)
        .decrement_max_forwards()
        .push_record_route(OUR_RR);
    e.finish()
}

pub mod ezk {
    //! The same with ezk-sip-types 0.6: the steps ezk-sip-core's decoder
    //! runs (`PullParser` lines, `MessageLine`, `Line` into `Headers`,
    //! Content-Length for the body), and for forwarding its header map
    //! edited (typed Max-Forwards, Via and Record-Route put in front) and
    //! printed.
    use bytes::{BufMut, Bytes, BytesMut};
    use ezk_sip_types::header::typed::{ContentLength, MaxForwards};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::print::AppendCtx;
    use ezk_sip_types::{Headers, Name};
    use std::fmt::Write;

    pub struct Parsed {
        pub line: MessageLine,
        pub headers: Headers,
        pub body: Bytes,
    }

    pub fn parse(buf: &Bytes) -> Parsed {
        let mut parser = PullParser::new(buf, 0);
        let mut line = None;
        let mut headers = Headers::new();
        for item in &mut parser {
            let l = std::str::from_utf8(item.expect("complete")).expect("utf-8");
            if line.is_none() {
                line = Some(MessageLine::parse(buf)(l).expect("start line").1);
            } else {
                let (_, h) = Line::parse(buf, l).expect("header line");
                headers.insert(h.name, h.value);
            }
        }
        let head_end = parser.head_end();
        let body = match headers.get_named::<ContentLength>() {
            Ok(len) => buf.slice(head_end..head_end + len.0),
            Err(_) => buf.slice(head_end..),
        };
        Parsed {
            line: line.expect("start line"),
            headers,
            body,
        }
    }

    pub fn forward(buf: &Bytes) -> Bytes {
        let Parsed {
            line,
            mut headers,
            body,
        } = parse(buf);
        headers
            .edit_named::<MaxForwards, _>(|m| m.0 = m.0.saturating_sub(1))
            .expect("Max-Forwards");
        // received/rport on the old top Via, our Via in front of it.
        let mut vias = headers.remove(&Name::VIA).expect("Via");
        let top = format!(
            "{}={};received={}",
            vias[0],
            super::SOURCE_PORT,
            std::str::from_utf8(super::SOURCE_IP).unwrap()
        );
        vias[0] = top.into();
        headers.insert_front(Name::VIA, std::str::from_utf8(super::OUR_VIA).unwrap());
        for v in vias {
            headers.insert(Name::VIA, v);
        }
        let rrs = headers.remove(&Name::RECORD_ROUTE).unwrap_or_default();
        headers.insert_front(
            Name::RECORD_ROUTE,
            std::str::from_utf8(super::OUR_RR).unwrap(),
        );
        for v in rrs {
            headers.insert(Name::RECORD_ROUTE, v);
        }
        let mut head = String::with_capacity(buf.len() + 128);
        write!(head, "{}\r\n{}\r\n", line.default_print_ctx(), headers).unwrap();
        let mut out = BytesMut::with_capacity(head.len() + body.len());
        out.put_slice(head.as_bytes());
        out.put_slice(&body);
        out.freeze()
    }
}

/// Check both forwarders produce a message cairn parses, with the edits.
pub fn sanity_check() {
    let buf = Bytes::from_static(INVITE);
    let m = cairn_parse(&buf);
    assert_eq!(m.as_bytes().len(), 933);
    assert_eq!(m.headers().len(), 14);
    assert_eq!(m.body().len(), 253);
    for out in [cairn_forward(&buf), ezk::forward(&buf)] {
        let f = Message::parse(out.clone()).unwrap_or_else(|e| {
            panic!("{e}\n{}", String::from_utf8_lossy(&out));
        });
        assert_eq!(f.max_forwards(), Some(68));
        assert_eq!(f.branch(), Some(&b"z9hG4bK.cairn.1a2b3c4d"[..]));
        assert_eq!(f.vias().count(), 3);
        let second = f.vias().nth(1).unwrap();
        assert_eq!(second.rport(), Some(Some(SOURCE_PORT)));
        assert_eq!(second.received(), Some(SOURCE_IP));
        let rr: Vec<_> = f.record_routes().map(|r| r.uri.to_vec()).collect();
        assert_eq!(
            rr,
            [
                &b"sip:10.0.0.1:5060;lr"[..],
                b"sip:edge.atlanta.example.com;lr"
            ]
        );
        assert_eq!(f.body(), m.body());
    }
}

/// (b) into a caller's buffer: the edit without the output allocation.
pub fn cairn_forward_into(buf: &Bytes, out: &mut BytesMut) {
    let m = cairn_parse(buf);
    let mut e = Editor::new(&m);
    e.set_via_received(Some(SOURCE_IP), Some(SOURCE_PORT))
        .push_via(OUR_VIA)
        .decrement_max_forwards()
        .push_record_route(OUR_RR);
    e.write_into(out);
}
