//! The parsed message: the original bytes plus an index of its lines.
//!
//! Parsing finds the start line and every header line (name, value span,
//! folding), and parses at once only what every hop needs: the top Via,
//! From and To tags, Call-ID, CSeq, Max-Forwards and Content-Length.
//! Everything else is parsed when asked for, from the kept bytes.

use bytes::Bytes;

use crate::addr::NameAddr;
use crate::error::ParseError;
use crate::fast;
use crate::header::HeaderName;
use crate::method::Method;
use crate::scan::{self, item_end, parse_u64, trim, CommaSplit};
use crate::uri::{Scheme, Uri};
use crate::via::Via;

/// A byte range into the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    #[inline]
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
    #[inline]
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    #[inline]
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// One header line of the message: 16 bytes, the offsets within the
/// line kept relative to its value (a line is at most
/// [`MAX_LINE_LIMIT`] bytes long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The value, without leading white space or the final line end; a
    /// folded value spans its continuation lines.
    pub value: Span,
    /// From the name's start to the value's start.
    value_off: u16,
    name_len: u16,
    /// From the value's end to past the line end.
    tail: u16,
    pub name: HeaderName,
}

impl Header {
    #[inline(always)]
    fn new(
        name: HeaderName,
        name_start: usize,
        name_end: usize,
        value: Span,
        line_end: usize,
    ) -> Header {
        Header {
            value,
            value_off: (value.start as usize - name_start) as u16,
            name_len: (name_end - name_start) as u16,
            tail: (line_end - value.end as usize) as u16,
            name,
        }
    }

    /// The name as written (`v`, `VIA`, `X-Foo`).
    #[inline]
    pub fn name_span(&self) -> Span {
        let start = self.value.start - u32::from(self.value_off);
        Span {
            start,
            end: start + u32::from(self.name_len),
        }
    }

    /// Offset just past the line end (including continuation lines).
    #[inline]
    pub fn line_end(&self) -> u32 {
        self.value.end + u32::from(self.tail)
    }

    /// The whole line, from the name to past its line end.
    #[inline]
    pub fn line(&self) -> Span {
        Span {
            start: self.name_span().start,
            end: self.line_end(),
        }
    }

    /// A free slot of the index (never read). All its bytes are zero, so
    /// a new index is filled like zeroed memory.
    const EMPTY: Header = Header {
        value: Span { start: 0, end: 0 },
        value_off: 0,
        name_len: 0,
        tail: 0,
        name: HeaderName::Via,
    };
}

/// The longest header line any [`Limits`] allows: the offsets within a
/// line are kept in 16 bits.
pub const MAX_LINE_LIMIT: usize = 65_000;

/// How many header lines a message holds without a heap allocation.
const INLINE_HEADERS: usize = 24;

/// The header lines of a message: in place up to [`INLINE_HEADERS`], all
/// of them on the heap past that.
#[derive(Clone)]
struct HeaderIndex {
    inline: [Header; INLINE_HEADERS],
    /// Every header once there are more than [`INLINE_HEADERS`].
    spill: Vec<Header>,
    len: usize,
}

impl HeaderIndex {
    #[inline(always)]
    fn new() -> Self {
        HeaderIndex {
            inline: [Header::EMPTY; INLINE_HEADERS],
            spill: Vec::new(),
            len: 0,
        }
    }

