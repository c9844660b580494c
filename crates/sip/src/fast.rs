//! One-pass checks for the common shapes of the values the parser checks
//! on every message (the top Via, From, To, Contact).
//!
//! Each function either returns what the general parsers
//! ([`crate::via::Via::parse_each`], [`crate::addr::NameAddr::parse_each`]
//! with [`crate::scan::item_end`]) would find, or `None` when the value is
//! not of the simple shape; the caller then runs the general parser, which
//! also words any error. The shapes are chosen so that everything a
//! function accepts the general parsers accept in the same way:
//!
//! * no white space after the start except the single run the grammar
//!   puts before a Via's sent-by or a name-addr's `<`;
//! * parameters are `;name` or `;name=value` where names and values
//!   hold no [`crate::scan::PARAM_STOP`] byte: no white space, no quotes,
//!   no `"`, `<`, `,`, `;` or `=` (so `item_end` cannot stop inside them,
//!   and the general parser ends them where these checks do);
//! * a quoted display name holds no backslash (so its end is the next
//!   `"` for both parsers).
//!
//! `tests/common/mod.rs` (run by the mutation test and the fuzzer) checks
//! the parsed fields against the general parsers on every input.

use crate::scan::{host_run, is_token, param_run};

/// A range of the value.
pub(crate) type Range = (usize, usize);

/// What [`params`] found: the first `tag` (or other wanted) parameter.
#[derive(Clone, Copy, Default)]
pub(crate) struct Found {
    /// The value of the first parameter named like the first wanted
    /// name: `Some(None)` when it has no value.
    pub(crate) a: Option<Option<Range>>,
    /// The same for the second wanted name, with the end of its name.
    pub(crate) b: Option<(usize, Option<Range>)>,
}

/// `;name[=value]` parameters (see the module comment) from `i` to `end`
/// or to a `,` (when `comma_ends`). Returns where they end and the first
/// parameters named `wa` and `wb` (lower case; compared without case).
#[inline(always)]
fn params(
    b: &[u8],
    mut i: usize,
    end: usize,
    wa: &[u8],
    wb: &[u8],
    comma_ends: bool,
) -> Option<(usize, Found)> {
    let mut found = Found::default();
    loop {
        if i >= end {
            return Some((i, found));
        }
        let c = *b.get(i)?;
        if c != b';' {
            return (comma_ends && c == b',').then_some((i, found));
        }
        i += 1;
        let ns = i;
        i = param_run(b, i, end);
        if i == ns {
            return None;
        }
        let name = b.get(ns..i)?;
        let ne = i;
        let mut value = None;
        if i < end && b.get(i) == Some(&b'=') {
            i += 1;
            let vs = i;
            i = param_run(b, i, end);
            if i == vs {
                return None;
            }
            value = Some((vs, i));
        }
        if found.a.is_none() && is_name(name, wa) {
            found.a = Some(value);
        } else if found.b.is_none() && is_name(name, wb) {
            found.b = Some((ne, value));
        }
    }
}

/// Whether `name` is `want` in any letter case. `want` is lower-case
/// letters only (a parameter name the parser looks for): then a byte
/// matches exactly when it is the letter or its upper case, which for
/// names of up to eight letters is one OR and one compare of words.
#[inline(always)]
fn is_name(name: &[u8], want: &[u8]) -> bool {
    debug_assert!(want.iter().all(u8::is_ascii_lowercase));
    let n = want.len();
    if name.len() != n {
        return false;
    }
    if n > 8 {
        return name.eq_ignore_ascii_case(want);
    }
    let (mut x, mut w, mut case) = ([0u8; 8], [0u8; 8], [0u8; 8]);
    x[..n].copy_from_slice(name);
    w[..n].copy_from_slice(want);
    case[..n].fill(0x20);
    u64::from_le_bytes(x) | u64::from_le_bytes(case) == u64::from_le_bytes(w)
}

