//! cairn's durable state store: the records of the transaction and dialog
//! layers, written before the INVITEs they describe leave the proxy, and read
//! back on start.
//!
//! The proxy core produces records as opaque bytes (a key and a value per
//! [`Space`]); the driver applies them in one [`Store::commit`] per event-loop
//! iteration (group commit: many INVITEs share one write) and only then sends
//! the messages. On start it calls [`Store::load`] for every space before it
//! reads its sockets.
//!
//! Backends:
//! * [`MemoryStore`] for [`Durability::Off`] (and tests): nothing is written.
//! * [`FjallStore`] for [`Durability::Buffered`] (the default) and
//!   [`Durability::Strict`]: an embedded LSM store (fjall 3, pinned), two
//!   keyspaces, leveled compaction with an expiry compaction filter.
//!
//! Every value is stored behind a 13-byte header (format version,
//! `expires_at_ms`, CRC-32 of header and payload): a record that fails its
//! check is skipped and counted, never a panic. See `docs/store.md`.
//!
//! ```
//! use cairn_store::{open, Durability, Op, Space, StoreConfig};
//! let dir = tempfile::tempdir().unwrap();
//! let mut cfg = StoreConfig::new(dir.path().join("state"));
//! cfg.durability = Durability::Buffered;
//! let mut store = open(&cfg).unwrap();
//! let far = cairn_store::unix_ms() + 60_000;
//! store.commit(&[Op::put(Space::Transactions, "z9hG4bK1", "record", far)]).unwrap();
//! let live = store.load(Space::Transactions, cairn_store::unix_ms()).unwrap();
//! assert_eq!(live[0].value, b"record");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod disk;
mod error;
mod fjall_store;
mod memory;
mod record;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use disk::dir_disk_bytes;
pub use error::{Operation, StoreError, StoreErrorKind};
pub use fjall_store::FjallStore;
pub use memory::MemoryStore;
pub use record::{HEADER_LEN, RECORD_FORMAT_VERSION};

/// Largest key accepted (the engine's limit).
pub const MAX_KEY_LEN: usize = 65_535;
/// Largest value accepted (before the header is added).
pub const MAX_VALUE_LEN: usize = 16 * 1024 * 1024;
/// `expires_at_ms` value for a record that never expires.
pub const NEVER: u64 = u64::MAX;

/// The independent key spaces of the store. A key is unique within its space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// Transaction records (server transaction and its branches).
    Transactions,
    /// Dialog records.
    Dialogs,
}

impl Space {
    /// Every space, in a fixed order.
    pub const ALL: [Space; 2] = [Space::Transactions, Space::Dialogs];

    /// Stable name (also the on-disk keyspace name).
    pub fn name(self) -> &'static str {
        match self {
            Space::Transactions => "transactions",
            Space::Dialogs => "dialogs",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Space::Transactions => 0,
            Space::Dialogs => 1,
        }
    }
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One change in a batch given to [`Store::commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace the record `key` in `space`.
    Put {
        /// Space of the record.
        space: Space,
        /// Key, 1 to [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
        /// Payload, at most [`MAX_VALUE_LEN`] bytes, opaque to the store.
        value: Vec<u8>,
        /// Unix time in ms after which the record is dead: the store may drop
        /// it and [`Store::load`] skips it. [`NEVER`] for no expiry.
        expires_at_ms: u64,
    },
    /// Remove the record `key` from `space` (no error if it is absent).
    Delete {
        /// Space of the record.
        space: Space,
        /// Key, 1 to [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
    },
}

impl Op {
    /// Shorthand for [`Op::Put`].
    pub fn put(
        space: Space,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        expires_at_ms: u64,
    ) -> Op {
        Op::Put {
            space,
            key: key.into(),
            value: value.into(),
            expires_at_ms,
        }
    }

    /// Shorthand for [`Op::Delete`].
    pub fn delete(space: Space, key: impl Into<Vec<u8>>) -> Op {
        Op::Delete {
            space,
            key: key.into(),
        }
    }

    /// The space the op applies to.
    pub fn space(&self) -> Space {
        match self {
            Op::Put { space, .. } | Op::Delete { space, .. } => *space,
        }
    }

    /// The key the op applies to.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// How far a record has gone when [`Store::commit`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Memory only: nothing is written; a restart starts empty.
    Off,
    /// Written to the operating system before `commit` returns: survives a
    /// crash or SIGKILL of the process. Synced to disk (fdatasync) every
    /// `sync_interval_ms` by a background thread of the store: a power loss
    /// or kernel crash loses at most that interval plus one fdatasync.
    #[default]
    Buffered,
    /// `commit` returns after fdatasync of the batch (one per batch: group
    /// commit). Survives power loss.
    Strict,
}

impl Durability {
    /// Lower-case name as used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Off => "off",
            Durability::Buffered => "buffered",
            Durability::Strict => "strict",
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "memory" => Ok(Durability::Off),
            "buffered" | "default" => Ok(Durability::Buffered),
            "strict" | "sync" => Ok(Durability::Strict),
            other => Err(format!(
                "unknown store durability {other:?}: expected off, buffered or strict"
            )),
        }
    }
}

/// Configuration of [`open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory of the store (created if missing). Unused with
    /// [`Durability::Off`].
    pub path: PathBuf,
    /// Durability level; see [`Durability`].
    pub durability: Durability,
    /// [`Durability::Buffered`]: interval of the background fdatasync, in ms
    /// (default 50). Bounds what a power loss can take.
    pub sync_interval_ms: u64,
    /// Soft limit on the store's disk use, in bytes (allocated blocks of the
    /// directory, checked at most once a second). Above it, puts are refused
    /// with [`StoreErrorKind::QuotaExceeded`] and deletes still applied.
    pub max_disk_bytes: Option<u64>,
    /// Testing knob: memtable size of the keyspaces *created* by this open
    /// (fjall keeps a keyspace's setting for life). `None`: 16 MiB.
    #[doc(hidden)]
    pub memtable_bytes: Option<u64>,
}