    #[inline(always)]
    fn as_slice(&self) -> &[Header] {
        match self.inline.get(..self.len) {
            Some(s) => s,
            None => &self.spill,
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn last_mut(&mut self) -> Option<&mut Header> {
        match self.inline.get_mut(..self.len) {
            Some(s) => s.last_mut(),
            None => self.spill.last_mut(),
        }
    }

    /// Put `h` at index `n`, the current length (the header loop keeps
    /// the length itself and stores it back with [`HeaderIndex::set_len`]).
    #[inline(always)]
    fn put(&mut self, n: usize, h: Header) {
        match self.inline.get_mut(n) {
            Some(slot) => *slot = h,
            None => self.put_spilled(n, h),
        }
    }

    /// [`HeaderIndex::put`] of the header with this name and offsets
    /// (name start and end, value start and end, line end), written field
    /// by field: a whole `Header` built first and copied would be read
    /// back wider than it was written, which the store-to-load forwarding
    /// of the CPU does not serve.
    #[inline(always)]
    fn put_parts(&mut self, n: usize, name: HeaderName, at: [usize; 5]) {
        let value = Span::new(at[2], at[3]);
        match self.inline.get_mut(n) {
            Some(slot) => {
                slot.value = value;
                slot.value_off = (at[2] - at[0]) as u16;
                slot.name_len = (at[1] - at[0]) as u16;
                slot.tail = (at[4] - at[3]) as u16;
                slot.name = name;
            }
            None => self.put_spilled(n, Header::new(name, at[0], at[1], value, at[4])),
        }
    }

    #[cold]
    #[inline(never)]
    fn put_spilled(&mut self, n: usize, h: Header) {
        if self.spill.is_empty() {
            self.spill.reserve(2 * INLINE_HEADERS);
            self.spill.extend_from_slice(&self.inline);
        }
        self.spill.truncate(n);
        self.spill.push(h);
    }

    #[inline(always)]
    fn set_len(&mut self, n: usize) {
        self.len = n;
    }

    #[inline(always)]
    fn push(&mut self, h: Header) {
        let n = self.len;
        self.put(n, h);
        self.len = n + 1;
    }
}

impl std::ops::Deref for HeaderIndex {
    type Target = [Header];
    #[inline(always)]
    fn deref(&self) -> &[Header] {
        self.as_slice()
    }
}

/// Parse limits. The defaults suit a proxy on UDP and TCP.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_size: usize,
    /// Most header lines accepted.
    pub max_headers: usize,
    /// Longest header line (a folded header counts as one line), at
    /// most [`MAX_LINE_LIMIT`]: a larger value counts as that.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 65535,
            max_headers: 256,
            max_line: 16384,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
    },
    Response {
        code: u16,
        reason: Span,
    },
}

/// The CSeq header: number and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq {
    pub number: u32,
    pub method: Method,
    /// The method as written, for extension methods.
    pub method_span: Span,
}

/// A parsed SIP request or response.
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    start: Start,
    /// Offset just past the start line.
    start_line_end: u32,
    headers: HeaderIndex,
    /// Offset of the first body byte (past the empty line).
    body_start: u32,
    /// Offset of the empty line that ends the headers.
    headers_end: u32,
    call_id: Span,
    cseq: CSeq,
    top_via: Span,
    /// The value of the top Via's first `branch` parameter.
    via_branch: Option<Span>,
    /// Just past the name of the top Via's first `rport` parameter, when
    /// that has no value (the client asks for its port, RFC 3581).
    via_rport_ask: Option<u32>,
    /// The index of the first header of each known kind, [`NONE`] when
    /// there is none. An index past `u16` is stored as `NONE - 1`: a
    /// place to start looking from.
    first: [u16; HeaderName::KNOWN],
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    max_forwards: Option<u32>,
    content_length: Option<u32>,
}

/// [`Message::first`] for a header kind the message does not have.
const NONE: u16 = u16::MAX;

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("start_line", &String::from_utf8_lossy(self.start_line()))
            .field("headers", &self.headers.len())
            .field("body_len", &self.body().len())
            .finish()
    }
}

