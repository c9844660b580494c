//! [`RedisStore`]: the shared backend of cluster mode. Every node keeps its
//! records in one Redis server, under keys that name the owner node, so that
//! another node can load them (take them over) when the owner is dead, or
//! find a record's owner while it is alive.
//!
//! Keys: `<prefix>n<node>:t:<key hex>` (transactions) and
//! `<prefix>n<node>:d:<key hex>` (dialogs). Values: the 13-byte header of
//! `record.rs` (version, expiry, CRC-32) followed by the payload. Expiry:
//! `SET ... PXAT <expires_at_ms>` (absolute, so a write sent twice is the
//! same write).
//!
//! Write path: [`Store::commit`] encodes its batch as one `MULTI ... EXEC`
//! and queues it for the writer thread, which owns a blocking connection and
//! writes every job queued at that moment in one pipeline. `commit` then
//! waits for the reply at most `commit_timeout_ms`; a job that is not
//! answered in time stays queued and is written when Redis answers. When
//! Redis is down (or the queue is over `max_pending_bytes`), the store is
//! *degraded*: `commit` returns at once with an error, puts are dropped,
//! deleted keys are remembered (up to `max_pending_deletes`). When the
//! writer is connected again and has written what was queued and the
//! remembered deletes, the store is healthy again and asks the driver (see
//! [`RedisStore::take_resync`]) to write every live record again: Redis then
//! holds exactly the live records, even after it lost its data in a
//! restart. See `docs/cluster.md`.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::{decode, header, Decoded};
use crate::resp::{self, Conn, Reply, Target};
use crate::{
    validate, CommitInfo, Durability, Op, Operation, Record, Space, Store, StoreError,
    StoreErrorKind, StoreStats, NEVER,
};

/// Configuration of [`RedisStore::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host:port[/db]`.
    pub url: String,
    /// Put in front of every key (default `cairn:`).
    pub key_prefix: String,
    /// This node's id: the owner written into its keys.
    pub node: u16,
    /// How long a commit waits for Redis to acknowledge its batch (default
    /// 5 ms). Past it, the messages go out without a confirmed record; the
    /// batch is still written when Redis answers.
    pub commit_timeout_ms: u64,
    /// TCP connect timeout (default 200 ms).
    pub connect_timeout_ms: u64,
    /// A Redis that does not answer a pipeline within this long is
    /// considered down (default 1000 ms).
    pub io_timeout_ms: u64,
    /// Owner lookups (active/active) give up after this long (default 50 ms).
    pub lookup_timeout_ms: u64,
    /// Loading the records of a node at start gives up after this long
    /// (default 10 s).
    pub load_timeout_ms: u64,
    /// Bytes of batches queued for the writer before the store is
    /// degraded (default 64 MiB).
    pub max_pending_bytes: usize,
    /// Deleted keys remembered while degraded (default 1,000,000): beyond,
    /// a record whose call ended stays in Redis until its expiry.
    pub max_pending_deletes: usize,
}

impl RedisConfig {
    /// Defaults for a node at `url`.
    pub fn new(url: impl Into<String>, node: u16) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            key_prefix: "cairn:".into(),
            node,
            commit_timeout_ms: 5,
            connect_timeout_ms: 200,
            io_timeout_ms: 1000,
            lookup_timeout_ms: 50,
            load_timeout_ms: 10_000,
            max_pending_bytes: 64 * 1024 * 1024,
            max_pending_deletes: 1_000_000,
        }
    }

    /// The Redis key of `key` in `space` owned by `node`.
    pub fn redis_key(&self, node: u16, space: Space, key: &[u8]) -> Vec<u8> {
        let mut k = self.node_prefix(node, space);
        for b in key {
            k.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        k
    }

    fn node_prefix(&self, node: u16, space: Space) -> Vec<u8> {
        let s = match space {
            Space::Transactions => 't',
            Space::Dialogs => 'd',
        };
        format!("{}n{node}:{s}:", self.key_prefix).into_bytes()
    }
}

