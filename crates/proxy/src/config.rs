//! What the proxy core needs to know about itself.

use std::net::{IpAddr, SocketAddr};

use cairn_sip::Transport;
use cairn_transaction::{Millis, Timers};

use crate::reason::ReasonConfig;

/// What cairn does with a CANCEL that matches no INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnmatchedCancel {
    /// Answer 481 (the default): with every INVITE's branches on record, a
    /// CANCEL that matches none has nothing of cairn's to cancel, and
    /// routing it by the rules (round robin, lookups) would reach an
    /// arbitrary gateway.
    #[default]
    Reply481,
    /// Forward it statelessly by the rules (RFC 3261 16.10).
    Forward,
}

/// CANCEL handling.
#[derive(Debug, Clone)]
pub struct CancelConfig {
    pub unmatched: UnmatchedCancel,
    /// How many unmatched CANCELs are remembered, so that an INVITE that
    /// arrives after its CANCEL is answered 487 and never forwarded.
    pub unmatched_memory: usize,
    /// How long one is remembered.
    pub unmatched_window: Millis,
    pub reasons: ReasonConfig,
}

impl Default for CancelConfig {
    fn default() -> Self {
        CancelConfig {
            unmatched: UnmatchedCancel::Reply481,
            unmatched_memory: 10_000,
            unmatched_window: 32_000,
            reasons: ReasonConfig::default(),
        }
    }
}

/// One address cairn listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// The proxy core's settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The addresses cairn listens on (as bound: no port 0).
    pub listeners: Vec<LocalAddr>,
    /// The host to write in Via and Record-Route instead of the listener's
    /// IP (for a wildcard listener or a public address).
    pub advertise: Option<String>,
    /// Other host or host:port strings that mean "this proxy" in a Route
    /// or Request-URI.
    pub aliases: Vec<String>,
    /// Insert Record-Route on dialog-creating requests.
    pub record_route: bool,
    pub timers: Timers,
    /// Timer C: how long an INVITE branch may stay without a final
    /// response after its last provisional (RFC 3261 16.6 item 11).
    pub timer_c: Millis,
    /// Largest message accepted.
    pub max_message_size: usize,
    pub cancel: CancelConfig,
    /// Emit records of proxied INVITEs and dialogs (durability on).
    pub persist: bool,
    /// Track dialogs (early, confirmed; ended by BYE or timeout).
    pub dialogs: bool,
    /// How long a confirmed dialog lives without a BYE.
    pub dialog_timeout: Millis,
    /// This node's id in a cluster, written into every branch id (0: a
    /// single node; its branches carry no id).
    pub node: u16,
    /// The other nodes of the cluster and their SIP addresses (UDP): a
    /// response for another node's branch, and a CANCEL or ACK whose INVITE
    /// another node holds, are relayed there. Empty: no cluster.
    pub peers: Vec<(u16, SocketAddr)>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            listeners: vec![],
            advertise: None,
            aliases: vec![],
            record_route: true,
            timers: Timers::default(),
            timer_c: 180_000,
            max_message_size: 65535,
            cancel: CancelConfig::default(),
            persist: false,
            dialogs: false,
            dialog_timeout: 12 * 3600 * 1000,
            node: 0,
            peers: vec![],
        }
    }
}

impl CoreConfig {
    /// The listener to send from for a destination: same transport and
    /// address family, else the first of the transport.
    pub fn local_for(&self, transport: Transport, dest: SocketAddr) -> Option<LocalAddr> {
        self.listeners
            .iter()
            .find(|l| l.transport == transport && l.addr.is_ipv4() == dest.is_ipv4())
            .or_else(|| self.listeners.iter().find(|l| l.transport == transport))
            .copied()
    }

    /// The host:port text for a listener, as written in Via and
    /// Record-Route.
    pub fn hostport(&self, l: &LocalAddr) -> String {
        match &self.advertise {
            Some(h) => format!("{}:{}", h, l.addr.port()),
            None => match l.addr.ip() {
                IpAddr::V4(ip) => format!("{}:{}", ip, l.addr.port()),
                IpAddr::V6(ip) => format!("[{}]:{}", ip, l.addr.port()),
            },
        }
    }

    /// The SIP address of another node of the cluster, unless it is one of
    /// this node's own (a node whose address this one took over).
    pub fn peer_addr(&self, node: u16) -> Option<SocketAddr> {
        if node == self.node {
            return None;
        }
        let (_, addr) = self.peers.iter().find(|(n, _)| *n == node)?;
        let own = self.listeners.iter().any(|l| l.addr == *addr);
        (!own).then_some(*addr)
    }

    /// Whether a message came from another node of the cluster (a relay).
    pub fn is_peer(&self, addr: SocketAddr) -> bool {
        self.peers.iter().any(|(_, a)| *a == addr)
    }

    /// Whether a node of the cluster may hold what this node has not.
    pub fn clustered(&self) -> bool {
        self.peers.iter().any(|(n, _)| *n != self.node)
    }

    /// Whether a URI host and port name this proxy.
    pub fn is_local(&self, host: &[u8], port: Option<u16>) -> bool {
        let host = cairn_sip::uri::strip_brackets(host);
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let port_ok = |p: u16| port.unwrap_or(5060) == p || (port.is_none() && p == 5061);
        let ip: Option<IpAddr> = host.parse().ok();
        for l in &self.listeners {
            if !port_ok(l.addr.port()) {
                continue;
            }
            if ip == Some(l.addr.ip()) {
                return true;
            }
            if let Some(a) = &self.advertise {
                if a.eq_ignore_ascii_case(host) {
                    return true;
                }
            }
        }
        self.aliases.iter().any(|a| match a.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || a.starts_with('[') => {
                let h = h.trim_start_matches('[').trim_end_matches(']');
                h.eq_ignore_ascii_case(host) && p.parse::<u16>().ok() == Some(port.unwrap_or(5060))
            }
            _ => a
                .trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses() {
        let cfg = CoreConfig {
            listeners: vec![
                LocalAddr {
                    transport: Transport::Udp,
                    addr: "127.0.0.1:5060".parse().unwrap(),
                },
                LocalAddr {
                    transport: Transport::Tcp,
                    addr: "[::1]:5070".parse().unwrap(),
                },
            ],
            aliases: vec!["proxy.example.com".into(), "edge.example.com:5080".into()],
            ..Default::default()
        };
        assert!(cfg.is_local(b"127.0.0.1", None));
        assert!(cfg.is_local(b"127.0.0.1", Some(5060)));
        assert!(!cfg.is_local(b"127.0.0.1", Some(5071)));
        assert!(cfg.is_local(b"[::1]", Some(5070)));
        assert!(!cfg.is_local(b"[::1]", None));
        assert!(cfg.is_local(b"PROXY.example.com", Some(9999)));
        assert!(cfg.is_local(b"edge.example.com", Some(5080)));
        assert!(!cfg.is_local(b"edge.example.com", None));
        assert!(!cfg.is_local(b"10.0.0.1", None));
        let udp = cfg
            .local_for(Transport::Udp, "127.0.0.9:5071".parse().unwrap())
            .unwrap();
        assert_eq!(cfg.hostport(&udp), "127.0.0.1:5060");
        let tcp = cfg
            .local_for(Transport::Tcp, "[::1]:5071".parse().unwrap())
            .unwrap();
        assert_eq!(cfg.hostport(&tcp), "[::1]:5070");
    }
}
