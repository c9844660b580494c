//! The transport protocols a SIP message can travel over.

use std::fmt;
use std::str::FromStr;

/// A SIP transport protocol, as named in a Via header or a `transport=` URI parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The lower-case name used in URIs and configuration (`transport=tcp`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Whether the transport is reliable (stream based): no retransmissions are needed.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The default port when a URI or Via names none.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls | Transport::Wss => 5061,
            _ => 5060,
        }
    }

    /// Parse a transport token, case-insensitively.
    pub fn from_token(token: &[u8]) -> Option<Transport> {
        const TABLE: [(&[u8], Transport); 5] = [
            (b"udp", Transport::Udp),
            (b"tcp", Transport::Tcp),
            (b"tls", Transport::Tls),
            (b"ws", Transport::Ws),
            (b"wss", Transport::Wss),
        ];
        TABLE
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
            .map(|&(_, t)| t)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transport::from_token(s.as_bytes())
            .ok_or_else(|| format!("unknown transport '{s}' (expected udp, tcp, tls, ws or wss)"))
    }
}
