//! SIP, SIPS and other URIs (RFC 3261 19.1), parsed as views into the
//! message bytes. `tel:` and unknown schemes are kept opaque.

use crate::params::Params;
use crate::scan::{eq_nocase, find_byte, has_lws, parse_u64, HOST};

/// The scheme of a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other scheme (`soap.beep:`, `nobodyKnowsThisScheme:`).
    Other,
}

/// A parsed URI. `host`, `port`, `user` and the parameters are only set
/// for `sip:` and `sips:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The whole URI text.
    pub raw: &'a [u8],
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    /// The host, an IPv6 reference keeps its brackets.
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// The `?headers` part without the `?`, empty when none.
    pub headers: &'a [u8],
}

/// Why a URI could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriError(pub &'static str);

impl<'a> Uri<'a> {
    /// Parse a URI. White space anywhere in it is an error.
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, UriError> {
        if has_lws(raw) {
            return Err(UriError("white space in URI"));
        }
        let colon = find_byte(raw, 0, b':').ok_or(UriError("URI without scheme"))?;
        let scheme_raw = &raw[..colon];
        if scheme_raw.is_empty()
            || !scheme_raw[0].is_ascii_alphabetic()
            || !scheme_raw
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(UriError("bad URI scheme"));
        }
        let scheme = if eq_nocase(scheme_raw, b"sip") {
            Scheme::Sip
        } else if eq_nocase(scheme_raw, b"sips") {
            Scheme::Sips
        } else if eq_nocase(scheme_raw, b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            scheme,
            raw,
            user: None,
            password: None,
            host: &[],
            port: None,
            params: Params::default(),
            headers: &[],
        };
        if !matches!(scheme, Scheme::Sip | Scheme::Sips) {
            if colon + 1 >= raw.len() {
                return Err(UriError("empty URI after the scheme"));
            }
            return Ok(uri);
        }
        let rest = &raw[colon + 1..];
        // The user part may hold '?' and ';' (user-unreserved), headers
        // and parameters may not hold an unescaped '@': split there first.
        let (userinfo, after_user) = match find_byte(rest, 0, b'@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostpart, headers) = match find_byte(after_user, 0, b'?') {
            Some(q) => (&after_user[..q], &after_user[q + 1..]),
            None => (after_user, &after_user[after_user.len()..]),
        };
        uri.headers = headers;
        if let Some(userinfo) = userinfo {
            let (user, password) = match find_byte(userinfo, 0, b':') {
                Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(UriError("empty user part in URI"));
            }
            uri.user = Some(user);
            uri.password = password;
        }
        // host [":" port] *(";" param)
        let host_end = if hostpart.first() == Some(&b'[') {
            let close =
                find_byte(hostpart, 0, b']').ok_or(UriError("unterminated IPv6 reference"))?;
            let inner = &hostpart[1..close];
            if inner.is_empty()
                || !inner
                    .iter()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
            {
                return Err(UriError("bad host in URI"));
            }
            close + 1
        } else {
            // The host ends at ':' or ';'; any other character that is not
            // a host character makes it a bad host.
            let k = hostpart
                .iter()
                .position(|&c| !HOST[c as usize])
                .unwrap_or(hostpart.len());
            if k == 0 && matches!(hostpart.first(), None | Some(b':' | b';')) {
                return Err(UriError("URI without host"));
            }
            if k < hostpart.len() && !matches!(hostpart[k], b':' | b';') {
                return Err(UriError("bad host in URI"));
            }
            k
        };
        uri.host = &hostpart[..host_end];
        let mut i = host_end;
        if hostpart.get(i) == Some(&b':') {
            let p_start = i + 1;
            let p_end = hostpart[p_start..]
                .iter()
                .position(|&c| c == b';')
                .map_or(hostpart.len(), |k| p_start + k);
            let port =
                parse_u64(&hostpart[p_start..p_end], 65535).ok_or(UriError("bad port in URI"))?;
            uri.port = Some(port as u16);
            i = p_end;
        }
        if i < hostpart.len() {
            if hostpart[i] != b';' {
                return Err(UriError("unexpected character after host in URI"));
            }
            uri.params = Params::new(&hostpart[i..]);
            uri.params.validate().map_err(UriError)?;
        }
        Ok(uri)
    }

    /// A URI parameter (`;lr`, `;transport=tcp`, `;maddr=`).
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.params.get(name)
    }

    /// Whether the URI carries the loose-routing `lr` parameter.
    pub fn is_loose_router(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The host without IPv6 brackets.
    pub fn host_unbracketed(&self) -> &'a [u8] {
        strip_brackets(self.host)
    }
}

/// Remove the brackets of an IPv6 reference.
pub fn strip_brackets(h: &[u8]) -> &[u8] {
    match h {
        [b'[', inner @ .., b']'] => inner,
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sip_uri() {
        let u =
            Uri::parse(b"sip:alice:secret@[2001:db8::1]:5070;transport=tcp;lr?Subject=x").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, b"[2001:db8::1]");
        assert_eq!(u.host_unbracketed(), b"2001:db8::1");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("transport"), Some(Some(&b"tcp"[..])));
        assert!(u.is_loose_router());
        assert_eq!(u.headers, b"Subject=x");
    }

    #[test]
    fn semicolon_in_user_and_escapes() {
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, b"example.com");
        let u = Uri::parse(b"sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.host, b"example.net");
        let u = Uri::parse(b"sip:null-%00-null@example.com").unwrap();
        assert_eq!(u.user, Some(&b"null-%00-null"[..]));
    }

    #[test]
    fn other_schemes_are_opaque() {
        assert_eq!(
            Uri::parse(b"tel:+1-201-555-0123").unwrap().scheme,
            Scheme::Tel
        );
        assert_eq!(
            Uri::parse(b"soap.beep://192.0.2.103:3002").unwrap().scheme,
            Scheme::Other
        );
        assert_eq!(
            Uri::parse(b"nobodyKnowsThisScheme:totallyopaquecontent")
                .unwrap()
                .scheme,
            Scheme::Other
        );
    }

    #[test]
    fn bad_uris() {
        for bad in [
            &b"sip:"[..],
            b"sip:user@",
            b"sip:@host",
            b"sip:host:99999",
            b"sip:host:5060x",
            b"sip:[::1",
            b"<sip:a@b>",
            b"sip:a@b; lr",
            b"nocolon",
            b"sip:a@b;;",
            b"sip:a@b c",
        ] {
            assert!(Uri::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
