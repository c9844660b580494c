//! Host names and addresses as they appear in configuration: `example.com`, `192.0.2.1`,
//! `[2001:db8::1]` (or bare `2001:db8::1`), optionally followed by `:port`.
//! Shared by the routing matchers and the binary's configuration (`proxy.aliases`, `proxy.advertise`).

use std::fmt;
use std::net::IpAddr;

/// A host: a DNS name (stored lower-case, without a trailing dot) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(Box<str>),
    Ip(IpAddr),
}

impl Host {
    /// Parse a host without a port. IPv6 may be bracketed or bare.
    pub fn parse(text: &str) -> Result<Host, String> {
        if text.is_empty() {
            return Err("empty host".into());
        }
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| format!("\"{text}\": missing ']' after an IPv6 address"))?;
            return inner
                .parse::<std::net::Ipv6Addr>()
                .map(|a| Host::Ip(IpAddr::V6(a)))
                .map_err(|_| format!("\"{text}\" is not a valid IPv6 address"));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if text.contains(':') {
            return Err(format!(
                "\"{text}\" is not a host: a port is not allowed here, and an IPv6 address must be valid"
            ));
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        if name.len() > 253 {
            return Err(format!("\"{text}\" is longer than 253 characters"));
        }
        let labels: Vec<&str> = name.split('.').collect();
        for label in &labels {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "\"{text}\" is not a valid host name or IP address (labels are letters, digits and '-', 1 to 63 characters)"
                ));
            }
        }
        if labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!("\"{text}\" is not a valid IPv4 address"));
        }
        Ok(Host::Name(name.to_ascii_lowercase().into_boxed_str()))
    }

    /// Parse `host` or `host:port` (`[v6]:port` for IPv6; a bare IPv6 address has no port).
    pub fn parse_with_port(text: &str) -> Result<(Host, Option<u16>), String> {
        let (host, port) = if text.starts_with('[') {
            match text.find(']') {
                Some(end) if end + 1 == text.len() => (text, None),
                Some(end) => match text[end + 1..].strip_prefix(':') {
                    Some(p) => (&text[..=end], Some(p)),
                    None => return Err(format!("\"{text}\": expected ':port' after ']'")),
                },
                None => return Err(format!("\"{text}\": missing ']' after an IPv6 address")),
            }
        } else if text.bytes().filter(|&b| b == b':').count() > 1 {
            (text, None) // bare IPv6
        } else {
            match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        let host = Host::parse(host)?;
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p).map_err(|e| format!("\"{text}\": {e}"))?),
        };
        Ok((host, port))
    }

    /// Whether `text`, a host as it appears in a SIP URI (`Example.COM`, `[2001:db8::1]`),
    /// is this host. Names compare case-insensitively, addresses as addresses.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Host::Name(name) => {
                let t = text.strip_suffix('.').unwrap_or(text);
                t.eq_ignore_ascii_case(name)
            }
            Host::Ip(ip) => {
                let t = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .unwrap_or(text);
                t.parse::<IpAddr>().is_ok_and(|a| a == *ip)
            }
        }
    }

    /// Whether this is a DNS name rather than an address.
    pub fn is_name(&self) -> bool {
        matches!(self, Host::Name(_))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// Parse a port number, 1 to 65535.
pub(crate) fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed".into()),
        Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("\"{p}\" is not a port number (1 to 65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts() {
        assert_eq!(
            Host::parse("Example.COM.").unwrap(),
            Host::Name("example.com".into())
        );
        assert_eq!(
            Host::parse("192.0.2.1").unwrap(),
            Host::Ip("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            Host::parse("[::1]").unwrap(),
            Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            Host::parse("::1").unwrap(),
            Host::Ip("::1".parse().unwrap())
        );
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a_b.com",
            "1.2.3",
            "300.1.1.1",
            "[::1",
            "h:5060",
            "a b",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn parses_host_port() {
        let (h, p) = Host::parse_with_port("sip.example.com:5080").unwrap();
        assert_eq!((h.to_string(), p), ("sip.example.com".into(), Some(5080)));
        let (h, p) = Host::parse_with_port("[2001:db8::1]:5061").unwrap();
        assert_eq!((h.to_string(), p), ("[2001:db8::1]".into(), Some(5061)));
        let (h, p) = Host::parse_with_port("2001:db8::1").unwrap();
        assert_eq!((h.to_string(), p), ("[2001:db8::1]".into(), None));
        assert!(Host::parse_with_port("a.com:0").is_err());
        assert!(Host::parse_with_port("a.com:99999").is_err());
        assert!(Host::parse_with_port("a.com:+5").is_err());
        assert!(Host::parse_with_port("[::1]x").is_err());
    }

    #[test]
    fn matching() {
        let n = Host::parse("example.com").unwrap();
        assert!(n.matches("EXAMPLE.com"));
        assert!(n.matches("example.com."));
        assert!(!n.matches("example.org"));
        let v6 = Host::parse("2001:db8::1").unwrap();
        assert!(v6.matches("[2001:DB8:0::1]"));
        assert!(!v6.matches("[2001:db8::2]"));
        let v4 = Host::parse("192.0.2.1").unwrap();
        assert!(v4.matches("192.0.2.1"));
        assert!(!v4.matches("192.0.2.10"));
    }
}
