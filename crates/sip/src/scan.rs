//! Low-level scanning helpers shared by the parsers. All of them work on byte
//! slices, never index out of bounds and never allocate.

/// RFC 3261 token characters (25.1): alphanum and `-.!%*_+`'~`.
#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

/// [`is_token`] as a table: one load instead of a chain of range tests.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = matches!(c as u8,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        c += 1;
    }
    t
};

/// Whitespace inside a header value: SP, HTAB, and the CR LF of a folded line.
#[inline]
pub(crate) const fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trim linear white space (including folding) on both ends.
#[inline]
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_lws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_lws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Offset of the first byte that is not LWS at or after `i`.
#[inline]
pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// Whether `s` is a non-empty token.
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_token(c))
}

/// Offset just past the quoted string that starts at `s[i] == b'"'`, or
/// `None` when it is not terminated. Backslash escapes one character.
pub(crate) fn skip_quoted(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Iterator over the comma-separated values of a header value, honouring
/// quoted strings and `<...>` (so commas inside a display name or a URI do
/// not split). Each item is trimmed and given as (offset, len) relative to
/// the input; empty items are yielded too (so callers can reject them).
pub(crate) struct CommaSplit<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        CommaSplit {
            s,
            pos: 0,
            done: false,
        }
    }
}

/// Find the end of the comma-separated item starting at `start`: the offset
/// of the separating comma, or `s.len()`. `Err` when a quote or `<` is left
/// open.
pub(crate) fn item_end(s: &[u8], start: usize) -> Result<usize, ()> {
    let mut i = start;
    // Jump from one `"`, `<` or `,` to the next; the bytes between them
    // cannot end the item.
    while let Some(k) = find3(s, i, b'"', b'<', b',') {
        i = match s[k] {
            b'"' => skip_quoted(s, k).ok_or(())?,
            b'<' => find_byte(s, k, b'>').ok_or(())? + 1,
            _ => return Ok(k),
        };
    }
    Ok(s.len())
}

impl<'a> Iterator for CommaSplit<'a> {
    /// (start, end) of the trimmed item, or `Err(())` if unbalanced.
    type Item = Result<(usize, usize), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let end = match item_end(self.s, start) {
            Ok(e) => e,
            Err(()) => {
                self.done = true;
                return Some(Err(()));
            }
        };
        if end >= self.s.len() {
            self.done = true;
        } else {
            self.pos = end + 1;
        }
        let mut a = start;
        let mut b = end;
        while a < b && is_lws(self.s[a]) {
            a += 1;
        }
        while b > a && is_lws(self.s[b - 1]) {
            b -= 1;
        }
        Some(Ok((a, b)))
    }
}

/// The number `s` starts with, read in one pass: its value and where its
/// digits end. `None` where [`parse_u64`] of those digits is `None`: no
/// digit, more than 40, or a value past `max`.
#[inline]
pub(crate) fn leading_u64(s: &[u8], max: u64) -> Option<(u64, usize)> {
    debug_assert!(max <= u64::from(u32::MAX));
    // Up to 19 digits fit in a u64 unchecked; a longer run takes the
    // careful way.
    let (v, k) = digits19(s);
    if k == 19 && s.get(19).is_some_and(u8::is_ascii_digit) {
        let k = s
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(s.len());
        return parse_u64_checked(&s[..k], max).map(|v| (v, k));
    }
    (k > 0 && v <= max).then_some((v, k))
}

/// The value of the digits `s` starts with, at most 19 of them, and how
/// many there are.
#[inline(always)]
fn digits19(s: &[u8]) -> (u64, usize) {
    let mut v: u64 = 0;
    let mut k = 0;
    for &c in s.iter().take(19) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v * 10 + u64::from(d);
        k += 1;
    }
    (v, k)
}

/// Parse a decimal number made of digits only, with an upper bound. Leading
/// zeros are allowed (`0068`), an empty string or any non-digit is not.
#[inline]
pub(crate) fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    debug_assert!(max <= u64::from(u32::MAX));
    if s.len() <= 19 {
        let (v, k) = digits19(s);
        return (k > 0 && k == s.len() && v <= max).then_some(v);
    }
    parse_u64_checked(s, max)
}

