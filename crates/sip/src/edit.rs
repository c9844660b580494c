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

impl Op {
    /// The sort key: position, then end (sorted stably: edits at the
    /// same place stay in the order made).
    #[inline(always)]
    fn key(&self) -> u64 {
        (u64::from(self.start) << 32) | u64::from(self.end)
    }

    /// `next`, just made and going right after this one, is an insertion
    /// at the same place as this insertion, with its text right after
    /// this one's: this op can take its text instead.
    #[inline(always)]
    fn absorbs(&self, next: &Op) -> bool {
        next.start == next.end
            && self.start == next.start
            && self.end == next.end
            && self.text.1 == next.text.0
            && !next.line_start
    }
}

/// Records edits on a parsed message and writes the edited copy.
pub struct Editor<'m> {
    msg: &'m Message,
    ops: SmallVec<[Op; 12]>,
    texts: Texts,
    body: Option<&'m [u8]>,
    /// What the edits add to the size, less what they remove: while no
    /// edit overlaps another and none starts a line, the edited message
    /// is `grown` bytes larger than the original.
    grown: isize,
    /// The edits are in order of position (each one made at or after
    /// the one before).
    sorted: bool,
    /// An edit starts a line.
    line_starts: bool,
}

/// The texts the edits insert, one after the other: inline up to 512
/// bytes, then (all of them) on the heap. The inline bytes are not
/// zeroed first: only `inline[..len]` is ever read as bytes, and every
/// byte of it was written by [`Texts::put`]. [`Editor::finish`] copies
/// short texts as blocks of `PIECE` or `2 * PIECE` bytes, so the buffer
/// has `PIECE` bytes of slack (a text of more than `PIECE` bytes ends at
/// least `PIECE` bytes before it); what a block copies past its text is
/// overwritten or never handed out.
struct Texts {
    inline: [MaybeUninit<u8>; INLINE + PIECE],
    len: usize,
    heap: Option<Vec<u8>>,
}

const INLINE: usize = 512;

/// Pieces up to this size (or twice it) are copied by [`Editor::finish`]
/// as one fixed-size block: a few vector moves instead of a call to
/// `memcpy`.
const PIECE: usize = 64;

impl Texts {
    /// Append the parts to the texts (one text); the range they take.
    #[inline(always)]
    fn put(&mut self, parts: &[&[u8]]) -> (u32, u32) {
        let t0 = self.len;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if self.heap.is_none() && t0 + total <= INLINE {
            let mut at = t0;
            for p in parts {
                self.inline[at..at + p.len()].write_copy_of_slice(p);
                at += p.len();
            }
            self.len = at;
        } else {
            for p in parts {
                self.put_heap(p);
            }
        }
        (t0 as u32, self.len as u32)
    }