/// A From, To or Contact value `b[start..end]` of the form `<uri>` or
/// `"display" <uri>`, then `;name[=value]` parameters, and nothing else.
/// Returns the `tag` parameter: `Some(tag)` when the value has this shape
/// (the general parser accepts it as one value, with this tag), `None`
/// when it does not. Positions are offsets in `b`.
#[inline]
pub(crate) fn name_addr_tag(b: &[u8], start: usize, end: usize) -> Option<Option<Range>> {
    let mut i = start;
    if end <= start {
        return None;
    }
    match *b.get(i)? {
        b'"' => {
            // The closing quote, with no backslash before it.
            i = find_either(b, i + 1, end, b'"', b'\\');
            if b.get(i) != Some(&b'"') || i >= end {
                return None;
            }
            i += 1;
            while i < end && matches!(b.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            if i >= end || b.get(i) != Some(&b'<') {
                return None;
            }
        }
        b'<' => {}
        _ => return None,
    }
    let gt = find_either(b, i + 1, end, b'>', b'>');
    if gt >= end {
        return None;
    }
    let uri = b.get(i + 1..gt)?;
    match (uri.first(), uri.last()) {
        (Some(&f), Some(&l)) if !crate::scan::is_lws(f) && !crate::scan::is_lws(l) => {}
        _ => return None,
    }
    let (_, found) = params(b, gt + 1, end, b"tag", b"", false)?;
    Some(found.a.flatten())
}

/// The first value of a Via header `b[start..end]` of the form
/// `SIP/2.0/TRANSPORT host[:port]` and `;name[=value]` parameters, ending
/// at `end` or at a `,`. Returns the end of that value, the `branch`
/// value and, when `rport` has no value, the end of its name (offsets in
/// `b`).
#[inline]
pub(crate) fn top_via(
    b: &[u8],
    start: usize,
    end: usize,
) -> Option<(usize, Option<Range>, Option<usize>)> {
    // `SIP/2.0/`, the letters in any case: OR-ing 0x20 into the first
    // three bytes maps only `S`/`s`, `I`/`i` and `P`/`p` to the lower-case
    // letters.
    let s = b.get(start..end)?;
    let first: [u8; 8] = s.get(..8)?.try_into().ok()?;
    if u64::from_le_bytes(first) | 0x20_2020 != u64::from_le_bytes(*b"sip/2.0/") {
        return None;
    }
    let mut i = start + 8;
    while i < end && is_token(b[i]) {
        i += 1;
    }
    let t_end = i;
    while i < end && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if t_end == start + 8 || i == t_end {
        return None;
    }
    let i = host_port(b, i, end)?;
    let (value_end, found) = params(b, i, end, b"branch", b"rport", true)?;
    let rport = match found.b {
        Some((name_end, None)) => Some(name_end),
        _ => None,
    };
    Some((value_end, found.a.flatten(), rport))
}

/// Whether `b[start..end]` is a URI `sip:user@host[:port]` (scheme in
/// any case), the user without white space, controls, non-ASCII, `:` or
/// a [`crate::scan::PARAM_STOP`] byte, and the host a host name. Such a
/// URI parses with [`crate::uri::Uri::parse`], as a `sip:` URI without
/// headers.
#[inline]
pub(crate) fn sip_uri(b: &[u8], start: usize, end: usize) -> bool {
    let Some(s) = b.get(start..end) else {
        return false;
    };
    if s.len() < 4 || !s[..4].eq_ignore_ascii_case(b"sip:") {
        return false;
    }
    let user = start + 4;
    let at = find_either(b, user, end, b'@', b':');
    if at == user || at >= end || b[at] != b'@' || param_run(b, user, at) != at {
        return false;
    }
    host_port(b, at + 1, end) == Some(end)
}

/// A host name and an optional `:port` (at most 65535) from `i`, within
/// `end`: where they end. `None` without a host name or with a bad port.
#[inline(always)]
fn host_port(b: &[u8], i: usize, end: usize) -> Option<usize> {
    let mut j = host_run(b, i, end);
    if j == i {
        return None;
    }
    if j < end && b[j] == b':' {
        // The digits, read as they are found: as `parse_u64(digits,
        // 65535)` would, none, more than 40 or a value past 65535 fail.
        let p = j + 1;
        j = p;
        let mut port = 0u32;
        while j < end && b[j].is_ascii_digit() {
            port = port * 10 + u32::from(b[j] - b'0');
            if port > 65535 {
                return None;
            }
            j += 1;
        }
        if j == p || j - p > 40 {
            return None;
        }
    }
    Some(j)
}

/// The first `x` or `y` in `b[i..end]`, or `end`.
#[inline(always)]
fn find_either(b: &[u8], mut i: usize, end: usize, x: u8, y: u8) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while i < end && i + 16 <= b.len() {
        use crate::scan::sse2::{eq_mask, load16};
        let v = load16(b, i);
        let k = (eq_mask(v, x) | eq_mask(v, y) | 1 << 16).trailing_zeros() as usize;
        i += k;
        if k < 16 {
            return i.min(end);
        }
    }
    while i < end && b[i] != x && b[i] != y {
        i += 1;
    }
    i.min(end)
}