/// [`parse_u64`] digit by digit with the bound checked at each one (any
/// length).
fn parse_u64_checked(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 40 {
        // 40 digits cannot fit; long zero runs are not worth supporting.
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        // `v <= max <= u32::MAX` here, so this cannot overflow.
        v = v * 10 + u64::from(d);
        if v > max {
            return None;
        }
    }
    Some(v)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Eight bytes of `s` from `i` as one little-endian word (the caller
/// checks `i + 8 <= s.len()`).
#[inline(always)]
fn word(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

/// A word with the high bit set in the bytes of `v` that are zero. Bits
/// above the first zero byte may be set wrongly (a borrow), so only the
/// lowest set bit (the first zero byte) and "any" are exact.
#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Offset of the first byte at or after `from` for which `hit` (on a word,
/// as [`zero_bytes`] of some comparison) is set: eight bytes per step, the
/// tail in one overlapping last word. `from` may be past the end.
#[inline(always)]
fn find_by(
    s: &[u8],
    from: usize,
    hit: impl Fn(u64) -> u64,
    one: impl Fn(u8) -> bool,
) -> Option<usize> {
    let n = s.len();
    let mut i = from;
    while i + 16 <= n {
        let (z0, z1) = (hit(word(s, i)), hit(word(s, i + 8)));
        if z0 | z1 != 0 {
            let k = if z0 != 0 {
                z0.trailing_zeros()
            } else {
                64 + z1.trailing_zeros()
            };
            return Some(i + (k / 8) as usize);
        }
        i += 16;
    }
    if i + 8 <= n {
        let z = hit(word(s, i));
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if i >= n {
        return None;
    }
    if n >= 8 && n - 8 >= from {
        // The bytes of the last word before `i` were checked already and
        // none of them matched (so no borrow can make a false hit either):
        // the first hit is at or after `i`.
        let z = hit(word(s, n - 8));
        return (z != 0).then(|| n - 8 + (z.trailing_zeros() / 8) as usize);
    }
    (i..n).find(|&k| one(s[k]))
}

/// Offset of the first `c` at or after `from`: sixteen bytes at a time
/// with SSE2 on x86_64 (inlined, no call), else a word at a time.
#[inline(always)]
pub(crate) fn find_byte(s: &[u8], from: usize, c: u8) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // Sixteen bytes at a time, then the last sixteen (overlapping
        // what was looked at), or byte by byte when `s` is shorter.
        let mut i = from;
        while let Some(block) = s.get(i..).and_then(|r| r.get(..16)) {
            let m = sse2::eq_mask(sse2::load16(block, 0), c);
            if m != 0 {
                return Some(i + m.trailing_zeros() as usize);
            }
            i += 16;
        }
        if i >= s.len() {
            return None;
        }
        if let Some(base) = s.len().checked_sub(16) {
            // `base < i < base + 16`: only the bytes from `i` count.
            let m = sse2::eq_mask(sse2::load16(s, base), c) & (u32::MAX << (i - base));
            return (m != 0).then(|| base + m.trailing_zeros() as usize);
        }
        s[i..].iter().position(|&x| x == c).map(|k| k + i)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    find_byte_words(s, from, c)
}

/// [`find_byte`] a word at a time (where SSE2 is missing; the tests
/// check it everywhere).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline]
fn find_byte_words(s: &[u8], from: usize, c: u8) -> Option<usize> {
    let p = LO * u64::from(c);
    find_by(s, from, |w| zero_bytes(w ^ p), |b| b == c)
}

/// Offset of the first of three bytes at or after `from` (as [`find_byte`]).
#[inline]
pub(crate) fn find3(s: &[u8], from: usize, a: u8, b: u8, c: u8) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(three) = memchr::arch::x86_64::sse2::memchr::Three::new(a, b, c) {
        return three.find(s.get(from..)?).map(|k| k + from);
    }
    find3_words(s, from, a, b, c)
}

/// [`find3`] a word at a time.
#[inline]
fn find3_words(s: &[u8], from: usize, a: u8, b: u8, c: u8) -> Option<usize> {
    let (pa, pb, pc) = (LO * u64::from(a), LO * u64::from(b), LO * u64::from(c));
    find_by(
        s,
        from,
        |w| zero_bytes(w ^ pa) | zero_bytes(w ^ pb) | zero_bytes(w ^ pc),
        |x| x == a || x == b || x == c,
    )
}

/// Bytes that end a parameter name or value in the one-pass checks
/// (`fast.rs`): `;`, `=`, `,`, `"`, `<`, and every byte up to SP or from
/// 0x80 (white space, controls, non-ASCII). A superset of what ends them
/// for the general parser ([`crate::params`]), so the one-pass checks
/// give up where the two could differ.
pub(crate) static PARAM_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = c <= 0x20 || c >= 0x80 || matches!(c as u8, b';' | b'=' | b',' | b'"' | b'<');
        c += 1;
    }
    t
};

