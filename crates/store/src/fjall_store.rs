//! [`FjallStore`]: the durable backend, on fjall 3 (an LSM-tree engine).
//!
//! Layout on disk (one fjall database in `StoreConfig::path`):
//! * keyspace `meta`: `format` = `cairn-store 2` (checked on open; a store
//!   of format 1 is converted when opened);
//! * keyspaces `transactions` and `dialogs`: key = an 8-byte big-endian
//!   sequence number followed by the record's key, value = 13-byte header
//!   (see `record.rs`) + payload. Leveled compaction (the default) with an
//!   expiry compaction filter.
//!
//! Why the sequence number: the records' own keys are hashes, so a new one
//! would land at a random place of the memtable (a skip list) and its
//! insert would walk through cold memory. A key gets the next number when
//! its first record is written and keeps it, so new records are appended
//! at the end, where the previous insert left the path warm. The store
//! keeps an index from key to number (built when a space is first loaded
//! or written), which also gives exact record counts, and skips the
//! removal of a key it does not hold.
//!
//! Write path: one fjall write batch per [`Store::commit`]; fjall appends it
//! to its journal and `write()`s it to the OS before returning (its
//! `PersistMode::Buffer`), which survives SIGKILL. Buffered: a background
//! thread fdatasyncs the active journal file every `sync_interval_ms` when
//! something was committed since the last sync, through its own descriptor
//! so that commits never wait behind it (see [`ActiveJournal`]). Strict: the
//! batch itself is committed with `PersistMode::SyncData` (one fdatasync per
//! batch).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::compaction::filter::{
    CompactionFilter, CompactionFilterResult, Context, Factory, ItemAccessor, Verdict,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};

use crate::disk::dir_disk_bytes;
use crate::error::{from_fjall, io_error};
use crate::record::{decode, header, peek_expiry, Decoded, HEADER_LEN};
use crate::{
    unix_ms, validate, CommitInfo, Durability, Op, Operation, Record, Space, Store, StoreConfig,
    StoreError, StoreErrorKind, StoreStats,
};

const META_KEYSPACE: &str = "meta";
const FORMAT_KEY: &[u8] = b"format";
/// Written in `meta/format`; a store with another value is refused, except
/// [`STORE_FORMAT_1`], which is converted.
pub(crate) const STORE_FORMAT: &[u8] = b"cairn-store 2";
/// The format before the sequence numbers: keys stored as given.
const STORE_FORMAT_1: &[u8] = b"cairn-store 1";
/// Bytes of the sequence number in front of each stored key.
const SEQ_LEN: usize = 8;
/// A broken engine (after a write or sync failure) is reopened at most this
/// often.
const REOPEN_BACKOFF: Duration = Duration::from_secs(1);
/// Disk use is measured at most this often.
const DISK_REFRESH: Duration = Duration::from_secs(1);
/// Journals kept before fjall flushes the oldest memtables (fjall's minimum
/// is 64 MiB, its default 512 MiB): bounds disk use and the journal replay
/// at restart.
const MAX_JOURNALING_BYTES: u64 = 64 * 1024 * 1024;
/// Memtable size per keyspace before it is flushed to a table.
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;
/// Files fjall creates before its `version` marker: a directory holding only
/// these is a store whose creation was interrupted.
const FJALL_CREATION_FILES: [&str; 3] = ["lock", "keyspaces", "0.jnl"];

/// The open fjall database and its keyspaces.
struct Engine {
    db: Database,
    spaces: [Keyspace; 2],
}

/// State shared with the background sync thread.
#[derive(Default)]
struct Shared {
    /// Incremented after every buffered commit.
    commit_seq: AtomicU64,
    /// `commit_seq` value covered by the last successful sync.
    synced_seq: AtomicU64,
    syncs: AtomicU64,
    sync_errors: AtomicU64,
    last_sync_ns: AtomicU64,
    last_sync_error: Mutex<Option<String>>,
    /// Set by the sync thread when it failed (it then stops).
    sync_failed: AtomicBool,
}

