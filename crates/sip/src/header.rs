//! Header names: the ones the proxy cares about get an id, found
//! case-insensitively and in their compact forms (RFC 3261 7.3.3, 20).

/// A header name known to cairn. Everything else is [`HeaderName::Other`]
/// and is forwarded untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Route,
    RecordRoute,
    Contact,
    ContentLength,
    ContentType,
    Reason,
    ProxyRequire,
    Require,
    Supported,
    Unsupported,
    Allow,
    Expires,
    WwwAuthenticate,
    ProxyAuthenticate,
    Authorization,
    ProxyAuthorization,
    Other,
}

impl HeaderName {
    /// The canonical spelling, used when cairn writes a header of its own.
    pub const fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Contact => "Contact",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Reason => "Reason",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Require => "Require",
            HeaderName::Supported => "Supported",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Allow => "Allow",
            HeaderName::Expires => "Expires",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::Other => "",
        }
    }

    /// Identify a header name, case-insensitively, compact forms included.
    #[inline]
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name[0] | 0x20 {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'k' => Supported,
                _ => Other,
            };
        }
        // The length and the first letter leave at most one candidate
        // (Call-ID and Contact differ in the second); candidates are lower
        // case and compared as whole words (`eq_lower`).
        let Some(&first) = name.first() else {
            return Other;
        };
        let first = first | 0x20;
        let (n, id): (&[u8], HeaderName) = match (name.len(), first) {
            (2, b't') => (b"to", To),
            (3, b'v') => (b"via", Via),
            (4, b'f') => (b"from", From),
            (4, b'c') => (b"cseq", CSeq),
            (5, b'r') => (b"route", Route),
            (5, b'a') => (b"allow", Allow),
            (6, b'r') => (b"reason", Reason),
            (7, b'c') if name[1] | 0x20 == b'a' => (b"call-id", CallId),
            (7, b'c') => (b"contact", Contact),
            (7, b'r') => (b"require", Require),
            (7, b'e') => (b"expires", Expires),
            (9, b's') => (b"supported", Supported),
            (11, b'u') => (b"unsupported", Unsupported),
            (12, b'm') => (b"max-forwards", MaxForwards),
            (12, b'r') => (b"record-route", RecordRoute),
            (12, b'c') => (b"content-type", ContentType),
            (13, b'p') => (b"proxy-require", ProxyRequire),
            (13, b'a') => (b"authorization", Authorization),
            (14, b'c') => (b"content-length", ContentLength),
            (16, b'w') => (b"www-authenticate", WwwAuthenticate),
            (18, b'p') => (b"proxy-authenticate", ProxyAuthenticate),
            (19, b'p') => (b"proxy-authorization", ProxyAuthorization),
            _ => return Other,
        };
        if eq_lower(name, n) {
            id
        } else {
            Other
        }
    }

    /// Identify the name at the start of `v` (sixteen bytes of the line),
    /// `name` being those same bytes up to the name's end: as
    /// [`HeaderName::from_bytes`], comparing all the bytes at once for
    /// names of 2 to 16 bytes.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    pub(crate) fn from_line_start(v: core::arch::x86_64::__m128i, name: &[u8]) -> HeaderName {
        let n = name.len();
        let (Some(&first), true) = (name.first(), (2..=16).contains(&n)) else {
            return HeaderName::from_bytes(name);
        };
        let id = CANDIDATE[n][usize::from(first & 31)];
        let is = |id: HeaderName| {
            use crate::scan::sse2::{load16, or_eq_mask};
            let k = id as usize;
            let m = or_eq_mask(v, load16(&CASE[k], 0), load16(&LOWER[k], 0));
            let want = (1u32 << n) - 1;
            m & want == want
        };
        if id == HeaderName::Other || is(id) {
            id
        } else if id == HeaderName::CallId && is(HeaderName::Contact) {
            HeaderName::Contact
        } else {
            HeaderName::Other
        }
    }

    /// The number of ids other than [`HeaderName::Other`].
    pub(crate) const KNOWN: usize = HeaderName::Other as usize;

    /// Headers that may appear only once (a second one makes the request
    /// malformed, RFC 4475 3.3.8).
    pub(crate) fn is_single(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
        )
    }
}

/// Every id but `Other`, in order.
const ALL: [HeaderName; HeaderName::KNOWN] = {
    use HeaderName::*;
    [
        Via,
        From,
        To,
        CallId,
        CSeq,
        MaxForwards,
        Route,
        RecordRoute,
        Contact,
        ContentLength,
        ContentType,
        Reason,
        ProxyRequire,
        Require,
        Supported,
        Unsupported,
        Allow,
        Expires,
        WwwAuthenticate,
        ProxyAuthenticate,
        Authorization,
        ProxyAuthorization,
    ]
};

/// The lower-case spelling of each id, zero-padded (names longer than 16
/// bytes are cut; [`HeaderName::from_line_start`] does not use them).
static LOWER: [[u8; 16]; HeaderName::KNOWN] = {
    let mut t = [[0u8; 16]; HeaderName::KNOWN];
    let mut k = 0;
    while k < HeaderName::KNOWN {
        let s = ALL[k].as_str().as_bytes();
        let mut j = 0;
        while j < s.len() && j < 16 {
            t[k][j] = s[j].to_ascii_lowercase();
            j += 1;
        }
        k += 1;
    }
    t
};

