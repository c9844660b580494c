//! The state store as the driver uses it: records the core asks for are
//! staged and group-committed. When a turn of the event loop has an urgent
//! record (a branch or a CANCEL about to go out), everything staged is
//! committed before any message of that turn is sent, so no INVITE leaves
//! before its branch is on record. Urgent commits are at least
//! `commit_interval_ms` apart: under load the INVITEs of the next few ms
//! wait (their messages held by the driver) and share one commit; after a
//! quiet moment an INVITE is committed at once. Other records (a 1xx, a final, a
//! dialog, an end) wait up to `state_delay_ms` to ride along with the next
//! urgent commit, or are committed by themselves when that time is up.
//! While staged, records of one key are folded together: a newer value
//! replaces an older one, and a record removed before it was ever
//! committed (a fresh key) is not written at all, so a short-lived state
//! (a 180 and the 200 right after it, then the end of the transaction)
//! costs the store nothing. At start the records are read back before any
//! socket is read.

use std::time::{Duration, Instant};

use cairn_proxy::{Millis, Proxy, Space};
use cairn_store::{Durability, Op, OwnerFinder, RedisConfig, RedisStore, Store, StoreConfig};
use tracing::{error, info, warn};

use crate::admin::DriverMetrics;

/// The store plus the batch of the current loop turn.
pub struct StateStore {
    store: Box<dyn Store>,
    batch: Vec<Op>,
    /// Where each staged key is in `batch`, to fold later records of the
    /// same key into it.
    staged_keys: rustc_hash::FxHashMap<(cairn_store::Space, [u8; 8]), Staged>,
    /// Records folded away since the last commit (for the metrics).
    folded: u64,
    durability: Durability,
    /// Whether the last commit failed (logged once per outage).
    failing: bool,
    cfg: StoreConfig,
    dirty_since_sync: bool,
    /// Redis: owner lookups for CANCELs and ACKs of other nodes.
    finder: Option<OwnerFinder>,
    /// The staged batch has an urgent record.
    urgent: bool,
    /// When the oldest staged record that is not urgent was staged.
    waiting_since: Option<Instant>,
    timing: Grouping,
    /// When the last commit was made.
    last_commit: Option<Instant>,
}

/// How long staged records may wait for others.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grouping {
    /// A record that no message waits for (`state_delay_ms`).
    pub state_delay: Duration,
    /// The least time between two commits that messages wait for
    /// (`commit_interval_ms`).
    pub commit_interval: Duration,
}

impl Grouping {
    /// From the `[store]` settings.
    pub fn of(s: &crate::config::StoreSettings) -> Grouping {
        Grouping {
            state_delay: Duration::from_millis(s.state_delay_ms),
            commit_interval: Duration::from_millis(s.commit_interval_ms),
        }
    }
}

/// A batch this large is committed without waiting for the delay.
const MAX_STAGED: usize = 1024;

/// A key staged in the current batch.
#[derive(Clone, Copy)]
struct Staged {
    /// Its entry in the batch.
    index: usize,
    /// The store holds no value of this key: its first staged record is a
    /// put the core marked fresh. A removal then needs no write.
    fresh: bool,
}

/// The key of a staged op (always one of the core's 8-byte keys).
fn staged_key(key: &[u8]) -> [u8; 8] {
    key.try_into().unwrap_or_default()
}

fn space(s: Space) -> cairn_store::Space {
    match s {
        Space::Transactions => cairn_store::Space::Transactions,
        Space::Dialogs => cairn_store::Space::Dialogs,
    }
}

impl StateStore {
    /// Open the store (moving a corrupt one aside, as documented in
    /// docs/store.md). The error says what and where.
    pub fn open(cfg: &StoreConfig, timing: Grouping) -> Result<StateStore, String> {
        let opened = cairn_store::open_or_move_aside(cfg).map_err(|e| format!("store: {e}"))?;
        if let Some((aside, why)) = &opened.moved_aside {
            error!(moved_to = %aside.display(), error = %why, "the state store was unreadable: started empty");
        }
        Ok(StateStore {
            store: opened.store,
            batch: Vec::with_capacity(64),
            staged_keys: rustc_hash::FxHashMap::default(),
            folded: 0,
            durability: cfg.durability,
            failing: false,
            cfg: cfg.clone(),
            dirty_since_sync: false,
            finder: None,
            urgent: false,
            waiting_since: None,
            timing,
            last_commit: None,
        })
    }