impl Message {
    /// Parse one message with the default limits.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_with(buf, &Limits::default())
    }

    /// Parse one message. `buf` is a whole UDP datagram or one frame cut
    /// from a stream. Octets after the body that Content-Length announces
    /// are ignored (RFC 3261 18.3, RFC 4475 3.1.1.8).
    pub fn parse_with(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        if buf.len() > limits.max_size {
            return Err(ParseError::with_status(513, "Message Too Large"));
        }
        let b: &[u8] = &buf;
        // RFC 3261 7.5: ignore CRLFs before the start line.
        let mut pos = 0;
        while pos < b.len() && (b[pos] == b'\r' || b[pos] == b'\n') {
            pos += 1;
        }
        // The line ends are found 64 bytes at a time, from here on to the
        // last header line.
        let mut lfs = scan::LineEnds::new();
        let (line_end, next) = lfs.line(b, pos);
        if line_end <= pos {
            return Err(ParseError::bad("Empty message"));
        }
        let start = parse_start_line(b, pos, line_end)?;
        let mut msg = Message {
            buf: Bytes::new(),
            start,
            start_line_end: next as u32,
            headers: HeaderIndex::new(),
            body_start: 0,
            headers_end: 0,
            call_id: Span::default(),
            cseq: CSeq {
                number: 0,
                method: Method::Other,
                method_span: Span::default(),
            },
            top_via: Span::default(),
            via_branch: None,
            via_rport_ask: None,
            first: [NONE; HeaderName::KNOWN],
            from_tag: None,
            to_tag: None,
            max_forwards: None,
            content_length: None,
        };

        let dup = msg.index_headers(b, next, limits, lfs)?;
        let body_end = msg.index_key_headers(b, dup)?;
        let buf = if body_end < buf.len() {
            buf.slice(..body_end)
        } else {
            buf
        };
        // The placeholder is an empty static `Bytes`: nothing to free, so
        // it is forgotten rather than dropped through its vtable.
        std::mem::forget(std::mem::replace(&mut msg.buf, buf));
        Ok(msg)
    }

    /// Index the header lines from `i` up to the empty line (or the end
    /// of the buffer). Returns the first repeated single-valued header
    /// (RFC 4475 3.3.8).
    ///
    /// A line in the usual shape (a name of at most fifteen bytes right
    /// before its colon, see [`usual_line_start`]) takes a short path;
    /// every other line, folding, the empty line and every error take the
    /// general one, which gives the same result for a usual line.
    #[inline(never)]
    fn index_headers(
        &mut self,
        b: &[u8],
        mut i: usize,
        limits: &Limits,
        mut lfs: scan::LineEnds,
    ) -> Result<Option<usize>, ParseError> {
        let mut dup = None;
        let max_line = limits.max_line.min(MAX_LINE_LIMIT);
        // The number of headers, kept here and stored at each way out.
        let mut k = self.headers.len();
        loop {
            if let Some((name, name_end, v)) = usual_line_start(b, i) {
                if k >= limits.max_headers {
                    return Err(ParseError::bad("Too many headers"));
                }
                // No LF before the colon: the line ends past it.
                let (end, next) = lfs.line(b, name_end);
                if end - i > max_line {
                    return Err(ParseError::bad("Header line too long"));
                }
                if name == HeaderName::Other && !scan::is_token_str(&b[i..name_end]) {
                    return Err(ParseError::bad("Malformed header name"));
                }
                let v = v.min(end);
                let value_end = trim_end(b, v, end);
                self.note_kind(name, k, &mut dup);
                self.headers
                    .put_parts(k, name, [i, name_end, v, value_end, next]);
                k += 1;
                i = next;
                continue;
            }
            self.headers.set_len(k);
            let line = self.index_line(b, i, limits, &mut lfs, &mut dup)?;
            k = self.headers.len();
            match line {
                Some(next) => i = next,
                None => return Ok(dup),
            }
        }
    }

    /// Keep the index of the first header of a kind, and note the first
    /// repeated single-valued one.
    #[inline(always)]
    fn note_kind(&mut self, name: HeaderName, k: usize, dup: &mut Option<usize>) {
        if name != HeaderName::Other {
            let f = &mut self.first[name as usize];
            if *f == NONE {
                *f = k.min(NONE as usize - 1) as u16;
            } else if dup.is_none() && name.is_single() {
                *dup = Some(k);
            }
        }
    }

    /// One line of the header loop, in general: a header line, a
    /// continuation line, or the end of the headers (`None`). Returns
    /// where the next line starts.
    #[inline(never)]
    fn index_line(
        &mut self,
        b: &[u8],
        i: usize,
        limits: &Limits,
        lfs: &mut scan::LineEnds,
        dup: &mut Option<usize>,
    ) -> Result<Option<usize>, ParseError> {
        let max_line = limits.max_line.min(MAX_LINE_LIMIT);
        // The empty line that ends the headers (or the end of the
        // buffer: a message without a body may lack it).
        let first = match b.get(i) {
            None => {
                self.headers_end = i as u32;
                self.body_start = i as u32;
                return Ok(None);
            }
            Some(&c) => c,
        };
        if first == b'\n' || (first == b'\r' && b.get(i + 1) == Some(&b'\n')) {
            self.headers_end = i as u32;
            self.body_start = (i + 1 + usize::from(first == b'\r')) as u32;
            return Ok(None);
        }
        let (end, next) = lfs.line(b, i);
        let headers = &mut self.headers;
        if first == b' ' || first == b'\t' {
            // Continuation of the previous header (folding, 7.3.1).
            let h = headers
                .last_mut()
                .ok_or_else(|| ParseError::bad("Continuation line before any header"))?;
            let mut value_end = end;
            while value_end > i && scan::is_lws(b[value_end - 1]) {
                value_end -= 1;
            }
            let name_span = h.name_span();
            if next - name_span.start as usize > max_line {
                return Err(ParseError::bad("Header line too long"));
            }
            let mut value = h.value;
            if value_end > i {
                if value.is_empty() {
                    // `Name:` CRLF SP value: the value starts on the continuation.
                    value.start = scan::skip_lws(b, i) as u32;
                }
                value.end = value_end as u32;
            }
            let name_span = name_span.range();
            *h = Header::new(h.name, name_span.start, name_span.end, value, next);
            return Ok(Some(next));
        }
        if headers.len() >= limits.max_headers {
            return Err(ParseError::bad("Too many headers"));
        }
        if end - i > max_line {
            return Err(ParseError::bad("Header line too long"));
        }
        // name = token, then SP/HT, then ':'. The first colon ends the
        // name (no token character is one); a known name was compared
        // whole, so only an unknown one needs its characters checked.
        let Some((name, name_end, v)) = name_and_value_start(b, i, end) else {
            return Err(ParseError::bad("Header line without a colon"));
        };
        if name == HeaderName::Other && !scan::is_token_str(&b[i..name_end]) {
            return Err(ParseError::bad("Malformed header name"));
        }
        // The value ends without SP/HT.
        let value_end = trim_end(b, v, end);
        let k = headers.len();
        self.note_kind(name, k, dup);
        self.headers.push(Header::new(
            name,
            i,
            name_end,
            Span::new(v, value_end),
            next,
        ));
        Ok(Some(next))
    }

    /// The index of the first header of a kind.
    #[inline(always)]
    fn first_index(&self, name: HeaderName) -> Option<usize> {
        match self.first.get(name as usize) {
            Some(&NONE) => None,
            Some(&f) if f < NONE - 1 => Some(f as usize),
            // `Other`, or an index past u16: look from there.
            f => {
                let from = f.map_or(0, |&f| f as usize);
                let k = self.headers[from..].iter().position(|h| h.name == name)?;
                Some(from + k)
            }
        }
    }

    /// Check the headers every hop needs, and keep what they hold.
    /// `dup` is the first repeated single-valued header. Returns where the
    /// message ends.
    fn index_key_headers(&mut self, b: &[u8], dup: Option<usize>) -> Result<usize, ParseError> {
        // Contact values, then the repeated header: the first problem in
        // header order is the one reported.
        let contact = self.first_index(HeaderName::Contact);
        if contact.is_some() || dup.is_some() {
            let from = contact.unwrap_or(usize::MAX).min(dup.unwrap_or(usize::MAX));
            let to = dup.unwrap_or(self.headers.len());
            for h in &self.headers[from..to] {
                if h.name == HeaderName::Contact {
                    check_contact(b, h.value)?;
                }
            }
            if let Some(k) = dup {
                return Err(ParseError::bad(format!(
                    "Multiple {} headers",
                    self.headers[k].name.as_str()
                )));
            }
        }
        let missing = |n: HeaderName| ParseError::bad(format!("Missing {} header", n.as_str()));
        let found = |n: HeaderName| self.first_index(n).ok_or_else(|| missing(n));
        let via = found(HeaderName::Via)?;
        let from = found(HeaderName::From)?;
        let to = found(HeaderName::To)?;
        let call_id = found(HeaderName::CallId)?;
        let cseq = found(HeaderName::CSeq)?;

        // Top Via, and the parameters the proxy reads and edits.
        let vh = self.headers[via];
        let vv = &b[vh.value.range()];
        let (start, end) = (vh.value.start as usize, vh.value.end as usize);
        if let Some((first_end, branch, rport)) = fast::top_via(b, start, end) {
            self.top_via = Span::new(start, first_end);
            self.via_branch = branch.map(|(s, e)| Span::new(s, e));
            self.via_rport_ask = rport.map(|e| e as u32);
        } else {
            self.top_via_general(b, vv)?;
        }

        // From and To.
        self.from_tag = self.addr_tag(b, from, "From")?;
        self.to_tag = self.addr_tag(b, to, "To")?;

        // Call-ID.
        let cid = self.headers[call_id].value;
        if cid.is_empty() || scan::has_lws(&b[cid.range()]) {
            return Err(ParseError::bad("Malformed Call-ID header"));
        }
        self.call_id = cid;

        // CSeq: number LWS method.
        let cs = self.headers[cseq].value;
        let v = &b[cs.range()];
        let (number, digits) = scan::leading_u64(v, u64::from(u32::MAX))
            .ok_or_else(|| ParseError::bad("Bad CSeq number"))?;
        let m_start = scan::skip_lws(v, digits);
        if m_start == digits || m_start >= v.len() {
            return Err(ParseError::bad("Malformed CSeq header"));
        }
        let method = &v[m_start..];
        let method = match self.start {
            // The request line's method is a token: so is an equal one.
            Start::Request {
                method: m,
                method_span,
                ..
            } if b[method_span.range()] == *method => m,
            _ if !scan::is_token_str(method) => {
                return Err(ParseError::bad("Malformed CSeq method"));
            }
            Start::Request { .. } => {
                return Err(ParseError::bad(
                    "CSeq method does not match the request method",
                ));
            }
            Start::Response { .. } => Method::from_bytes(method),
        };
        self.cseq = CSeq {
            number: number as u32,
            method,
            method_span: Span::new(cs.start as usize + m_start, cs.end as usize),
        };

        if let Some(k) = self.first_index(HeaderName::MaxForwards) {
            let v = &b[self.headers[k].value.range()];
            self.max_forwards =
                Some(parse_u64(v, 255).ok_or_else(|| ParseError::bad("Bad Max-Forwards"))? as u32);
        }

        // Body.
        let available = b.len() - self.body_start as usize;
        match self.first_index(HeaderName::ContentLength) {
            Some(k) => {
                let v = &b[self.headers[k].value.range()];
                let cl = parse_u64(v, u64::from(u32::MAX))
                    .ok_or_else(|| ParseError::bad("Bad Content-Length"))?;
                if cl as usize > available {
                    return Err(ParseError::bad("Content-Length larger than the message"));
                }
                self.content_length = Some(cl as u32);
                Ok(self.body_start as usize + cl as usize)
            }
            None => Ok(b.len()),
        }
    }

    /// The top Via by the general parser (for values [`fast::top_via`]
    /// does not take).
    #[cold]
    fn top_via_general(&mut self, b: &[u8], vv: &[u8]) -> Result<(), ParseError> {
        let first_end = item_end(vv, 0).map_err(|_| ParseError::bad("Malformed Via header"))?;
        let first = trim(&vv[..first_end]);
        let (mut branch, mut rport) = (None, None);
        Via::parse_each(first, |n, v| {
            if branch.is_none() && n.eq_ignore_ascii_case(b"branch") {
                branch = Some(v.map(|v| span_in(b, v)));
            } else if rport.is_none() && n.eq_ignore_ascii_case(b"rport") {
                rport = Some(v.is_none().then(|| span_in(b, n).end));
            }
        })
        .map_err(|e| ParseError::bad(format!("Malformed Via header: {e}")))?;
        self.top_via = span_in(b, first);
        self.via_branch = branch.flatten();
        self.via_rport_ask = rport.flatten();
        Ok(())
    }

    #[inline(always)]
    fn addr_tag(&self, b: &[u8], k: usize, what: &str) -> Result<Option<Span>, ParseError> {
        let value = self.headers[k].value;
        let v = &b[value.range()];
        if let Some(tag) = fast::name_addr_tag(b, value.start as usize, value.end as usize) {
            return Ok(tag.map(|(s, e)| Span::new(s, e)));
        }
        self.addr_tag_general(b, v, what)
    }

    /// [`Message::addr_tag`] by the general parser.
    #[cold]
    fn addr_tag_general(&self, b: &[u8], v: &[u8], what: &str) -> Result<Option<Span>, ParseError> {
        let end =
            item_end(v, 0).map_err(|_| ParseError::bad(format!("Malformed {what} header")))?;
        if end != v.len() {
            return Err(ParseError::bad(format!(
                "Multiple values in the {what} header"
            )));
        }
        let mut tag = None;
        NameAddr::parse_each(v, |n, v| {
            if tag.is_none() && n.eq_ignore_ascii_case(b"tag") {
                tag = Some(v.map(|v| span_in(b, v)));
            }
        })
        .map_err(|e| ParseError::bad(format!("Malformed {what} header: {e}")))?;
        Ok(tag.flatten())
    }

    // ----- accessors -----

    /// The message bytes, exactly as received (trailing octets cut).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The shared buffer holding the message.
    #[inline]
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }

    #[inline]
    pub fn slice(&self, s: Span) -> &[u8] {
        &self.buf[s.range()]
    }

    /// A cheap, shared copy of a span.
    pub fn share(&self, s: Span) -> Bytes {
        self.buf.slice(s.range())
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The request method; for a response, the CSeq method.
    pub fn method(&self) -> Method {
        match self.start {
            Start::Request { method, .. } => method,
            Start::Response { .. } => self.cseq.method,
        }
    }

    /// The method as written (for a response: the CSeq method).
    pub fn method_bytes(&self) -> &[u8] {
        match self.start {
            Start::Request { method_span, .. } => self.slice(method_span),
            Start::Response { .. } => self.slice(self.cseq.method_span),
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            Start::Response { code, .. } => Some(code),
            Start::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    pub fn reason_phrase(&self) -> &[u8] {
        match self.start {
            Start::Response { reason, .. } => self.slice(reason),
            Start::Request { .. } => &[],
        }
    }

    /// The Request-URI text of a request (empty for a response).
    pub fn request_uri_bytes(&self) -> &[u8] {
        match self.start {
            Start::Request { uri, .. } => self.slice(uri),
            Start::Response { .. } => &[],
        }
    }

    /// The Request-URI span.
    pub fn request_uri_span(&self) -> Option<Span> {
        match self.start {
            Start::Request { uri, .. } => Some(uri),
            Start::Response { .. } => None,
        }
    }

    /// The parsed Request-URI. `sip:`/`sips:` URIs were checked while
    /// parsing, so this fails only for other schemes' syntax.
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        Uri::parse(self.request_uri_bytes()).ok()
    }

    /// The start line without its line end.
    pub fn start_line(&self) -> &[u8] {
        let s = &self.buf[..self.start_line_end as usize];
        s.strip_suffix(b"\n")
            .map_or(s, |s| s.strip_suffix(b"\r").unwrap_or(s))
    }

    pub(crate) fn start_line_end(&self) -> usize {
        self.start_line_end as usize
    }

    pub(crate) fn headers_end(&self) -> usize {
        self.headers_end as usize
    }

    /// All header lines, in order.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        self.headers.as_slice()
    }

    /// The first header line of a kind.
    #[inline]
    pub(crate) fn first_header(&self, name: HeaderName) -> Option<&Header> {
        self.headers.get(self.first_index(name)?)
    }

    /// Header lines of one kind.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = &Header> + '_ {
        let from = self.first_index(name).unwrap_or(self.headers.len());
        self.headers[from..].iter().filter(move |h| h.name == name)
    }

    /// Header lines with a given name (case-insensitive), for headers
    /// without an id; compact forms of known headers also match.
    pub fn headers_by_name<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s Header> + 's {
        let id = HeaderName::from_bytes(name);
        self.headers.iter().filter(move |h| {
            if id != HeaderName::Other {
                h.name == id
            } else {
                h.name == HeaderName::Other && self.slice(h.name_span()).eq_ignore_ascii_case(name)
            }
        })
    }

    /// The value of the first header of a kind.
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.headers_named(name).next().map(|h| self.slice(h.value))
    }

    /// Every comma-separated value of a header kind, across lines, in
    /// order, as spans. Values that cannot be split (open quote) end the
    /// iteration.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = Span> + '_ {
        self.headers_named(name).flat_map(move |h| {
            let v = self.slice(h.value);
            let base = h.value.start as usize;
            CommaSplit::new(v)
                .map_while(Result::ok)
                .filter(|(a, b)| b > a)
                .map(move |(a, b)| Span::new(base + a, base + b))
        })
    }

    /// The top Via value.
    pub fn top_via(&self) -> Via<'_> {
        // Checked while parsing.
        Via::parse(self.slice(self.top_via)).unwrap_or(Via {
            transport_raw: &[],
            host: &[],
            port: None,
            params: Default::default(),
        })
    }

    pub fn top_via_span(&self) -> Span {
        self.top_via
    }

    /// The branch of the top Via.
    pub fn branch(&self) -> Option<&[u8]> {
        self.via_branch.map(|s| self.slice(s))
    }

    /// Just past the name of the top Via's `rport` parameter when it has
    /// no value (the client asks for its port, RFC 3581).
    pub(crate) fn top_via_rport_ask(&self) -> Option<usize> {
        self.via_rport_ask.map(|e| e as usize)
    }

    /// All Via values in order (the top one first).
    pub fn vias(&self) -> impl Iterator<Item = Via<'_>> + '_ {
        self.values(HeaderName::Via)
            .map_while(move |s| Via::parse(self.slice(s)).ok())
    }

    pub fn call_id(&self) -> &[u8] {
        self.slice(self.call_id)
    }

    pub fn cseq(&self) -> CSeq {
        self.cseq
    }

    pub fn from_tag(&self) -> Option<&[u8]> {
        self.from_tag.map(|s| self.slice(s))
    }

    pub fn to_tag(&self) -> Option<&[u8]> {
        self.to_tag.map(|s| self.slice(s))
    }

    /// The From header value.
    pub fn from_value(&self) -> &[u8] {
        self.header(HeaderName::From).unwrap_or_default()
    }

    /// The To header value.
    pub fn to_value(&self) -> &[u8] {
        self.header(HeaderName::To).unwrap_or_default()
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    pub fn body(&self) -> &[u8] {
        &self.buf[self.body_start as usize..]
    }

    pub(crate) fn body_start(&self) -> usize {
        self.body_start as usize
    }

    /// Route values, parsed, in order.
    pub fn routes(&self) -> impl Iterator<Item = NameAddr<'_>> + '_ {
        self.values(HeaderName::Route)
            .map_while(move |s| NameAddr::parse(self.slice(s)).ok())
    }

    /// Record-Route values, parsed, in order.
    pub fn record_routes(&self) -> impl Iterator<Item = NameAddr<'_>> + '_ {
        self.values(HeaderName::RecordRoute)
            .map_while(move |s| NameAddr::parse(self.slice(s)).ok())
    }

    /// The first Contact value, parsed.
    pub fn contact(&self) -> Option<NameAddr<'_>> {
        let s = self.values(HeaderName::Contact).next()?;
        NameAddr::parse(self.slice(s)).ok()
    }
}

