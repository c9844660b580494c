//! Via header values (RFC 3261 20.42, RFC 3581).

use crate::params::Params;
use crate::scan::{find_byte, is_token, parse_u64, skip_lws, HOST};
use crate::Transport;

/// The RFC 3261 magic cookie that starts every compliant branch.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The transport token as written (`UDP`, `SCTP`, `UNKNOWN`).
    pub transport_raw: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// Parse one Via value (already cut at commas). LWS is allowed around
    /// the slashes, and folding anywhere LWS is.
    pub fn parse(s: &'a [u8]) -> Result<Via<'a>, &'static str> {
        Self::parse_each(s, |_, _| {})
    }

    /// [`Via::parse`], handing every parameter to `f` as it is checked.
    pub(crate) fn parse_each(
        s: &'a [u8],
        f: impl FnMut(&'a [u8], Option<&'a [u8]>),
    ) -> Result<Via<'a>, &'static str> {
        let mut i = skip_lws(s, 0);
        if s.len() >= i + 8
            && s[i..i + 4].eq_ignore_ascii_case(b"SIP/")
            && &s[i + 4..i + 8] == b"2.0/"
        {
            // The usual `SIP/2.0/`: what the checks below accept.
            i = skip_lws(s, i + 8);
        } else {
            let (name, j) = token(s, i);
            if !name.eq_ignore_ascii_case(b"SIP") {
                return Err("Via protocol is not SIP");
            }
            i = expect_slash(s, j)?;
            let (version, j) = token(s, i);
            if version != b"2.0" {
                return Err("Via with a SIP version other than 2.0");
            }
            i = expect_slash(s, j)?;
        }
        let (transport_raw, j) = token(s, i);
        if transport_raw.is_empty() {
            return Err("Via without transport");
        }
        i = skip_lws(s, j);
        if i == j {
            return Err("Via without space before sent-by");
        }
        // sent-by: host [":" port]
        let host_start = i;
        if s.get(i) == Some(&b'[') {
            i = find_byte(s, i, b']').ok_or("unterminated IPv6 reference in Via")? + 1;
        } else {
            while i < s.len() && HOST[s[i] as usize] {
                i += 1;
            }
        }
        let host = &s[host_start..i];
        if host.is_empty() {
            return Err("Via without host");
        }
        let mut port = None;
        let k = skip_lws(s, i);
        if s.get(k) == Some(&b':') {
            let p_start = skip_lws(s, k + 1);
            let mut p_end = p_start;
            while p_end < s.len() && s[p_end].is_ascii_digit() {
                p_end += 1;
            }
            port = Some(parse_u64(&s[p_start..p_end], 65535).ok_or("bad port in Via")? as u16);
            i = p_end;
        }
        let params = Params::new(&s[i..]);
        params.validate_each(f)?;
        Ok(Via {
            transport_raw,
            host,
            port,
            params,
        })
    }

    /// The transport, when it is one cairn knows.
    pub fn transport(&self) -> Option<Transport> {
        Transport::from_token(self.transport_raw)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch starts with the RFC 3261 magic cookie and has
    /// something after it (RFC 4475 3.2.1: a bare cookie is not compliant).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    pub fn received(&self) -> Option<&'a [u8]> {
        self.params.get("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: `;rport` without a value (the client
    /// asks for it, RFC 3581); `Some(Some(port))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        match self.params.get("rport")? {
            None => Some(None),
            Some(v) => parse_u64(v, 65535).map(|p| Some(p as u16)),
        }
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.get("maddr").flatten()
    }

    pub fn ttl(&self) -> Option<u8> {
        self.params
            .get("ttl")
            .flatten()
            .and_then(|v| parse_u64(v, 255))
            .map(|v| v as u8)
    }
}

fn token(s: &[u8], mut i: usize) -> (&[u8], usize) {
    let start = i;
    while i < s.len() && is_token(s[i]) {
        i += 1;
    }
    (&s[start..i], i)
}

fn expect_slash(s: &[u8], i: usize) -> Result<usize, &'static str> {
    let i = skip_lws(s, i);
    if s.get(i) != Some(&b'/') {
        return Err("malformed Via protocol");
    }
    Ok(skip_lws(s, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple() {
        let v = Via::parse(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport;received=10.0.0.1")
            .unwrap();
        assert_eq!(v.transport(), Some(Transport::Udp));
        assert_eq!(v.host, b"192.0.2.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776"[..]));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"10.0.0.1"[..]));
    }

    #[test]
    fn tortuous_whitespace() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(b"SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239")
            .unwrap();
        assert_eq!(v.branch(), Some(&b"z9hG4bK30239"[..]));
        let v = Via::parse(b"SIP/2.0/TCP [2001:db8::9]:5061;ttl=16;maddr=224.2.0.1").unwrap();
        assert_eq!(v.host, b"[2001:db8::9]");
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.maddr(), Some(&b"224.2.0.1"[..]));
        assert_eq!(
            Via::parse(b"SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKa")
                .unwrap()
                .transport(),
            None
        );
    }

    #[test]
    fn bad_vias() {
        for bad in [
            &b"SIP/2.0/UDP 192.0.2.15;;"[..],
            b"SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP :5060",
            b"SIP/2.0 UDP host",
            b"HTTP/2.0/UDP host",
            b"SIP/2.0/UDP host:70000",
        ] {
            assert!(Via::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
