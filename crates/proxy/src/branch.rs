//! Branch ids and local tags. They are derived from the incoming
//! request alone (its transaction key and the branch index) and the
//! node's configured id, never from a counter or a random number, so that
//! the ids on the wire can be computed again after a restart (the way
//! Kamailio makes its branches reboot-safe).
//!
//! In cluster mode the branch names the node that owns the transaction
//! (like OpenSIPS's anycast mode): a node that gets a response or an ACK
//! for another node's branch can tell whose it is. Node 0 (a single node,
//! the default) writes no node id: its branches are those of earlier
//! versions.

use std::fmt::Write;

use cairn_sip::{HeaderName, Message, MAGIC_COOKIE};

/// What every branch cairn generates starts with.
pub const PREFIX: &str = "z9hG4bKcn";

/// FNV-1a, 64 bits: stable across builds and restarts (std's hasher is
/// not promised to be).
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, b: &[u8]) -> &mut Self {
        for &c in b {
            self.0 ^= u64::from(c);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Field separator, so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        self
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The loop-detection hash of a request (RFC 3261 16.3 item 4, 16.6 item
/// 8): what must differ for a request that comes back to be a spiral and
/// not a loop.
pub fn loop_hash(req: &Message) -> u32 {
    let mut h = Fnv::default();
    h.write(req.request_uri_bytes())
        .write(req.from_tag().unwrap_or_default())
        .write(req.to_tag().unwrap_or_default())
        .write(req.call_id())
        .write(req.cseq().number.to_string().as_bytes());
    for r in req.headers_named(HeaderName::Route) {
        h.write(req.slice(r.value));
    }
    for r in req.headers_named(HeaderName::ProxyRequire) {
        h.write(req.slice(r.value));
    }
    (h.finish() >> 32) as u32 ^ h.finish() as u32
}

/// A 64-bit hash of a server transaction key.
pub fn key_hash(key: &[u8]) -> u64 {
    Fnv::default().write(key).finish()
}

/// The branch of the `index`th target of the transaction with this key
/// hash, made by node `node`:
/// `z9hG4bKcn<loop:8 hex><key:16 hex>.<index>` for node 0, and
/// `z9hG4bKcn<loop:8 hex><key:16 hex>.<index>.<node>` for the others.
pub fn make(node: u16, loop_hash: u32, key_hash: u64, index: u32) -> String {
    let mut s = String::with_capacity(PREFIX.len() + 32);
    s.push_str(PREFIX);
    let _ = write!(s, "{loop_hash:08x}{key_hash:016x}.{index}");
    if node != 0 {
        let _ = write!(s, ".{node}");
    }
    s
}

/// The parts of a branch cairn made: (loop hash, key hash, index).
pub fn parse(branch: &[u8]) -> Option<(u32, u64, u32)> {
    parse_full(branch).map(|(l, k, i, _)| (l, k, i))
}

/// The node that made a branch of cairn's (0 for a single node).
pub fn node_of(branch: &[u8]) -> Option<u16> {
    parse_full(branch).map(|(_, _, _, n)| n)
}

fn parse_full(branch: &[u8]) -> Option<(u32, u64, u32, u16)> {
    let rest = branch.strip_prefix(PREFIX.as_bytes())?;
    if rest.len() < 26 || rest[24] != b'.' {
        return None;
    }
    let hex = std::str::from_utf8(&rest[..24]).ok()?;
    let l = u32::from_str_radix(&hex[..8], 16).ok()?;
    let k = u64::from_str_radix(&hex[8..], 16).ok()?;
    let tail = std::str::from_utf8(&rest[25..]).ok()?;
    let (i, n) = match tail.split_once('.') {
        Some((i, n)) => (i.parse().ok()?, n.parse().ok().filter(|&n| n != 0)?),
        None => (tail.parse().ok()?, 0),
    };
    Some((l, k, i, n))
}

/// Whether a branch looks like one cairn generated.
pub fn is_ours(branch: &[u8]) -> bool {
    branch.starts_with(PREFIX.as_bytes()) && branch.starts_with(MAGIC_COOKIE)
}

/// The To tag cairn puts on responses it makes for a transaction.
pub fn local_tag(key_hash: u64) -> String {
    format!("cn{key_hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = make(0, 0xdead_beef, 0x0123_4567_89ab_cdef, 3);
        assert_eq!(b, "z9hG4bKcndeadbeef0123456789abcdef.3");
        assert_eq!(
            parse(b.as_bytes()),
            Some((0xdead_beef, 0x0123_4567_89ab_cdef, 3))
        );
        assert_eq!(node_of(b.as_bytes()), Some(0));
        assert!(is_ours(b.as_bytes()));
        assert_eq!(parse(b"z9hG4bKother"), None);
        assert_eq!(parse(b"z9hG4bKcnzz"), None);
    }

    #[test]
    fn node_ids() {
        let b = make(513, 0xdead_beef, 0x0123_4567_89ab_cdef, 12);
        assert_eq!(b, "z9hG4bKcndeadbeef0123456789abcdef.12.513");
        assert_eq!(
            parse(b.as_bytes()),
            Some((0xdead_beef, 0x0123_4567_89ab_cdef, 12))
        );
        assert_eq!(node_of(b.as_bytes()), Some(513));
        for bad in [".12.", ".12.0", ".12.70000", ".12.x", ".x.1", ".1.2.3"] {
            let b = format!("z9hG4bKcndeadbeef0123456789abcdef{bad}");
            assert_eq!(node_of(b.as_bytes()), None, "{b}");
        }
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: branches on the wire are recomputed after a restart, so
        // the hash must never change between builds.
        assert_eq!(key_hash(b"abc"), 18165309246051714780);
        assert_ne!(key_hash(b"ab\0c"), key_hash(b"abc"));
    }
}