#[cfg(test)]
mod tests {
    //! Differential test: on the values of the test messages and on
    //! random mutations of them, whatever the fast checks accept the
    //! general parsers accept with the same result.
    use super::*;
    use crate::addr::NameAddr;
    use crate::scan::{item_end, trim};
    use crate::via::Via;

    fn general_tag(s: &[u8]) -> Option<Option<Range>> {
        let end = item_end(s, 0).ok()?;
        if end != s.len() {
            return None;
        }
        let mut tag = None;
        NameAddr::parse_each(s, |n, v| {
            if tag.is_none() && n.eq_ignore_ascii_case(b"tag") {
                tag = Some(v.map(|v| off(s, v)));
            }
        })
        .ok()?;
        Some(tag.flatten())
    }

    fn general_via(s: &[u8]) -> Option<(Range, Option<Range>, Option<usize>)> {
        let first = trim(&s[..item_end(s, 0).ok()?]);
        let (mut branch, mut rport) = (None, None);
        Via::parse_each(first, |n, v| {
            if branch.is_none() && n.eq_ignore_ascii_case(b"branch") {
                branch = Some(v.map(|v| off(s, v)));
            } else if rport.is_none() && n.eq_ignore_ascii_case(b"rport") {
                rport = Some(v.is_none().then(|| off(s, n).1));
            }
        })
        .ok()?;
        Some((off(s, first), branch.flatten(), rport.flatten()))
    }

    fn off(s: &[u8], part: &[u8]) -> Range {
        let a = part.as_ptr() as usize - s.as_ptr() as usize;
        (a, a + part.len())
    }

    fn check(v: &[u8]) -> (bool, bool) {
        let shown = || String::from_utf8_lossy(v).into_owned();
        if sip_uri(v, 0, v.len()) {
            let u = crate::uri::Uri::parse(v).unwrap_or_else(|e| panic!("{e:?} {:?}", shown()));
            assert_eq!(u.scheme, crate::uri::Scheme::Sip, "{:?}", shown());
            assert!(u.headers.is_empty(), "{:?}", shown());
        }
        let fast_tag = name_addr_tag(v, 0, v.len());
        if let Some(t) = fast_tag {
            assert_eq!(general_tag(v), Some(t), "name-addr {:?}", shown());
        }
        let fast_via = top_via(v, 0, v.len());
        if let Some((end, branch, rport)) = fast_via {
            assert_eq!(
                general_via(v),
                Some(((0, end), branch, rport)),
                "via {:?}",
                shown()
            );
        }
        // The same value inside a buffer that goes on past it (as in a
        // message): the bytes after it change nothing.
        for tail in [
            &b"\r\nX: ;=,\"<>\\ tag=1;branch=2"[..],
            b";tag=x>\"\\\\\\\\\\\\\\\\\\",
            b"abcdefghijklmnopqrstuvwxyz0123456789.-_",
        ] {
            let mut buf = b"To: ".to_vec();
            buf.extend_from_slice(v);
            buf.extend_from_slice(tail);
            let at = |r: Option<Range>| r.map(|(a, b)| (a + 4, b + 4));
            assert_eq!(
                name_addr_tag(&buf, 4, 4 + v.len()),
                fast_tag.map(at),
                "name-addr in a buffer {:?}",
                shown()
            );
            assert_eq!(
                top_via(&buf, 4, 4 + v.len()),
                fast_via.map(|(e, b, r)| (e + 4, at(b), r.map(|r| r + 4))),
                "via in a buffer {:?}",
                shown()
            );
        }
        (fast_tag.is_some(), fast_via.is_some())
    }

