//! name-addr / addr-spec values (From, To, Contact, Route, Record-Route),
//! RFC 3261 20.10 and 25.1.

use crate::params::Params;
use crate::scan::{find_byte, is_lws, is_token, skip_lws, skip_quoted};

/// A parsed `[display-name] <uri> *(;param)` or `uri *(;param)` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name, quotes included when it was quoted.
    pub display: Option<&'a [u8]>,
    /// The URI text (without the angle brackets).
    pub uri: &'a [u8],
    /// Whether the URI was enclosed in `<>`.
    pub bracketed: bool,
    /// The header parameters after the URI (`;tag=`, `;expires=`).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parse one name-addr or addr-spec value (already cut at commas).
    pub fn parse(s: &'a [u8]) -> Result<NameAddr<'a>, &'static str> {
        Self::parse_each(s, |_, _| {})
    }

    /// [`NameAddr::parse`], handing every parameter to `f` as it is
    /// checked.
    pub(crate) fn parse_each(
        s: &'a [u8],
        f: impl FnMut(&'a [u8], Option<&'a [u8]>),
    ) -> Result<NameAddr<'a>, &'static str> {
        let s = crate::scan::trim(s);
        if s.is_empty() {
            return Err("empty address");
        }
        let mut display = None;
        let mut i = 0;
        let lt = if s[0] == b'"' {
            let end = skip_quoted(s, 0).ok_or("unterminated quoted display name")?;
            display = Some(&s[..end]);
            i = skip_lws(s, end);
            if s.get(i) != Some(&b'<') {
                return Err("quoted display name not followed by <URI>");
            }
            Some(i)
        } else {
            // A '<' before any ';' means name-addr with an unquoted display name.
            let lt = s
                .iter()
                .position(|&c| c == b'<' || c == b';')
                .filter(|&k| s[k] == b'<');
            if let Some(lt) = lt {
                let d = crate::scan::trim(&s[..lt]);
                if !d.is_empty() {
                    display = Some(d);
                }
            }
            lt
        };
        if let Some(lt) = lt {
            if let Some(d) = display {
                if d[0] != b'"' && !d.iter().all(|&c| is_token(c) || is_lws(c)) {
                    return Err("display name with characters that need quoting");
                }
            }
            let gt = find_byte(s, lt, b'>').ok_or("unterminated <URI>")?;
            let uri = &s[lt + 1..gt];
            if uri.is_empty() || is_lws(uri[0]) || is_lws(uri[uri.len() - 1]) {
                return Err("white space inside <URI>");
            }
            let params = Params::new(&s[gt + 1..]);
            params.validate_each(f)?;
            return Ok(NameAddr {
                display,
                uri,
                bracketed: true,
                params,
            });
        }
        // addr-spec: the URI ends at the first ';' (its parameters would be
        // ambiguous), and may not carry '?' headers or ','.
        i = s[i..]
            .iter()
            .position(|&c| c == b';' || is_lws(c))
            .map_or(s.len(), |k| i + k);
        let uri = &s[..i];
        if uri.iter().any(|&c| c == b'?' || c == b',') {
            return Err("URI with '?' or ',' must be enclosed in <>");
        }
        if uri.iter().any(|&c| c == b'"' || c == b'>') {
            return Err("malformed address");
        }
        let params = Params::new(&s[i..]);
        params.validate_each(f)?;
        Ok(NameAddr {
            display: None,
            uri,
            bracketed: false,
            params,
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.get("tag").flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(a.uri, b"sip:jdrosen@example.com");
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));
        assert!(a.display.unwrap().starts_with(b"\"J Rosenberg"));

        let a = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display, Some(&b"caller"[..]));
        assert_eq!(a.tag(), Some(&b"323"[..]));

        let a =
            NameAddr::parse(b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(a.uri, b"sip:vivekg@chair-dnrc.example.com");
        assert!(!a.bracketed);
        assert_eq!(a.tag(), Some(&b"1918181833n"[..]));

        let a =
            NameAddr::parse(b"<sip:services.example.com;lr;unknownwith=value;unknown-no-value>")
                .unwrap();
        assert_eq!(
            a.uri,
            b"sip:services.example.com;lr;unknownwith=value;unknown-no-value"
        );
        assert_eq!(a.tag(), None);

        let a = NameAddr::parse(b"A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe").unwrap();
        assert_eq!(a.display, Some(&b"A. Bell"[..]));
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"\"Mr. J. User <sip:j.user@example.com>"[..],
            b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            b"\"Watson, Thomas\" < sip:t.watson@example.org >",
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            b"\"Joe\" <sip:joe@example.org>;;;;",
            b"<sip:x@y",
            b"",
        ] {
            assert!(
                NameAddr::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
