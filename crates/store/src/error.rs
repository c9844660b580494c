//! The store's one error type: what failed, where, and why.

use std::path::{Path, PathBuf};

/// Class of a [`StoreError`], for the driver's decisions and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The directory is not a readable cairn store: corrupt engine files,
    /// another format or version, not a directory, or a non-empty directory
    /// that is no store. Way out: move the directory aside (see
    /// [`crate::open_or_move_aside`]).
    Unopenable,
    /// Another process has the store open (its lock is held).
    Locked,
    /// No space left on the device (ENOSPC) or the file system quota is
    /// exhausted (EDQUOT).
    DiskFull,
    /// The configured `max_disk_bytes` is reached: puts were refused,
    /// deletes applied.
    QuotaExceeded,
    /// Any other I/O error.
    Io,
    /// Data read back failed the engine's own block checksum (more than one
    /// record is affected).
    Corrupt,
    /// The engine refuses writes since an earlier write or sync failed; it
    /// is reopened automatically (at most once a second) on the next commit.
    Unavailable,
    /// The backend did not answer in time (Redis): the batch stays queued
    /// and is written when it answers.
    Timeout,
    /// The batch held an invalid op (key empty or too long, value too
    /// large); nothing was written.
    InvalidInput,
}

/// The store operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Opening (or reopening) the store.
    Open,
    /// [`crate::Store::commit`].
    Commit,
    /// [`crate::Store::sync`] or the background sync.
    Sync,
    /// [`crate::Store::load`].
    Load,
}

impl Operation {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::Commit => "commit",
            Operation::Sync => "sync",
            Operation::Load => "load",
        }
    }
}

/// An error of the state store. Its message names the store's path, the
/// operation and the cause, e.g.
/// `state store /var/lib/cairn/state: commit failed: no space left on device (os error 28)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    op: Operation,
    path: PathBuf,
    cause: String,
}

impl StoreError {
    pub(crate) fn new(
        kind: StoreErrorKind,
        op: Operation,
        path: &Path,
        cause: impl Into<String>,
    ) -> StoreError {
        StoreError {
            kind,
            op,
            path: path.to_path_buf(),
            cause: cause.into(),
        }
    }

    /// Class of the error.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Operation that failed.
    pub fn operation(&self) -> Operation {
        self.op
    }

    /// Path of the store (or of the file concerned).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cause, without path and operation.
    pub fn cause(&self) -> &str {
        &self.cause
    }

    /// True for [`StoreErrorKind::DiskFull`] and
    /// [`StoreErrorKind::QuotaExceeded`].
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::DiskFull | StoreErrorKind::QuotaExceeded
        )
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "state store {}: {} failed: {}",
            self.path.display(),
            self.op.name(),
            self.cause
        )?;
        if matches!(
            self.kind,
            StoreErrorKind::Unopenable | StoreErrorKind::Corrupt
        ) {
            write!(
                f,
                " (way out: stop cairn, move the directory aside, e.g. `mv {p} {p}.broken`, \
                 and start again: cairn then starts with an empty store)",
                p = self.path.display()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {}

/// Turns an engine error into a [`StoreError`] of the right kind.
pub(crate) fn from_fjall(e: &fjall::Error, op: Operation, path: &Path) -> StoreError {
    use fjall::Error as F;
    let (kind, cause) = match e {
        F::Io(io) => io_kind(io),
        F::Storage(inner) => storage_kind(inner),
        F::JournalRecovery(r) => (
            StoreErrorKind::Unopenable,
            format!("the journal is corrupt beyond its last batch: {r}"),
        ),
        F::InvalidVersion(v) => (
            StoreErrorKind::Unopenable,
            format!(
                "on-disk format {} is not the one this build reads (fjall format V3)",
                v.map_or_else(|| "unknown (bad version marker)".to_string(), |v| format!("{v:?}"))
            ),
        ),
        F::Decompress(c) => (
            StoreErrorKind::Corrupt,
            format!("a {c:?} block failed to decompress"),
        ),
        F::InvalidTrailer | F::InvalidTag(_) => {
            (StoreErrorKind::Corrupt, format!("engine file corrupt: {e:?}"))
        }
        F::Poisoned => (
            StoreErrorKind::Unavailable,
            "the engine refuses writes after an earlier write or sync failure \
             (it is reopened on a later commit)"
                .to_string(),
        ),
        F::Locked => (
            StoreErrorKind::Locked,
            format!(
                "the lock {} is held by another process: is another cairn using this state directory?",
                path.join("lock").display()
            ),
        ),
        other => (StoreErrorKind::Io, format!("{other:?}")),
    };
    // While opening, a missing file, a short read or invalid data inside
    // the store means damaged engine files: moving the directory aside is
    // the way out. Other I/O errors (permissions, disk full) are not.
    let damaged_file = op == Operation::Open
        && kind == StoreErrorKind::Io
        && io_of(e).is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::InvalidData
            )
        });
    if damaged_file {
        return StoreError::new(
            StoreErrorKind::Unopenable,
            op,
            path,
            format!("a file of the store is missing or damaged: {cause}"),
        );
    }
    let kind = if op == Operation::Open
        && matches!(kind, StoreErrorKind::Corrupt | StoreErrorKind::Unavailable)
    {
        StoreErrorKind::Unopenable
    } else {
        kind
    };
    StoreError::new(kind, op, path, cause)
}

fn io_of(e: &fjall::Error) -> Option<&std::io::Error> {
    match e {
        fjall::Error::Io(io) => Some(io),
        fjall::Error::Storage(fjall::LsmError::Io(io)) => Some(io),
        _ => None,
    }
}

fn storage_kind(e: &fjall::LsmError) -> (StoreErrorKind, String) {
    use fjall::LsmError as L;
    match e {
        L::Io(io) => io_kind(io),
        other => (
            StoreErrorKind::Corrupt,
            format!("engine data unreadable: {other:?}"),
        ),
    }
}

pub(crate) fn io_kind(io: &std::io::Error) -> (StoreErrorKind, String) {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    let kind = match io.raw_os_error() {
        Some(ENOSPC) | Some(EDQUOT) => StoreErrorKind::DiskFull,
        _ if io.kind() == std::io::ErrorKind::StorageFull => StoreErrorKind::DiskFull,
        _ => StoreErrorKind::Io,
    };
    (kind, io.to_string())
}

pub(crate) fn io_error(io: &std::io::Error, op: Operation, path: &Path) -> StoreError {
    let (kind, cause) = io_kind(io);
    StoreError::new(kind, op, path, cause)
}