    const VALUES: &[&[u8]] = &[
        b"\"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774",
        b"\"Bob\" <sip:bob@biloxi.example.com>",
        b"<sip:alice@pc33.atlanta.example.com:5060>",
        b"<sip:a@b>;tag=x;TAG=y;expires=30",
        b"\"a\\\"b\" <sip:x>;tag=1",
        b"sip:user@host;tag=2",
        b"Bob <sip:bob@b>;tag=3",
        b"SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport",
        b"SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKnashds8;received=192.0.2.101",
        b"SIP/2.0/TCP h;RPORT;Branch=z9hG4bK1;rport=5, SIP/2.0/UDP x",
        b"sip/2.0/udp h:0;branch",
        b"SIP/2.0/UDP [::1]:5060;branch=z9hG4bK2",
        b"sip:bob@biloxi.example.com",
        b"SIP:a@b:5060",
        b"sip:user;par=u%40example.net@example.com",
    ];

    #[test]
    fn is_name_is_eq_ignore_ascii_case() {
        // Every byte at every place of each wanted name, and lengths
        // around it.
        for want in [
            &b""[..],
            b"tag",
            b"rport",
            b"branch",
            b"received",
            b"maddrttl",
        ] {
            for len in want.len().saturating_sub(1)..=want.len() + 1 {
                for at in 0..len {
                    for c in 0..=255u8 {
                        let mut name: Vec<u8> =
                            want.iter().copied().chain(*b"xy").take(len).collect();
                        name[at] = c;
                        assert_eq!(
                            is_name(&name, want),
                            name.eq_ignore_ascii_case(want),
                            "{name:?} {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fast_paths_agree_with_the_general_parsers() {
        let mut accepted = (0, 0);
        for v in VALUES {
            let (t, w) = check(v);
            accepted.0 += usize::from(t);
            accepted.1 += usize::from(w);
        }
        assert_eq!(accepted, (4, 4));
        // Random mutations: a splitmix64 stream, so a failure reproduces.
        let mut x: u64 = 0x5eed;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        const BYTES: &[u8] = b" \t\r\n;=,\"<>\\:/[]@?%.-_aZ09\x00\xff";
        let mut fast = 0;
        for _ in 0..300_000 {
            let mut v = VALUES[next() as usize % VALUES.len()].to_vec();
            for _ in 0..1 + next() % 3 {
                let at = next() as usize % (v.len() + 1);
                let c = BYTES[next() as usize % BYTES.len()];
                match next() % 3 {
                    0 => v.insert(at, c),
                    1 if at < v.len() => v[at] = c,
                    _ if at < v.len() => {
                        v.remove(at);
                    }
                    _ => v.push(c),
                }
            }
            let (t, w) = check(&v);
            fast += usize::from(t || w || sip_uri(&v, 0, v.len()));
        }
        // The mutations must reach the fast paths often.
        assert!(fast > 50_000, "{fast}");
    }
}
