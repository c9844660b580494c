//! Editing a message for forwarding. Edits are recorded as splices of the
//! original bytes; [`Editor::finish`] writes the result with one
//! allocation, copying every byte the proxy did not touch unchanged.

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes};
use smallvec::SmallVec;

use crate::header::HeaderName;
use crate::message::{Message, Span};
use crate::scan::{item_end, skip_lws};

#[derive(Debug, Clone, Copy)]
struct Op {
    /// Range of the original message replaced by `text`; an insertion
    /// when `start == end`.
    start: u32,
    end: u32,
    text: (u32, u32),
    /// The text must start a line: a CRLF goes before it unless the
    /// output written so far ends with LF.
    line_start: bool,
}

/// Records edits on a parsed message and writes the edited copy.
pub struct Editor<'m> {
    msg: &'m Message,
    ops: SmallVec<[Op; 12]>,
    texts: Texts,
    body: Option<&'m [u8]>,
    /// What the edits add to the size (less what they remove), while
    /// `simple`.
    grown: isize,
    /// No edit overlaps another and none starts a line: then the edited
    /// message is `grown` bytes larger than the original.
    simple: bool,
}

/// The texts the edits insert, one after the other: inline up to 512
/// bytes, then (all of them) on the heap. The inline bytes are not
/// zeroed first: only `inline[..len]` is ever read, and every byte of it
/// was written by [`Texts::put`].
struct Texts {
    inline: [MaybeUninit<u8>; INLINE],
    len: usize,
    heap: Option<Vec<u8>>,
}

const INLINE: usize = 512;

impl Texts {
    /// Append `p` to the text being built.
    #[inline(always)]
    fn put(&mut self, p: &[u8]) {
        let at = self.len;
        match (&self.heap, self.inline.get_mut(at..at + p.len())) {
            (None, Some(dst)) => {
                dst.write_copy_of_slice(p);
                self.len = at + p.len();
            }
            _ => self.put_heap(p),
        }
    }

    /// [`Texts::put`] past the inline buffer: move to the heap.
    #[cold]
    #[inline(never)]
    fn put_heap(&mut self, p: &[u8]) {
        let at = self.len;
        if self.heap.is_none() {
            let mut h = Vec::with_capacity((at + p.len()).max(2 * INLINE));
            h.extend_from_slice(self.initialized());
            self.heap = Some(h);
        }
        if let Some(h) = &mut self.heap {
            h.extend_from_slice(p);
        }
        self.len = at + p.len();
    }

    /// The inline bytes written so far (all of them when not on the heap).
    #[inline(always)]
    fn initialized(&self) -> &[u8] {
        let s = &self.inline[..self.len.min(INLINE)];
        // SAFETY: `put` writes `inline[len..len + n]` before it moves
        // `len` to `len + n`, and `len` only grows while the texts are
        // inline; so `inline[..len]` is initialized. (Once on the heap,
        // `len` may pass INLINE; the bytes below INLINE were written
        // before.) `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { &*(s as *const [MaybeUninit<u8>] as *const [u8]) }
    }

    #[inline]
    fn get(&self, (a, b): (u32, u32)) -> &[u8] {
        let r = a as usize..b as usize;
        match &self.heap {
            Some(h) => &h[r],
            None => &self.initialized()[r],
        }
    }
}

impl<'m> Editor<'m> {
    pub fn new(msg: &'m Message) -> Self {
        Editor {
            msg,
            ops: SmallVec::new(),
            texts: Texts {
                inline: [const { MaybeUninit::uninit() }; INLINE],
                len: 0,
                heap: None,
            },
            body: None,
            grown: 0,
            simple: true,
        }
    }

    #[inline(always)]
    fn splice(&mut self, start: usize, end: usize, parts: &[&[u8]]) {
        self.splice_op(start, end, parts, false);
    }

    #[inline(always)]
    fn splice_op(&mut self, start: usize, end: usize, parts: &[&[u8]], line_start: bool) {
        let t0 = self.texts.len;
        for p in parts {
            self.texts.put(p);
        }
        self.add_op(Op {
            start: start as u32,
            end: end as u32,
            text: (t0 as u32, self.texts.len as u32),
            line_start,
        });
    }

    /// Record an edit. Kept sorted by position; edits at the same place
    /// in the order made: the new one goes after every one not past it.
    #[inline]
    fn add_op(&mut self, op: Op) {
        self.ops.push(op);
        let ops = &mut self.ops[..];
        let mut k = ops.len() - 1;
        while k > 0 && (ops[k - 1].start, ops[k - 1].end) > (op.start, op.end) {
            ops.swap(k - 1, k);
            k -= 1;
        }
        // While no two edits overlap, one that overlaps none of its
        // neighbours overlaps none at all.
        let overlaps = (k > 0 && ops[k - 1].end > op.start)
            || ops.get(k + 1).is_some_and(|n| op.end > n.start);
        self.simple &= !overlaps && !op.line_start;
        self.grown += (op.text.1 - op.text.0) as isize - (op.end - op.start) as isize;
    }