    /// Open the Redis store of a cluster node, and take over the records
    /// of the nodes in `adopt` (dead nodes whose address this node now
    /// serves): they become this node's, and [`StateStore::restore`] loads
    /// them with its own. Redis being unreachable is no error: the node
    /// starts with what it could load (nothing) and proxies; the store
    /// connects in the background (docs/cluster.md).
    pub fn open_redis(
        cfg: &RedisConfig,
        adopt: &[u16],
        now: Millis,
        timing: Grouping,
    ) -> Result<StateStore, String> {
        let mut store = RedisStore::open(cfg).map_err(|e| format!("store: {e}"))?;
        for &node in adopt {
            for space in cairn_store::Space::ALL {
                match store.adopt(node, space, now) {
                    Ok(r) => info!(
                        node,
                        space = %space,
                        records = r.len(),
                        "took over the records of a node whose address this node serves"
                    ),
                    Err(e) => {
                        error!(node, error = %e, "could not take over a node's records: its calls are lost")
                    }
                }
            }
        }
        let finder = Some(store.finder());
        Ok(StateStore {
            store: Box::new(store),
            batch: Vec::with_capacity(64),
            staged_keys: rustc_hash::FxHashMap::default(),
            folded: 0,
            durability: Durability::Buffered,
            failing: false,
            cfg: StoreConfig::new(""),
            dirty_since_sync: false,
            finder,
            urgent: false,
            waiting_since: None,
            timing,
            last_commit: None,
        })
    }

    /// Owner lookups (Redis only).
    pub fn finder(&self) -> Option<&OwnerFinder> {
        self.finder.as_ref()
    }

    /// True once after the store lost records (Redis down or restarted):
    /// the core must write every live record again.
    pub fn take_resync(&mut self) -> bool {
        self.store.take_resync()
    }

