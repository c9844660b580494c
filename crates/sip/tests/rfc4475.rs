//! The 49 RFC 4475 torture messages (`testdata/rfc4475/`, byte-exact), one
//! test each, checked against `testdata/rfc4475/INDEX.tsv`:
//!
//! * valid (3.1.1.x) requests parse and survive a forward edit: push a Via,
//!   decrement Max-Forwards, finish, re-parse; same Call-ID, CSeq and body,
//!   one header more (two when Max-Forwards was added), every original
//!   header line present byte for byte and in order, `fwd_must_match`
//!   matching the forwarded bytes and `fwd_must_not_match` not;
//! * invalid (3.1.2.x) ones are rejected with a status the index accepts,
//!   or, where it accepts `fwd`, forwarded without what `fwd_must_not_match`
//!   describes;
//! * 3.2-3.4 per their row: where the answer is a proxy decision (416, 420,
//!   483, dropping a broadcast Via), the parser accepts the message and
//!   exposes what the proxy decides on.
//!
//! Responses that must be dropped (3.1.2.5 scalarlg, 3.1.2.19 bigcode) fail
//! to parse: a proxy drops a response it cannot parse, and never answers one.

use std::path::PathBuf;

use bytes::Bytes;
use cairn_sip::{Editor, HeaderName, Message, Method, Scheme};
use regex::bytes::Regex;

const INDEX: &str = include_str!("../testdata/rfc4475/INDEX.tsv");
const OUR_VIA: &[u8] = b"SIP/2.0/UDP 192.0.2.254:5060;branch=z9hG4bKcairn4475";

/// One row of INDEX.tsv.
#[derive(Debug)]
struct Row {
    file: &'static str,
    section: &'static str,
    class: &'static str,
    kind: &'static str,
    accept: Vec<&'static str>,
    must_match: Option<Regex>,
    must_not_match: Option<Regex>,
}

fn regex(s: &str) -> Option<Regex> {
    (!s.is_empty()).then(|| Regex::new(s).unwrap_or_else(|e| panic!("bad regex {s:?}: {e}")))
}

fn index() -> Vec<Row> {
    let mut lines = INDEX.lines();
    let head: Vec<_> = lines.next().unwrap().split('\t').collect();
    assert_eq!(head[0], "file");
    assert_eq!(head[6], "accept");
    assert_eq!(head[8], "fwd_must_match");
    assert_eq!(head[9], "fwd_must_not_match");
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&'static str> = l.split('\t').collect();
            assert!(c.len() >= 8, "short row {l:?}");
            Row {
                file: c[0],
                section: c[1],
                class: c[3],
                kind: c[4],
                accept: c[6].split('|').collect(),
                must_match: regex(c.get(8).copied().unwrap_or("")),
                must_not_match: regex(c.get(9).copied().unwrap_or("")),
            }
        })
        .collect()
}

fn row(file: &str) -> Row {
    index()
        .into_iter()
        .find(|r| r.file == file)
        .unwrap_or_else(|| panic!("{file} not in INDEX.tsv"))
}

fn path(r: &Row) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/rfc4475")
        .join(format!("{}-{}", r.section, r.file))
}

