//! Manipulation of the forwarded request: the Request-URI user and host, headers added and
//! removed. A rule sets it in the configuration (`set_ruri_user`, `set_ruri_host`,
//! `add_headers`, `remove_headers`) or a script sets it per call; the proxy core applies it
//! to every branch of the request ([`Manipulation::rewrite_ruri`],
//! [`Manipulation::edit_headers`]).
//!
//! Order on a branch: the rule's manipulation first, then a destination's
//! `rewrite_ruri_host`, which puts the gateway's own address in the host part of that
//! branch. Header removals act on the request as received, so removing a name and adding it
//! again replaces it.

use cairn_sip::{Editor, HeaderName, Scheme, Uri};

use crate::error::{BuildError, KeyPath};
use crate::host::Host;

/// How the forwarded request is changed. Empty fields change nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manipulation {
    /// The new Request-URI user part; `Some("")` removes the user part.
    pub ruri_user: Option<Box<str>>,
    /// The new Request-URI host and port (`host` or `host:port`, IPv6 in brackets).
    pub ruri_host: Option<Box<str>>,
    /// Header lines to add: name and value.
    pub add_headers: Vec<(Box<str>, Box<str>)>,
    /// Header names to remove (compared case-insensitively, compact forms too).
    pub remove_headers: Vec<Box<str>>,
}

/// Headers the proxy itself maintains: a rule may neither add nor remove them.
const MANAGED: [HeaderName; 11] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::Contact,
    HeaderName::ContentLength,
    HeaderName::ContentType,
];

impl Manipulation {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ruri_user.is_none()
            && self.ruri_host.is_none()
            && self.add_headers.is_empty()
            && self.remove_headers.is_empty()
    }

    /// Set the new Request-URI user part, checked.
    pub fn set_ruri_user(&mut self, user: &str) -> Result<(), String> {
        check_user(user)?;
        self.ruri_user = Some(user.into());
        Ok(())
    }

    /// Set the new Request-URI `host[:port]`, checked.
    pub fn set_ruri_host(&mut self, host: &str) -> Result<(), String> {
        check_hostport(host)?;
        self.ruri_host = Some(host.into());
        Ok(())
    }

    /// Add a header line (`"Name: value"`), checked.
    pub fn add_header_line(&mut self, line: &str) -> Result<(), String> {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "\"{line}\" is not a header line: expected \"Name: value\""
            ));
        };
        self.add_header(name.trim(), value.trim())
    }

    /// Add a header (name and value), checked.
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        check_header_name(name, "added")?;
        if value.is_empty() {
            return Err(format!("header {name} has an empty value"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "the value of header {name} contains line breaks or control characters"
            ));
        }
        self.add_headers.push((name.into(), value.trim().into()));
        Ok(())
    }

    /// Remove every header of this name, checked.
    pub fn remove_header(&mut self, name: &str) -> Result<(), String> {
        check_header_name(name, "removed")?;
        self.remove_headers.push(name.into());
        Ok(())
    }

    /// Compile the manipulation keys of a rule; `None` when it has none.
    pub(crate) fn build(
        user: Option<&str>,
        host: Option<&str>,
        add: Option<&[String]>,
        remove: Option<&[String]>,
        path: &KeyPath,
    ) -> Result<Option<Manipulation>, BuildError> {
        let mut m = Manipulation::default();
        if let Some(u) = user {
            m.set_ruri_user(u)
                .map_err(|e| BuildError::new(path.key("set_ruri_user"), e))?;
        }
        if let Some(h) = host {
            m.set_ruri_host(h)
                .map_err(|e| BuildError::new(path.key("set_ruri_host"), e))?;
        }
        for (k, name) in remove.unwrap_or_default().iter().enumerate() {
            m.remove_header(name.trim())
                .map_err(|e| BuildError::new(path.key("remove_headers").index(k), e))?;
        }
        for (k, line) in add.unwrap_or_default().iter().enumerate() {
            m.add_header_line(line)
                .map_err(|e| BuildError::new(path.key("add_headers").index(k), e))?;
        }
        if remove.is_some_and(|r| r.is_empty()) || add.is_some_and(|a| a.is_empty()) {
            let key = if add.is_some_and(|a| a.is_empty()) {
                "add_headers"
            } else {
                "remove_headers"
            };
            return Err(BuildError::new(
                path.key(key),
                "empty list changes nothing: remove the key",
            ));
        }
        Ok((!m.is_empty()).then_some(m))
    }

    /// Put `other` on top of this one: its user and host win, its header edits come after.
    pub fn merge(&mut self, other: &Manipulation) {
        if other.ruri_user.is_some() {
            self.ruri_user.clone_from(&other.ruri_user);
        }
        if other.ruri_host.is_some() {
            self.ruri_host.clone_from(&other.ruri_host);
        }
        self.add_headers.extend(other.add_headers.iter().cloned());
        self.remove_headers
            .extend(other.remove_headers.iter().cloned());
    }

    /// The Request-URI `uri` with the user and host changed, or `None` when there is
    /// nothing to change (or the URI is not a `sip:`/`sips:` URI, which is left alone).
    pub fn rewrite_ruri(&self, uri: &[u8]) -> Option<Vec<u8>> {
        if self.ruri_user.is_none() && self.ruri_host.is_none() {
            return None;
        }
        let u = Uri::parse(uri).ok()?;
        if !matches!(u.scheme, Scheme::Sip | Scheme::Sips) {
            return None;
        }
        let offset = |s: &[u8]| s.as_ptr() as usize - uri.as_ptr() as usize;
        let scheme_end = memchr(b':', uri)? + 1;
        let host_start = offset(u.host);
        let mut host_end = host_start + u.host.len();
        // The port (if any) goes with the host.
        if u.port.is_some() {
            let rest = &uri[host_end..];
            let digits = rest
                .iter()
                .skip(1)
                .take_while(|b| b.is_ascii_digit())
                .count();
            host_end += 1 + digits;
        }
        let mut out = Vec::with_capacity(uri.len() + 32);
        out.extend_from_slice(&uri[..scheme_end]);
        match &self.ruri_user {
            Some(user) if user.is_empty() => {}
            Some(user) => {
                out.extend_from_slice(user.as_bytes());
                if let Some(pw) = u.password {
                    out.push(b':');
                    out.extend_from_slice(pw);
                }
                out.push(b'@');
            }
            None => out.extend_from_slice(&uri[scheme_end..host_start]),
        }
        match &self.ruri_host {
            Some(h) => out.extend_from_slice(h.as_bytes()),
            None => out.extend_from_slice(&uri[host_start..host_end]),
        }
        out.extend_from_slice(&uri[host_end..]);
        Some(out)
    }

    /// Record the header removals and additions on an editor of the request.
    pub fn edit_headers(&self, e: &mut Editor<'_>) {
        for name in &self.remove_headers {
            match HeaderName::from_bytes(name.as_bytes()) {
                HeaderName::Other => {
                    e.remove_headers_by_name(name.as_bytes());
                    if let Some(other) = other_form(name) {
                        e.remove_headers_by_name(other.as_bytes());
                    }
                }
                known => {
                    e.remove_headers(known);
                }
            }
        }
        for (name, value) in &self.add_headers {
            e.append_header(name.as_bytes(), value.as_bytes());
        }
    }
}

