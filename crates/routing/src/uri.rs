//! Destination URIs: `sip:IP[:PORT][;transport=T][;lr]` and `sips:...`.
//! Only numeric hosts for now: resolving names (RFC 3263) needs an asynchronous lookup.

use std::net::{IpAddr, SocketAddr};

use cairn_sip::Transport;

use crate::host::Host;

/// A parsed destination URI, before the transport is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DestinationUri {
    pub ip: IpAddr,
    pub port: Option<u16>,
    /// The `transport` URI parameter.
    pub transport: Option<Transport>,
    /// `sips:` scheme.
    pub secure: bool,
}

impl DestinationUri {
    /// Settle transport and port. `explicit` is the destination's `transport` key, which wins
    /// over the URI parameter. The error is for the `transport` key when `explicit` is set.
    pub fn resolve(&self, explicit: Option<Transport>) -> Result<(SocketAddr, Transport), String> {
        let transport = explicit.or(self.transport).unwrap_or(if self.secure {
            Transport::Tls
        } else {
            Transport::Udp
        });
        if self.secure && !matches!(transport, Transport::Tls | Transport::Wss) {
            return Err(format!(
                "transport {transport} cannot carry a sips: URI (use tls or wss)"
            ));
        }
        let port = self.port.unwrap_or_else(|| transport.default_port());
        Ok((SocketAddr::new(self.ip, port), transport))
    }
}

pub(crate) fn parse_destination_uri(text: &str) -> Result<DestinationUri, String> {
    if text
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "\"{text}\" contains whitespace or control characters"
        ));
    }
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("\"{text}\" is not a SIP URI: expected sip:IP[:PORT]"))?;
    let secure = if scheme.eq_ignore_ascii_case("sip") {
        false
    } else if scheme.eq_ignore_ascii_case("sips") {
        true
    } else {
        return Err(format!(
            "\"{text}\": scheme \"{scheme}\" is not supported (expected sip: or sips:)"
        ));
    };
    if rest.contains('?') {
        return Err(format!(
            "\"{text}\": URI headers ('?') are not allowed in a destination"
        ));
    }
    let (hostport, params) = match rest.split_once(';') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    if hostport.contains('@') {
        return Err(format!(
            "\"{text}\": a user part is not allowed in a destination URI (the destination is where the request is sent; the Request-URI is kept)"
        ));
    }
    let (host, port) = Host::parse_with_port(hostport)?;
    let ip = match host {
        Host::Ip(ip) => ip,
        Host::Name(name) => {
            return Err(format!(
                "DNS names are not supported yet: \"{name}\" must be a numeric IP address (e.g. sip:192.0.2.10:5060)"
            ))
        }
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("\"{text}\": {ip} is not a unicast address"));
    }
    let mut transport = None;
    for param in params.into_iter().flat_map(|p| p.split(';')) {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (param, None),
        };
        if name.eq_ignore_ascii_case("transport") {
            let value = value.unwrap_or("");
            transport = Some(Transport::from_token(value.as_bytes()).ok_or_else(|| {
                format!(
                    "\"{text}\": unknown transport \"{value}\" (expected udp, tcp, tls, ws or wss)"
                )
            })?);
        } else if name.eq_ignore_ascii_case("lr") && value.is_none() {
            // Loose routing flag: harmless on a next hop.
        } else {
            return Err(format!(
                "\"{text}\": URI parameter \"{param}\" is not supported (only transport and lr)"
            ));
        }
    }
    Ok(DestinationUri {
        ip,
        port,
        transport,
        secure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> (SocketAddr, Transport) {
        parse_destination_uri(text).unwrap().resolve(None).unwrap()
    }

    #[test]
    fn parses_destinations() {
        assert_eq!(
            resolve("sip:127.0.0.1:5071"),
            ("127.0.0.1:5071".parse().unwrap(), Transport::Udp)
        );
        assert_eq!(
            resolve("sip:10.0.0.1;transport=TCP"),
            ("10.0.0.1:5060".parse().unwrap(), Transport::Tcp)
        );
        assert_eq!(
            resolve("sips:10.0.0.1"),
            ("10.0.0.1:5061".parse().unwrap(), Transport::Tls)
        );
        assert_eq!(
            resolve("SIP:[2001:db8::1]:5080;lr"),
            ("[2001:db8::1]:5080".parse().unwrap(), Transport::Udp)
        );
        let u = parse_destination_uri("sip:10.0.0.1;transport=udp").unwrap();
        assert_eq!(u.resolve(Some(Transport::Tcp)).unwrap().1, Transport::Tcp);
    }

    #[test]
    fn refuses_bad_destinations() {
        let cases = [
            ("sip:gw.example.com", "DNS names are not supported yet"),
            ("sip:gw.example.com:5060", "DNS names are not supported yet"),
            ("tel:+123", "scheme"),
            ("127.0.0.1:5060", "scheme"),
            ("sip:alice@10.0.0.1", "user part"),
            ("sip:10.0.0.1:0", "port 0"),
            ("sip:10.0.0.1:70000", "port number"),
            ("sip:10.0.0.1;transport=sctp", "unknown transport \"sctp\""),
            ("sip:10.0.0.1;maddr=1.2.3.4", "not supported"),
            ("sip:0.0.0.0", "unicast"),
            ("sip:10.0.0.1?x=y", "headers"),
            ("sip: 10.0.0.1", "whitespace"),
            ("sip:[::1", "missing ']'"),
        ];
        for (text, want) in cases {
            let err = parse_destination_uri(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let sips = parse_destination_uri("sips:10.0.0.1").unwrap();
        assert!(sips
            .resolve(Some(Transport::Udp))
            .unwrap_err()
            .contains("sips"));
    }
}
