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
    while i < s.len() {
        match s[i] {
            b'"' => i = skip_quoted(s, i).ok_or(())?,
            b'<' => {
                i = match memchr::memchr(b'>', &s[i..]) {
                    Some(k) => i + k + 1,
                    None => return Err(()),
                }
            }
            b',' => return Ok(i),
            _ => i += 1,
        }
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

/// Parse a decimal number made of digits only, with an upper bound. Leading
/// zeros are allowed (`0068`), an empty string or any non-digit is not.
pub(crate) fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 40 {
        // 40 digits cannot fit; long zero runs are not worth supporting.
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
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
