//! Sans-I/O framing of SIP messages on a byte stream (RFC 3261 section 18.3).
//!
//! Over a stream transport a SIP message is its header section, ended by an empty line
//! (`CRLF CRLF`), followed by exactly `Content-Length` bytes of body. The header is
//! mandatory on streams. Between messages a peer may send keep-alives (RFC 5626 section 4.4.1):
//! a double CRLF "ping", which must be answered with a single CRLF "pong". A lone CRLF
//! (a pong, or a stray CRLF before a start line, RFC 3261 section 7.5) is skipped.
//!
//! [`Framer`] looks at the bytes buffered from a stream, starting at a frame boundary, and
//! says how many of them form the next frame. It never copies and never allocates; the
//! caller owns the buffer and removes a frame's bytes once it has been reported.
//!
//! Only the framing is checked here. Whether the frame is a well-formed SIP message is for
//! the parser (cairn-sip) to decide.

use std::fmt;

use memchr::{memchr_iter, memmem};

/// One frame at the start of a stream buffer. The number is its length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole SIP message: the header section through `CRLF CRLF` plus the body.
    Message(usize),
    /// A keep-alive "ping" (`CRLF CRLF`, RFC 5626): consume it and answer with one `CRLF`.
    KeepAlive(usize),
    /// A lone `CRLF`: a keep-alive "pong", or a stray line break between messages.
    /// Consume it; it needs no answer.
    Pong(usize),
}

impl Frame {
    /// The number of bytes the frame takes at the start of the buffer.
    pub fn len(self) -> usize {
        match self {
            Frame::Message(n) | Frame::KeepAlive(n) | Frame::Pong(n) => n,
        }
    }

    /// Always false: a frame is never empty. Present because `len` is.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// Why a stream cannot be framed. A stream cannot be resynchronised after any of these:
/// the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// No `CRLF CRLF` within the first `limit` bytes.
    HeadersTooLong { limit: usize },
    /// The header section has no `Content-Length` (or `l`) header, which is mandatory on
    /// stream transports (RFC 3261 section 18.3).
    MissingContentLength,
    /// A `Content-Length` header whose value is not a decimal number.
    InvalidContentLength,
    /// Two `Content-Length` headers with different values.
    ConflictingContentLength { first: u64, second: u64 },
    /// Header section plus declared body is larger than the limit.
    MessageTooLarge { size: u64, limit: usize },
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::HeadersTooLong { limit } => {
                write!(f, "no end of headers (CRLF CRLF) within {limit} bytes")
            }
            FramingError::MissingContentLength => {
                f.write_str("no Content-Length header (mandatory on stream transports)")
            }
            FramingError::InvalidContentLength => {
                f.write_str("Content-Length value is not a decimal number")
            }
            FramingError::ConflictingContentLength { first, second } => {
                write!(
                    f,
                    "conflicting Content-Length headers ({first} and {second})"
                )
            }
            FramingError::MessageTooLarge { size, limit } => {
                if *size == u64::MAX {
                    write!(f, "Content-Length overflows; the limit is {limit} bytes")
                } else {
                    write!(
                        f,
                        "message of {size} bytes exceeds the limit of {limit} bytes"
                    )
                }
            }
        }
    }
}

impl std::error::Error for FramingError {}

/// Frame the start of `buf` with no state kept between calls.
///
/// Equivalent to `Framer::new(max_message_size).next(buf)`. A stream reader should keep a
/// [`Framer`] instead, which does not rescan the bytes it has already searched.
pub fn frame(buf: &[u8], max_message_size: usize) -> Result<Option<Frame>, FramingError> {
    Framer::new(max_message_size).next(buf)
}

/// Incremental framer for one stream.
///
/// Call [`Framer::next`] with the buffered bytes, which must start at a frame boundary.
/// After it returns a frame, remove that frame's bytes from the front of the buffer before
/// the next call. After `Ok(None)`, call again with the same bytes plus whatever arrived.
/// After an error the stream is unusable.
#[derive(Debug, Clone)]
pub struct Framer {
    max: usize,
    /// Bytes of the current frame already searched for `CRLF CRLF` without a match.
    searched: usize,
    /// Total length of the current message once its headers have been seen.
    pending: Option<usize>,
}

const END_OF_HEADERS: &[u8] = b"\r\n\r\n";

