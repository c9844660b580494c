//! [`MemoryStore`]: the store of [`Durability::Off`] and of tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::{validate, CommitInfo, Durability, Op, Record, Space, Store, StoreError, StoreStats};

/// Records of one space: key -> (payload, expires_at_ms).
type SpaceMap = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// Keeps records in memory only (per space, ordered by key). Nothing is
/// written anywhere; everything is gone when the process ends. Same
/// semantics as the durable backends otherwise (validation, expiry on load),
/// so the driver code is the same at every level.
#[derive(Debug, Default)]
pub struct MemoryStore {
    spaces: [SpaceMap; 2],
    stats: StoreStats,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore {
            spaces: Default::default(),
            stats: StoreStats {
                backend: "memory",
                durability: Durability::Off,
                available: true,
                ..StoreStats::default()
            },
        }
    }
}

impl Store for MemoryStore {
    fn commit(&mut self, batch: &[Op]) -> Result<CommitInfo, StoreError> {
        let start = Instant::now();
        if let Err(e) = validate(batch, Path::new("(memory)")) {
            self.stats.commit_errors += 1;
            return Err(e);
        }
        let mut bytes = 0u64;
        for op in batch {
            match op {
                Op::Put {
                    space,
                    key,
                    value,
                    expires_at_ms,
                } => {
                    bytes += (key.len() + value.len()) as u64;
                    self.spaces[space.index()].insert(key.clone(), (value.clone(), *expires_at_ms));
                }
                Op::Delete { space, key } => {
                    bytes += key.len() as u64;
                    self.spaces[space.index()].remove(key.as_slice());
                }
            }
        }
        let duration = start.elapsed();
        if !batch.is_empty() {
            self.stats.commits += 1;
            self.stats.last_commit = duration;
        }
        Ok(CommitInfo {
            ops: batch.len(),
            bytes,
            duration,
            synced: false,
        })
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn load(&mut self, space: Space, now_ms: u64) -> Result<Vec<Record>, StoreError> {
        let map = &mut self.spaces[space.index()];
        let before = map.len();
        map.retain(|_, (_, exp)| *exp >= now_ms);
        self.stats.expired_purged += (before - map.len()) as u64;
        Ok(map
            .iter()
            .map(|(k, (v, exp))| Record {
                key: k.clone(),
                value: v.clone(),
                expires_at_ms: *exp,
            })
            .collect())
    }

    fn stats(&self) -> StoreStats {
        let mut s = self.stats.clone();
        for space in Space::ALL {
            s.records_per_space[space.index()] = self.spaces[space.index()].len() as u64;
        }
        s
    }

    fn durability(&self) -> Durability {
        Durability::Off
    }
}