/// Compact forms (RFC 3261 7.3.3 and later RFCs) of headers cairn has no id for: long
/// name, short name.
const COMPACT: [(&str, &str); 12] = [
    ("Subject", "s"),
    ("Content-Encoding", "e"),
    ("Refer-To", "r"),
    ("Referred-By", "b"),
    ("Event", "o"),
    ("Allow-Events", "u"),
    ("Accept-Contact", "a"),
    ("Reject-Contact", "j"),
    ("Request-Disposition", "d"),
    ("Session-Expires", "x"),
    ("Identity", "y"),
    ("Identity-Info", "n"),
];

/// The other form of a header name: the compact form of a long name, or the long name of
/// a compact form.
pub(crate) fn other_form(name: &str) -> Option<&'static str> {
    COMPACT.iter().find_map(|&(long, short)| {
        if name.eq_ignore_ascii_case(long) {
            Some(short)
        } else if name.eq_ignore_ascii_case(short) {
            Some(long)
        } else {
            None
        }
    })
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

fn check_user(user: &str) -> Result<(), String> {
    // RFC 3261 25.1: unreserved, escaped and user-unreserved characters.
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c);
    if let Some(c) = user.chars().find(|&c| !ok(c)) {
        return Err(format!(
            "\"{user}\": '{}' is not allowed in a Request-URI user part",
            c.escape_default()
        ));
    }
    Ok(())
}

fn check_hostport(text: &str) -> Result<(), String> {
    if text
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "\"{text}\" contains whitespace or control characters"
        ));
    }
    if text.contains(['@', ';', '?', '<', '>']) {
        return Err(format!(
            "\"{text}\" is not a host: expected HOST or HOST:PORT (IPv6 in brackets)"
        ));
    }
    let (host, _) = Host::parse_with_port(text).map_err(|m| format!("\"{text}\": {m}"))?;
    if let Host::Ip(std::net::IpAddr::V6(_)) = host {
        if !text.starts_with('[') {
            return Err(format!(
                "\"{text}\": an IPv6 address goes in brackets in a URI ([{text}])"
            ));
        }
    }
    Ok(())
}