/// Host name characters: alphanumerics and `-._`.
pub(crate) static HOST: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = matches!(c as u8, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_');
        c += 1;
    }
    t
};

/// The first offset in `s[i..end]` whose byte is a [`PARAM_STOP`], or
/// `end`. Reads up to sixteen bytes past `end` (within `s`).
#[inline(always)]
pub(crate) fn param_run(s: &[u8], mut i: usize, end: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while i < end && i + 16 <= s.len() {
        let k = (sse2::param_stops(sse2::load16(s, i)) | 1 << 16).trailing_zeros() as usize;
        i += k;
        if k < 16 {
            return i.min(end);
        }
    }
    while i < end && i < s.len() && !PARAM_STOP[s[i] as usize] {
        i += 1;
    }
    i.min(end)
}

/// The first offset in `s[i..end]` whose byte is not a [`HOST`]
/// character, or `end`. Reads up to sixteen bytes past `end` (within
/// `s`).
#[inline(always)]
pub(crate) fn host_run(s: &[u8], mut i: usize, end: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while i < end && i + 16 <= s.len() {
        let k = (!sse2::host_chars(sse2::load16(s, i)) | 1 << 16).trailing_zeros() as usize;
        i += k;
        if k < 16 {
            return i.min(end);
        }
    }
    while i < end && i < s.len() && HOST[s[i] as usize] {
        i += 1;
    }
    i.min(end)
}

/// The LFs of a buffer, found 64 bytes at a time and handed out in
/// order: the header loop asks for the next line end from where the last
/// one ended, mostly within the same 64 bytes.
pub(crate) struct LineEnds {
    /// Where the 64 bytes of `mask` start.
    base: usize,
    /// Bit k set when `s[base + k]` is an LF (bits below the last
    /// position asked for may be cleared).
    mask: u64,
}

impl LineEnds {
    pub(crate) fn new() -> Self {
        LineEnds {
            base: usize::MAX,
            mask: 0,
        }
    }

    /// The first LF at or after `from` in `s` (always the same `s`, and
    /// `from` never smaller than in the call before).
    #[inline(always)]
    pub(crate) fn find(&mut self, s: &[u8], from: usize) -> Option<usize> {
        let (mut base, mut mask) = match from.checked_sub(self.base) {
            Some(k) if k < 64 => (self.base, self.mask & (u64::MAX << k)),
            _ => (from, lf_mask64(s, from)),
        };
        while mask == 0 {
            base += 64;
            if base >= s.len() {
                return None;
            }
            mask = lf_mask64(s, base);
        }
        self.base = base;
        self.mask = mask;
        Some(base + mask.trailing_zeros() as usize)
    }

    /// The line that goes on from `from` (`s[from]` is no LF, so an LF
    /// found is past it): where its content ends (before its LF, and
    /// before a CR ahead of that LF) and where the next line starts. The
    /// last line of a datagram may lack its line end (RFC 4475 3.1.2.15):
    /// then both are the end of `s`.
    #[inline(always)]
    pub(crate) fn line(&mut self, s: &[u8], from: usize) -> (usize, usize) {
        debug_assert!(s.get(from) != Some(&b'\n'));
        match self.find(s, from) {
            Some(lf) if s[lf - 1] == b'\r' => (lf - 1, lf + 1),
            Some(lf) => (lf, lf + 1),
            None => (s.len(), s.len()),
        }
    }
}