impl StoreConfig {
    /// Default configuration for a store in `path`: buffered, 50 ms sync
    /// interval, no disk limit.
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            durability: Durability::Buffered,
            sync_interval_ms: 50,
            max_disk_bytes: None,
            memtable_bytes: None,
        }
    }
}

/// What one [`Store::commit`] did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// Number of ops applied.
    pub ops: usize,
    /// Bytes handed to the engine (keys plus values with their headers).
    pub bytes: u64,
    /// Wall time of the commit, including the fdatasync at the strict level.
    pub duration: Duration,
    /// True if the batch was synced to disk before returning (strict level).
    pub synced: bool,
}

/// A live record returned by [`Store::load`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Key as given to [`Op::Put`].
    pub key: Vec<u8>,
    /// Payload as given to [`Op::Put`] (header removed, checksum verified).
    pub value: Vec<u8>,
    /// Expiry as given to [`Op::Put`].
    pub expires_at_ms: u64,
}

/// Counters and gauges of a store, for the metrics endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// "memory" or "fjall".
    pub backend: &'static str,
    /// Configured durability.
    pub durability: Durability,
    /// Records held per space, indexed like [`Space::ALL`] (use
    /// [`StoreStats::records`]). Exact once [`Store::load`] ran for the
    /// space; includes expired records not purged yet.
    pub records_per_space: [u64; 2],
    /// Disk use of the store directory in bytes (allocated blocks, refreshed
    /// at most once a second; 0 for memory).
    pub disk_bytes: u64,
    /// Successful commits.
    pub commits: u64,
    /// Failed commits (each returned a [`StoreError`]).
    pub commit_errors: u64,
    /// Duration of the last successful commit.
    pub last_commit: Duration,
    /// Completed disk syncs (background ticker or [`Store::sync`]).
    pub syncs: u64,
    /// Failed disk syncs.
    pub sync_errors: u64,
    /// Duration of the last sync.
    pub last_sync: Duration,
    /// Records skipped by `load` because their header or checksum was wrong
    /// (they are removed).
    pub corrupt_skipped: u64,
    /// Expired records skipped and removed by `load`.
    pub expired_purged: u64,
    /// Times the engine was reopened after a write failure.
    pub reopens: u64,
    /// False while the engine refuses writes after a failure (until it is
    /// reopened).
    pub available: bool,
}

impl StoreStats {
    /// Records held in `space`.
    pub fn records(&self, space: Space) -> u64 {
        self.records_per_space[space.index()]
    }
}

/// The state store seen by the driver. Implemented by [`MemoryStore`] and
/// [`FjallStore`] (and by the Redis backend later). Every method is
/// synchronous and is called from the driver's event loop; none panics on
/// I/O trouble.
pub trait Store: Send {
    /// Applies `batch` atomically (all of it or none of it survives a crash),
    /// in order (a later op on the same key wins). When it returns `Ok`, the
    /// batch has reached the level of [`Store::durability`]. On `Err`, the
    /// driver logs and counts, and goes on proxying: the messages of this
    /// batch then leave without a durable record. An empty batch is a no-op.
    fn commit(&mut self, batch: &[Op]) -> Result<CommitInfo, StoreError>;

    /// Syncs everything committed so far to disk now. Cheap when nothing was
    /// committed since the last sync. The buffered level already syncs on
    /// its own background ticker; call this on shutdown or where an
    /// explicit barrier is wanted.
    fn sync(&mut self) -> Result<(), StoreError>;