impl Framer {
    /// A framer that accepts messages (headers plus body) of at most `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Framer {
        Framer {
            max: max_message_size,
            searched: 0,
            pending: None,
        }
    }

    /// The limit this framer enforces.
    pub fn max_message_size(&self) -> usize {
        self.max
    }

    /// The next frame at the start of `buf`: `Ok(None)` if more bytes are needed.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<Frame>, FramingError> {
        if let Some(total) = self.pending {
            return Ok(if buf.len() >= total {
                self.reset();
                Some(Frame::Message(total))
            } else {
                None
            });
        }

        match keep_alive(buf) {
            KeepAlive::NeedMore => return Ok(None),
            KeepAlive::Ping => return Ok(Some(Frame::KeepAlive(4))),
            KeepAlive::Pong => return Ok(Some(Frame::Pong(2))),
            KeepAlive::No => {}
        }

        let limit = buf.len().min(self.max);
        let from = self.searched.min(limit);
        let Some(i) = memmem::find(&buf[from..limit], END_OF_HEADERS) else {
            if buf.len() >= self.max {
                return Err(FramingError::HeadersTooLong { limit: self.max });
            }
            // The terminator may straddle the end: rescan the last 3 bytes next time.
            self.searched = limit.saturating_sub(END_OF_HEADERS.len() - 1);
            return Ok(None);
        };
        let head_end = from + i + END_OF_HEADERS.len();
        let body = content_length(&buf[..head_end])?.ok_or(FramingError::MissingContentLength)?;
        let total = (head_end as u64).saturating_add(body);
        if total > self.max as u64 {
            return Err(FramingError::MessageTooLarge {
                size: total,
                limit: self.max,
            });
        }
        let total = total as usize;
        if buf.len() >= total {
            self.reset();
            Ok(Some(Frame::Message(total)))
        } else {
            self.searched = 0;
            self.pending = Some(total);
            Ok(None)
        }
    }

    fn reset(&mut self) {
        self.searched = 0;
        self.pending = None;
    }
}

enum KeepAlive {
    NeedMore,
    Ping,
    Pong,
    No,
}

fn keep_alive(buf: &[u8]) -> KeepAlive {
    match buf {
        [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => KeepAlive::NeedMore,
        [b'\r', b'\n', b'\r', b'\n', ..] => KeepAlive::Ping,
        [b'\r', b'\n', ..] => KeepAlive::Pong,
        _ => KeepAlive::No,
    }
}

/// The Content-Length of a header section that ends with `CRLF CRLF`.
///
/// Header names are matched case-insensitively, in full (`Content-Length`) or compact (`l`)
/// form, only at the start of a line (not on the start line, not in a folded continuation),
/// with optional whitespace before the colon. The value may be surrounded by linear
/// whitespace, including a folded line break.
fn content_length(head: &[u8]) -> Result<Option<u64>, FramingError> {
    let mut found: Option<u64> = None;
    for nl in memchr_iter(b'\n', head) {
        let start = nl + 1;
        // Only CRLF line breaks; the last one ends the header section.
        if start >= head.len() || nl == 0 || head[nl - 1] != b'\r' {
            continue;
        }
        let line = &head[start..];
        let name_len = if starts_with_ignore_case(line, b"content-length") {
            14
        } else if matches!(line[0], b'l' | b'L') {
            1
        } else {
            continue;
        };
        let mut p = skip_wsp(line, name_len);
        if line.get(p) != Some(&b':') {
            continue; // another header, such as `Content-Length-X` or `Lang`
        }
        p = skip_lws(line, p + 1);
        let digits = p;
        let mut value: Option<u64> = Some(0);
        while let Some(&d) = line.get(p).filter(|d| d.is_ascii_digit()) {
            value = value
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u64::from(d - b'0')));
            p += 1;
        }
        if p == digits {
            return Err(FramingError::InvalidContentLength);
        }
        p = skip_lws(line, p);
        if !line[p..].starts_with(b"\r\n") {
            return Err(FramingError::InvalidContentLength);
        }
        // An overflowing value is reported as too large, not as invalid.
        let value = value.unwrap_or(u64::MAX);
        match found {
            Some(first) if first != value => {
                return Err(FramingError::ConflictingContentLength {
                    first,
                    second: value,
                })
            }
            _ => found = Some(value),
        }
    }
    Ok(found)
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_wsp(s: &[u8], mut p: usize) -> usize {
    while s.get(p).is_some_and(|&b| is_wsp(b)) {
        p += 1;
    }
    p
}