/// Bit k set when `s[base + k]` is an LF, for the 64 bytes from `base`
/// (fewer at the end of `s`).
#[inline(always)]
fn lf_mask64(s: &[u8], base: usize) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(block) = s.get(base..base.wrapping_add(64)) {
        let m = |k: usize| u64::from(sse2::eq_mask(sse2::load16(block, 16 * k), b'\n'));
        return m(0) | m(1) << 16 | m(2) << 32 | m(3) << 48;
    }
    lf_mask_tail(s, base)
}

/// [`lf_mask64`] byte by byte (the end of the buffer).
#[cold]
#[inline(never)]
fn lf_mask_tail(s: &[u8], base: usize) -> u64 {
    let tail = s.get(base..).unwrap_or_default();
    tail.iter()
        .take(64)
        .enumerate()
        .fold(0, |m, (k, &c)| m | u64::from(c == b'\n') << k)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub(crate) mod sse2 {
    //! The few SSE2 operations the scanners use. SSE2 is part of every
    //! x86_64 target.
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_sub_epi8,
    };

    /// The sixteen bytes of `s` from `i` (bounds-checked: callers keep
    /// `i + 16 <= s.len()`, which lets the compiler drop the check).
    #[inline(always)]
    pub(crate) fn load16(s: &[u8], i: usize) -> __m128i {
        let mut a = [0u8; 16];
        a.copy_from_slice(&s[i..i + 16]);
        // SAFETY: `[u8; 16]` and `__m128i` have the same size, and every
        // bit pattern is a valid value of both.
        unsafe { core::mem::transmute::<[u8; 16], __m128i>(a) }
    }

    /// Bit k set when byte k of `v` is `c`.
    #[inline(always)]
    pub(crate) fn eq_mask(v: __m128i, c: u8) -> u32 {
        // SAFETY: the intrinsics only need SSE2, which this module is
        // compiled with (`target_feature = "sse2"`, part of x86_64).
        unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8))) as u32 }
    }

    /// Bit k set when byte k of `v` is at most `c` (unsigned).
    #[inline(always)]
    pub(crate) fn le_mask(v: __m128i, c: u8) -> u32 {
        // SAFETY: SSE2 only, as in `eq_mask`.
        unsafe {
            _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(c as i8)), v)) as u32
        }
    }

    /// Bit k set when byte k of `v` is a [`super::PARAM_STOP`] byte.
    #[inline(always)]
    pub(crate) fn param_stops(v: __m128i) -> u32 {
        // SAFETY: SSE2 only, as in `eq_mask`.
        unsafe {
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            // Signed: 0x00-0x20 and 0x80-0xff.
            let low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x21));
            // `;`, `<` and `=` are 0x3b-0x3d: `x - 0x3b` (wrapping) is at most 2.
            let d = _mm_sub_epi8(v, _mm_set1_epi8(b';' as i8));
            let semi_lt_eq = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(2)), d);
            let m = _mm_or_si128(
                _mm_or_si128(eq(b','), eq(b'"')),
                _mm_or_si128(semi_lt_eq, low),
            );
            _mm_movemask_epi8(m) as u32
        }
    }

    /// Bit k set when byte k of `v` is a host name character
    /// (alphanumeric, `-`, `.`, `_`).
    #[inline(always)]
    pub(crate) fn host_chars(v: __m128i) -> u32 {
        // SAFETY: SSE2 only, as in `eq_mask`.
        unsafe {
            // `x` in `lo..=hi`: `x - lo` (wrapping) is at most `hi - lo`.
            let in_range = |x: __m128i, lo: u8, hi: u8| {
                let d = _mm_sub_epi8(x, _mm_set1_epi8(lo as i8));
                _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8((hi - lo) as i8)), d)
            };
            let letter = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            let digit = in_range(v, b'0', b'9');
            let dash_dot = in_range(v, b'-', b'.');
            let under = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'_' as i8));
            let m = _mm_or_si128(_mm_or_si128(letter, digit), _mm_or_si128(dash_dot, under));
            _mm_movemask_epi8(m) as u32
        }
    }

    /// Bit k set when byte k of `v | or` equals byte k of `want`.
    #[inline(always)]
    pub(crate) fn or_eq_mask(v: __m128i, or: __m128i, want: __m128i) -> u32 {
        // SAFETY: SSE2 only, as in `eq_mask`.
        unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_or_si128(v, or), want)) as u32 }
    }
}