    /// Append `prefix` and the decimal digits of `n` (one text); the
    /// range they take. Up to eight digits are written as one 8-byte
    /// word into the inline buffer (its slack takes the bytes past them).
    #[inline(always)]
    fn put_number(&mut self, prefix: &[u8], n: u32) -> (u32, u32) {
        let t0 = self.len;
        let end = t0 + prefix.len();
        match (ascii_digits(n), &self.heap) {
            (Some((word, digits)), None) if end + 8 <= INLINE => {
                self.inline[t0..end].write_copy_of_slice(prefix);
                self.inline[end..end + 8].write_copy_of_slice(&word.to_le_bytes());
                self.len = end + digits;
                (t0 as u32, self.len as u32)
            }
            _ => self.put(&[prefix, &itoa_buf(n)]),
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
                inline: [const { MaybeUninit::uninit() }; INLINE + PIECE],
                len: 0,
                heap: None,
            },
            body: None,
            grown: 0,
            sorted: true,
            line_starts: false,
        }
    }

    #[inline(always)]
    fn splice(&mut self, start: usize, end: usize, parts: &[&[u8]]) {
        self.splice_op(start, end, parts, false);
    }

    #[inline(always)]
    fn splice_op(&mut self, start: usize, end: usize, parts: &[&[u8]], line_start: bool) {
        let text = self.texts.put(parts);
        self.add_op(Op {
            start: start as u32,
            end: end as u32,
            text,
            line_start,
        });
    }

    /// Record an edit. Edits are kept in the order made, and put in
    /// order of position (stable: edits at the same place stay in the
    /// order made) when written. An insertion at the same place as the
    /// edit made just before, an insertion too, whose text follows that
    /// one's in the texts, extends that one's text instead (one piece
    /// fewer to write; the same output, as both sort to the same place,
    /// one after the other).
    #[inline(always)]
    fn add_op(&mut self, op: Op) {
        self.grown += (op.text.1 - op.text.0) as isize - (op.end - op.start) as isize;
        self.line_starts |= op.line_start;
        if let Some(last) = self.ops.last_mut() {
            if last.absorbs(&op) {
                last.text.1 = op.text.1;
                return;
            }
            self.sorted &= last.key() <= op.key();
        }
        self.ops.push(op);
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
            let text = self.texts.put_number(b"=", u32::from(port));
            self.add_op(Op {
                start: at as u32,
                end: at as u32,
                text,
                line_start: false,
            });
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
        match self.msg.first_header(HeaderName::MaxForwards).copied() {
            Some(h) => {
                let text = self.texts.put_number(b"", n);
                self.add_op(Op {
                    start: h.value.start,
                    end: h.value.end,
                    text,
                    line_start: false,
                });
            }
            None => self.append_header(b"Max-Forwards", &itoa_buf(n)),
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
        if self.sorted {
            self.len_of(&self.ops)
        } else {
            let mut ops = self.ops.clone();
            ops.sort_by_key(Op::key);
            self.len_of(&ops)
        }
    }

    /// No edit overlaps another (`ops` sorted), none starts a line and
    /// the body stays: the edited message is `grown` bytes larger.
    #[inline]
    fn simple(&self, ops: &[Op]) -> bool {
        !self.line_starts && self.body.is_none() && ops.windows(2).all(|w| w[0].end <= w[1].start)
    }

    /// [`Editor::len`] when [`Editor::simple`].
    #[inline(always)]
    fn grown_len(&self) -> usize {
        (self.msg.as_bytes().len() as isize + self.grown) as usize
    }

    /// [`Editor::len`] with the edits in order.
    #[inline]
    fn len_of(&self, ops: &[Op]) -> usize {
        if self.simple(ops) {
            return self.grown_len();
        }
        if self.line_starts {
            let mut n = 0;
            self.walk(ops, |s| n += s.len());
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
        for op in ops {
            let (s, e) = (op.start as usize, op.end as usize);
            if s < cursor || e > end_of_headers {
                continue;
            }
            n = n + (op.text.1 - op.text.0) as usize - (e - s);
            cursor = e;
        }
        n
    }

    /// Put the edits in order of position.
    #[inline]
    fn sort(&mut self) {
        if !self.sorted {
            self.ops.sort_by_key(Op::key);
            self.sorted = true;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the edited message.
    pub fn write_into<B: BufMut>(&mut self, out: &mut B) {
        self.sort();
        self.walk(&self.ops, |s| out.put_slice(s));
    }

    /// Hand the pieces of the edited message to `put`, in order (`ops`
    /// sorted).
    #[inline]
    fn walk(&self, ops: &[Op], mut put: impl FnMut(&[u8])) {
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
        for op in ops {
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
    /// Taken by reference: an editor is about 900 bytes, which a call by
    /// value would copy.
    pub fn finish(&mut self) -> Bytes {
        self.sort();
        let simple = self.simple(&self.ops);
        let n = match simple {
            true => self.grown_len(),
            false => self.len_of(&self.ops),
        };
        let mut out = Vec::with_capacity(n);
        if !(simple && self.write_simple(&mut out, n)) {
            self.walk(&self.ops, |s| out.extend_from_slice(s));
        }
        Bytes::from(out)
    }

    /// [`Editor::finish`] when `simple` (edits sorted): the gaps
    /// and texts in order, each written once into the free capacity,
    /// short ones as blocks of [`PIECE`] bytes (the next piece overwrites
    /// what a block writes past its piece). False, with nothing written,
    /// if a piece does not fit, which the `simple` sizes rule out.
    #[inline]
    fn write_simple(&self, out: &mut Vec<u8>, n: usize) -> bool {
        let src = self.msg.as_bytes();
        let texts = match &self.texts.heap {
            None => &self.texts.inline[..],
            Some(_) => return false,
        };
        let len = out.len();
        let Some(dst) = out.spare_capacity_mut().get_mut(..n) else {
            return false;
        };
        let mut at = 0;
        let mut cursor = 0;
        for op in &self.ops {
            let Some(a) = put_piece(dst, at, src, cursor, op.start as usize) else {
                return false;
            };
            let Some(b) = put_piece(dst, a, texts, op.text.0 as usize, op.text.1 as usize) else {
                return false;
            };
            at = b;
            cursor = op.end as usize;
        }
        match (dst.get_mut(at..), src.get(cursor..)) {
            (Some(d), Some(tail)) if d.len() == tail.len() => {
                d.write_copy_of_slice(tail);
            }
            _ => return false,
        }
        // SAFETY: `dst` is the `n` bytes of `out`'s free capacity after
        // its `len` bytes, and every one of them was written: the pieces
        // were written one after the other from `dst[0]`, and the last one
        // ends at `dst[n]` (checked just above). A piece written as blocks
        // may have copied uninitialized text-buffer slack past its end,
        // but that is below `n` only where a later piece then overwrote it.
        unsafe { out.set_len(len + n) };
        true
    }
}

/// Bytes that [`put_piece`] copies into the output: the message's, and
/// the texts' (of which only the written ones are handed out).
trait Byte: Copy {
    fn copy(dst: &mut [MaybeUninit<u8>], src: &[Self]);
}

impl Byte for u8 {
    #[inline(always)]
    fn copy(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
        dst.write_copy_of_slice(src);
    }
}

impl Byte for MaybeUninit<u8> {
    #[inline(always)]
    fn copy(dst: &mut [MaybeUninit<u8>], src: &[MaybeUninit<u8>]) {
        dst.copy_from_slice(src);
    }
}

/// Copy `src[from..to]` to `dst[at..]`; where it ends in `dst`. Up to
/// two [`PIECE`]-byte blocks when both sides have room for them (the
/// bytes past `to` go past the piece in `dst`), else as it is. `None` if
/// it does not fit.
#[inline(always)]
fn put_piece<T: Byte>(
    dst: &mut [MaybeUninit<u8>],
    at: usize,
    src: &[T],
    from: usize,
    to: usize,
) -> Option<usize> {
    let l = to.checked_sub(from)?;
    if l <= PIECE {
        if let (Some(d), Some(s)) = (dst.get_mut(at..at + PIECE), src.get(from..from + PIECE)) {
            T::copy(d, s);
            return Some(at + l);
        }
    } else if l <= 2 * PIECE {
        if let (Some(d), Some(s)) = (
            dst.get_mut(at..at + 2 * PIECE),
            src.get(from..from + 2 * PIECE),
        ) {
            T::copy(d, s);
            return Some(at + l);
        }
    }
    T::copy(dst.get_mut(at..at + l)?, src.get(from..to)?);
    Some(at + l)
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

/// The decimal digits of `n` as the bytes of a little-endian word (the
/// first digit in the low byte), and how many there are; `None` past
/// eight digits. All eight digits at once, in the lanes of one word:
/// `n / 10^4` and `n % 10^4` in two 32-bit lanes, each split by 100
/// into two 16-bit lanes, each split by 10 into two bytes (the divisions
/// by multiplying: `x * 10486 >> 20 == x / 100` for `x < 10^4`, `x * 103
/// >> 10 == x / 10` for `x < 100`), then the leading zeros shifted out.
#[inline(always)]
fn ascii_digits(n: u32) -> Option<(u64, usize)> {
    if n >= 100_000_000 {
        return None;
    }
    let merged = u64::from(n / 10_000) | (u64::from(n % 10_000) << 32);
    let hundreds_hi = ((merged * 10486) >> 20) & 0x0000_007F_0000_007F;
    let hundreds = ((merged - 100 * hundreds_hi) << 16) + hundreds_hi;
    let tens = ((hundreds * 103) >> 10) & 0x000F_000F_000F_000F;
    let digits = ((hundreds - 10 * tens) << 8) + tens;
    // Leading zero digits are the low zero bytes.
    let count = 8 - (digits.trailing_zeros() / 8).min(7) as usize;
    let word = (digits + 0x3030_3030_3030_3030) >> (8 * (8 - count));
    Some((word, count))
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

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
        Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKnashds8\r\n\
        Max-Forwards: 69\r\n\
        Record-Route: <sip:edge.atlanta.example.com;lr>\r\n\
        From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
        To: \"Bob\" <sip:bob@biloxi.example.com>\r\n\
        Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.atlanta.example.com:5060>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 18\r\n\
        \r\n\
        v=0\r\ns=-\r\nt=0 0\r\n\r\n";

    fn parse(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).expect("test message parses")
    }

    /// An edit as made, for the model below.
    struct Edit {
        start: usize,
        end: usize,
        text: Vec<u8>,
        line_start: bool,
    }

    /// What the edits must give, worked out the plain way: sorted by
    /// position (stable), overlapping ones after the first dropped, a
    /// CRLF before a line start unless the output ends with LF.
    fn model(src: &[u8], edits: &[Edit]) -> Vec<u8> {
        let mut order: Vec<&Edit> = edits.iter().collect();
        order.sort_by_key(|e| (e.start, e.end));
        let mut out = Vec::new();
        let mut cursor = 0;
        for e in order {
            if e.start < cursor {
                continue;
            }
            out.extend_from_slice(&src[cursor..e.start]);
            if e.line_start && out.last() != Some(&b'\n') {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(&e.text);
            cursor = e.end;
        }
        out.extend_from_slice(&src[cursor..]);
        out
    }

    /// Make the edits on an editor and check `finish` (and `len`, and
    /// `write_into`) against the model. Whether `finish` took the
    /// `simple` path.
    fn check(m: &Message, edits: &[Edit]) -> bool {
        let mut e = Editor::new(m);
        for x in edits {
            e.splice_op(x.start, x.end, &[&x.text], x.line_start);
        }
        let want = model(m.as_bytes(), edits);
        let n = e.len();
        let mut into = bytes::BytesMut::new();
        e.write_into(&mut into);
        let simple = {
            let mut ops = e.ops.clone();
            ops.sort_by_key(Op::key);
            e.simple(&ops) && e.texts.heap.is_none()
        };
        let out = e.finish();
        assert_eq!(out.len(), n, "len() is exact");
        assert_eq!(&out[..], &want[..], "{:?}", String::from_utf8_lossy(&out));
        assert_eq!(&into[..], &want[..]);
        simple
    }

    fn text(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| b'a' + ((i + seed) % 26) as u8).collect()
    }

    #[test]
    fn pieces_of_every_short_length() {
        let m = parse(MSG);
        let n = m.as_bytes().len();
        for len in 0..=2 * PIECE + 1 {
            for at in [
                0,
                1,
                n / 2,
                n - PIECE - 1,
                n - PIECE,
                n - len.min(n),
                n - 1,
                n,
            ] {
                // A text of `len` bytes at `at`.
                let one = [Edit {
                    start: at,
                    end: at,
                    text: text(len, at),
                    line_start: false,
                }];
                assert!(check(&m, &one));
                // A gap of `len` bytes between two texts (and one after).
                if at + len <= n {
                    let edits = [
                        Edit {
                            start: at,
                            end: at,
                            text: text(3, 1),
                            line_start: false,
                        },
                        Edit {
                            start: at + len,
                            end: at + len,
                            text: text(len, 2),
                            line_start: false,
                        },
                    ];
                    assert!(check(&m, &edits));
                    // The same as replacements of one byte each.
                    if at + len < n && len > 0 {
                        let edits = [
                            Edit {
                                start: at,
                                end: at + 1,
                                text: text(len, 3),
                                line_start: false,
                            },
                            Edit {
                                start: at + len,
                                end: at + len + 1,
                                text: text(1, 4),
                                line_start: false,
                            },
                        ];
                        assert!(check(&m, &edits));
                    }
                }
            }
        }
    }

    #[test]
    fn insertions_at_one_place_merge() {
        let m = parse(MSG);
        let mut e = Editor::new(&m);
        e.set_via_received(Some(b"198.51.100.7"), Some(40000));
        // `;rport` ends the top Via: `=40000` and `;received=` go to the
        // same place, one after the other, and make one op.
        assert_eq!(e.ops.len(), 1);
        e.push_via(b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK.1");
        e.decrement_max_forwards();
        e.push_record_route(b"<sip:10.0.0.1;lr>");
        assert_eq!(e.ops.len(), 4);
        let n = e.len();
        let out = e.finish();
        assert_eq!(out.len(), n);
        let f = Message::parse(out).unwrap();
        let second = f.vias().nth(1).unwrap();
        assert_eq!(second.rport(), Some(Some(40000)));
        assert_eq!(second.received(), Some(&b"198.51.100.7"[..]));
        let want = b"branch=z9hG4bK776asdhds;rport=40000;received=198.51.100.7\r\nVia: ";
        assert!(f.as_bytes().windows(want.len()).any(|w| w == want));

        // Not merged: text not right after the other's, another place, a
        // replacement, a line start.
        let at = 100;
        let edits = [
            Edit {
                start: at,
                end: at,
                text: b"1".to_vec(),
                line_start: false,
            },
            Edit {
                start: at + 1,
                end: at + 1,
                text: b"2".to_vec(),
                line_start: false,
            },
            Edit {
                start: at,
                end: at,
                text: b"3".to_vec(),
                line_start: false,
            },
            Edit {
                start: at,
                end: at,
                text: b"4".to_vec(),
                line_start: false,
            },
            Edit {
                start: at,
                end: at + 2,
                text: b"5".to_vec(),
                line_start: false,
            },
            Edit {
                start: at + 2,
                end: at + 2,
                text: b"6".to_vec(),
                line_start: true,
            },
            Edit {
                start: at + 2,
                end: at + 2,
                text: b"7".to_vec(),
                line_start: false,
            },
        ];
        let mut e = Editor::new(&m);
        for x in &edits {
            e.splice_op(x.start, x.end, &[&x.text], x.line_start);
        }
        // 3 is not made right after 1; 4 is, after 3; 6 starts a line,
        // 7 does not.
        let texts = |e: &Editor| -> Vec<Vec<u8>> {
            e.ops.iter().map(|o| e.texts.get(o.text).to_vec()).collect()
        };
        assert_eq!(texts(&e), [&b"1"[..], b"2", b"34", b"5", b"67"]);
        assert!(!e.sorted);
        e.sort();
        assert_eq!(texts(&e), [&b"1"[..], b"34", b"5", b"2", b"67"]);
        assert!(!e.simple(&e.ops));
        check(&m, &edits);
    }

    #[test]
    fn digits_of_every_number_up_to_eight_digits() {
        let check = |n: u32| {
            let (word, count) = ascii_digits(n).expect("up to eight digits");
            let want = n.to_string();
            assert_eq!(&word.to_le_bytes()[..count], want.as_bytes(), "{n}");
            assert!(word.to_le_bytes()[count..].iter().all(|&b| b == 0), "{n}");
        };
        (0..2_000_000).for_each(check);
        (0..=99_999_999).step_by(7_919).for_each(check);
        for k in 1..8 {
            let p = 10u32.pow(k);
            [p - 1, p, p + 1, 2 * p - 1, 9 * p]
                .into_iter()
                .for_each(check);
        }
        check(99_999_999);
        assert!(ascii_digits(100_000_000).is_none());
        assert!(ascii_digits(u32::MAX).is_none());
    }

    #[test]
    fn numbers_written_as_one_word() {
        let m = parse(MSG);
        let values = [
            0, 1, 9, 10, 68, 99, 100, 255, 40000, 65535, 9_999_999, 99_999_999,
        ];
        for n in values
            .into_iter()
            .chain([100_000_000, 1_234_567_890, u32::MAX])
        {
            // Inline, and with the inline texts (nearly) full: on the heap.
            for fill in [0, INLINE - 20, INLINE - 9, INLINE - 8, INLINE - 7, INLINE] {
                let mut e = Editor::new(&m);
                let pad = text(fill, 0);
                e.splice(0, 0, &[&pad]);
                e.set_max_forwards(n);
                if let Ok(port) = u16::try_from(n) {
                    e.set_via_received(None, Some(port));
                }
                let len = e.len();
                let out = e.finish();
                assert_eq!(out.len(), len);
                let out = &out[fill..];
                let want = format!("\r\nMax-Forwards: {n}\r\n");
                assert!(
                    out.windows(want.len()).any(|w| w == want.as_bytes()),
                    "{n} {fill}"
                );
                if n <= 65535 {
                    let want = format!(";rport={n}\r\n");
                    assert!(
                        out.windows(want.len()).any(|w| w == want.as_bytes()),
                        "{n} {fill}"
                    );
                }
            }
        }
    }

    /// Random edits (some overlapping, some line starts, sometimes more
    /// text than fits inline) against the model.
    #[test]
    fn random_edits_match_the_model() {
        let m = parse(MSG);
        let n = m.as_bytes().len();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |k: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % k as u64) as usize
        };
        let mut simple = 0;
        let rounds = 20_000;
        for round in 0..rounds {
            let count = 1 + next(14);
            let mut edits = Vec::new();
            for _ in 0..count {
                let start = next(n + 1);
                let end = match next(4) {
                    0 => (start + next(40)).min(n),
                    _ => start,
                };
                let len = match next(50) {
                    0 => 300 + next(300),
                    _ => next(80),
                };
                let line_start = round % 7 == 0 && next(5) == 0;
                // Sometimes the next edit at the same place.
                let start = if next(3) == 0 {
                    edits.last().map_or(start, |e: &Edit| e.end)
                } else {
                    start
                };
                let end = end.max(start);
                edits.push(Edit {
                    start,
                    end,
                    text: text(len, round),
                    line_start,
                });
            }
            simple += usize::from(check(&m, &edits));
        }
        // Both ways of writing were taken, often.
        assert!(simple > rounds / 4 && simple < rounds * 3 / 4, "{simple}");
    }
}