/// Skip linear whitespace: `*WSP [CRLF 1*WSP]`, repeated.
fn skip_lws(s: &[u8], mut p: usize) -> usize {
    loop {
        p = skip_wsp(s, p);
        if s[p..].starts_with(b"\r\n") && s.get(p + 2).is_some_and(|&b| is_wsp(b)) {
            p += 3;
        } else {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65535;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 12\r\n\
\r\n\
v=0\r\no=x\r\n\r\n";

    const OPTIONS: &[u8] = b"OPTIONS sip:carol@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
l:0\r\n\
\r\n";

    /// Feed `stream` to a framer as if it arrived in the given chunks; collect the frames.
    fn run_chunks(chunks: &[&[u8]], max: usize) -> Result<Vec<(Frame, Vec<u8>)>, FramingError> {
        let mut framer = Framer::new(max);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = framer.next(&buf)? {
                assert!(!f.is_empty() && f.len() <= buf.len());
                out.push((f, buf.drain(..f.len()).collect()));
            }
        }
        assert!(
            buf.is_empty() || framer.next(&buf)?.is_none(),
            "leftover bytes must be incomplete"
        );
        Ok(out)
    }

    fn messages(frames: &[(Frame, Vec<u8>)]) -> Vec<&[u8]> {
        frames
            .iter()
            .filter(|(f, _)| matches!(f, Frame::Message(_)))
            .map(|(_, b)| b.as_slice())
            .collect()
    }

    #[test]
    fn whole_message() {
        assert_eq!(frame(INVITE, MAX), Ok(Some(Frame::Message(INVITE.len()))));
        assert_eq!(frame(OPTIONS, MAX), Ok(Some(Frame::Message(OPTIONS.len()))));
    }

    #[test]
    fn body_containing_crlfcrlf_is_kept_whole() {
        // The INVITE body ends with "\r\n\r\n" and contains "\r\n": only Content-Length counts.
        let f = run_chunks(&[INVITE, OPTIONS], MAX).unwrap();
        assert_eq!(messages(&f), vec![INVITE, OPTIONS]);
        let mut m = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 12\r\n\r\n".to_vec();
        m.extend_from_slice(b"\r\n\r\nab\r\n\r\ncd");
        assert_eq!(frame(&m, MAX), Ok(Some(Frame::Message(m.len()))));
    }

    #[test]
    fn every_split_point_of_two_messages() {
        let mut stream = INVITE.to_vec();
        stream.extend_from_slice(OPTIONS);
        for cut in 0..=stream.len() {
            let f = run_chunks(&[&stream[..cut], &stream[cut..]], MAX).unwrap();
            assert_eq!(messages(&f), vec![INVITE, OPTIONS], "split at {cut}");
        }
    }

    #[test]
    fn every_pair_of_split_points() {
        let stream = [OPTIONS, b"\r\n\r\n", OPTIONS].concat();
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                let f = run_chunks(&[&stream[..a], &stream[a..b], &stream[b..]], MAX).unwrap();
                let kinds: Vec<Frame> = f.iter().map(|(f, _)| *f).collect();
                assert_eq!(
                    kinds,
                    vec![
                        Frame::Message(OPTIONS.len()),
                        Frame::KeepAlive(4),
                        Frame::Message(OPTIONS.len())
                    ],
                    "splits at {a},{b}"
                );
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let stream = [INVITE, b"\r\n", OPTIONS, b"\r\n\r\n", INVITE].concat();
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let f = run_chunks(&chunks, MAX).unwrap();
        let kinds: Vec<Frame> = f.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            kinds,
            vec![
                Frame::Message(INVITE.len()),
                Frame::Pong(2),
                Frame::Message(OPTIONS.len()),
                Frame::KeepAlive(4),
                Frame::Message(INVITE.len()),
            ]
        );
        assert_eq!(messages(&f), vec![INVITE, OPTIONS, INVITE]);
    }

    #[test]
    fn incremental_search_equals_stateless() {
        // A framer that is fed one byte at a time must agree with a fresh one at every length.
        let mut framer = Framer::new(MAX);
        for n in 0..INVITE.len() {
            assert_eq!(framer.next(&INVITE[..n]), Ok(None), "prefix {n}");
            assert_eq!(frame(&INVITE[..n], MAX), Ok(None), "prefix {n}");
        }
        assert_eq!(framer.next(INVITE), Ok(Some(Frame::Message(INVITE.len()))));
    }

    #[test]
    fn keep_alives() {
        assert_eq!(frame(b"", MAX), Ok(None));
        assert_eq!(frame(b"\r", MAX), Ok(None));
        assert_eq!(frame(b"\r\n", MAX), Ok(None));
        assert_eq!(frame(b"\r\n\r", MAX), Ok(None));
        assert_eq!(frame(b"\r\n\r\n", MAX), Ok(Some(Frame::KeepAlive(4))));
        assert_eq!(frame(b"\r\n\r\nINVITE", MAX), Ok(Some(Frame::KeepAlive(4))));
        assert_eq!(frame(b"\r\nINVITE", MAX), Ok(Some(Frame::Pong(2))));
        let f = run_chunks(&[b"\r\n\r\n\r\n\r\n", OPTIONS], MAX).unwrap();
        let kinds: Vec<Frame> = f.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            kinds,
            vec![
                Frame::KeepAlive(4),
                Frame::KeepAlive(4),
                Frame::Message(OPTIONS.len())
            ]
        );
        // Ping, then a lone CRLF, then a message.
        let f = run_chunks(&[b"\r\n\r\n\r\n", OPTIONS], MAX).unwrap();
        let kinds: Vec<Frame> = f.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            kinds,
            vec![
                Frame::KeepAlive(4),
                Frame::Pong(2),
                Frame::Message(OPTIONS.len())
            ]
        );
    }

    #[test]
    fn content_length_forms() {
        let ok = |head: &str, body: &str| {
            let m = format!("OPTIONS sip:a@b SIP/2.0\r\n{head}\r\n\r\n{body}");
            assert_eq!(
                frame(m.as_bytes(), MAX),
                Ok(Some(Frame::Message(m.len()))),
                "{head:?}"
            );
        };
        ok("Content-Length: 3", "abc");
        ok("content-length:3", "abc");
        ok("CONTENT-LENGTH  :   3  ", "abc");
        ok("Content-Length\t:\t3\t", "abc");
        ok("l: 3", "abc");
        ok("L:3", "abc");
        ok("l :3", "abc");
        ok("Content-Length: 0", "");
        ok("Content-Length: 003", "abc");
        // Folded value (LWS with a line break), RFC 3261 section 7.3.1.
        ok("Content-Length:\r\n 3", "abc");
        ok("Content-Length: 3\r\n\t", "abc");
        // Other headers that look alike are not Content-Length.
        ok("Content-Length-X: 99\r\nLang: 7\r\nl: 3", "abc");
        ok("Subject: x\r\n l: 99\r\nContent-Length: 3", "abc");
        ok("X-Content-Length: 99\r\nContent-Length: 3", "abc");
        // Repeated but equal is accepted.
        ok("Content-Length: 3\r\nl: 3", "abc");
    }

    #[test]
    fn header_name_must_start_a_line() {
        // "l: 3" appears only inside another header's value and on the start line.
        let m = b"l: 3 sip:a@b SIP/2.0\r\nSubject: hi l: 3\r\n\r\nabc";
        assert_eq!(frame(m, MAX), Err(FramingError::MissingContentLength));
    }

    #[test]
    fn body_headers_are_ignored() {
        // A Content-Length inside the body must not be read.
        let m = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 20\r\n\r\nContent-Length: 999\r\n";
        assert_eq!(
            m.len() - m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
            21
        );
        assert_eq!(frame(m, MAX), Ok(Some(Frame::Message(m.len() - 1))));
    }

    #[test]
    fn missing_content_length() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n";
        assert_eq!(frame(m, MAX), Err(FramingError::MissingContentLength));
    }

    #[test]
    fn invalid_content_length() {
        for v in ["abc", "", "-1", "+1", "1.5", "1 2", "0x10", "5, 5", "١"] {
            let m = format!("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(
                frame(m.as_bytes(), MAX),
                Err(FramingError::InvalidContentLength),
                "{v:?}"
            );
        }
    }

    #[test]
    fn conflicting_content_length() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\nl: 4\r\n\r\nabcd";
        assert_eq!(
            frame(m, MAX),
            Err(FramingError::ConflictingContentLength {
                first: 3,
                second: 4
            })
        );
    }

    #[test]
    fn limits() {
        let head = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\n";
        let exact = head.len() + 10;
        let m = [&head[..], b"0123456789"].concat();
        // Exactly at the limit passes; one byte under fails before the body arrives.
        assert_eq!(frame(&m, exact), Ok(Some(Frame::Message(exact))));
        assert_eq!(
            frame(head, exact - 1),
            Err(FramingError::MessageTooLarge {
                size: exact as u64,
                limit: exact - 1
            })
        );
        // Huge and overflowing Content-Length values.
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4294967296\r\n\r\n";
        assert!(matches!(
            frame(m, MAX),
            Err(FramingError::MessageTooLarge { .. })
        ));
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999999999999999999999999\r\n\r\n";
        assert_eq!(
            frame(m, MAX),
            Err(FramingError::MessageTooLarge {
                size: u64::MAX,
                limit: MAX
            })
        );
    }

    #[test]
    fn headers_too_long() {
        let limit = 100;
        let mut m = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        while m.len() < limit - 1 {
            m.push(b'x');
        }
        assert_eq!(frame(&m, limit), Ok(None));
        m.push(b'x');
        assert_eq!(
            frame(&m, limit),
            Err(FramingError::HeadersTooLong { limit })
        );
        // A header section that ends exactly at the limit is fine.
        let mut m = b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\nX: ".to_vec();
        while m.len() < limit - 4 {
            m.push(b'y');
        }
        m.extend_from_slice(b"\r\n\r\n");
        assert_eq!(m.len(), limit);
        assert_eq!(frame(&m, limit), Ok(Some(Frame::Message(limit))));
        // One byte more and the terminator is past the limit.
        let m = [&b"A"[..], &m].concat();
        assert_eq!(
            frame(&m, limit),
            Err(FramingError::HeadersTooLong { limit })
        );
        // Also when fed incrementally.
        let mut framer = Framer::new(limit);
        let mut r = Ok(None);
        for n in 0..=m.len() {
            r = framer.next(&m[..n]);
            if r.is_err() {
                assert_eq!(n, limit);
                break;
            }
        }
        assert_eq!(r, Err(FramingError::HeadersTooLong { limit }));
    }

    #[test]
    fn garbage() {
        assert_eq!(
            frame(&[0u8; 200], 100),
            Err(FramingError::HeadersTooLong { limit: 100 })
        );
        assert_eq!(frame(b"\x16\x03\x01\x02\x00", MAX), Ok(None)); // a TLS hello: wait
        assert_eq!(
            frame(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", MAX),
            Err(FramingError::MissingContentLength)
        );
        // Bare LF line ends are not SIP framing: no end of headers is found.
        assert_eq!(frame(b"OPTIONS x SIP/2.0\nl: 0\n\n", MAX), Ok(None));
        // A CR not followed by LF at the start is not a keep-alive.
        assert_eq!(
            frame(b"\rX\r\nl: 0\r\n\r\n", MAX),
            Ok(Some(Frame::Message(12)))
        );
        // Pseudo-random bytes never panic and never report more than they were given.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (seed % 300) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                v.push(b"\r\n:lL0123 abc"[(seed % 13) as usize]);
            }
            if let Ok(Some(f)) = frame(&v, 200) {
                assert!(f.len() <= v.len());
            }
        }
    }

    #[test]
    fn many_messages_in_one_buffer() {
        let stream: Vec<u8> = std::iter::repeat_n([OPTIONS, INVITE].concat(), 50)
            .flatten()
            .collect();
        let f = run_chunks(&[&stream], MAX).unwrap();
        assert_eq!(messages(&f).len(), 100);
    }

    #[test]
    fn error_display() {
        let e = FramingError::MessageTooLarge {
            size: 70000,
            limit: 65535,
        };
        assert_eq!(
            e.to_string(),
            "message of 70000 bytes exceeds the limit of 65535 bytes"
        );
        assert!(FramingError::MissingContentLength
            .to_string()
            .contains("Content-Length"));
    }
}
