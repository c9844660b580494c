//! The header in front of every stored value.
//!
//! ```text
//! offset  size  field
//! 0       1     format version (RECORD_FORMAT_VERSION = 1)
//! 1       8     expires_at_ms, unix ms, big-endian
//! 9       4     CRC-32 (IEEE) of bytes 0..9 followed by the payload, big-endian
//! 13      n     payload (opaque to the store)
//! ```

/// Version byte written at offset 0 of every value.
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Size of the header in front of every value.
pub const HEADER_LEN: usize = 13;

/// Builds the header for `payload`.
pub(crate) fn header(payload: &[u8], expires_at_ms: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = RECORD_FORMAT_VERSION;
    h[1..9].copy_from_slice(&expires_at_ms.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..9]);
    crc.update(payload);
    h[9..13].copy_from_slice(&crc.finalize().to_be_bytes());
    h
}

/// Header plus payload in one buffer (used by the memory store and tests).
#[cfg(test)]
pub(crate) fn encode(payload: &[u8], expires_at_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&header(payload, expires_at_ms));
    v.extend_from_slice(payload);
    v
}

/// A stored value, read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// Valid and not expired.
    Live {
        payload: &'a [u8],
        expires_at_ms: u64,
    },
    /// Valid and `expires_at_ms < now_ms`.
    Expired,
    /// Failed the check; the reason is for the log.
    Corrupt(String),
}

/// Just the expiry of a valid value, without the checksum (for the
/// compaction filter, which must be cheap and must not drop what it cannot
/// vouch for): `None` if the header is not one this build writes.
pub(crate) fn peek_expiry(value: &[u8]) -> Option<u64> {
    if value.len() < HEADER_LEN || value[0] != RECORD_FORMAT_VERSION {
        return None;
    }
    let mut e = [0u8; 8];
    e.copy_from_slice(&value[1..9]);
    Some(u64::from_be_bytes(e))
}

/// Checks and splits a stored value.
pub(crate) fn decode(value: &[u8], now_ms: u64) -> Decoded<'_> {
    if value.len() < HEADER_LEN {
        return Decoded::Corrupt(format!(
            "value of {} bytes is shorter than the {HEADER_LEN}-byte header",
            value.len()
        ));
    }
    if value[0] != RECORD_FORMAT_VERSION {
        return Decoded::Corrupt(format!(
            "unknown record format version {} (this build writes {RECORD_FORMAT_VERSION})",
            value[0]
        ));
    }
    let (head, payload) = value.split_at(HEADER_LEN);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&head[9..13]);
    let stored = u32::from_be_bytes(stored);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[..9]);
    crc.update(payload);
    let computed = crc.finalize();
    if computed != stored {
        return Decoded::Corrupt(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x}, payload {} bytes)",
            payload.len()
        ));
    }
    let mut e = [0u8; 8];
    e.copy_from_slice(&head[1..9]);
    let expires_at_ms = u64::from_be_bytes(e);
    if expires_at_ms < now_ms {
        Decoded::Expired
    } else {
        Decoded::Live {
            payload,
            expires_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_expiry() {
        let v = encode(b"hello", 1_000);
        assert_eq!(v.len(), HEADER_LEN + 5);
        assert_eq!(
            decode(&v, 1_000),
            Decoded::Live {
                payload: b"hello",
                expires_at_ms: 1_000
            }
        );
        assert_eq!(decode(&v, 1_001), Decoded::Expired);
        assert_eq!(peek_expiry(&v), Some(1_000));
        let empty = encode(b"", 5);
        assert!(matches!(
            decode(&empty, 0),
            Decoded::Live { payload: b"", .. }
        ));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let v = encode(b"INVITE sip:bob@example.com SIP/2.0", 77);
        for byte in 0..v.len() {
            for bit in 0..8 {
                let mut c = v.clone();
                c[byte] ^= 1 << bit;
                assert!(
                    matches!(decode(&c, 0), Decoded::Corrupt(_)),
                    "flip of bit {bit} in byte {byte} not detected"
                );
            }
        }
    }

    #[test]
    fn short_and_unknown_version_are_corrupt() {
        assert!(matches!(decode(b"", 0), Decoded::Corrupt(_)));
        assert!(matches!(decode(&[1; 12], 0), Decoded::Corrupt(_)));
        let mut v = encode(b"x", 1);
        v[0] = 9;
        assert!(matches!(decode(&v, 0), Decoded::Corrupt(m) if m.contains("version 9")));
        assert_eq!(peek_expiry(&v), None);
    }
}