/// One batch for the writer.
struct Job {
    seq: u64,
    /// `MULTI`, the commands, `EXEC`.
    buf: Vec<u8>,
    /// Commands between MULTI and EXEC.
    cmds: usize,
    /// Keys deleted by the batch (kept if the job is dropped).
    deletes: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Job>,
    queued_bytes: usize,
    /// Jobs at the front of `queue` the writer is writing now.
    in_flight: usize,
    next_seq: u64,
    acked: u64,
    /// Redis keys to delete when Redis is back (degraded mode).
    pending_deletes: HashSet<Vec<u8>>,
    /// Down, or over the queue limit: commits do not wait, puts are dropped.
    degraded: bool,
    /// Why the store is degraded, for errors.
    cause: String,
    since: Option<Instant>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    m: Mutex<Inner>,
    /// The writer waits here for work.
    work: Condvar,
    /// Committers wait here for acknowledgements.
    done: Condvar,
    /// Set when the store became healthy after being degraded.
    resync: AtomicBool,
    dropped_ops: AtomicU64,
    lost_deletes: AtomicU64,
    write_errors: AtomicU64,
    reconnects: AtomicU64,
    resyncs: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The Redis backend. See the module documentation and `docs/cluster.md`.
pub struct RedisStore {
    cfg: RedisConfig,
    target: Target,
    /// The URL without credentials, for errors and logs.
    name: PathBuf,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    /// Connection for loads (opened on demand).
    reader: Option<Conn>,
    /// Hashes of this node's keys, per space, once loaded.
    keys: [Option<HashSet<Vec<u8>>>; 2],
    stats: StoreStats,
    finder: OwnerFinder,
}

impl RedisStore {
    /// Checks the URL and starts the writer thread. Does not fail when
    /// Redis is unreachable: the store then starts degraded and connects in
    /// the background (see the module documentation).
    pub fn open(cfg: &RedisConfig) -> Result<RedisStore, StoreError> {
        let name = PathBuf::from(display_url(&cfg.url));
        let target = Target::parse(&cfg.url).map_err(|e| {
            StoreError::new(StoreErrorKind::InvalidInput, Operation::Open, &name, e)
        })?;
        let shared = Arc::new(Shared::default());
        // The first connection is made here, so that a store opened while
        // Redis is reachable is healthy from the start.
        let first = Conn::open(
            &target,
            Duration::from_millis(cfg.connect_timeout_ms),
            Duration::from_millis(cfg.io_timeout_ms),
        );
        {
            let mut g = shared.lock();
            g.next_seq = 1;
            if let Err(e) = &first {
                tracing::error!(error = %e, url = %name.display(), "state store: cannot connect to Redis; proxying goes on without records until it is reachable");
                g.degraded = true;
                g.cause = format!("cannot connect: {e}");
                g.since = Some(Instant::now());
            }
        }
        let writer = {
            let shared = Arc::clone(&shared);
            let target = target.clone();
            let cfg = cfg.clone();
            let conn = first.ok();
            std::thread::Builder::new()
                .name("cairn-redis-write".into())
                .spawn(move || Writer::new(cfg, target, shared, conn).run())
                .map_err(|e| {
                    StoreError::new(
                        StoreErrorKind::Io,
                        Operation::Open,
                        &name,
                        format!("cannot start the writer thread: {e}"),
                    )
                })?
        };
        let finder = OwnerFinder::start(cfg.clone(), target.clone())
            .map_err(|e| StoreError::new(StoreErrorKind::Io, Operation::Open, &name, e))?;
        tracing::info!(url = %name.display(), node = cfg.node, prefix = %cfg.key_prefix, "state store: redis");
        Ok(RedisStore {
            cfg: cfg.clone(),
            target,
            name,
            shared,
            writer: Some(writer),
            reader: None,
            keys: [None, None],
            stats: StoreStats {
                backend: "redis",
                durability: Durability::Buffered,
                available: true,
                ..StoreStats::default()
            },
            finder,
        })
    }