    #[inline(always)]
    fn insert_line(&mut self, at: usize, name: &[u8], value: &[u8]) {
        self.splice(at, at, &[name, b": ", value, b"\r\n"]);
    }

    /// Where a header line of this kind goes on top of the others: at
    /// the first one, or after the start line.
    #[inline]
    fn top_of(&self, name: HeaderName) -> usize {
        self.msg
            .first_header(name)
            .map_or(self.msg.start_line_end(), |h| h.name_span().start as usize)
    }

    /// Replace the Request-URI.
    pub fn set_request_uri(&mut self, uri: &[u8]) -> &mut Self {
        if let Some(s) = self.msg.request_uri_span() {
            self.splice(s.start as usize, s.end as usize, &[uri]);
        }
        self
    }

    /// Insert a Via value on top of the others.
    pub fn push_via(&mut self, value: &[u8]) -> &mut Self {
        let at = self.top_of(HeaderName::Via);
        self.insert_line(at, b"Via", value);
        self
    }

    /// Add `received` and fill in `rport` on the top Via (RFC 3261 18.2.1,
    /// RFC 3581 4). `rport` is only filled in when the Via asks for it.
    pub fn set_via_received(&mut self, received: Option<&[u8]>, rport: Option<u16>) -> &mut Self {
        if let (Some(port), Some(at)) = (rport, self.msg.top_via_rport_ask()) {
            // `;rport` without a value: fill it in.
            let num = itoa_buf(u32::from(port));
            self.splice(at, at, &[b"=", &num]);
        }
        if let Some(r) = received {
            let end = self.msg.top_via_span().end as usize;
            self.splice(end, end, &[b";received=", r]);
        }
        self
    }

    /// Remove the top Via value (for a response on its way back).
    pub fn pop_via(&mut self) -> &mut Self {
        self.pop_first_value(HeaderName::Via);
        self
    }

    /// Remove the first Route value (the proxy's own, 16.4).
    pub fn pop_route(&mut self) -> &mut Self {
        self.pop_first_value(HeaderName::Route);
        self
    }

    fn pop_first_value(&mut self, name: HeaderName) {
        let Some(h) = self.msg.first_header(name).copied() else {
            return;
        };
        let v = self.msg.slice(h.value);
        match item_end(v, 0) {
            Ok(e) if e < v.len() => {
                let next = skip_lws(v, e + 1);
                let s = h.value.start as usize;
                self.splice(s, s + next, &[]);
            }
            _ => {
                let l = h.line();
                self.splice(l.start as usize, l.end as usize, &[]);
            }
        }
    }

    /// Set Max-Forwards (replacing the value, or adding the header).
    pub fn set_max_forwards(&mut self, n: u32) -> &mut Self {
        let num = itoa_buf(n);
        match self.msg.first_header(HeaderName::MaxForwards).copied() {
            Some(h) => self.splice(h.value.start as usize, h.value.end as usize, &[&num]),
            None => self.append_header(b"Max-Forwards", &num),
        }
        self
    }

    /// Decrement Max-Forwards, or add it with 70 (RFC 3261 16.6 step 3).
    pub fn decrement_max_forwards(&mut self) -> &mut Self {
        match self.msg.max_forwards() {
            Some(n) => self.set_max_forwards(n.saturating_sub(1)),
            None => self.set_max_forwards(70),
        }
    }

    /// Insert a Record-Route value on top of the others.
    pub fn push_record_route(&mut self, value: &[u8]) -> &mut Self {
        let at = self.top_of(HeaderName::RecordRoute);
        self.insert_line(at, b"Record-Route", value);
        self
    }

    /// Insert a Route value on top of the others (strict-router fix, 16.6 step 6).
    pub fn push_route(&mut self, value: &[u8]) -> &mut Self {
        let at = self.top_of(HeaderName::Route);
        self.insert_line(at, b"Route", value);
        self
    }

    /// Remove the last Route value (strict-router fix, 16.4).
    pub fn remove_last_route(&mut self) -> &mut Self {
        let Some(h) = self.msg.headers_named(HeaderName::Route).last().copied() else {
            return self;
        };
        let v = self.msg.slice(h.value);
        // Find the start of the last comma-separated item.
        let mut last_sep = None;
        let mut i = 0;
        while let Ok(e) = item_end(v, i) {
            if e >= v.len() {
                break;
            }
            last_sep = Some(e);
            i = e + 1;
        }
        match last_sep {
            Some(sep) => {
                let s = h.value.start as usize;
                self.splice(s + sep, h.value.end as usize, &[]);
            }
            None => {
                let l = h.line();
                self.splice(l.start as usize, l.end as usize, &[]);
            }
        }
        self
    }

    /// Remove every header of a kind.
    pub fn remove_headers(&mut self, name: HeaderName) -> &mut Self {
        let lines: SmallVec<[Span; 4]> = self.msg.headers_named(name).map(|h| h.line()).collect();
        for l in lines {
            self.splice(l.start as usize, l.end as usize, &[]);
        }
        self
    }