/// 0x20 where [`LOWER`] has a letter: OR-ed into the input, it makes
/// the comparison ignore case there and only there.
static CASE: [[u8; 16]; HeaderName::KNOWN] = {
    let mut t = [[0u8; 16]; HeaderName::KNOWN];
    let mut k = 0;
    while k < HeaderName::KNOWN {
        let mut j = 0;
        while j < 16 {
            if LOWER[k][j].is_ascii_lowercase() {
                t[k][j] = 0x20;
            }
            j += 1;
        }
        k += 1;
    }
    t
};

/// The one candidate id for a name of length 2 to 16 by its length and
/// its first letter (`& 31`); for length 7 and `c`, Call-ID (Contact is
/// tried next). `Other` when there is none.
static CANDIDATE: [[HeaderName; 32]; 17] = {
    let mut t = [[HeaderName::Other; 32]; 17];
    let mut k = HeaderName::KNOWN;
    // Backwards, so Call-ID (before Contact) is the one kept.
    while k > 0 {
        k -= 1;
        let s = ALL[k].as_str().as_bytes();
        if s.len() >= 2 && s.len() <= 16 {
            t[s.len()][(s[0] & 31) as usize] = ALL[k];
        }
    }
    t
};

/// `name` equals `lower` (lower-case letters, digits and `-`) ignoring ASCII
/// case. Compares whole words: a byte of `name` is OR-ed with 0x20 only
/// where `lower` has a letter (bit 6 set), so the test stays exact
/// (`\r` never passes for `-`).
#[inline]
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    #[inline(always)]
    fn eq(a: u64, c: u64) -> bool {
        (a | ((c & 0x4040_4040_4040_4040) >> 1)) == c
    }
    #[inline(always)]
    fn w2(s: &[u8], i: usize) -> u64 {
        u64::from(u16::from_le_bytes([s[i], s[i + 1]]))
    }
    #[inline(always)]
    fn w4(s: &[u8], i: usize) -> u64 {
        u64::from(u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]))
    }
    #[inline(always)]
    fn w8(s: &[u8], i: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[i..i + 8]);
        u64::from_le_bytes(b)
    }
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    // Overlapping loads cover every length from 2 to 24 in two or three words.
    match n {
        0 => true,
        1 => eq(u64::from(name[0]), u64::from(lower[0])),
        2..=3 => eq(w2(name, 0), w2(lower, 0)) && eq(w2(name, n - 2), w2(lower, n - 2)),
        4..=7 => eq(w4(name, 0), w4(lower, 0)) && eq(w4(name, n - 4), w4(lower, n - 4)),
        8..=16 => eq(w8(name, 0), w8(lower, 0)) && eq(w8(name, n - 8), w8(lower, n - 8)),
        17..=24 => {
            eq(w8(name, 0), w8(lower, 0))
                && eq(w8(name, 8), w8(lower, 8))
                && eq(w8(name, n - 8), w8(lower, n - 8))
        }
        _ => name
            .iter()
            .zip(lower)
            .all(|(&a, &c)| eq(u64::from(a), u64::from(c))),
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName::{self, *};

    #[test]
    fn names_and_compact_forms() {
        for (s, id) in [
            ("v", Via),
            ("V", Via),
            ("VIA", Via),
            ("f", From),
            ("t", To),
            ("i", CallId),
            ("Call-Id", CallId),
            ("m", Contact),
            ("l", ContentLength),
            ("c", ContentType),
            ("k", Supported),
            ("MaX-fOrWaRdS", MaxForwards),
            ("cseq", CSeq),
            ("record-ROUTE", RecordRoute),
            ("Reason", Reason),
            ("Proxy-Require", ProxyRequire),
            ("X-Custom", Other),
            ("s", Other),
            ("", Other),
            ("Call\rID", Other),
            ("Call-I\x04", Other),
            ("MAX-FORWARDS", MaxForwards),
            ("max_forwards", Other),
            ("Proxy-AuthorizatioN", ProxyAuthorization),
            ("Proxy-Authorizatio\x0e", Other),
            ("Record-Rout\x05", Other),
            ("CALL-ID", CallId),
            ("contacT", Contact),
            ("Cxll-ID", Other),
            ("Bontact", Other),
            ("Date", Other),
            ("Event", Other),
            ("WWW-Authenticate", WwwAuthenticate),
            ("Contact", Contact),
            ("Call-ID", CallId),
            ("Contac", Other),
            ("1ia", Other),
            ("Content-Length", ContentLength),
            ("Content-Lengt\x08", Other),
        ] {
            assert_eq!(HeaderName::from_bytes(s.as_bytes()), id, "{s}");
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            {
                // The line's bytes past the name do not matter.
                let mut line = s.as_bytes().to_vec();
                line.extend_from_slice(b": value of the header");
                let v = crate::scan::sse2::load16(&line, 0);
                assert_eq!(HeaderName::from_line_start(v, s.as_bytes()), id, "{s}");
            }
        }
    }
}