struct Syncer {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

struct Broken {
    since: Instant,
    last_attempt: Instant,
    cause: String,
}

/// The durable store (fjall 3). See the module documentation and
/// `docs/store.md`.
pub struct FjallStore {
    cfg: StoreConfig,
    engine: Option<Engine>,
    syncer: Option<Syncer>,
    broken: Option<Broken>,
    shared: Arc<Shared>,
    /// The keys held per space and their sequence numbers; `None` until
    /// the space was loaded or indexed.
    keys: [Option<KeyIndex>; 2],
    /// The sequence number of the next new key.
    next_seq: u64,
    stats: StoreStats,
    disk_checked: Option<Instant>,
}

impl FjallStore {
    /// Opens (or creates) the store in `cfg.path`. `Durability::Off` given
    /// here means: written to the OS, never synced.
    pub fn open(cfg: &StoreConfig) -> Result<FjallStore, StoreError> {
        let path = cfg.path.as_path();
        prepare_dir(path)?;
        let started = Instant::now();
        let engine = Engine::open(cfg)?;
        let mut store = FjallStore {
            cfg: cfg.clone(),
            engine: Some(engine),
            syncer: None,
            broken: None,
            shared: Arc::new(Shared::default()),
            keys: [None, None],
            next_seq: 1,
            stats: StoreStats {
                backend: "fjall",
                durability: cfg.durability,
                available: true,
                ..StoreStats::default()
            },
            disk_checked: None,
        };
        store.start_syncer();
        store.refresh_disk(true);
        tracing::info!(
            path = %path.display(),
            durability = %cfg.durability,
            disk_bytes = store.stats.disk_bytes,
            open_ms = started.elapsed().as_millis() as u64,
            "state store opened"
        );
        Ok(store)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Measures the directory's disk use now (instead of the value cached
    /// for up to a second) and returns it.
    pub fn measure_disk_bytes(&mut self) -> u64 {
        self.refresh_disk(true);
        self.stats.disk_bytes
    }

    fn start_syncer(&mut self) {
        if self.cfg.durability != Durability::Buffered {
            return;
        }
        let Some(engine) = &self.engine else { return };
        let db = engine.db.clone();
        let shared = Arc::clone(&self.shared);
        let interval = Duration::from_millis(self.cfg.sync_interval_ms.max(1));
        let path = self.cfg.path.clone();
        let (stop, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("cairn-store-sync".into())
            .spawn(move || run_syncer(db, shared, interval, rx, path));
        match spawned {
            Ok(handle) => self.syncer = Some(Syncer { stop, handle }),
            Err(e) => tracing::error!(
                error = %e,
                "state store: cannot start the sync thread; the store syncs only on sync() calls"
            ),
        }
    }

    fn stop_syncer(&mut self) {
        if let Some(s) = self.syncer.take() {
            let _ = s.stop.send(());
            let _ = s.handle.join();
        }
    }

    fn refresh_disk(&mut self, force: bool) {
        let due = match self.disk_checked {
            None => true,
            Some(t) => force || t.elapsed() >= DISK_REFRESH,
        };
        if !due {
            return;
        }
        self.disk_checked = Some(Instant::now());
        match dir_disk_bytes(&self.cfg.path) {
            Ok(b) => self.stats.disk_bytes = b,
            Err(e) => tracing::debug!(error = %e, "state store: cannot measure disk use"),
        }
    }

    /// Records that the engine refuses writes from now on.
    fn mark_broken(&mut self, err: &StoreError) {
        if self.broken.is_none() {
            tracing::error!(
                error = %err,
                "state store write failed; commits fail until the store is reopened (tried at most once a second)"
            );
            let now = Instant::now();
            self.broken = Some(Broken {
                since: now,
                last_attempt: now,
                cause: err.cause().to_string(),
            });
        }
    }

    /// Makes sure a working engine is there, reopening a broken one when the
    /// back-off allows.
    fn ensure_engine(&mut self, op: Operation) -> Result<(), StoreError> {
        let Some(broken) = &self.broken else {
            return Ok(());
        };
        let (since, cause) = (broken.since, broken.cause.clone());
        if broken.last_attempt.elapsed() < REOPEN_BACKOFF {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                op,
                &self.cfg.path,
                format!(
                    "store unavailable for {} ms after: {} (next reopen attempt within {} ms)",
                    broken.since.elapsed().as_millis(),
                    broken.cause,
                    REOPEN_BACKOFF
                        .saturating_sub(broken.last_attempt.elapsed())
                        .as_millis()
                ),
            ));
        }
        // Reopen: every handle on the old database must go first, so that
        // its lock file is released.
        self.stop_syncer();
        self.engine = None;
        match Engine::open(&self.cfg) {
            Ok(engine) => {
                let down = since.elapsed();
                self.engine = Some(engine);
                self.broken = None;
                self.stats.reopens += 1;
                if let Ok(mut last) = self.shared.last_sync_error.lock() {
                    *last = None;
                }
                self.shared.sync_failed.store(false, Ordering::Release);
                self.start_syncer();
                tracing::warn!(
                    path = %self.cfg.path.display(),
                    unavailable_ms = down.as_millis() as u64,
                    "state store reopened after a write failure; record counts may be approximate until the next restart"
                );
                Ok(())
            }
            Err(e) => {
                let cause = format!(
                    "store unavailable for {} ms after: {cause}; reopening failed: {}",
                    since.elapsed().as_millis(),
                    e.cause()
                );
                if let Some(b) = &mut self.broken {
                    b.last_attempt = Instant::now();
                }
                let kind = if e.kind() == StoreErrorKind::DiskFull {
                    StoreErrorKind::DiskFull
                } else {
                    StoreErrorKind::Unavailable
                };
                Err(StoreError::new(kind, op, &self.cfg.path, cause))
            }
        }
    }

