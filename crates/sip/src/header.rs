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
    pub fn as_str(self) -> &'static str {
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
        ] {
            assert_eq!(HeaderName::from_bytes(s.as_bytes()), id, "{s}");
        }
    }
}
