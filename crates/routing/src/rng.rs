//! Lock-free randomness and a stable hash, without dependencies.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 over an atomic counter: `Sync`, lock-free, and deterministic from a seed
/// when used from one thread (tests). Plenty for load balancing; not for cryptography.
#[derive(Debug)]
pub(crate) struct Rng {
    state: AtomicU64,
}

impl Rng {
    pub fn from_entropy() -> Rng {
        Rng::seeded(RandomState::new().build_hasher().finish())
    }

    pub fn seeded(seed: u64) -> Rng {
        Rng {
            state: AtomicU64::new(seed),
        }
    }

    pub fn reseed(&self, seed: u64) {
        self.state.store(seed, Ordering::Relaxed);
    }

    pub fn next_u64(&self) -> u64 {
        mix(self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN))
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of the Call-ID that is the same on every run, build and machine (FNV-1a, then a
/// SplitMix finaliser so that every bit counts), so that every cairn instance in a cluster,
/// and a restarted one, picks the same start destination for a call.
/// Changing this function remaps calls: treat it as part of the on-the-wire behaviour.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic() {
        let a = Rng::seeded(7);
        let b = Rng::seeded(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        a.reseed(7);
        assert_eq!(a.next_u64(), xs[0]);
        for _ in 0..1000 {
            assert!(a.below(3) < 3);
        }
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Pinned values: a change here remaps every hash_call_id deployment.
        assert_eq!(
            stable_hash(b"a84b4c76e66710@pc33.atlanta.com"),
            16_597_377_723_371_017_737
        );
        assert_ne!(stable_hash(b"abc"), stable_hash(b"abd"));
    }
}