    /// Builds the key index of a space that was never loaded (only if the
    /// driver commits before it loads; cairn loads first). A failure is the
    /// commit's: without the index a removal could miss its record.
    fn ensure_indexed(&mut self, space: Space) -> Result<(), StoreError> {
        if self.keys[space.index()].is_some() {
            return Ok(());
        }
        let mut index = KeyIndex::default();
        if let Some(engine) = &self.engine {
            for guard in engine.spaces[space.index()].iter() {
                let k = guard
                    .key()
                    .map_err(|e| from_fjall(&e, Operation::Commit, &self.cfg.path))?;
                // A stored key too short to hold a number is left to load,
                // which reports and removes it.
                if let Some((seq, key)) = split_stored(&k) {
                    index.insert(key.into(), seq);
                    self.next_seq = self.next_seq.max(seq + 1);
                }
            }
        }
        self.keys[space.index()] = Some(index);
        Ok(())
    }

    /// Turns a failure of the background sync into a broken engine (fjall
    /// itself does not know about it when the sync went through our own
    /// descriptor).
    fn check_background_sync(&mut self, op: Operation) -> Result<(), StoreError> {
        if self.broken.is_some() || !self.shared.sync_failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let cause = self
            .shared
            .last_sync_error
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_default();
        let err = StoreError::new(
            StoreErrorKind::Unavailable,
            op,
            &self.cfg.path,
            format!("the background sync failed: {cause}"),
        );
        self.mark_broken(&err);
        Err(err)
    }