/// Whether `s` holds linear white space (SP, HTAB, CR or LF).
#[inline]
pub(crate) fn has_lws(s: &[u8]) -> bool {
    // Sixteen bytes at a time: a block without a byte at or below SP has
    // none of the four; a block with one is looked at byte by byte. The
    // last block overlaps the one before.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if s.len() >= 16 {
        let lws_in = |block: &[u8]| {
            sse2::le_mask(sse2::load16(block, 0), b' ') != 0 && block.iter().any(|&c| is_lws(c))
        };
        let mut i = 0;
        while let Some(block) = s.get(i..i + 16) {
            if lws_in(block) {
                return true;
            }
            i += 16;
        }
        return i < s.len() && lws_in(&s[s.len() - 16..]);
    }
    const SP: u64 = LO * b' ' as u64;
    const HT: u64 = LO * b'\t' as u64;
    const CR: u64 = LO * b'\r' as u64;
    const LF: u64 = LO * b'\n' as u64;
    find_by(
        s,
        0,
        |w| zero_bytes(w ^ SP) | zero_bytes(w ^ HT) | zero_bytes(w ^ CR) | zero_bytes(w ^ LF),
        is_lws,
    )
    .is_some()
}

/// Case-insensitive ASCII comparison.
#[inline]
pub(crate) fn eq_nocase(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_folding() {
        assert_eq!(trim(b" \r\n  abc \t"), b"abc");
        assert_eq!(trim(b""), b"");
        assert_eq!(trim(b"  "), b"");
    }

    #[test]
    fn splits_commas_outside_quotes_and_brackets() {
        let s = b"\"a, b\" <sip:x@y;p=1,2>;q=1 , sip:z , ";
        let items: Vec<_> = CommaSplit::new(s)
            .map(|r| {
                let (a, b) = r.unwrap();
                &s[a..b]
            })
            .collect();
        assert_eq!(
            items,
            vec![&b"\"a, b\" <sip:x@y;p=1,2>;q=1"[..], b"sip:z", b""]
        );
        assert!(CommaSplit::new(b"\"open, x").any(|r| r.is_err()));
        assert!(CommaSplit::new(b"<sip:open, x").any(|r| r.is_err()));
    }

    #[test]
    fn word_scans_match_byte_scans() {
        let texts: [&[u8]; 2] = [
            b"Via: SIP/2.0/UDP a;branch=z9hG4bK.1, \"q<\" <sip:x>\r\n\tmore",
            b"\n\n,,<<\"\"zzVV>>\n,<\"zV>\n\n,,<<\"\"zzVV>>\n,<\"zV>\x00\x01\x0b\x0a",
        ];
        for (text, len) in texts
            .iter()
            .flat_map(|t| (0..=t.len()).map(move |l| (t, l)))
        {
            let s = &text[..len];
            for from in 0..=len + 1 {
                let tail = s.get(from..).unwrap_or_default();
                for c in [b'\n', b',', b'"', b'<', b'>', b'V', b'z'] {
                    let want = tail.iter().position(|&x| x == c).map(|k| k + from);
                    assert_eq!(find_byte(s, from, c), want, "{len} {from} {c}");
                    assert_eq!(find_byte_words(s, from, c), want, "{len} {from} {c}");
                }
                let want = tail
                    .iter()
                    .position(|&x| matches!(x, b'"' | b'<' | b','))
                    .map(|k| k + from);
                assert_eq!(find3(s, from, b'"', b'<', b','), want, "{len} {from}");
                assert_eq!(find3_words(s, from, b'"', b'<', b','), want, "{len} {from}");
            }
            assert_eq!(has_lws(s), s.iter().any(|&c| is_lws(c)), "{len}");
        }
    }

    #[test]
    fn has_lws_at_every_place() {
        // One byte of each kind at each place of runs of every length to
        // 70: the blocks of sixteen, the overlapping last one and short
        // strings.
        for len in 0..70usize {
            let mut s = vec![b'a'; len];
            assert!(!has_lws(&s), "{len}");
            for at in 0..len {
                for c in [0u8, b'\t', b'\n', 0x0b, b'\r', 0x1f, b' ', b'!', 0x80, 0xff] {
                    s[at] = c;
                    assert_eq!(has_lws(&s), is_lws(c), "{len} {at} {c}");
                    s[at] = b'a';
                }
            }
        }
    }

    #[test]
    fn line_ends_match_a_byte_search() {
        // LFs at every distance, across and at the ends of 64-byte blocks.
        let mut text = Vec::new();
        for k in 0..150usize {
            text.extend(std::iter::repeat_n(b'x', k % 70));
            text.push(if k % 3 == 0 { b'\r' } else { b'y' });
            text.push(b'\n');
        }
        for len in (0..text.len()).step_by(7).chain([text.len()]) {
            let s = &text[..len];
            let want = |from: usize| {
                s[from.min(len)..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map(|k| k + from)
            };
            // In order from line to line, as the header loop asks.
            let mut ends = LineEnds::new();
            let mut from = 0;
            while from <= len {
                let got = ends.find(s, from);
                assert_eq!(got, want(from), "{len} {from}");
                match got {
                    Some(lf) => from = lf + 1,
                    None => break,
                }
            }
            // And from any place, with a fresh search and with one that
            // goes forward in steps.
            let mut ends = LineEnds::new();
            for from in (0..=len).step_by(5) {
                assert_eq!(LineEnds::new().find(s, from), want(from), "{len} {from}");
                assert_eq!(ends.find(s, from), want(from), "{len} {from}");
            }
        }
    }

    #[test]
    fn leading_u64_matches_parse_u64() {
        // Digit runs of every length to 45, with values around the
        // bounds, then a non-digit or the end.
        let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b" 1".to_vec(), b"x".to_vec()];
        for n in 1..=45usize {
            for fill in [b'0', b'9', b'1'] {
                let mut d = vec![fill; n];
                cases.push(d.clone());
                d.extend_from_slice(b" INVITE");
                cases.push(d);
            }
        }
        for v in [
            0u64,
            9,
            10,
            65535,
            65536,
            4294967295,
            4294967296,
            99999999999,
        ] {
            cases.push(v.to_string().into_bytes());
            cases.push(format!("{v};x").into_bytes());
            cases.push(format!("000{v}").into_bytes());
        }
        for s in &cases {
            for max in [255, 65535, u64::from(u32::MAX)] {
                let digits = s
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .unwrap_or(s.len());
                assert_eq!(parse_u64(s, max), parse_u64_checked(s, max), "{s:?}");
                let want = parse_u64_checked(&s[..digits], max).map(|v| (v, digits));
                assert_eq!(
                    leading_u64(s, max),
                    want,
                    "{:?} {max}",
                    String::from_utf8_lossy(s)
                );
            }
        }
    }

    #[test]
    fn class_runs_match_their_tables() {
        let all: Vec<u8> = (0..=255u8).collect();
        for c in 0..=255u8 {
            // Each byte alone, and at every place of a run of `a`.
            for at in 0..40 {
                let mut s = vec![b'a'; 40];
                s[at] = c;
                let want_p = if PARAM_STOP[c as usize] { at } else { 40 };
                let want_h = if HOST[c as usize] { 40 } else { at };
                assert_eq!(param_run(&s, 0, 40), want_p, "{c} {at}");
                assert_eq!(host_run(&s, 0, 40), want_h, "{c} {at}");
                // A window that ends before the byte.
                assert_eq!(param_run(&s, 0, at), at, "{c} {at}");
                assert_eq!(host_run(&s, 0, at), at, "{c} {at}");
            }
        }
        assert_eq!(param_run(&all, 0x21, 256), usize::from(b'"'));
        assert_eq!(host_run(&all, b'0' as usize, 256), usize::from(b'9') + 1);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0068", 255), Some(68));
        assert_eq!(parse_u64(b"300", 255), None);
        assert_eq!(
            parse_u64(b"36893488147419103232", u64::from(u32::MAX)),
            None
        );
        assert_eq!(parse_u64(b"-1", 10), None);
        assert_eq!(parse_u64(b"", 10), None);
        assert_eq!(parse_u64(b"1a", 10), None);
    }
}