fn check_header_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty header name".into());
    }
    if !name.bytes().all(is_token) {
        return Err(format!("\"{name}\" is not a header name (a token)"));
    }
    let id = HeaderName::from_bytes(name.as_bytes());
    if MANAGED.contains(&id) {
        return Err(format!(
            "{} is kept by the proxy as the caller sent it and cannot be {what}",
            id.as_str()
        ));
    }
    Ok(())
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_sip::Message;

    fn m(user: Option<&str>, host: Option<&str>) -> Manipulation {
        let mut m = Manipulation::default();
        if let Some(u) = user {
            m.set_ruri_user(u).unwrap();
        }
        if let Some(h) = host {
            m.set_ruri_host(h).unwrap();
        }
        m
    }

    fn rewrite(m: &Manipulation, uri: &str) -> String {
        String::from_utf8(m.rewrite_ruri(uri.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn rewrites_the_request_uri() {
        let user = m(Some("+4930123"), None);
        assert_eq!(
            rewrite(&user, "sip:0030123@example.com:5070;user=phone?X=1"),
            "sip:+4930123@example.com:5070;user=phone?X=1"
        );
        assert_eq!(
            rewrite(&user, "sip:example.com"),
            "sip:+4930123@example.com"
        );
        assert_eq!(
            rewrite(&user, "sips:bob:pw@[::1]:5061"),
            "sips:+4930123:pw@[::1]:5061"
        );
        let host = m(None, Some("gw.example.net:5080"));
        assert_eq!(
            rewrite(&host, "sip:bob@example.com:5070;transport=tcp"),
            "sip:bob@gw.example.net:5080;transport=tcp"
        );
        assert_eq!(
            rewrite(&host, "sip:bob@[2001:db8::1]"),
            "sip:bob@gw.example.net:5080"
        );
        let both = m(Some(""), Some("192.0.2.1"));
        assert_eq!(rewrite(&both, "sip:bob@example.com:5070"), "sip:192.0.2.1");
        assert_eq!(both.rewrite_ruri(b"tel:+15551234"), None);
        assert_eq!(Manipulation::default().rewrite_ruri(b"sip:a@b"), None);
    }

    #[test]
    fn refuses_bad_values() {
        let mut x = Manipulation::default();
        for (bad, want) in [
            ("bob@host", "'@' is not allowed"),
            ("a b", "not allowed"),
            ("a:b", "not allowed"),
        ] {
            let e = x.set_ruri_user(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        for (bad, want) in [
            ("", "empty host"),
            ("gw example", "whitespace"),
            ("bob@gw", "not a host"),
            ("gw:0", "port 0"),
            ("2001:db8::1", "brackets"),
        ] {
            let e = x.set_ruri_host(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        for (bad, want) in [
            ("X-Foo", "not a header line"),
            ("X Foo: 1", "not a header name"),
            ("X-Foo:", "empty value"),
            ("Via: SIP/2.0/UDP x", "Via is kept by the proxy"),
            ("v: SIP/2.0/UDP x", "Via is kept by the proxy"),
            ("X-Foo: a\u{7}", "control characters"),
        ] {
            let e = x.add_header_line(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        for (bad, want) in [
            ("call-id", "Call-ID is kept"),
            ("i", "Call-ID is kept"),
            ("Record-Route", "Record-Route is kept"),
            ("X:Y", "not a header name"),
        ] {
            let e = x.remove_header(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(x.is_empty());
    }

    #[test]
    fn edits_headers() {
        let msg = Message::parse(bytes::Bytes::from_static(
            b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
x-secret: 1\r\nSubject: hi\r\nX-SECRET: 2\r\ns: again\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let mut m = Manipulation::default();
        m.remove_header("X-Secret").unwrap();
        m.remove_header("subject").unwrap();
        m.add_header_line("X-Secret: replaced").unwrap();
        m.add_header("X-Route", "lua").unwrap();
        let mut e = Editor::new(&msg);
        m.edit_headers(&mut e);
        let out = Message::parse(e.finish()).unwrap();
        let text = String::from_utf8_lossy(out.as_bytes()).into_owned();
        assert!(
            !text.contains("x-secret: 1") && !text.contains("X-SECRET: 2"),
            "{text}"
        );
        assert!(
            !text.contains("Subject") && !text.contains("s: again"),
            "{text}"
        );
        assert!(
            text.contains("X-Secret: replaced\r\nX-Route: lua\r\n"),
            "{text}"
        );
        assert_eq!(out.call_id(), b"c");
    }
}