    fn commit_inner(&mut self, batch: &[Op], start: Instant) -> Result<CommitInfo, StoreError> {
        validate(batch, &self.cfg.path)?;
        self.check_background_sync(Operation::Commit)?;
        self.ensure_engine(Operation::Commit)?;
        for space in Space::ALL {
            if batch.iter().any(|op| op.space() == space) {
                self.ensure_indexed(space)?;
            }
        }
        self.refresh_disk(false);
        let over_quota = match self.cfg.max_disk_bytes {
            Some(limit) => self.stats.disk_bytes >= limit,
            None => false,
        };
        let strict = self.cfg.durability == Durability::Strict;
        let Some(engine) = &self.engine else {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                Operation::Commit,
                &self.cfg.path,
                "store not open",
            ));
        };
        let mut wb = engine.db.batch();
        if strict {
            wb = wb.durability(Some(PersistMode::SyncData));
        }
        let mut bytes = 0u64;
        let mut refused = 0usize;
        // The index is updated as the batch is built; if the commit fails
        // it is dropped and rebuilt from the store at the next commit.
        for op in batch {
            let Some(index) = &mut self.keys[op.space().index()] else {
                continue; // indexed above
            };
            match op {
                Op::Put {
                    space,
                    key,
                    value,
                    expires_at_ms,
                } => {
                    if over_quota {
                        refused += 1;
                        continue;
                    }
                    let h = header(value, *expires_at_ms);
                    let len = HEADER_LEN + value.len();
                    let stored =
                        match Slice::from_reader(&mut h.as_slice().chain(value.as_slice()), len) {
                            Ok(v) => v,
                            Err(e) => {
                                self.keys = [None, None];
                                return Err(io_error(&e, Operation::Commit, &self.cfg.path));
                            }
                        };
                    let seq = match index.get(key.as_slice()) {
                        Some(&seq) => seq,
                        None => {
                            let seq = self.next_seq;
                            self.next_seq += 1;
                            index.insert(key.as_slice().into(), seq);
                            seq
                        }
                    };
                    wb.insert(&engine.spaces[space.index()], stored_key(seq, key), stored);
                    bytes += (SEQ_LEN + key.len() + len) as u64;
                }
                Op::Delete { space, key } => {
                    // A key the store does not hold needs no tombstone.
                    if let Some(seq) = index.remove(key.as_slice()) {
                        wb.remove(&engine.spaces[space.index()], stored_key(seq, key));
                        bytes += (SEQ_LEN + key.len()) as u64;
                    }
                }
            }
        }
        if let Err(e) = wb.commit() {
            self.keys = [None, None];
            let mut err = from_fjall(&e, Operation::Commit, &self.cfg.path);
            if err.kind() == StoreErrorKind::Unavailable {
                if let Some(sync_err) = self
                    .shared
                    .last_sync_error
                    .lock()
                    .ok()
                    .and_then(|g| g.clone())
                {
                    err = StoreError::new(
                        err.kind(),
                        Operation::Commit,
                        &self.cfg.path,
                        format!("{} (the background sync failed: {sync_err})", err.cause()),
                    );
                }
            }
            self.mark_broken(&err);
            return Err(err);
        }
        if !strict {
            self.shared.commit_seq.fetch_add(1, Ordering::Release);
        }
        if refused > 0 {
            return Err(StoreError::new(
                StoreErrorKind::QuotaExceeded,
                Operation::Commit,
                &self.cfg.path,
                format!(
                    "disk use {} bytes reached max_disk_bytes {}: {refused} put(s) refused, {} delete(s) applied",
                    self.stats.disk_bytes,
                    self.cfg.max_disk_bytes.unwrap_or_default(),
                    batch.len() - refused
                ),
            ));
        }
        Ok(CommitInfo {
            ops: batch.len(),
            bytes,
            duration: start.elapsed(),
            synced: strict,
        })
    }

    fn load_inner(&mut self, space: Space, now_ms: u64) -> Result<Vec<Record>, StoreError> {
        self.ensure_engine(Operation::Load)?;
        let path = self.cfg.path.clone();
        let Some(engine) = &self.engine else {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                Operation::Load,
                &path,
                "store not open",
            ));
        };
        let started = Instant::now();
        let ks = &engine.spaces[space.index()];
        let mut out = Vec::new();
        let mut dead: Vec<Slice> = Vec::new();
        let mut index = KeyIndex::default();
        let (mut expired, mut corrupt) = (0u64, 0u64);
        for guard in ks.iter() {
            let (stored, value) = guard
                .into_inner()
                .map_err(|e| from_fjall(&e, Operation::Load, &path))?;
            let Some((seq, key)) = split_stored(&stored) else {
                corrupt += 1;
                tracing::warn!(
                    path = %path.display(),
                    space = %space,
                    key = %String::from_utf8_lossy(&stored),
                    "state store: record under a key without its sequence number skipped and removed"
                );
                dead.push(stored);
                continue;
            };
            self.next_seq = self.next_seq.max(seq + 1);
            let key = key.to_vec();
            match decode(&value, now_ms) {
                Decoded::Live {
                    payload,
                    expires_at_ms,
                } => {
                    index.insert(key.as_slice().into(), seq);
                    out.push(Record {
                        key,
                        value: payload.to_vec(),
                        expires_at_ms,
                    });
                }
                Decoded::Expired => {
                    expired += 1;
                    dead.push(stored);
                }
                Decoded::Corrupt(reason) => {
                    corrupt += 1;
                    tracing::warn!(
                        path = %path.display(),
                        space = %space,
                        key = %String::from_utf8_lossy(&key[..key.len().min(80)]),
                        reason = %reason,
                        "state store: corrupt record skipped and removed"
                    );
                    dead.push(stored);
                }
            }
        }
        let mut purge_error = None;
        if !dead.is_empty() {
            let mut wb = engine.db.batch();
            if self.cfg.durability == Durability::Strict {
                wb = wb.durability(Some(PersistMode::SyncData));
            }
            for key in dead {
                wb.remove(ks, key);
            }
            match wb.commit() {
                Ok(()) => {
                    self.shared.commit_seq.fetch_add(1, Ordering::Release);
                }
                Err(e) => purge_error = Some(from_fjall(&e, Operation::Load, &path)),
            }
        }
        if let Some(err) = purge_error {
            // The live records are fine; the dead ones are skipped again
            // next time.
            tracing::warn!(error = %err, "state store: removing dead records failed");
            self.mark_broken(&err);
        }
        self.keys[space.index()] = Some(index);
        // Stored in write order; the trait promises key order.
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        self.stats.expired_purged += expired;
        self.stats.corrupt_skipped += corrupt;
        tracing::info!(
            space = %space,
            live = out.len(),
            expired,
            corrupt,
            load_ms = started.elapsed().as_millis() as u64,
            "state store: space loaded"
        );
        Ok(out)
    }
}