    /// The store's counters, into the driver's metrics.
    pub fn fill_metrics(&self, m: &mut DriverMetrics) {
        let st = self.store.stats();
        m.store_backend = st.backend;
        m.store_up = st.available;
        m.store_pending = st.pending_ops;
        m.store_dropped = st.dropped_ops + st.lost_deletes;
        m.store_write_errors = st.write_errors;
        m.store_resyncs = st.resyncs;
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    fn load_all(
        &mut self,
        now: Millis,
    ) -> Result<(Vec<cairn_store::Record>, Vec<cairn_store::Record>), cairn_store::StoreError> {
        let t = self.store.load(cairn_store::Space::Transactions, now)?;
        let d = self.store.load(cairn_store::Space::Dialogs, now)?;
        Ok((t, d))
    }

    /// Rebuild the core's transactions and dialogs from the store.
    pub fn restore(
        &mut self,
        proxy: &mut Proxy,
        now: Millis,
        m: &mut DriverMetrics,
    ) -> Result<(), String> {
        let start = Instant::now();
        let loaded = match self.load_all(now) {
            Err(e) if self.finder.is_some() => {
                // Redis: no reason to stop; what could not be read is lost.
                m.store_load_errors += 1;
                error!(error = %e, "the records of this node could not be loaded: starting without them");
                Ok((Vec::new(), Vec::new()))
            }
            other => other,
        };
        let (txns, dialogs) = match loaded {
            Ok(r) => r,
            Err(e) if e.kind() == cairn_store::StoreErrorKind::Corrupt => {
                // The way out documented in docs/store.md: move the damaged
                // store aside and start empty, saying so.
                let path = e.path().to_path_buf();
                let reopened = cairn_store::move_aside(&path).and_then(|aside| {
                    error!(moved_to = %aside.display(), error = %e, "the state store is corrupt: moved aside, starting empty");
                    cairn_store::open(&self.cfg)
                });
                self.store = reopened.map_err(|e| format!("store: {e}"))?;
                (Vec::new(), Vec::new())
            }
            Err(e) => return Err(format!("store: {e}")),
        };
        let t = proxy.restore(now, txns.iter().map(|r| r.value.as_slice()));
        let d = proxy.restore_dialogs(now, dialogs.iter().map(|r| r.value.as_slice()));
        m.restored_transactions = t.restored as u64;
        m.restored_dialogs = d.restored as u64;
        m.restore_skipped = (t.skipped + d.skipped) as u64;
        m.restore_seconds = start.elapsed().as_secs_f64();
        info!(
            transactions = t.restored,
            dialogs = d.restored,
            expired = t.expired + d.expired,
            skipped = t.skipped + d.skipped,
            ms = start.elapsed().as_millis() as u64,
            "state restored"
        );
        if t.skipped + d.skipped > 0 {
            warn!(
                records = t.skipped + d.skipped,
                "damaged or unknown records were skipped"
            );
        }
        Ok(())
    }

    /// Stage a record write; `urgent` when a message of this turn waits
    /// for it, `fresh` when no value of this key was ever staged before.
    /// A value of the same key still staged is replaced.
    pub fn put(
        &mut self,
        s: Space,
        key: [u8; 8],
        value: Vec<u8>,
        expires_at: Millis,
        urgent: bool,
        fresh: bool,
    ) {
        self.note_staged(urgent);
        let s = space(s);
        let op = Op::put(s, key.to_vec(), value, expires_at);
        match self.staged_keys.get(&(s, key)) {
            Some(st) => {
                self.batch[st.index] = op;
                self.folded += 1;
            }
            None => self.stage(s, key, op, fresh),
        }
    }

    /// Stage a record removal. A record of this key still staged is
    /// replaced by the removal, or, if the store never had the key, both
    /// are dropped.
    pub fn forget(&mut self, s: Space, key: [u8; 8]) {
        let s = space(s);
        match self.staged_keys.get(&(s, key)).copied() {
            Some(st) if st.fresh => {
                self.staged_keys.remove(&(s, key));
                // The batch's order does not matter (one key, one entry):
                // the last entry takes this one's place.
                self.batch.swap_remove(st.index);
                if let Some(moved) = self.batch.get(st.index) {
                    let moved_key = (moved.space(), staged_key(moved.key()));
                    if let Some(m) = self.staged_keys.get_mut(&moved_key) {
                        m.index = st.index;
                    }
                }
                self.folded += 2;
            }
            Some(st) => {
                self.batch[st.index] = Op::delete(s, key.to_vec());
                self.folded += 1;
            }
            None => {
                self.note_staged(false);
                self.stage(s, key, Op::delete(s, key.to_vec()), false);
            }
        }
    }

    fn stage(&mut self, s: cairn_store::Space, key: [u8; 8], op: Op, fresh: bool) {
        self.staged_keys.insert(
            (s, key),
            Staged {
                index: self.batch.len(),
                fresh,
            },
        );
        self.batch.push(op);
    }

    fn note_staged(&mut self, urgent: bool) {
        if urgent {
            self.urgent = true;
        } else if self.waiting_since.is_none() {
            self.waiting_since = Some(Instant::now());
        }
    }

    /// Records staged and not committed yet.
    pub fn staged(&self) -> usize {
        self.batch.len()
    }

    /// When the staged records must be committed: for urgent ones
    /// `commit_interval` after the last commit, for the others
    /// `state_delay` after the oldest was staged.
    pub fn deadline(&self) -> Option<Instant> {
        let urgent = self.urgent.then(|| match self.last_commit {
            Some(t) => t + self.timing.commit_interval,
            None => Instant::now(),
        });
        let grouped = self.waiting_since.map(|t| t + self.timing.state_delay);
        match (urgent, grouped) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Commit what is staged if its time is up or the batch is large.
    pub fn commit_if_due(&mut self, m: &mut DriverMetrics) {
        let due =
            self.batch.len() >= MAX_STAGED || self.deadline().is_some_and(|d| d <= Instant::now());
        if due {
            self.commit(m);
        }
    }

    /// Whether a staged record that messages wait for is not committed
    /// yet: the driver then holds its messages, and every later one.
    pub fn holds_messages(&self) -> bool {
        self.urgent
    }

    /// Commit everything staged (one write; at the strict level one
    /// fsync). A failure is logged and counted, and proxying goes on: the
    /// calls of this batch then have no durable record.
    pub fn commit(&mut self, m: &mut DriverMetrics) {
        self.urgent = false;
        self.waiting_since = None;
        self.last_commit = Some(Instant::now());
        self.staged_keys.clear();
        m.store_records_folded += std::mem::take(&mut self.folded);
        if self.batch.is_empty() {
            return;
        }
        match self.store.commit(&self.batch) {
            Ok(info) => {
                let secs = info.duration.as_secs_f64();
                m.store_commits += 1;
                m.store_records += info.ops as u64;
                m.store_commit_seconds_sum += secs;
                m.store_commit_seconds_max = m.store_commit_seconds_max.max(secs);
                self.dirty_since_sync = true;
                if self.failing {
                    info!("state store writable again");
                    self.failing = false;
                }
            }
            Err(e) => {
                m.store_commit_errors += 1;
                if e.kind() == cairn_store::StoreErrorKind::Timeout {
                    // Redis answered late: the batch is still written.
                    m.store_commit_timeouts += 1;
                } else if !self.failing {
                    error!(error = %e, records = self.batch.len(), "state store commit failed: calls go on without a durable record");
                    self.failing = true;
                }
            }
        }
        self.batch.clear();
    }

    /// Commit what is staged and sync (at shutdown). While running, the buffered
    /// level is synced by the store's own background thread every
    /// `sync_interval_ms`, off the event loop; the strict level syncs in
    /// every commit.
    pub fn close(&mut self, m: &mut DriverMetrics) {
        self.commit(m);
        if !self.dirty_since_sync || self.durability == Durability::Off {
            return;
        }
        self.dirty_since_sync = false;
        match self.store.sync() {
            Ok(()) => m.store_syncs += 1,
            Err(e) => warn!(error = %e, "state store sync failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state store on a real fjall database in a directory of its own.
    struct Fixture {
        dir: std::path::PathBuf,
        store: StateStore,
        m: DriverMetrics,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir =
                std::env::temp_dir().join(format!("cairn-state-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let timing = Grouping {
                state_delay: Duration::from_millis(10),
                commit_interval: Duration::from_millis(5),
            };
            let store = StateStore::open(&StoreConfig::new(&dir), timing).unwrap();
            Fixture {
                dir,
                store,
                m: DriverMetrics::default(),
            }
        }

        fn stored(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
            let far = cairn_store::unix_ms();
            let mut r: Vec<_> = self
                .store
                .store
                .load(cairn_store::Space::Transactions, far)
                .unwrap()
                .into_iter()
                .map(|r| (r.key, r.value))
                .collect();
            r.sort();
            r
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const T: Space = Space::Transactions;
    const K1: [u8; 8] = *b"key-0001";
    const K2: [u8; 8] = *b"key-0002";

    fn later() -> Millis {
        cairn_store::unix_ms() + 60_000
    }

    #[test]
    fn a_fresh_record_removed_before_its_commit_is_never_written() {
        let mut f = Fixture::new("fresh");
        f.store.put(T, K1, b"180".to_vec(), later(), false, true);
        f.store.put(T, K1, b"200".to_vec(), later(), false, false);
        f.store.forget(T, K1);
        assert_eq!(f.store.staged(), 0);
        f.store.commit(&mut f.m);
        assert_eq!(f.m.store_records, 0);
        assert_eq!(f.m.store_records_folded, 3);
        assert!(f.stored().is_empty());
        // The same key afterwards is a new record and is written.
        f.store.put(T, K1, b"again".to_vec(), later(), false, true);
        f.store.commit(&mut f.m);
        assert_eq!(f.stored(), vec![(K1.to_vec(), b"again".to_vec())]);
    }

    #[test]
    fn a_record_the_store_may_hold_is_removed_and_the_newest_value_wins() {
        let mut f = Fixture::new("known");
        f.store.put(T, K1, b"base".to_vec(), later(), true, true);
        f.store.put(T, K2, b"old".to_vec(), later(), true, true);
        f.store.commit(&mut f.m);
        assert_eq!(f.m.store_records, 2);
        // Written before: the removal must reach the store, and only the
        // newest of several values of a key is written.
        f.store
            .put(T, K1, b"state-1".to_vec(), later(), false, false);
        f.store.put(T, K2, b"new-1".to_vec(), later(), false, false);
        f.store.put(T, K2, b"new-2".to_vec(), later(), false, false);
        f.store.forget(T, K1);
        assert_eq!(f.store.staged(), 2);
        f.store.commit(&mut f.m);
        assert_eq!(f.m.store_records, 4);
        assert_eq!(f.m.store_records_folded, 2);
        assert_eq!(f.stored(), vec![(K2.to_vec(), b"new-2".to_vec())]);
    }

    #[test]
    fn a_record_staged_after_a_dropped_one_is_still_folded() {
        let mut f = Fixture::new("moved");
        f.store
            .put(T, K1, b"dropped".to_vec(), later(), false, true);
        f.store.put(T, K2, b"old".to_vec(), later(), false, true);
        f.store.forget(T, K1);
        f.store.put(T, K2, b"new".to_vec(), later(), false, false);
        assert_eq!(f.store.staged(), 1);
        f.store.commit(&mut f.m);
        assert_eq!(f.stored(), vec![(K2.to_vec(), b"new".to_vec())]);
    }

    #[test]
    fn urgent_commits_are_spaced_by_the_commit_interval() {
        let mut f = Fixture::new("interval");
        f.store.timing.commit_interval = Duration::from_millis(300);
        // After a quiet moment: committed at once.
        f.store
            .put(T, K1, b"branch 1".to_vec(), later(), true, true);
        assert!(f.store.holds_messages());
        f.store.commit_if_due(&mut f.m);
        assert!(!f.store.holds_messages());
        assert_eq!(f.m.store_commits, 1);
        // The next one waits for the interval, messages held meanwhile,
        // and shares its commit with what comes in that time.
        f.store
            .put(T, K2, b"branch 2".to_vec(), later(), true, true);
        f.store.commit_if_due(&mut f.m);
        assert!(f.store.holds_messages());
        assert_eq!(f.m.store_commits, 1);
        let deadline = f.store.deadline().expect("a deadline");
        assert!(deadline > Instant::now() + Duration::from_millis(100));
        f.store
            .put(T, *b"key-0003", b"branch 3".to_vec(), later(), true, true);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        f.store.commit_if_due(&mut f.m);
        assert!(!f.store.holds_messages());
        assert_eq!(f.m.store_commits, 2);
        assert_eq!(f.m.store_records, 3);
    }

    #[test]
    fn a_removal_then_a_new_value_keeps_the_new_value() {
        let mut f = Fixture::new("readd");
        f.store.put(T, K1, b"first".to_vec(), later(), true, true);
        f.store.commit(&mut f.m);
        f.store.forget(T, K1);
        f.store.put(T, K1, b"second".to_vec(), later(), false, true);
        // The store holds "first": a later removal in this batch must
        // still be written, whatever the core said of the new value.
        f.store.forget(T, K1);
        f.store.commit(&mut f.m);
        assert!(f.stored().is_empty());
        f.store.forget(T, K1);
        f.store.put(T, K1, b"third".to_vec(), later(), false, true);
        f.store.commit(&mut f.m);
        assert_eq!(f.stored(), vec![(K1.to_vec(), b"third".to_vec())]);
    }
}