    /// Remove every header with this name (case-insensitive; for a name cairn knows, its
    /// compact form too, see [`Message::headers_by_name`]).
    pub fn remove_headers_by_name(&mut self, name: &[u8]) -> &mut Self {
        let msg = self.msg;
        let lines: SmallVec<[Span; 4]> = msg.headers_by_name(name).map(|h| h.line()).collect();
        for l in lines {
            self.splice(l.start as usize, l.end as usize, &[]);
        }
        self
    }

    /// Replace every header of a kind by one line with `value` (in the
    /// place of the first one), or append it.
    pub fn set_header(&mut self, name: HeaderName, value: &[u8]) -> &mut Self {
        let mut lines = self.msg.headers_named(name).map(|h| h.line());
        match lines.next() {
            Some(first) => {
                let rest: SmallVec<[Span; 4]> = lines.collect();
                self.splice(
                    first.start as usize,
                    first.end as usize,
                    &[name.as_str().as_bytes(), b": ", value, b"\r\n"],
                );
                for l in rest {
                    self.splice(l.start as usize, l.end as usize, &[]);
                }
            }
            None => self.append_header(name.as_str().as_bytes(), value),
        }
        self
    }

    /// Add a header line after the others.
    pub fn append_header(&mut self, name: &[u8], value: &[u8]) {
        let at = self.msg.headers_end();
        if at > 0 && self.msg.as_bytes()[at - 1] != b'\n' {
            // The last header line has no line end (accepted, RFC 4475
            // 3.1.2.15). The new line is left unended like it, and gets a
            // CRLF before it when written unless the output then ends with
            // one (the last line may be removed by another edit): several
            // appends never make an empty line.
            self.splice_op(at, at, &[name, b": ", value], true);
        } else {
            self.insert_line(at, name, value);
        }
    }

    /// Add a Content-Length when the message has none (mandatory on
    /// streams, RFC 3261 18.3).
    pub fn ensure_content_length(&mut self) -> &mut Self {
        if self.msg.content_length().is_none() && self.body.is_none() {
            let n = itoa_buf(self.msg.body().len() as u32);
            self.append_header(b"Content-Length", &n);
        }
        self
    }

    /// Replace the body; Content-Length is set to match.
    pub fn set_body(&mut self, body: &'m [u8]) -> &mut Self {
        self.body = Some(body);
        let n = itoa_buf(body.len() as u32);
        self.set_header(HeaderName::ContentLength, &n);
        self
    }

    /// The size of the edited message.
    pub fn len(&self) -> usize {
        if self.simple && self.body.is_none() {
            return (self.msg.as_bytes().len() as isize + self.grown) as usize;
        }
        if self.ops.iter().any(|o| o.line_start) {
            let mut n = 0;
            self.walk(|s| n += s.len());
            return n;
        }
        // Without line starts, the walk's pieces add up to this.
        let src = self.msg.as_bytes().len();
        let end_of_headers = match self.body {
            Some(_) => self.msg.body_start(),
            None => src,
        };
        let mut n = end_of_headers + self.body.map_or(0, |b| b.len());
        let mut cursor = 0;
        for op in &self.ops {
            let (s, e) = (op.start as usize, op.end as usize);
            if s < cursor || e > end_of_headers {
                continue;
            }
            n = n + (op.text.1 - op.text.0) as usize - (e - s);
            cursor = e;
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the edited message.
    pub fn write_into<B: BufMut>(&mut self, out: &mut B) {
        self.walk(|s| out.put_slice(s));
    }

    /// Hand the pieces of the edited message to `put`, in order.
    #[inline]
    fn walk(&self, mut put: impl FnMut(&[u8])) {
        let src = self.msg.as_bytes();
        let end_of_headers = match self.body {
            Some(_) => self.msg.body_start(),
            None => src.len(),
        };
        // The last byte handed out, for `Op::line_start`.
        let mut last = 0u8;
        let mut emit = |s: &[u8], last: &mut u8| {
            if let Some(&l) = s.last() {
                *last = l;
                put(s);
            }
        };
        let mut cursor = 0usize;
        for op in &self.ops {
            let (s, e) = (op.start as usize, op.end as usize);
            if s < cursor || e > end_of_headers {
                // Overlapping edits: the first one wins.
                continue;
            }
            emit(&src[cursor..s], &mut last);
            if op.line_start && last != b'\n' {
                emit(b"\r\n", &mut last);
            }
            emit(self.texts.get(op.text), &mut last);
            cursor = e;
        }
        emit(&src[cursor..end_of_headers], &mut last);
        if let Some(b) = self.body {
            emit(b, &mut last);
        }
    }

    /// Write the edited message into a new buffer (one allocation).
    pub fn finish(self) -> Bytes {
        let mut out = Vec::with_capacity(self.len());
        self.walk(|s| out.extend_from_slice(s));
        Bytes::from(out)
    }
}

/// A number formatted without allocating (derefs to its digits).
pub(crate) struct Digits {
    buf: [u8; 10],
    start: usize,
}

impl std::ops::Deref for Digits {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Format a number without allocating.
#[inline]
pub(crate) fn itoa_buf(mut n: u32) -> Digits {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start: i }
}