/// The span of `part`, a subslice of the message bytes `b`.
#[inline]
fn span_in(b: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - b.as_ptr() as usize;
    Span::new(start, start + part.len())
}

/// A header line starting at `i` in the usual shape: a name of one to
/// fifteen bytes with no SP, HT, CR or LF in it, then the colon, all
/// within the sixteen bytes from `i`. Gives the name's id, its end (the
/// colon) and where the value starts: past the colon and any SP/HT, maybe
/// past the line's end (the caller cuts it there). Such a line starts
/// neither a continuation nor the empty line.
#[inline(always)]
fn usual_line_start(b: &[u8], i: usize) -> Option<(HeaderName, usize, usize)> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use scan::sse2::{eq_mask, le_mask, load16};
        let block = b.get(i..)?.get(..16)?;
        let v = load16(block, 0);
        let colons = eq_mask(v, b':');
        // SP, HT, CR, LF and the other control characters: none may come
        // before the colon (a name has none; the other cases, a
        // continuation or the empty line among them, go the general way).
        let controls = le_mask(v, b' ');
        let blank = eq_mask(v, b' ') | eq_mask(v, b'\t');
        // The first colon, 16 when there is none.
        let c = (colons | 1 << 16).trailing_zeros();
        if c == 0 || c == 16 || controls & ((1 << c) - 1) != 0 {
            return None;
        }
        let past = !blank & (0xffff << (c + 1)) & 0xffff;
        let v_start = if past != 0 {
            i + past.trailing_zeros() as usize
        } else {
            skip_blank(b, i + 16)
        };
        let name_end = i + c as usize;
        Some((
            HeaderName::from_line_start(v, &block[..c as usize]),
            name_end,
            v_start,
        ))
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        let _ = (b, i);
        None
    }
}

