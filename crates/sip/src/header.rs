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
        let candidates: &[(&[u8], HeaderName)] = match name.len() {
            2 => &[(b"to", To)],
            3 => &[(b"via", Via)],
            4 => &[(b"from", From), (b"cseq", CSeq)],
            5 => &[(b"route", Route), (b"allow", Allow)],
            6 => &[(b"reason", Reason)],
            7 => &[
                (b"call-id", CallId),
                (b"contact", Contact),
                (b"require", Require),
                (b"expires", Expires),
            ],
            9 => &[(b"supported", Supported)],
            11 => &[(b"unsupported", Unsupported)],
            12 => &[
                (b"max-forwards", MaxForwards),
                (b"record-route", RecordRoute),
                (b"content-type", ContentType),
            ],
            13 => &[
                (b"proxy-require", ProxyRequire),
                (b"authorization", Authorization),
            ],
            14 => &[(b"content-length", ContentLength)],
            16 => &[(b"www-authenticate", WwwAuthenticate)],
            18 => &[(b"proxy-authenticate", ProxyAuthenticate)],
            19 => &[(b"proxy-authorization", ProxyAuthorization)],
            _ => return Other,
        };
        for &(n, id) in candidates {
            if n.eq_ignore_ascii_case(name) {
                return id;
            }
        }
        Other
    }

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
        ] {
            assert_eq!(HeaderName::from_bytes(s.as_bytes()), id, "{s}");
        }
    }
}
