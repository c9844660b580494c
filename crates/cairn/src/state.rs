//! The state store as the driver uses it: records the core asks for are
//! staged and group-committed. When a turn of the event loop has an urgent
//! record (a branch or a CANCEL about to go out), everything staged is
//! committed before any message of that turn is sent, so no INVITE leaves
//! before its branch is on record. Other records (a 1xx, a final, a
//! dialog, an end) wait up to `state_delay_ms` to ride along with the next
//! urgent commit, or are committed by themselves when that time is up. At
//! start the records are read back before any socket is read.

use std::time::{Duration, Instant};

use cairn_proxy::{Millis, Proxy, Space};
use cairn_store::{Durability, Op, Store, StoreConfig};
use tracing::{error, info, warn};

use crate::admin::DriverMetrics;

/// The store plus the batch of the current loop turn.
pub struct StateStore {
    store: Box<dyn Store>,
    batch: Vec<Op>,
    durability: Durability,
    /// Whether the last commit failed (logged once per outage).
    failing: bool,
    cfg: StoreConfig,
    dirty_since_sync: bool,
    /// The staged batch has an urgent record.
    urgent: bool,
    /// When the oldest staged record that is not urgent was staged.
    waiting_since: Option<Instant>,
    delay: Duration,
}

/// A batch this large is committed without waiting for the delay.
const MAX_STAGED: usize = 1024;

fn space(s: Space) -> cairn_store::Space {
    match s {
        Space::Transactions => cairn_store::Space::Transactions,
        Space::Dialogs => cairn_store::Space::Dialogs,
    }
}

impl StateStore {
    /// Open the store (moving a corrupt one aside, as documented in
    /// docs/store.md). The error says what and where.
    pub fn open(cfg: &StoreConfig, state_delay_ms: u64) -> Result<StateStore, String> {
        let opened = cairn_store::open_or_move_aside(cfg).map_err(|e| format!("store: {e}"))?;
        if let Some((aside, why)) = &opened.moved_aside {
            error!(moved_to = %aside.display(), error = %why, "the state store was unreadable: started empty");
        }
        Ok(StateStore {
            store: opened.store,
            batch: Vec::with_capacity(64),
            durability: cfg.durability,
            failing: false,
            cfg: cfg.clone(),
            dirty_since_sync: false,
            urgent: false,
            waiting_since: None,
            delay: Duration::from_millis(state_delay_ms),
        })
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
        let (txns, dialogs) = match self.load_all(now) {
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
    /// for it.
    pub fn put(
        &mut self,
        s: Space,
        key: [u8; 8],
        value: Vec<u8>,
        expires_at: Millis,
        urgent: bool,
    ) {
        self.note_staged(urgent);
        self.batch
            .push(Op::put(space(s), key.to_vec(), value, expires_at));
    }

    /// Stage a record removal.
    pub fn forget(&mut self, s: Space, key: [u8; 8]) {
        self.note_staged(false);
        self.batch.push(Op::delete(space(s), key.to_vec()));
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

    /// When the staged records must be committed even if no urgent one
    /// comes.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|t| t + self.delay)
    }

    /// Commit what is staged if a message waits for it, its delay is up,
    /// or the batch is large.
    pub fn commit_if_due(&mut self, m: &mut DriverMetrics) {
        let due = self.urgent
            || self.batch.len() >= MAX_STAGED
            || self.deadline().is_some_and(|d| d <= Instant::now());
        if due {
            self.commit(m);
        }
    }

    /// Commit everything staged (one write; at the strict level one
    /// fsync). A failure is logged and counted, and proxying goes on: the
    /// calls of this batch then have no durable record.
    pub fn commit(&mut self, m: &mut DriverMetrics) {
        self.urgent = false;
        self.waiting_since = None;
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
                if !self.failing {
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