/// The header line `b[i..end]`: the id of its name, the name's end (before
/// any SP/HT ahead of the colon) and where its value starts (past the
/// colon and any SP/HT; at most `end`). `None` without a colon. (Lines in
/// the usual shape take [`usual_line_start`] instead.)
fn name_and_value_start(b: &[u8], i: usize, end: usize) -> Option<(HeaderName, usize, usize)> {
    let colon = scan::find_byte(&b[..end], i, b':')?;
    let name_end = trim_end(b, i, colon);
    let name = HeaderName::from_bytes(&b[i..name_end]);
    Some((name, name_end, skip_blank(b, colon + 1).min(end)))
}

/// `i` moved past SP/HT.
#[inline]
fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// `end` moved back over trailing SP/HT.
#[inline]
fn trim_end(b: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && (b[end - 1] == b' ' || b[end - 1] == b'\t') {
        end -= 1;
    }
    end
}

fn parse_start_line(b: &[u8], start: usize, end: usize) -> Result<Start, ParseError> {
    let line = &b[start..end];
    if line.starts_with(b"SIP/") || line.starts_with(b"sip/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = scan::find_byte(line, 0, b' ')
            .ok_or_else(|| ParseError::bad("Malformed status line"))?;
        if !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::with_status(505, "Version Not Supported"));
        }
        let rest = &line[sp + 1..];
        let code_end = scan::find_byte(rest, 0, b' ').unwrap_or(rest.len());
        let code = match &rest[..code_end] {
            c if c.len() == 3 => parse_u64(c, 699).filter(|&c| c >= 100),
            _ => None,
        }
        .ok_or_else(|| ParseError::bad("Bad status code"))?;
        let reason_start = start + sp + 1 + (code_end + 1).min(rest.len());
        return Ok(Start::Response {
            code: code as u16,
            reason: Span::new(reason_start, end),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 =
        scan::find_byte(line, 0, b' ').ok_or_else(|| ParseError::bad("Malformed request line"))?;
    let method_bytes = &line[..sp1];
    // A known method is a token; only another one is checked.
    let method = Method::from_bytes(method_bytes);
    if method == Method::Other && !scan::is_token_str(method_bytes) {
        return Err(ParseError::bad("Malformed method"));
    }
    let rest = &line[sp1 + 1..];
    let sp2 =
        scan::find_byte(rest, 0, b' ').ok_or_else(|| ParseError::bad("Malformed request line"))?;
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    let uri_start = start + sp1 + 1;
    // The usual line: `SIP/2.0` in any case (no LWS in it), and a URI the
    // one-pass check takes (no HT in it). Anything else is checked in the
    // order that words the first problem.
    if !(is_sip_2_0(version) && fast::sip_uri(b, uri_start, uri_start + sp2)) {
        if uri.is_empty()
            || version.iter().any(|&c| scan::is_lws(c))
            || scan::find_byte(uri, 0, b'\t').is_some()
        {
            return Err(ParseError::bad("Malformed request line"));
        }
        if !version.eq_ignore_ascii_case(b"SIP/2.0") {
            if version.len() > 4 && version[..4].eq_ignore_ascii_case(b"SIP/") {
                return Err(ParseError::with_status(505, "Version Not Supported"));
            }
            return Err(ParseError::bad("Malformed SIP version"));
        }
        // The version is `SIP/2.0`, so the one-pass check did not take
        // the URI: the general parser says what it is.
        let parsed =
            Uri::parse(uri).map_err(|e| ParseError::bad(format!("Bad Request-URI: {}", e.0)))?;
        if matches!(parsed.scheme, Scheme::Sip | Scheme::Sips) && !parsed.headers.is_empty() {
            return Err(ParseError::bad("Request-URI with escaped headers"));
        }
    }
    Ok(Start::Request {
        method,
        method_span: Span::new(start, start + sp1),
        uri: Span::new(uri_start, uri_start + sp2),
    })
}

/// Whether `v` is `SIP/2.0`, the letters in any case: OR-ing 0x20 into
/// the first three bytes maps only `S`/`s`, `I`/`i` and `P`/`p` to the
/// lower-case letters.
#[inline(always)]
fn is_sip_2_0(v: &[u8]) -> bool {
    let Ok(w) = <[u8; 7]>::try_from(v) else {
        return false;
    };
    let mut x = [0u8; 8];
    x[..7].copy_from_slice(&w);
    u64::from_le_bytes(x) | 0x20_2020 == u64::from_le_bytes(*b"sip/2.0\0")
}

fn check_contact(b: &[u8], value: Span) -> Result<(), ParseError> {
    if fast::name_addr_tag(b, value.start as usize, value.end as usize).is_some() {
        return Ok(());
    }
    let v = &b[value.range()];
    if trim(v) == b"*" {
        return Ok(());
    }
    for item in CommaSplit::new(v) {
        let (a, b) = item.map_err(|_| ParseError::bad("Malformed Contact header"))?;
        NameAddr::parse(&v[a..b])
            .map_err(|e| ParseError::bad(format!("Malformed Contact header: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_sip_2_0;

    #[test]
    fn is_sip_2_0_is_eq_ignore_ascii_case() {
        // Every byte at every place, and lengths around seven.
        for len in 5..=9usize {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut v: Vec<u8> = b"SiP/2.0xy".iter().copied().take(len).collect();
                    v[at] = c;
                    assert_eq!(is_sip_2_0(&v), v.eq_ignore_ascii_case(b"SIP/2.0"), "{v:?}");
                }
            }
        }
    }
}
