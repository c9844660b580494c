//! Building new messages: responses to a request, and the CANCEL and ACK
//! of a client transaction (RFC 3261 8.2.6, 9.1, 17.1.1.3).

use bytes::{BufMut, Bytes, BytesMut};

use crate::edit::itoa_buf;
use crate::error::ParseError;
use crate::header::HeaderName;
use crate::message::Message;

fn line(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// The standard reason phrase of a status code; for a code without one,
/// the phrase of its class.
pub fn reason_phrase(code: u16) -> &'static str {
    standard_reason(code).unwrap_or(match code / 100 {
        1 => "Trying",
        2 => "OK",
        3 => "Redirect",
        4 => "Client Error",
        5 => "Server Error",
        _ => "Global Failure",
    })
}

/// The standard reason phrase of a response code (RFC 3261 section 21
/// and later RFCs), if it has one.
pub fn standard_reason(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => return None,
    })
}

/// Build a response to `req` (RFC 3261 8.2.6): Via lines, From, To,
/// Call-ID and CSeq copied; a To tag added when the request has none and
/// the response is not a 100; `extra` headers; no body.
pub fn response(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra: &[(&str, &[u8])],
) -> Bytes {
    let mut out = BytesMut::with_capacity(req.as_bytes().len().min(1024) + 128);
    out.put_slice(b"SIP/2.0 ");
    out.put_slice(&itoa_buf(u32::from(code)));
    out.put_u8(b' ');
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
    for h in req.headers_named(HeaderName::Via) {
        line(&mut out, "Via", req.slice(h.value));
    }
    line(&mut out, "From", req.from_value());
    out.put_slice(b"To: ");
    out.put_slice(req.to_value());
    if req.to_tag().is_none() && code > 100 {
        if let Some(tag) = to_tag {
            out.put_slice(b";tag=");
            out.put_slice(tag);
        }
    }
    out.put_slice(b"\r\n");
    line(&mut out, "Call-ID", req.call_id());
    out.put_slice(b"CSeq: ");
    out.put_slice(&itoa_buf(req.cseq().number));
    out.put_u8(b' ');
    out.put_slice(req.method_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in extra {
        line(&mut out, name, value);
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// Build the CANCEL for an INVITE as it was sent (RFC 3261 9.1): same
/// Request-URI, Call-ID, From, To, CSeq number, one Via equal to the
/// INVITE's top Via, the INVITE's Route headers, and the given Reason
/// values.
pub fn cancel(invite: &Message, reasons: &[&[u8]]) -> Bytes {
    hop_request(b"CANCEL", invite, invite.to_value(), reasons)
}

/// Build the ACK for a non-2xx final response to an INVITE as it was sent
/// (RFC 3261 17.1.1.3): the INVITE's Request-URI, Call-ID, From, top Via
/// and Route headers, the response's To (with its tag), CSeq number with
/// method ACK.
pub fn ack(invite: &Message, response: &Message) -> Bytes {
    hop_request(b"ACK", invite, response.to_value(), &[])
}

/// A request of the INVITE's own transaction (CANCEL, ACK for a non-2xx).
fn hop_request(method: &[u8], invite: &Message, to: &[u8], reasons: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(method);
    out.put_u8(b' ');
    out.put_slice(invite.request_uri_bytes());
    out.put_slice(b" SIP/2.0\r\n");
    line(&mut out, "Via", invite.slice(invite.top_via_span()));
    for h in invite.headers_named(HeaderName::Route) {
        line(&mut out, "Route", invite.slice(h.value));
    }
    line(&mut out, "Max-Forwards", b"70");
    line(&mut out, "From", invite.from_value());
    line(&mut out, "To", to);
    line(&mut out, "Call-ID", invite.call_id());
    out.put_slice(b"CSeq: ");
    out.put_slice(&itoa_buf(invite.cseq().number));
    out.put_u8(b' ');
    out.put_slice(method);
    out.put_slice(b"\r\n");
    for r in reasons {
        line(&mut out, "Reason", r);
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// A response to a request that could not be parsed, built from whatever
/// header lines can be found (the way a proxy answers 400 with a reason).
/// `None` when the input is not a request or lacks what a response needs
/// (Via, From, To, Call-ID, CSeq).
pub fn error_response(raw: &[u8], err: &ParseError, to_tag: &[u8]) -> Option<Bytes> {
    let mut lines = raw
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next()?;
    if start.is_empty() || start.starts_with(b"SIP/") || !start.contains(&b' ') {
        return None;
    }
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(b"SIP/2.0 ");
    out.put_slice(&itoa_buf(u32::from(err.status)));
    out.put_u8(b' ');
    // A reason phrase is TEXT-UTF8: keep it on one line.
    for c in err.reason.bytes() {
        out.put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
    }
    out.put_slice(b"\r\n");
    let mut have = [false; 5];
    for l in lines {
        if l.is_empty() {
            break;
        }
        let Some(colon) = memchr::memchr(b':', l) else {
            continue;
        };
        let name = crate::scan::trim(&l[..colon]);
        let value = crate::scan::trim(&l[colon + 1..]);
        if value.is_empty() {
            continue;
        }
        let (slot, canon) = match HeaderName::from_bytes(name) {
            HeaderName::Via => (0, "Via"),
            HeaderName::From => (1, "From"),
            HeaderName::To => (2, "To"),
            HeaderName::CallId => (3, "Call-ID"),
            HeaderName::CSeq => (4, "CSeq"),
            _ => continue,
        };
        if slot != 0 && have[slot] {
            continue;
        }
        have[slot] = true;
        if slot == 2 {
            let to_has_tag = crate::params::Params::new(value).get("tag").is_some()
                || value.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag="));
            out.put_slice(b"To: ");
            out.put_slice(value);
            if !to_has_tag {
                out.put_slice(b";tag=");
                out.put_slice(to_tag);
            }
            out.put_slice(b"\r\n");
        } else {
            line(&mut out, canon, value);
        }
    }
    if have.iter().any(|h| !h) {
        return None;
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    Some(out.freeze())
}