    /// Checks a `redis://` URL; the error says what is wrong with it.
    pub fn check_url(url: &str) -> Result<(), String> {
        Target::parse(url).map(|_| ())
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// Whether Redis takes writes now (the `cairn_store_up` gauge).
    pub fn is_up(&self) -> bool {
        !self.shared.lock().degraded
    }

    /// A handle for owner lookups from other threads.
    pub fn finder(&self) -> OwnerFinder {
        self.finder.clone()
    }

    fn err(&self, kind: StoreErrorKind, op: Operation, cause: impl Into<String>) -> StoreError {
        StoreError::new(kind, op, &self.name, cause)
    }

    fn reader(&mut self, op: Operation) -> Result<&mut Conn, StoreError> {
        if self.reader.is_none() {
            let conn = Conn::open(
                &self.target,
                Duration::from_millis(self.cfg.connect_timeout_ms),
                Duration::from_millis(self.cfg.load_timeout_ms),
            )
            .map_err(|e| self.err(kind_of(&e), op, format!("cannot connect: {e}")))?;
            self.reader = Some(conn);
        }
        let name = self.name.clone();
        self.reader
            .as_mut()
            .ok_or_else(|| StoreError::new(StoreErrorKind::Unavailable, op, &name, "not connected"))
    }

    /// Every live record of `node` in `space`, with their Redis keys.
    /// Expired and corrupt values are deleted and counted.
    fn scan_node(
        &mut self,
        node: u16,
        space: Space,
        now_ms: u64,
    ) -> Result<Vec<(Vec<u8>, Record)>, StoreError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.load_timeout_ms);
        let prefix = self.cfg.node_prefix(node, space);
        let mut pattern = resp::glob_escape(&prefix);
        pattern.push(b'*');
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut cursor = b"0".to_vec();
        self.reader(Operation::Load)?;
        let r = (|| -> io::Result<()> {
            let conn = self
                .reader
                .as_mut()
                .ok_or_else(|| io::Error::other("no connection"))?;
            loop {
                if Instant::now() > deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "SCAN took too long",
                    ));
                }
                let reply =
                    conn.call(&[b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", b"1000"])?;
                let Reply::Array(Some(mut parts)) = reply else {
                    return Err(io::Error::other(format!(
                        "SCAN: unexpected reply {reply:?}"
                    )));
                };
                if parts.len() != 2 {
                    return Err(io::Error::other("SCAN: reply of the wrong shape"));
                }
                let found = parts.pop();
                let next = parts.pop();
                if let Some(Reply::Array(Some(items))) = found {
                    for it in items {
                        if let Reply::Bulk(Some(k)) = it {
                            keys.push(k);
                        }
                    }
                }
                match next {
                    Some(Reply::Bulk(Some(c))) => cursor = c,
                    other => return Err(io::Error::other(format!("SCAN cursor: {other:?}"))),
                }
                if cursor == b"0" {
                    return Ok(());
                }
            }
        })();
        r.map_err(|e| {
            self.reader = None;
            self.err(
                kind_of(&e),
                Operation::Load,
                format!("scanning {}: {e}", String::from_utf8_lossy(&prefix)),
            )
        })?;
        keys.sort();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        let mut dead: Vec<Vec<u8>> = Vec::new();
        for chunk in keys.chunks(500) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 1);
            args.push(b"MGET");
            args.extend(chunk.iter().map(|k| k.as_slice()));
            let reply = {
                let conn = self.reader(Operation::Load)?;
                conn.call(&args)
            };
            let reply = reply.map_err(|e| {
                self.reader = None;
                self.err(kind_of(&e), Operation::Load, format!("MGET: {e}"))
            })?;
            let Reply::Array(Some(values)) = reply else {
                return Err(self.err(
                    StoreErrorKind::Io,
                    Operation::Load,
                    format!("MGET: unexpected reply {reply:?}"),
                ));
            };
            for (rk, v) in chunk.iter().zip(values) {
                let Reply::Bulk(Some(v)) = v else { continue }; // expired meanwhile
                let Some(key) = unhex(&rk[prefix.len()..]) else {
                    tracing::warn!(key = %String::from_utf8_lossy(rk), "state store: a key that is not one of cairn's; deleted");
                    self.stats.corrupt_skipped += 1;
                    dead.push(rk.clone());
                    continue;
                };
                match decode(&v, now_ms) {
                    Decoded::Live {
                        payload,
                        expires_at_ms,
                    } => out.push((
                        rk.clone(),
                        Record {
                            key,
                            value: payload.to_vec(),
                            expires_at_ms,
                        },
                    )),
                    Decoded::Expired => {
                        self.stats.expired_purged += 1;
                        dead.push(rk.clone());
                    }
                    Decoded::Corrupt(why) => {
                        tracing::warn!(key = %String::from_utf8_lossy(rk), %why, "state store: corrupt record skipped and deleted");
                        self.stats.corrupt_skipped += 1;
                        dead.push(rk.clone());
                    }
                }
            }
        }
        if !dead.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"DEL"];
            args.extend(dead.iter().map(|k| k.as_slice()));
            let conn = self.reader(Operation::Load)?;
            if let Err(e) = conn.call(&args) {
                self.reader = None;
                tracing::warn!(error = %e, "state store: deleting dead records failed");
            }
        }
        Ok(out)
    }

    /// Takes over the records of `node` in `space` (a dead node whose
    /// address this node now serves): each live record is renamed to this
    /// node's key (keeping its expiry) and returned, like [`Store::load`].
    pub fn adopt(
        &mut self,
        node: u16,
        space: Space,
        now_ms: u64,
    ) -> Result<Vec<Record>, StoreError> {
        if node == self.cfg.node {
            return self.load(space, now_ms);
        }
        let found = self.scan_node(node, space, now_ms)?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut buf = Vec::new();
        let mut names = Vec::with_capacity(found.len());
        for (rk, r) in &found {
            let mine = self.cfg.redis_key(self.cfg.node, space, &r.key);
            resp::command(&mut buf, &[b"RENAME", rk, &mine]);
            names.push(mine);
        }
        let res = (|| -> io::Result<usize> {
            let conn = self
                .reader
                .as_mut()
                .ok_or_else(|| io::Error::other("no connection"))?;
            conn.send(&buf)?;
            let mut failed = 0;
            for _ in &found {
                if conn.read()?.error().is_some() {
                    failed += 1; // expired between the read and the rename
                }
            }
            Ok(failed)
        })();
        let failed = res.map_err(|e| {
            self.reader = None;
            self.err(
                kind_of(&e),
                Operation::Load,
                format!("taking over node {node}: {e}"),
            )
        })?;
        if failed > 0 {
            tracing::info!(
                node,
                failed,
                "state store: records expired while being taken over"
            );
        }
        let set = self.keys[space.index()].get_or_insert_with(HashSet::new);
        for r in &found {
            set.insert(r.1.key.clone());
        }
        Ok(found.into_iter().map(|(_, r)| r).collect())
    }

    fn queue_job(&mut self, batch: &[Op]) -> (u64, bool, usize) {
        let mut buf = Vec::with_capacity(64 + batch.len() * 400);
        resp::command(&mut buf, &[b"MULTI"]);
        let mut deletes = Vec::new();
        let mut bytes = 0usize;
        for op in batch {
            match op {
                Op::Put {
                    space,
                    key,
                    value,
                    expires_at_ms,
                } => {
                    let rk = self.cfg.redis_key(self.cfg.node, *space, key);
                    let h = header(value, *expires_at_ms);
                    let mut v = Vec::with_capacity(h.len() + value.len());
                    v.extend_from_slice(&h);
                    v.extend_from_slice(value);
                    bytes += rk.len() + v.len();
                    if *expires_at_ms == NEVER {
                        resp::command(&mut buf, &[b"SET", &rk, &v]);
                    } else {
                        let at = expires_at_ms.max(&1).to_string();
                        resp::command(&mut buf, &[b"SET", &rk, &v, b"PXAT", at.as_bytes()]);
                    }
                }
                Op::Delete { space, key } => {
                    let rk = self.cfg.redis_key(self.cfg.node, *space, key);
                    bytes += rk.len();
                    resp::command(&mut buf, &[b"DEL", &rk]);
                    deletes.push(rk);
                }
            }
        }
        resp::command(&mut buf, &[b"EXEC"]);
        let mut g = self.shared.lock();
        if g.degraded {
            // Down: nothing to wait for. Deleted keys are remembered; puts
            // come back with the resync.
            let cap = self.cfg.max_pending_deletes;
            let puts = batch.len() - deletes.len();
            for d in deletes {
                if g.pending_deletes.len() < cap {
                    g.pending_deletes.insert(d);
                } else {
                    self.shared.lost_deletes.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.shared
                .dropped_ops
                .fetch_add(puts as u64, Ordering::Relaxed);
            return (0, false, bytes);
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        g.queued_bytes += buf.len();
        g.queue.push_back(Job {
            seq,
            buf,
            cmds: batch.len(),
            deletes,
        });
        if g.queued_bytes > self.cfg.max_pending_bytes {
            // Redis is too slow for the load: drop what is not being
            // written, keep its deletes, resync when drained.
            let cause = format!(
                "more than {} bytes of batches wait for Redis",
                self.cfg.max_pending_bytes
            );
            overflow(&self.shared, &mut g, &self.cfg, cause);
            self.shared.work.notify_one();
            return (0, false, bytes);
        }
        self.shared.work.notify_one();
        (seq, true, bytes)
    }
}

/// Turns every job not being written into remembered deletes and marks the
/// store degraded.
fn overflow(shared: &Shared, g: &mut Inner, cfg: &RedisConfig, cause: String) {
    while g.queue.len() > g.in_flight {
        let Some(job) = g.queue.pop_back() else { break };
        g.queued_bytes -= job.buf.len();
        let puts = job.cmds - job.deletes.len();
        shared.dropped_ops.fetch_add(puts as u64, Ordering::Relaxed);
        for d in job.deletes {
            if g.pending_deletes.len() < cfg.max_pending_deletes {
                g.pending_deletes.insert(d);
            } else {
                shared.lost_deletes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if !g.degraded {
        tracing::error!(cause = %cause, "state store degraded: commits do not wait for Redis; records are written again when it is back");
        g.degraded = true;
        g.since = Some(Instant::now());
    }
    g.cause = cause;
}

impl Store for RedisStore {
    fn commit(&mut self, batch: &[Op]) -> Result<CommitInfo, StoreError> {
        let start = Instant::now();
        if let Err(e) = validate(batch, &self.name) {
            self.stats.commit_errors += 1;
            return Err(e);
        }
        if batch.is_empty() {
            return Ok(CommitInfo::default());
        }
        for op in batch {
            if let Some(set) = &mut self.keys[op.space().index()] {
                match op {
                    Op::Put { key, .. } => {
                        set.insert(key.clone());
                    }
                    Op::Delete { key, .. } => {
                        set.remove(key);
                    }
                }
            }
        }
        let (seq, queued, bytes) = self.queue_job(batch);
        if !queued {
            self.stats.commit_errors += 1;
            let g = self.shared.lock();
            let down_ms = g.since.map_or(0, |s| s.elapsed().as_millis());
            return Err(self.err(
                StoreErrorKind::Unavailable,
                Operation::Commit,
                format!("Redis unavailable for {down_ms} ms ({}); the batch's puts are dropped and written again when it is back", g.cause),
            ));
        }
        let timeout = Duration::from_millis(self.cfg.commit_timeout_ms);
        let deadline = start + timeout;
        let mut g = self.shared.lock();
        while g.acked < seq {
            let now = Instant::now();
            if now >= deadline || g.degraded {
                drop(g);
                self.stats.commit_errors += 1;
                return Err(self.err(
                    StoreErrorKind::Timeout,
                    Operation::Commit,
                    format!(
                        "Redis did not acknowledge the batch within {} ms; it stays queued and is written when Redis answers",
                        self.cfg.commit_timeout_ms
                    ),
                ));
            }
            g = self
                .shared
                .done
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(g);
        let duration = start.elapsed();
        self.stats.commits += 1;
        self.stats.last_commit = duration;
        Ok(CommitInfo {
            ops: batch.len(),
            bytes: bytes as u64,
            duration,
            synced: false,
        })
    }

    /// Waits (at most `io_timeout_ms`) until everything queued is written.
    fn sync(&mut self) -> Result<(), StoreError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.io_timeout_ms);
        let mut g = self.shared.lock();
        let target = g.next_seq - 1;
        while g.acked < target && !g.degraded {
            let now = Instant::now();
            if now >= deadline {
                return Err(self.err(
                    StoreErrorKind::Timeout,
                    Operation::Sync,
                    "Redis did not acknowledge every queued batch in time",
                ));
            }
            g = self
                .shared
                .done
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        if g.degraded {
            return Err(self.err(
                StoreErrorKind::Unavailable,
                Operation::Sync,
                g.cause.clone(),
            ));
        }
        self.stats.syncs += 1;
        Ok(())
    }

    fn load(&mut self, space: Space, now_ms: u64) -> Result<Vec<Record>, StoreError> {
        self.reader(Operation::Load)?;
        let node = self.cfg.node;
        let found = self.scan_node(node, space, now_ms)?;
        let mut records: Vec<Record> = found.into_iter().map(|(_, r)| r).collect();
        records.sort_by(|a, b| a.key.cmp(&b.key));
        self.keys[space.index()] = Some(records.iter().map(|r| r.key.clone()).collect());
        Ok(records)
    }

    fn stats(&self) -> StoreStats {
        let mut s = self.stats.clone();
        for space in Space::ALL {
            s.records_per_space[space.index()] = self.keys[space.index()]
                .as_ref()
                .map_or(0, |k| k.len() as u64);
        }
        let g = self.shared.lock();
        s.available = !g.degraded;
        s.pending_ops = g.queue.len() as u64 + g.pending_deletes.len() as u64;
        drop(g);
        s.dropped_ops = self.shared.dropped_ops.load(Ordering::Relaxed);
        s.lost_deletes = self.shared.lost_deletes.load(Ordering::Relaxed);
        s.write_errors = self.shared.write_errors.load(Ordering::Relaxed);
        s.reopens = self.shared.reconnects.load(Ordering::Relaxed);
        s.resyncs = self.shared.resyncs.load(Ordering::Relaxed);
        s
    }

    fn durability(&self) -> Durability {
        Durability::Buffered
    }

    fn take_resync(&mut self) -> bool {
        self.shared.resync.swap(false, Ordering::AcqRel)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        {
            let mut g = self.shared.lock();
            g.stop = true;
        }
        self.shared.work.notify_all();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

/// Healthy again: everything queued and remembered is written.
fn heal(shared: &Shared, g: &mut MutexGuard<'_, Inner>) {
    let down = g.since.map_or(0, |s| s.elapsed().as_millis());
    g.degraded = false;
    g.since = None;
    g.cause.clear();
    shared.resync.store(true, Ordering::Release);
    shared.resyncs.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        down_ms = down as u64,
        "state store: Redis takes writes again; every live record is written again"
    );
}

/// The writer thread.
struct Writer {
    cfg: RedisConfig,
    target: Target,
    shared: Arc<Shared>,
    conn: Option<Conn>,
    backoff: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Bytes written in one pipeline at most.
const MAX_PIPELINE: usize = 4 * 1024 * 1024;

impl Writer {
    fn new(cfg: RedisConfig, target: Target, shared: Arc<Shared>, conn: Option<Conn>) -> Writer {
        Writer {
            cfg,
            target,
            shared,
            conn,
            backoff: Duration::from_millis(20),
        }
    }

    fn run(mut self) {
        loop {
            if self.conn.is_none() && !self.reconnect() {
                if self.shared.lock().stop {
                    return;
                }
                continue;
            }
            // Work: queued jobs, else remembered deletes, else wait.
            let mut g = self.shared.lock();
            if g.queue.is_empty() && g.pending_deletes.is_empty() {
                if g.degraded {
                    heal(&self.shared, &mut g);
                    continue;
                }
                if g.stop {
                    return;
                }
                drop(
                    self.shared
                        .work
                        .wait_timeout(g, Duration::from_millis(200))
                        .map(|(g, _)| g),
                );
                continue;
            }
            if g.queue.is_empty() {
                let deletes: Vec<Vec<u8>> =
                    g.pending_deletes.iter().take(10_000).cloned().collect();
                drop(g);
                if self.write_deletes(&deletes) {
                    let mut g = self.shared.lock();
                    for d in &deletes {
                        g.pending_deletes.remove(d);
                    }
                }
                continue;
            }
            let mut buf = Vec::new();
            let mut shape: Vec<usize> = Vec::new();
            for job in g.queue.iter() {
                if !buf.is_empty() && buf.len() + job.buf.len() > MAX_PIPELINE {
                    break;
                }
                buf.extend_from_slice(&job.buf);
                shape.push(job.cmds);
            }
            g.in_flight = shape.len();
            let last = g.queue.get(shape.len() - 1).map_or(0, |j| j.seq);
            drop(g);
            let ok = self.write_jobs(&buf, &shape);
            let mut g = self.shared.lock();
            g.in_flight = 0;
            if ok {
                for _ in 0..shape.len() {
                    if let Some(j) = g.queue.pop_front() {
                        g.queued_bytes -= j.buf.len();
                    }
                }
                g.acked = last;
                self.shared.done.notify_all();
            }
        }
    }

    fn connect(&mut self) -> io::Result<()> {
        let conn = Conn::open(
            &self.target,
            Duration::from_millis(self.cfg.connect_timeout_ms),
            Duration::from_millis(self.cfg.io_timeout_ms),
        )?;
        self.conn = Some(conn);
        Ok(())
    }

    /// One reconnection attempt after a pause; true when connected.
    fn reconnect(&mut self) -> bool {
        {
            let g = self.shared.lock();
            if g.stop {
                return false;
            }
            drop(self.shared.work.wait_timeout(g, self.backoff));
        }
        match self.connect() {
            Ok(()) => {
                self.backoff = Duration::from_millis(20);
                self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(url = %display_url(&self.cfg.url), "state store: connected to Redis again");
                true
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                let mut g = self.shared.lock();
                g.cause = format!("cannot connect: {e}");
                false
            }
        }
    }

    /// Marks the connection broken: degraded until everything is written.
    fn broken(&mut self, e: &io::Error) {
        self.conn = None;
        self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
        let mut g = self.shared.lock();
        if !g.degraded {
            tracing::error!(error = %e, "state store: Redis write failed; commits do not wait for it until it is back");
            g.degraded = true;
            g.since = Some(Instant::now());
        }
        g.cause = format!("write failed: {e}");
        self.shared.done.notify_all();
    }

    fn write_jobs(&mut self, buf: &[u8], shape: &[usize]) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let r = (|| -> io::Result<u64> {
            conn.send(buf)?;
            let mut failed = 0u64;
            for &cmds in shape {
                // MULTI, QUEUED per command, then EXEC's array.
                for _ in 0..cmds + 1 {
                    if let Reply::Error(e) = conn.read()? {
                        tracing::warn!(error = %e, "state store: Redis refused a command");
                        failed += 1;
                    }
                }
                match conn.read()? {
                    Reply::Array(Some(items)) => {
                        failed += items.iter().filter(|r| r.error().is_some()).count() as u64;
                    }
                    other => {
                        tracing::warn!(reply = ?other, "state store: Redis did not apply a batch");
                        failed += 1;
                    }
                }
            }
            Ok(failed)
        })();
        match r {
            Ok(failed) => {
                if failed > 0 {
                    self.shared
                        .write_errors
                        .fetch_add(failed, Ordering::Relaxed);
                }
                true
            }
            Err(e) => {
                self.broken(&e);
                false
            }
        }
    }

    fn write_deletes(&mut self, keys: &[Vec<u8>]) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let mut buf = Vec::new();
        for chunk in keys.chunks(500) {
            let mut args: Vec<&[u8]> = vec![b"DEL"];
            args.extend(chunk.iter().map(|k| k.as_slice()));
            resp::command(&mut buf, &args);
        }
        let r = (|| -> io::Result<()> {
            conn.send(&buf)?;
            for _ in keys.chunks(500) {
                conn.read()?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => true,
            Err(e) => {
                self.broken(&e);
                false
            }
        }
    }
}

/// Finds which node holds a record (active/active: a CANCEL or ACK for an
/// INVITE another node routed), on a thread of its own, so the event loop
/// never waits for Redis. Cheap to clone.
#[derive(Clone)]
pub struct OwnerFinder {
    tx: SyncSender<Find>,
}

struct Find {
    space: Space,
    key: Vec<u8>,
    nodes: Vec<u16>,
    done: Box<dyn FnOnce(Result<Option<u16>, String>) + Send>,
}

impl OwnerFinder {
    fn start(cfg: RedisConfig, target: Target) -> Result<OwnerFinder, String> {
        let (tx, rx) = mpsc::sync_channel::<Find>(4096);
        std::thread::Builder::new()
            .name("cairn-redis-find".into())
            .spawn(move || {
                let mut conn: Option<Conn> = None;
                let mut failed_at: Option<Instant> = None;
                while let Ok(job) = rx.recv() {
                    let io_timeout = Duration::from_millis(cfg.lookup_timeout_ms);
                    if conn.is_none() {
                        // After a failure, do not try again for a while: each
                        // attempt would cost a lookup its whole timeout.
                        if failed_at.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) {
                            (job.done)(Err("Redis unreachable".into()));
                            continue;
                        }
                        match Conn::open(&target, io_timeout, io_timeout) {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                failed_at = Some(Instant::now());
                                (job.done)(Err(format!("cannot connect: {e}")));
                                continue;
                            }
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    let keys: Vec<Vec<u8>> = job
                        .nodes
                        .iter()
                        .map(|&n| cfg.redis_key(n, job.space, &job.key))
                        .collect();
                    let mut args: Vec<&[u8]> = vec![b"MGET"];
                    args.extend(keys.iter().map(|k| k.as_slice()));
                    match c.call(&args) {
                        Ok(Reply::Array(Some(vals))) => {
                            let now = crate::unix_ms();
                            let owner = job.nodes.iter().zip(vals).find_map(|(&n, v)| match v {
                                Reply::Bulk(Some(v)) => {
                                    matches!(decode(&v, now), Decoded::Live { .. }).then_some(n)
                                }
                                _ => None,
                            });
                            (job.done)(Ok(owner));
                        }
                        Ok(other) => (job.done)(Err(format!("MGET: unexpected reply {other:?}"))),
                        Err(e) => {
                            conn = None;
                            failed_at = Some(Instant::now());
                            (job.done)(Err(e.to_string()));
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the lookup thread: {e}"))?;
        Ok(OwnerFinder { tx })
    }

    /// Looks for the live record `key` of `space` under each of `nodes`
    /// (in order); `done` gets the first node that holds it, from the
    /// lookup thread. A full queue answers at once with an error.
    pub fn find(
        &self,
        space: Space,
        key: Vec<u8>,
        nodes: Vec<u16>,
        done: impl FnOnce(Result<Option<u16>, String>) + Send + 'static,
    ) {
        let job = Find {
            space,
            key,
            nodes,
            done: Box::new(done),
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(j)) => (j.done)(Err("too many lookups queued".into())),
            Err(TrySendError::Disconnected(j)) => (j.done)(Err("the lookup thread stopped".into())),
        }
    }
}

/// The URL without its credentials.
fn display_url(url: &str) -> String {
    match (url.strip_prefix("redis://"), url.rfind('@')) {
        (Some(_), Some(at)) => format!("redis://{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn kind_of(e: &io::Error) -> StoreErrorKind {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => StoreErrorKind::Timeout,
        _ => StoreErrorKind::Unavailable,
    }
}

fn unhex(h: &[u8]) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    h.chunks(2)
        .map(|p| Some(val(p[0])? << 4 | val(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_node_and_space() {
        let c = RedisConfig::new("redis://127.0.0.1:1", 7);
        assert_eq!(
            c.redis_key(7, Space::Transactions, &[0x01, 0xab]),
            b"cairn:n7:t:01ab".to_vec()
        );
        assert_eq!(c.redis_key(2, Space::Dialogs, b""), b"cairn:n2:d:".to_vec());
        assert_eq!(unhex(b"01ab"), Some(vec![0x01, 0xab]));
        assert_eq!(unhex(b"0g"), None);
        assert_eq!(display_url("redis://:pw@h:1/2"), "redis://h:1/2");
    }
}
