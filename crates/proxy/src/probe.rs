//! OPTIONS probes of destinations (health checks): the request cairn sends
//! as a UAC of its own, and the branch by which the core recognises the
//! answer.
//!
//! A probe's branch is `z9hG4bKcnp<run:8 hex>.<token hex>`: the `p` after
//! cairn's branch prefix is no hex digit, so it never looks like the branch
//! of a proxied request ([`crate::branch::make`]). `run` tells this run of
//! cairn from an earlier one (whose late answers are ignored), `token` is
//! the probe's token in the health tracker. A response whose only Via
//! carries such a branch is handed to the driver as
//! [`Output::ProbeResponse`](crate::Output::ProbeResponse) and never
//! forwarded.

use std::fmt::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use cairn_sip::Transport;

use crate::config::CoreConfig;

/// What the branch of every probe starts with.
pub const PREFIX: &str = "z9hG4bKcnp";

/// The branch of probe `token` of run `run`.
pub fn make_branch(run: u32, token: u64) -> String {
    let mut s = String::with_capacity(PREFIX.len() + 26);
    s.push_str(PREFIX);
    let _ = write!(s, "{run:08x}.{token:x}");
    s
}

/// The (run, token) of a probe's branch; `None` for any other branch.
pub fn parse_branch(b: &[u8]) -> Option<(u32, u64)> {
    let rest = b.strip_prefix(PREFIX.as_bytes())?;
    if rest.len() < 10 || rest[8] != b'.' || rest.len() > 8 + 1 + 16 {
        return None;
    }
    let text = std::str::from_utf8(rest).ok()?;
    let run = u32::from_str_radix(&text[..8], 16).ok()?;
    let token = u64::from_str_radix(&text[9..], 16).ok()?;
    Some((run, token))
}

/// A probe to send: where, and what it is called in the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    /// The OPTIONS Request-URI and To (the destination's configured URI).
    pub uri: &'a str,
    pub addr: SocketAddr,
    pub transport: Transport,
    pub run: u32,
    pub token: u64,
}

/// The OPTIONS request of a probe (RFC 3261 section 11 and 8.1.1): its own
/// Via with a probe branch naming the listener it leaves from (or the
/// advertised host), Max-Forwards 70, From with a tag, To, Call-ID and
/// CSeq unique per probe. `None` when cairn has no listener of the
/// target's transport, or the URI cannot be written in a header.
pub fn options(cfg: &CoreConfig, t: &ProbeTarget<'_>) -> Option<Bytes> {
    if t.uri.bytes().any(|c| c.is_ascii_control() || c == b' ') {
        return None;
    }
    let local = cfg.local_for(t.transport, t.addr)?;
    let hostport = cfg.hostport(&local);
    let id = format!("{:08x}.{:x}", t.run, t.token);
    let mut m = String::with_capacity(400 + 2 * t.uri.len());
    let _ = write!(
        m,
        "OPTIONS {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{tp} {hostport};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:cairn@{hostport}>;tag=cnp{id}\r\n\
         To: <{uri}>\r\n\
         Call-ID: cnp{id}@{hostport}\r\n\
         CSeq: {cseq} OPTIONS\r\n\
         Accept: application/sdp\r\n\
         User-Agent: cairn\r\n\
         Content-Length: 0\r\n\r\n",
        uri = t.uri,
        tp = t.transport.via_token(),
        branch = make_branch(t.run, t.token),
        cseq = t.token % (1 << 31),
    );
    Some(Bytes::from(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LocalAddr;
    use cairn_sip::Message;

    #[test]
    fn branch_round_trip_and_never_a_proxy_branch() {
        let b = make_branch(0x0102_0304, 0xabc);
        assert_eq!(b, "z9hG4bKcnp01020304.abc");
        assert_eq!(parse_branch(b.as_bytes()), Some((0x0102_0304, 0xabc)));
        assert_eq!(
            parse_branch(make_branch(u32::MAX, u64::MAX).as_bytes()),
            Some((u32::MAX, u64::MAX))
        );
        use crate::branch;
        assert!(branch::is_ours(b.as_bytes()), "a branch of cairn's");
        assert_eq!(branch::parse(b.as_bytes()), None);
        for node in [0, 7] {
            let proxied = branch::make(node, 1, 2, 0);
            assert_eq!(parse_branch(proxied.as_bytes()), None);
        }
        for bad in [
            "z9hG4bKcnp",
            "z9hG4bKcnp01020304",
            "z9hG4bKcnp01020304.",
            "z9hG4bKcnp0102030x.1",
            "z9hG4bKcnp01020304-1",
            "z9hG4bKcnp01020304.10000000000000000",
            "z9hG4bKother",
        ] {
            assert_eq!(parse_branch(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn options_request() {
        let cfg = CoreConfig {
            listeners: vec![
                LocalAddr {
                    transport: Transport::Udp,
                    addr: "127.0.0.1:5060".parse().unwrap(),
                },
                LocalAddr {
                    transport: Transport::Tcp,
                    addr: "127.0.0.1:5062".parse().unwrap(),
                },
            ],
            ..CoreConfig::default()
        };
        let t = ProbeTarget {
            uri: "sip:10.0.0.1:5070;transport=tcp",
            addr: "10.0.0.1:5070".parse().unwrap(),
            transport: Transport::Tcp,
            run: 7,
            token: 42,
        };
        let bytes = options(&cfg, &t).unwrap();
        let m = Message::parse(bytes).unwrap();
        assert!(m.is_request());
        assert_eq!(m.request_uri_bytes(), b"sip:10.0.0.1:5070;transport=tcp");
        let via = m.top_via();
        assert_eq!(via.branch(), Some(&b"z9hG4bKcnp00000007.2a"[..]));
        assert_eq!(via.transport(), Some(Transport::Tcp));
        assert_eq!((via.host, via.port), (&b"127.0.0.1"[..], Some(5062)));
        assert_eq!(m.vias().count(), 1);
        assert_eq!(m.cseq().number, 42);
        assert!(m.from_tag().is_some());
        assert!(!m.call_id().is_empty());
        assert_eq!(m.to_tag(), None);
        // A second probe differs in branch, tag and Call-ID.
        let other = options(&cfg, &ProbeTarget { token: 43, ..t }).unwrap();
        let o = Message::parse(other).unwrap();
        assert_ne!(o.call_id(), m.call_id());
        assert_ne!(o.from_tag(), m.from_tag());
        // No listener of the transport, or a URI that would break the header: nothing.
        let udp_only = CoreConfig {
            listeners: cfg.listeners[..1].to_vec(),
            ..CoreConfig::default()
        };
        assert_eq!(options(&udp_only, &t), None);
        assert_eq!(
            options(
                &cfg,
                &ProbeTarget {
                    uri: "sip:a\r\nX: y",
                    ..t
                }
            ),
            None
        );
        // The advertised host goes in Via and From.
        let adv = CoreConfig {
            advertise: Some("sip.example.com".into()),
            ..cfg.clone()
        };
        let m = Message::parse(options(&adv, &t).unwrap()).unwrap();
        assert_eq!(m.top_via().host, b"sip.example.com");
    }
}
