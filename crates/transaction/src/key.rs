//! Transaction matching keys (RFC 3261 17.1.3, 17.2.3).

use cairn_sip::{Message, Method};

/// The key of a server transaction. With an RFC 3261 branch: the branch,
/// the top Via sent-by and the method (ACK matches its INVITE; CANCEL has
/// transactions of its own). Without one (RFC 2543 peers): Request-URI,
/// From tag, Call-ID, CSeq number, the top Via and the method.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerKey(Box<[u8]>);

impl ServerKey {
    /// The key of the transaction `msg` belongs to.
    pub fn of(msg: &Message) -> ServerKey {
        let method: &[u8] = match msg.method() {
            Method::Invite | Method::Ack => b"INVITE",
            _ => msg.method_bytes(),
        };
        Self::build(msg, method)
    }

    /// The key of the INVITE transaction a CANCEL refers to (9.2).
    pub fn cancelled_invite(cancel: &Message) -> ServerKey {
        Self::build(cancel, b"INVITE")
    }

    fn build(msg: &Message, method: &[u8]) -> ServerKey {
        let via = msg.top_via();
        let mut k = Vec::with_capacity(96);
        if via.has_rfc3261_branch() {
            k.push(b'3');
            k.extend_from_slice(via.branch().unwrap_or_default());
            k.push(0);
            push_lower(&mut k, via.host);
            k.push(b':');
            if let Some(p) = via.port {
                k.extend_from_slice(p.to_string().as_bytes());
            }
        } else {
            k.push(b'2');
            k.extend_from_slice(msg.request_uri_bytes());
            k.push(0);
            k.extend_from_slice(msg.from_tag().unwrap_or_default());
            k.push(0);
            k.extend_from_slice(msg.call_id());
            k.push(0);
            k.extend_from_slice(msg.cseq().number.to_string().as_bytes());
            k.push(0);
            k.extend_from_slice(msg.slice(msg.top_via_span()));
        }
        k.push(0);
        k.extend_from_slice(method);
        ServerKey(k.into_boxed_slice())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Rebuild a key from its bytes (as stored).
    pub fn from_bytes(b: &[u8]) -> ServerKey {
        ServerKey(b.into())
    }
}

fn push_lower(k: &mut Vec<u8>, s: &[u8]) {
    k.extend(s.iter().map(u8::to_ascii_lowercase));
}

/// The key of a client transaction: the branch cairn generated and the
/// CSeq method (a CANCEL shares its INVITE's branch, 17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(Box<[u8]>);

impl ClientKey {
    pub fn new(branch: &[u8], method: &[u8]) -> ClientKey {
        let mut k = Vec::with_capacity(branch.len() + method.len() + 1);
        k.extend_from_slice(branch);
        k.push(0);
        k.extend_from_slice(method);
        ClientKey(k.into_boxed_slice())
    }

    /// The key a response matches (its top Via branch and CSeq method).
    pub fn of_response(resp: &Message) -> Option<ClientKey> {
        Some(Self::new(resp.branch()?, resp.method_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn req(method: &str, via: &str) -> Message {
        msg(&format!(
            "{method} sip:b@example.com SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@example.com>;tag=f\r\nTo: <sip:b@example.com>\r\nCall-ID: c1\r\nCSeq: 7 {method}\r\nMax-Forwards: 70\r\n\r\n"
        ))
    }

    #[test]
    fn ack_and_cancel_match_their_invite() {
        let via = "SIP/2.0/UDP Host.Example.com:5060;branch=z9hG4bK-1";
        let invite = ServerKey::of(&req("INVITE", via));
        assert_eq!(
            ServerKey::of(&req(
                "ACK",
                "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bK-1"
            )),
            invite
        );
        let cancel = req("CANCEL", via);
        assert_ne!(
            ServerKey::of(&cancel),
            invite,
            "a CANCEL is its own transaction"
        );
        assert_eq!(ServerKey::cancelled_invite(&cancel), invite);
        assert_ne!(
            ServerKey::of(&req(
                "INVITE",
                "SIP/2.0/UDP host.example.com:5061;branch=z9hG4bK-1"
            )),
            invite
        );
        assert_ne!(
            ServerKey::of(&req(
                "INVITE",
                "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bK-2"
            )),
            invite
        );
    }

    #[test]
    fn rfc2543_fallback() {
        let a = ServerKey::of(&req("INVITE", "SIP/2.0/UDP h"));
        let b = ServerKey::of(&req("INVITE", "SIP/2.0/UDP h"));
        assert_eq!(a, b);
        assert_eq!(a.as_bytes()[0], b'2');
        assert_eq!(
            ServerKey::of(&req("INVITE", "SIP/2.0/UDP h;branch=z9hG4bK")).as_bytes()[0],
            b'2'
        );
    }

    #[test]
    fn client_keys_split_cancel_from_invite() {
        assert_ne!(
            ClientKey::new(b"z9hG4bKx", b"INVITE"),
            ClientKey::new(b"z9hG4bKx", b"CANCEL")
        );
        let r = msg("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 CANCEL\r\n\r\n");
        assert_eq!(
            ClientKey::of_response(&r),
            Some(ClientKey::new(b"z9hG4bKx", b"CANCEL"))
        );
    }
}