    /// Every live record of `space`: records with `expires_at_ms < now_ms`
    /// and corrupt records are skipped, counted and removed. Order: by key.
    fn load(&mut self, space: Space, now_ms: u64) -> Result<Vec<Record>, StoreError>;

    /// Counters and gauges.
    fn stats(&self) -> StoreStats;

    /// The durability this store provides.
    fn durability(&self) -> Durability;
}

/// Opens the store described by `cfg`: a [`MemoryStore`] for
/// [`Durability::Off`], else a [`FjallStore`] in `cfg.path` (created if
/// missing).
///
/// Errors name the path and the cause. [`StoreErrorKind::Unopenable`] means
/// the directory holds something that is not a readable cairn store
/// (corrupt files, another format or version, not a directory): the way out
/// is to move the directory aside, see [`open_or_move_aside`].
pub fn open(cfg: &StoreConfig) -> Result<Box<dyn Store>, StoreError> {
    match cfg.durability {
        Durability::Off => Ok(Box::new(MemoryStore::new())),
        Durability::Buffered | Durability::Strict => Ok(Box::new(FjallStore::open(cfg)?)),
    }
}

/// A store opened by [`open_or_move_aside`].
pub struct Opened {
    /// The store.
    pub store: Box<dyn Store>,
    /// Set when the previous directory could not be opened and was renamed
    /// to this path; the store is then new and empty.
    pub moved_aside: Option<(PathBuf, StoreError)>,
}

/// Like [`open`], but when the directory is [`StoreErrorKind::Unopenable`]
/// (corrupt, wrong version, not a store), renames it to
/// `<path>.broken-<unix ms>`, logs it, and opens a new, empty store at
/// `path`. Calls in flight at the time of the crash are then lost, but the
/// proxy runs. Any other error (locked by another process, permissions,
/// disk full) is returned as is: moving the directory would not help.
pub fn open_or_move_aside(cfg: &StoreConfig) -> Result<Opened, StoreError> {
    match open(cfg) {
        Ok(store) => Ok(Opened {
            store,
            moved_aside: None,
        }),
        Err(e) if e.kind() == StoreErrorKind::Unopenable => {
            let aside = move_aside(&cfg.path).map_err(|io| {
                StoreError::new(
                    io.kind(),
                    Operation::Open,
                    &cfg.path,
                    format!("{}; moving it aside failed too: {}", e.cause(), io.cause()),
                )
            })?;
            tracing::error!(
                path = %cfg.path.display(),
                moved_to = %aside.display(),
                error = %e,
                "state store could not be opened; moved it aside and starting with an empty store"
            );
            let store = open(cfg)?;
            Ok(Opened {
                store,
                moved_aside: Some((aside, e)),
            })
        }
        Err(e) => Err(e),
    }
}

/// Renames the store directory `path` to `<path>.broken-<unix ms>` and
/// returns the new name: the way out for a store that cannot be opened
/// ([`open_or_move_aside`] does it) or whose [`Store::load`] fails with
/// [`StoreErrorKind::Corrupt`] (drop the store first, then move it aside and
/// open again). The old directory is kept for inspection; delete it by hand.
pub fn move_aside(path: &std::path::Path) -> Result<PathBuf, StoreError> {
    let mut aside = path.as_os_str().to_os_string();
    aside.push(format!(".broken-{}", unix_ms()));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|io| {
        let (kind, cause) = error::io_kind(&io);
        StoreError::new(
            kind,
            Operation::Open,
            path,
            format!("renaming to {} failed: {cause}", aside.display()),
        )
    })?;
    Ok(aside)
}

/// Current Unix time in milliseconds (the clock of `expires_at_ms`).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Checks keys and values against the limits; the whole batch is refused
/// before anything is written if one op is invalid.
pub(crate) fn validate(batch: &[Op], path: &std::path::Path) -> Result<(), StoreError> {
    for (i, op) in batch.iter().enumerate() {
        let key = op.key();
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(StoreError::new(
                StoreErrorKind::InvalidInput,
                Operation::Commit,
                path,
                format!(
                    "op {i} ({}): key of {} bytes (allowed 1..={MAX_KEY_LEN}); nothing written",
                    op.space(),
                    key.len()
                ),
            ));
        }
        if let Op::Put { value, .. } = op {
            if value.len() > MAX_VALUE_LEN {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidInput,
                    Operation::Commit,
                    path,
                    format!(
                        "op {i} ({}): value of {} bytes (allowed up to {MAX_VALUE_LEN}); nothing written",
                        op.space(),
                        value.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}