impl Store for FjallStore {
    fn commit(&mut self, batch: &[Op]) -> Result<CommitInfo, StoreError> {
        let start = Instant::now();
        if batch.is_empty() {
            return Ok(CommitInfo {
                duration: start.elapsed(),
                ..CommitInfo::default()
            });
        }
        let result = self.commit_inner(batch, start);
        match &result {
            Ok(info) => {
                self.stats.commits += 1;
                self.stats.last_commit = info.duration;
            }
            Err(_) => self.stats.commit_errors += 1,
        }
        result
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.check_background_sync(Operation::Sync)?;
        self.ensure_engine(Operation::Sync)?;
        let Some(engine) = &self.engine else {
            return Ok(());
        };
        let result = sync_if_dirty(&engine.db, &self.shared);
        self.refresh_disk(false);
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                self.shared.sync_errors.fetch_add(1, Ordering::Relaxed);
                let err = from_fjall(&e, Operation::Sync, &self.cfg.path);
                self.mark_broken(&err);
                Err(err)
            }
        }
    }

    fn load(&mut self, space: Space, now_ms: u64) -> Result<Vec<Record>, StoreError> {
        let r = self.load_inner(space, now_ms);
        self.refresh_disk(false);
        r
    }

    fn stats(&self) -> StoreStats {
        let mut s = self.stats.clone();
        for space in Space::ALL {
            s.records_per_space[space.index()] = self.keys[space.index()]
                .as_ref()
                .map_or(0, |k| k.len() as u64);
        }
        s.syncs = self.shared.syncs.load(Ordering::Relaxed);
        s.sync_errors = self.shared.sync_errors.load(Ordering::Relaxed);
        s.last_sync = Duration::from_nanos(self.shared.last_sync_ns.load(Ordering::Relaxed));
        s.available = self.engine.is_some() && self.broken.is_none();
        s
    }

    fn durability(&self) -> Durability {
        self.cfg.durability
    }
}

impl Drop for FjallStore {
    fn drop(&mut self) {
        self.stop_syncer();
        if self.broken.is_none() {
            if let Some(engine) = &self.engine {
                if let Err(e) = sync_if_dirty(&engine.db, &self.shared) {
                    tracing::warn!(error = ?e, "state store: final sync failed");
                }
            }
        }
        self.engine = None;
    }
}

/// fdatasync of the journal if anything was committed since the last sync.
/// Returns whether it synced.
fn sync_if_dirty(db: &Database, shared: &Shared) -> fjall::Result<bool> {
    let seq = shared.commit_seq.load(Ordering::Acquire);
    if seq == shared.synced_seq.load(Ordering::Acquire) {
        return Ok(false);
    }
    let t = Instant::now();
    db.persist(PersistMode::SyncData)?;
    shared.synced_seq.fetch_max(seq, Ordering::AcqRel);
    shared.syncs.fetch_add(1, Ordering::Relaxed);
    shared
        .last_sync_ns
        .store(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(true)
}

/// The journal file fjall appends to, followed across rotations, so that the
/// background sync can fdatasync it through its own descriptor: fjall's own
/// `persist` holds the journal lock during the fdatasync, which would make
/// every commit issued meanwhile wait for the disk (measured: p99 of a
/// buffered commit 3-12 ms instead of 0.04-0.5 ms). fdatasync through any
/// descriptor of the file covers every byte written to it, and fjall
/// `write()`s each batch to the OS before `commit` returns.
///
/// Relies on fjall 3.1's layout (pinned exactly): journals are
/// `<root>/<n>.jnl`, the active one has the highest `n`, rotation creates
/// `n + 1` after an fsync of `n`. If no journal is found, the sync falls back
/// to fjall's `persist`.
struct ActiveJournal {
    dir: PathBuf,
    id: Option<u64>,
    file: Option<std::fs::File>,
}

impl ActiveJournal {
    fn new(dir: PathBuf) -> ActiveJournal {
        ActiveJournal {
            dir,
            id: None,
            file: None,
        }
    }

    fn newest_id(&self) -> std::io::Result<Option<u64>> {
        let mut newest = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".jnl"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            newest = newest.max(Some(id));
        }
        Ok(newest)
    }

    /// Id of the active journal, noticing rotations (one stat per call).
    fn current(&mut self) -> std::io::Result<Option<u64>> {
        if let Some(id) = self.id {
            if !self.dir.join(format!("{}.jnl", id + 1)).exists() {
                return Ok(Some(id));
            }
        }
        let newest = self.newest_id()?;
        if newest != self.id {
            self.id = newest;
            self.file = None;
        }
        Ok(newest)
    }

    /// fdatasync of the active journal. `Ok(Some(true))`: everything
    /// written before the call is on disk; `Ok(Some(false))`: a rotation
    /// happened meanwhile, try again; `Ok(None)`: no journal found.
    fn sync(&mut self) -> std::io::Result<Option<bool>> {
        let Some(id) = self.current()? else {
            return Ok(None);
        };
        if self.file.is_none() {
            self.file = Some(std::fs::File::open(self.dir.join(format!("{id}.jnl")))?);
        }
        if let Some(f) = &self.file {
            f.sync_data()?;
        }
        Ok(Some(self.current()? == Some(id)))
    }
}