fn load(r: &Row) -> Vec<u8> {
    std::fs::read(path(r)).unwrap_or_else(|e| panic!("{}: {e}", path(r).display()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether the index accepts a rejection with `status` for this row.
fn accepts_status(r: &Row, status: u16) -> bool {
    r.accept.iter().any(|a| match *a {
        "4xx" => (400..500).contains(&status),
        "drop" => r.kind == "response",
        a => a.parse::<u16>() == Ok(status),
    })
}

/// The parser accepts the message.
fn accepted(r: &Row) -> Message {
    let raw = load(r);
    let m = Message::parse(Bytes::from(raw.clone()))
        .unwrap_or_else(|e| panic!("{} ({}): rejected: {e}", r.file, r.section));
    assert!(raw.starts_with(m.as_bytes()));
    assert_eq!(m.is_request(), r.kind == "request", "{}", r.file);
    // Editing nothing gives the message back, byte for byte.
    assert_eq!(&Editor::new(&m).finish()[..], m.as_bytes(), "{}", r.file);
    m
}

/// The parser rejects the message with `status`, and the index accepts it.
fn rejected(r: &Row, status: u16, reason: &str) {
    let err = Message::parse(Bytes::from(load(r)))
        .err()
        .unwrap_or_else(|| panic!("{} ({}): accepted", r.file, r.section));
    assert_eq!(err.status, status, "{}: {err}", r.file);
    assert!(
        err.reason.contains(reason),
        "{}: {err} (expected {reason:?})",
        r.file
    );
    assert!(
        accepts_status(r, status),
        "{}: the index does not accept {status} (accept: {:?})",
        r.file,
        r.accept
    );
}

/// Forward a request as a proxy does (push a Via, decrement Max-Forwards),
/// re-parse it, and check it against the original and the row's regexes.
fn forwards(r: &Row, m: &Message) -> Message {
    assert!(
        r.accept.contains(&"fwd"),
        "{}: the index does not accept forwarding",
        r.file
    );
    assert!(m.is_request());
    let mut e = Editor::new(m);
    e.push_via(OUR_VIA).decrement_max_forwards();
    let out = e.finish();
    let f = Message::parse(out.clone()).unwrap_or_else(|e| {
        panic!(
            "{}: forwarded message does not parse: {e}\n{}",
            r.file,
            text(&out)
        )
    });
    assert_eq!(f.call_id(), m.call_id(), "{}", r.file);
    assert_eq!(f.cseq().number, m.cseq().number, "{}", r.file);
    assert_eq!(f.slice(f.cseq().method_span), m.slice(m.cseq().method_span));
    assert_eq!(f.body(), m.body(), "{}", r.file);
    assert_eq!(f.start_line(), m.start_line(), "{}", r.file);
    let added = 1 + usize::from(m.max_forwards().is_none());
    assert_eq!(f.headers().len(), m.headers().len() + added, "{}", r.file);
    assert_eq!(f.branch(), Some(&b"z9hG4bKcairn4475"[..]));
    assert_eq!(f.vias().count(), m.vias().count() + 1, "{}", r.file);
    assert_eq!(
        f.max_forwards(),
        Some(m.max_forwards().map_or(70, |n| n.saturating_sub(1)))
    );

    // Every original header line is there, byte for byte and in order;
    // only the Max-Forwards value changed.
    let mut at = 0;
    for h in m.headers() {
        let line = m.slice(h.line());
        let want: Vec<u8> = if h.name == HeaderName::MaxForwards {
            let mut l = m.as_bytes()[h.name_span().start as usize..h.value.start as usize].to_vec();
            l.extend_from_slice(f.max_forwards().unwrap().to_string().as_bytes());
            l.extend_from_slice(&m.as_bytes()[h.value.end as usize..h.line_end() as usize]);
            l
        } else {
            line.to_vec()
        };
        let pos = memfind(&out[at..], &want).unwrap_or_else(|| {
            panic!(
                "{}: header line {:?} missing (or out of order) in\n{}",
                r.file,
                text(&want),
                text(&out)
            )
        });
        at += pos + want.len();
    }

    if let Some(re) = &r.must_match {
        assert!(
            re.is_match(&out),
            "{}: forwarded bytes do not match {re}",
            r.file
        );
    }
    if let Some(re) = &r.must_not_match {
        assert!(!re.is_match(&out), "{}: forwarded bytes match {re}", r.file);
    }
    f
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response the proxy has no transaction for: it parses (and is then
/// dropped by the transaction layer, or forwarded statelessly).
fn response_parses(r: &Row, status: u16) -> Message {
    assert_eq!(r.kind, "response");
    assert_eq!(r.accept, ["drop"], "{}", r.file);
    let m = accepted(r);
    assert_eq!(m.status(), Some(status));
    m
}

macro_rules! torture {
    ($($name:ident => $file:literal: $check:expr;)*) => {
        $(
            #[test]
            fn $name() {
                let check: fn(&Row) = $check;
                check(&row($file));
            }
        )*
        /// Every file a test above covers.
        const COVERED: &[&str] = &[$($file),*];
    };
}

torture! {
    // ----- 3.1.1 valid messages -----
    s3_1_1_1_wsinv => "wsinv.dat": |r| {
        let m = accepted(r);
        assert_eq!(m.max_forwards(), Some(68));
        assert_eq!(m.cseq().number, 9);
        assert_eq!(m.from_tag(), Some(&b"98asjd8"[..]));
        assert_eq!(m.to_tag(), Some(&b"1918181833n"[..]));
        assert_eq!(m.branch(), Some(&b"390skdjuw"[..]));
        assert_eq!(m.vias().count(), 3);
        assert_eq!(m.routes().count(), 1);
        assert_eq!(m.content_length(), Some(150));
        assert_eq!(m.contact().unwrap().uri, b"sip:jdrosen@example.com");
        forwards(r, &m);
    };
    s3_1_1_2_intmeth => "intmeth.dat": |r| {
        let m = accepted(r);
        assert_eq!(m.method(), Method::Other);
        assert_eq!(m.method_bytes(), b"!interesting-Method0123456789_*+`.%indeed'~");
        assert!(m.call_id().starts_with(b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"));
        assert_eq!(m.request_uri().unwrap().host, b"example.com");
        forwards(r, &m);
    };
    s3_1_1_3_esc01 => "esc01.dat": |r| {
        let m = accepted(r);
        let u = m.request_uri().unwrap();
        assert_eq!(u.user, Some(&b"sips%3Auser%40example.com"[..]));
        assert_eq!(u.host, b"example.net");
        forwards(r, &m);
    };
    s3_1_1_4_escnull => "escnull.dat": |r| {
        let m = accepted(r);
        assert!(m.to_value().windows(13).any(|w| w == b"null-%00-null"));
        forwards(r, &m);
    };
    s3_1_1_5_esc02 => "esc02.dat": |r| {
        let m = accepted(r);
        // Not REGISTER: the escape is not decoded in a method.
        assert_eq!(m.method(), Method::Other);
        assert_eq!(m.method_bytes(), b"RE%47IST%45R");
        forwards(r, &m);
    };
    s3_1_1_6_lwsdisp => "lwsdisp.dat": |r| {
        let m = accepted(r);
        let from = cairn_sip::NameAddr::parse(m.from_value()).unwrap();
        assert_eq!(from.display, Some(&b"caller"[..]));
        forwards(r, &m);
    };
    s3_1_1_7_longreq => "longreq.dat": |r| {
        let m = accepted(r);
        assert_eq!(m.vias().count(), 34);
        assert!(m.call_id().len() > 100);
        forwards(r, &m);
    };
    s3_1_1_8_dblreq => "dblreq.dat": |r| {
        let m = accepted(r);
        assert_eq!(m.method(), Method::Register);
        // The message ends where Content-Length says; the trailing INVITE
        // octets are not part of it and are never forwarded.
        assert!(m.as_bytes().ends_with(b"Content-Length: 0\r\n\r\n"));
        assert!(load(r).len() > m.as_bytes().len());
        assert!(memfind(m.as_bytes(), b"INVITE").is_none());
        let f = forwards(r, &m);
        assert!(memfind(f.as_bytes(), b"INVITE").is_none());
    };
    s3_1_1_9_semiuri => "semiuri.dat": |r| {
        let m = accepted(r);
        let u = m.request_uri().unwrap();
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, b"example.com");
        assert!(u.params.as_bytes().is_empty());
        forwards(r, &m);
    };
    s3_1_1_10_transports => "transports.dat": |r| {
        let m = accepted(r);
        let t: Vec<_> = m.vias().map(|v| text(v.transport_raw)).collect();
        assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
        assert_eq!(m.vias().filter(|v| v.transport().is_none()).count(), 2);
        forwards(r, &m);
    };
    s3_1_1_11_mpart01 => "mpart01.dat": |r| {
        let m = accepted(r);
        assert_eq!(m.content_length(), Some(553));
        assert_eq!(m.body().len(), 553);
        assert!(m.body().contains(&0), "binary body with NULs");
        assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
        forwards(r, &m);
    };
    s3_1_1_12_unreason => "unreason.dat": |r| {
        let m = response_parses(r, 200);
        assert_eq!(
            m.reason_phrase(),
            "= 2**3 * 5**2 но сто девяносто девять - простое".as_bytes()
        );
    };
    s3_1_1_13_noreason => "noreason.dat": |r| {
        let m = response_parses(r, 100);
        assert_eq!(m.reason_phrase(), b"");
    };

    // ----- 3.1.2 invalid messages -----
    s3_1_2_1_badinv01 => "badinv01.dat": |r| rejected(r, 400, "Contact");
    s3_1_2_2_clerr => "clerr.dat": |r| rejected(r, 400, "Content-Length larger");
    s3_1_2_3_ncl => "ncl.dat": |r| rejected(r, 400, "Content-Length");
    s3_1_2_4_scalar02 => "scalar02.dat": |r| rejected(r, 400, "CSeq");
    // A response: fails to parse, so it is dropped (never answered).
    s3_1_2_5_scalarlg => "scalarlg.dat": |r| {
        assert_eq!(r.accept, ["drop"]);
        rejected(r, 400, "CSeq");
    };
    s3_1_2_6_quotbal => "quotbal.dat": |r| rejected(r, 400, "To");
    s3_1_2_7_ltgtruri => "ltgtruri.dat": |r| rejected(r, 400, "Request-URI");
    s3_1_2_8_lwsruri => "lwsruri.dat": |r| rejected(r, 400, "request line");
    s3_1_2_9_lwsstart => "lwsstart.dat": |r| rejected(r, 400, "request line");
    s3_1_2_10_trws => "trws.dat": |r| rejected(r, 400, "request line");
    s3_1_2_11_escruri => "escruri.dat": |r| rejected(r, 400, "escaped headers");
    // Date is not looked at: accepted and forwarded unchanged.
    s3_1_2_12_baddate => "baddate.dat": |r| {
        let m = accepted(r);
        let f = forwards(r, &m);
        assert_eq!(f.headers_by_name(b"Date").count(), 1);
    };
    s3_1_2_13_regbadct => "regbadct.dat": |r| rejected(r, 400, "Contact");
    s3_1_2_14_badaspec => "badaspec.dat": |r| rejected(r, 400, "To");
    s3_1_2_15_baddn => "baddn.dat": |r| rejected(r, 400, "From");
    s3_1_2_16_badvers => "badvers.dat": |r| rejected(r, 505, "Version");
    s3_1_2_17_mismatch01 => "mismatch01.dat": |r| rejected(r, 400, "CSeq method");
    s3_1_2_18_mismatch02 => "mismatch02.dat": |r| rejected(r, 400, "CSeq method");
    // A response: fails to parse, so it is dropped (never answered).
    s3_1_2_19_bigcode => "bigcode.dat": |r| {
        assert_eq!(r.accept, ["drop"]);
        rejected(r, 400, "status code");
    };

    // ----- 3.2 transaction layer -----
    s3_2_1_badbranch => "badbranch.dat": |r| {
        let m = accepted(r);
        // A bare magic cookie: the proxy falls back to RFC 2543 matching.
        assert_eq!(m.branch(), Some(&b"z9hG4bK"[..]));
        assert!(!m.top_via().has_rfc3261_branch());
        forwards(r, &m);
    };

    // ----- 3.3 application layer -----
    s3_3_1_insuf => "insuf.dat": |r| rejected(r, 400, "Missing");
    // 416 is the proxy's answer: the parser exposes the scheme.
    s3_3_2_unkscm => "unkscm.dat": |r| {
        assert_eq!(r.accept, ["416"]);
        let m = accepted(r);
        let u = m.request_uri().unwrap();
        assert_eq!(u.scheme, Scheme::Other);
        assert_eq!(u.raw, b"nobodyKnowsThisScheme:totallyopaquecontent");
    };
    s3_3_3_novelsc => "novelsc.dat": |r| {
        assert!(r.accept.contains(&"416"));
        let m = accepted(r);
        let u = m.request_uri().unwrap();
        assert_eq!(u.scheme, Scheme::Other);
        assert!(u.raw.starts_with(b"soap.beep:"));
    };
    s3_3_4_unksm2 => "unksm2.dat": |r| {
        let m = accepted(r);
        assert_eq!(m.request_uri().unwrap().scheme, Scheme::Sip);
        forwards(r, &m);
    };
    // 420 is the proxy's answer: the parser exposes the Proxy-Require values.
    s3_3_5_bext01 => "bext01.dat": |r| {
        assert_eq!(r.accept, ["420"]);
        let m = accepted(r);
        assert_eq!(
            m.header(HeaderName::ProxyRequire),
            Some(&b"noProxiesSupportThis, norDoAnyProxiesSupportThis"[..])
        );
        let v: Vec<_> = m.values(HeaderName::ProxyRequire).map(|s| text(m.slice(s))).collect();
        assert_eq!(v, ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]);
        assert_eq!(m.values(HeaderName::Require).count(), 2);
    };
    s3_3_6_invut => "invut.dat": |r| {
        let m = accepted(r);
        assert_eq!(m.header(HeaderName::ContentType), Some(&b"application/unknownformat"[..]));
        forwards(r, &m);
    };
    s3_3_7_regaut01 => "regaut01.dat": |r| {
        let m = accepted(r);
        forwards(r, &m);
    };
    s3_3_8_multi01 => "multi01.dat": |r| rejected(r, 400, "Multiple");
    s3_3_9_mcl01 => "mcl01.dat": |r| rejected(r, 400, "Multiple Content-Length");
    // Dropping it is the proxy's decision: the parser exposes the broadcast Via.
    s3_3_10_bcast => "bcast.dat": |r| {
        let m = response_parses(r, 200);
        let hosts: Vec<_> = m.vias().map(|v| text(v.host)).collect();
        assert_eq!(hosts, ["192.0.2.198", "255.255.255.255"]);
    };
    // 483 is the proxy's answer: the parser exposes Max-Forwards 0.
    s3_3_11_zeromf => "zeromf.dat": |r| {
        assert_eq!(r.accept, ["483"]);
        let m = accepted(r);
        assert_eq!(m.max_forwards(), Some(0));
    };
    s3_3_12_cparam01 => "cparam01.dat": |r| {
        let m = accepted(r);
        let c = m.contact().unwrap();
        assert!(!c.bracketed);
        assert_eq!(c.params.get("unknownparam"), Some(None));
        forwards(r, &m);
    };
    s3_3_13_cparam02 => "cparam02.dat": |r| {
        let m = accepted(r);
        let c = m.contact().unwrap();
        assert!(c.bracketed);
        assert_eq!(c.params.get("unknownparam"), None);
        let u = cairn_sip::Uri::parse(c.uri).unwrap();
        assert_eq!(u.param("unknownparam"), Some(None));
        forwards(r, &m);
    };
    s3_3_14_regescrt => "regescrt.dat": |r| {
        let m = accepted(r);
        let u = cairn_sip::Uri::parse(m.contact().unwrap().uri).unwrap();
        assert!(u.headers.starts_with(b"Route="));
        forwards(r, &m);
    };
    s3_3_15_sdp01 => "sdp01.dat": |r| {
        let m = accepted(r);
        forwards(r, &m);
    };

    // ----- 3.4 backward compatibility -----
    s3_4_1_inv2543 => "inv2543.dat": |r| {
        let m = accepted(r);
        assert_eq!(m.branch(), None);
        assert_eq!(m.from_tag(), None);
        assert_eq!(m.content_length(), None);
        assert_eq!(m.max_forwards(), None);
        let f = forwards(r, &m);
        assert_eq!(f.max_forwards(), Some(70));
    };
}

#[test]
fn every_index_row_is_covered_once() {
    let rows = index();
    assert_eq!(rows.len(), 49);
    let mut covered = COVERED.to_vec();
    covered.sort();
    covered.dedup();
    assert_eq!(covered.len(), COVERED.len(), "a file is tested twice");
    for r in &rows {
        assert!(COVERED.contains(&r.file), "{} has no test", r.file);
        assert!(path(r).is_file(), "{} missing", path(r).display());
        let class = match r.section {
            s if s.starts_with("3.1.1.") => "valid",
            s if s.starts_with("3.1.2.") => "invalid",
            _ => "other",
        };
        assert_eq!(r.class, class, "{}", r.file);
    }
}

/// Spot checks that the copies kept the bytes an editor would lose
/// (`testdata/rfc4475/SHA256SUMS` checks them all: `sha256sum -c`).
#[test]
fn testdata_is_byte_exact() {
    let r = row("mpart01.dat");
    let b = load(&r);
    assert!(b.windows(2).any(|w| w == b"\r\n"));
    // The binary S/MIME part has bare LFs and NULs.
    assert!(b.contains(&0));
    let r = row("baddn.dat");
    let b = load(&r);
    assert!(
        b.ends_with(b"l: 0\r\n") && !b.ends_with(b"\r\n\r\n"),
        "baddn.dat lacks the empty line"
    );
    let r = row("intmeth.dat");
    assert!(load(&r).contains(&0), "intmeth.dat has a NUL");
}

/// The index regexes test something: each `fwd_must_match` matches the
/// file as sent, and each `fwd_must_not_match` matches it too (a proxy
/// that forwarded the raw bytes would fail it).
#[test]
fn index_regexes_match_the_raw_messages() {
    let mut n = 0;
    for r in index() {
        let raw = load(&r);
        for re in r.must_match.iter().chain(&r.must_not_match) {
            assert!(
                re.is_match(&raw),
                "{}: {re} does not match the raw file",
                r.file
            );
            n += 1;
        }
    }
    assert!(n >= 15, "{n} regexes");
}