fn run_syncer(
    db: Database,
    shared: Arc<Shared>,
    interval: Duration,
    stop: mpsc::Receiver<()>,
    path: PathBuf,
) {
    let mut journal = ActiveJournal::new(path.clone());
    loop {
        match stop.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let seq = shared.commit_seq.load(Ordering::Acquire);
        if seq == shared.synced_seq.load(Ordering::Acquire) {
            continue;
        }
        let t = Instant::now();
        let result = match journal.sync() {
            Ok(Some(covered)) => Ok(covered),
            Ok(None) => db
                .persist(PersistMode::SyncData)
                .map(|()| true)
                .map_err(|e| from_fjall(&e, Operation::Sync, &path)),
            Err(e) => Err(io_error(&e, Operation::Sync, &path)),
        };
        match result {
            Ok(true) => {
                shared.synced_seq.fetch_max(seq, Ordering::AcqRel);
                shared.syncs.fetch_add(1, Ordering::Relaxed);
                shared
                    .last_sync_ns
                    .store(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            // Rotated meanwhile: the old journal was fsynced by the
            // rotation; the new one is synced on the next tick.
            Ok(false) => {}
            Err(err) => {
                // What was written may not be on disk: the next commit
                // reports it and reopens the engine, with a new thread.
                shared.sync_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %err, "state store: background sync failed");
                if let Ok(mut last) = shared.last_sync_error.lock() {
                    *last = Some(err.cause().to_string());
                }
                shared.sync_failed.store(true, Ordering::Release);
                return;
            }
        }
    }
}

impl Engine {
    fn open(cfg: &StoreConfig) -> Result<Engine, StoreError> {
        let path = cfg.path.as_path();
        let memtable_bytes = cfg.memtable_bytes.unwrap_or(MEMTABLE_BYTES);
        let err = |e: fjall::Error| from_fjall(&e, Operation::Open, path);
        let db = Database::builder(path)
            .max_journaling_size(MAX_JOURNALING_BYTES)
            .with_compaction_filter_factories(Arc::new(|keyspace: &str| {
                if Space::ALL.iter().any(|s| s.name() == keyspace) {
                    Some(Arc::new(ExpiryFilterFactory) as Arc<dyn Factory>)
                } else {
                    None
                }
            }))
            .open()
            .map_err(err)?;

        let unopenable = |cause: String| {
            StoreError::new(StoreErrorKind::Unopenable, Operation::Open, path, cause)
        };
        let foreign: Vec<String> = db
            .list_keyspace_names()
            .iter()
            .map(|n| n.to_string())
            .filter(|n| n != META_KEYSPACE && !Space::ALL.iter().any(|s| s.name() == n))
            .collect();
        if !foreign.is_empty() {
            return Err(unopenable(format!(
                "not a cairn store: it holds the keyspaces {foreign:?}"
            )));
        }
        let had_meta = db.keyspace_exists(META_KEYSPACE);
        if !had_meta && Space::ALL.iter().any(|s| db.keyspace_exists(s.name())) {
            return Err(unopenable(
                "not a cairn store: fjall keyspaces without cairn's `meta` keyspace".to_string(),
            ));
        }
        let meta = db
            .keyspace(META_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(err)?;
        let convert = match meta.get(FORMAT_KEY).map_err(err)? {
            Some(v) if &*v == STORE_FORMAT => false,
            Some(v) if &*v == STORE_FORMAT_1 => true,
            Some(v) => {
                return Err(unopenable(format!(
                    "store format {:?}, this build reads {:?}",
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(STORE_FORMAT)
                )))
            }
            None => {
                meta.insert(FORMAT_KEY, STORE_FORMAT).map_err(err)?;
                db.persist(PersistMode::SyncAll).map_err(err)?;
                false
            }
        };
        let space = |s: Space| {
            db.keyspace(s.name(), || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes)
            })
            .map_err(err)
        };
        let spaces = [space(Space::Transactions)?, space(Space::Dialogs)?];
        if convert {
            // Format 1 kept keys as given: give every record a sequence
            // number, in one atomic batch with the new marker (a crash
            // leaves the store all in format 1 or all in format 2).
            let mut wb = db.batch();
            let mut seq = 1u64;
            let mut records = 0u64;
            for ks in &spaces {
                for guard in ks.iter() {
                    let (key, value) = guard.into_inner().map_err(err)?;
                    wb.insert(ks, stored_key(seq, &key), value);
                    wb.remove(ks, key);
                    seq += 1;
                    records += 1;
                }
            }
            wb.insert(&meta, FORMAT_KEY, STORE_FORMAT);
            wb.commit().map_err(err)?;
            db.persist(PersistMode::SyncAll).map_err(err)?;
            tracing::info!(
                path = %path.display(),
                records,
                "state store converted from format 1 to format 2 (keys with sequence numbers)"
            );
        }
        Ok(Engine { db, spaces })
    }
}

/// The keys a space holds and their sequence numbers.
type KeyIndex = rustc_hash::FxHashMap<Box<[u8]>, u64>;

/// The key a record is stored under: its sequence number, then its key.
fn stored_key(seq: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(SEQ_LEN + key.len());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The sequence number and the key of a stored key; `None` when it is too
/// short to hold both.
fn split_stored(stored: &[u8]) -> Option<(u64, &[u8])> {
    if stored.len() <= SEQ_LEN {
        return None;
    }
    let (seq, key) = stored.split_at(SEQ_LEN);
    Some((u64::from_be_bytes(seq.try_into().ok()?), key))
}

/// Checks the directory before fjall touches it: refuses a regular file and a
/// non-empty directory that holds no fjall database (fjall would otherwise
/// create one among foreign files), creates a missing directory, and cleans
/// up a creation that was interrupted before fjall wrote its `version`
/// marker.
fn prepare_dir(path: &Path) -> Result<(), StoreError> {
    let unopenable =
        |cause: String| StoreError::new(StoreErrorKind::Unopenable, Operation::Open, path, cause);
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(unopenable(
            "the path exists but is not a directory".to_string(),
        )),
        Ok(_) => {
            if path.join("version").exists() {
                return Ok(());
            }
            let mut names = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| io_error(&e, Operation::Open, path))? {
                let entry = entry.map_err(|e| io_error(&e, Operation::Open, path))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            if names.is_empty() {
                return Ok(());
            }
            if names
                .iter()
                .all(|n| FJALL_CREATION_FILES.contains(&n.as_str()))
            {
                tracing::warn!(
                    path = %path.display(),
                    files = ?names,
                    "state store: creation was interrupted before; starting it again"
                );
                for n in &names {
                    let p = path.join(n);
                    let r = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    r.map_err(|e| io_error(&e, Operation::Open, &p))?;
                }
                return Ok(());
            }
            names.sort();
            names.truncate(8);
            Err(unopenable(format!(
                "the directory is not empty and holds no store (no `version` file); it has: {}",
                names.join(", ")
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).map_err(|e| io_error(&e, Operation::Open, path))
        }
        Err(e) => Err(io_error(&e, Operation::Open, path)),
    }
}

/// Creates an [`ExpiryFilter`] for each compaction of the record keyspaces.
struct ExpiryFilterFactory;

impl Factory for ExpiryFilterFactory {
    fn name(&self) -> &str {
        "cairn-expiry"
    }

    fn make_filter(&self, _ctx: &Context) -> Box<dyn CompactionFilter> {
        Box::new(ExpiryFilter {
            now_ms: unix_ms(),
            removed: 0,
        })
    }
}

/// Drops records whose `expires_at_ms` has passed, during compaction. It
/// replaces them by a tombstone (`Verdict::Remove`, not `Destroy`: an older
/// version of the key in a lower level must not come back). Values whose
/// header it does not recognise are kept: `load` decides about those.
struct ExpiryFilter {
    now_ms: u64,
    removed: u64,
}

impl CompactionFilter for ExpiryFilter {
    fn filter_item(&mut self, item: ItemAccessor<'_>, _ctx: &Context) -> CompactionFilterResult {
        let value = item.value()?;
        match peek_expiry(&value) {
            Some(exp) if exp < self.now_ms => {
                self.removed += 1;
                Ok(Verdict::Remove)
            }
            _ => Ok(Verdict::Keep),
        }
    }

    fn finish(self: Box<Self>) {
        if self.removed > 0 {
            tracing::debug!(
                removed = self.removed,
                "state store: expired records dropped by compaction"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compaction filter removes expired records from the engine by
    /// itself, without a load.
    #[test]
    fn compaction_drops_expired_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FjallStore::open(&StoreConfig::new(dir.path().join("s"))).unwrap();
        let now = unix_ms();
        let mut batch = Vec::new();
        for i in 0..200u32 {
            let exp = if i % 2 == 0 { now - 1 } else { crate::NEVER };
            batch.push(Op::put(
                Space::Dialogs,
                format!("k{i:04}"),
                vec![b'v'; 100],
                exp,
            ));
        }
        store.commit(&batch).unwrap();
        let engine = store.engine.as_ref().unwrap();
        let ks = &engine.spaces[Space::Dialogs.index()];
        ks.rotate_memtable_and_wait().unwrap();
        ks.major_compact().unwrap();
        // Stored in the order written: sequence numbers 1, 2, ...
        for i in 0..200u32 {
            let key = stored_key(u64::from(i) + 1, format!("k{i:04}").as_bytes());
            let present = ks.get(key).unwrap().is_some();
            assert_eq!(present, i % 2 == 1, "k{i:04}");
        }
        assert_eq!(store.load(Space::Dialogs, now).unwrap().len(), 100);
        assert_eq!(store.stats().expired_purged, 0, "already gone");
    }

    /// The background sync relies on fjall's journal layout (pinned): this
    /// fails loudly if an upgrade changes it.
    #[test]
    fn active_journal_of_a_real_store_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::new(dir.path().join("s"));
        let mut store = FjallStore::open(&cfg).unwrap();
        store
            .commit(&[Op::put(Space::Transactions, "k", "v", crate::NEVER)])
            .unwrap();
        let mut journal = ActiveJournal::new(cfg.path.clone());
        assert!(
            journal.current().unwrap().is_some(),
            "fjall journal <n>.jnl found"
        );
        assert_eq!(journal.sync().unwrap(), Some(true));
    }

    /// fjall rotates its journal only past 64 MB: the following logic is
    /// checked on files named the same way.
    #[test]
    fn active_journal_follows_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = ActiveJournal::new(dir.path().to_path_buf());
        assert_eq!(journal.current().unwrap(), None);
        assert_eq!(journal.sync().unwrap(), None, "no journal: fall back");
        std::fs::write(dir.path().join("0.jnl"), b"").unwrap();
        std::fs::write(dir.path().join("lock"), b"").unwrap();
        assert_eq!(journal.sync().unwrap(), Some(true));
        assert_eq!(journal.current().unwrap(), Some(0));
        std::fs::write(dir.path().join("1.jnl"), b"").unwrap();
        assert_eq!(journal.current().unwrap(), Some(1));
        std::fs::remove_file(dir.path().join("0.jnl")).unwrap();
        std::fs::write(dir.path().join("2.jnl"), b"").unwrap();
        std::fs::write(dir.path().join("3.jnl"), b"").unwrap();
        assert_eq!(journal.current().unwrap(), Some(3));
        assert_eq!(journal.sync().unwrap(), Some(true));
    }

    #[test]
    fn reopen_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FjallStore::open(&StoreConfig::new(dir.path().join("s"))).unwrap();
        store
            .commit(&[Op::put(Space::Transactions, "a", "1", crate::NEVER)])
            .unwrap();
        // Simulate a failure and let the back-off pass.
        let err = StoreError::new(StoreErrorKind::Io, Operation::Commit, dir.path(), "test");
        store.mark_broken(&err);
        store.broken.as_mut().unwrap().last_attempt -= REOPEN_BACKOFF;
        store
            .commit(&[Op::put(Space::Transactions, "b", "2", crate::NEVER)])
            .unwrap();
        assert_eq!(store.stats().reopens, 1);
        assert_eq!(store.load(Space::Transactions, 0).unwrap().len(), 2);
    }
}
