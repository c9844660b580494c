//! Behaviour of both backends: round trips, expiry, corruption, reopen,
//! unopenable stores, limits.

use std::path::Path;

use cairn_store::testing::RedisServer;
use cairn_store::{
    open, open_or_move_aside, Durability, FjallStore, MemoryStore, Op, Record, RedisConfig,
    RedisStore, Space, Store, StoreConfig, StoreErrorKind, HEADER_LEN, NEVER,
};

const FAR: u64 = NEVER;

fn cfg(path: &Path, durability: Durability) -> StoreConfig {
    let mut c = StoreConfig::new(path);
    c.durability = durability;
    c
}

fn fjall(path: &Path) -> FjallStore {
    FjallStore::open(&cfg(path, Durability::Buffered)).expect("open")
}

fn pairs(records: &[Record]) -> Vec<(Vec<u8>, Vec<u8>)> {
    records
        .iter()
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect()
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

/// The same script on any backend.
fn round_trip(store: &mut dyn Store) {
    let now = 1_000;
    store
        .commit(&[
            Op::put(Space::Transactions, "b", "txn-b", FAR),
            Op::put(Space::Transactions, "a", "txn-a", FAR),
            Op::put(Space::Dialogs, "a", "dlg-a", FAR),
        ])
        .unwrap();
    assert_eq!(
        pairs(&store.load(Space::Transactions, now).unwrap()),
        vec![kv("a", "txn-a"), kv("b", "txn-b")],
        "sorted by key, spaces separate"
    );
    assert_eq!(
        pairs(&store.load(Space::Dialogs, now).unwrap()),
        vec![kv("a", "dlg-a")]
    );

    // Upsert, delete, and a later op on the same key in one batch wins.
    let info = store
        .commit(&[
            Op::put(Space::Transactions, "a", "txn-a2", FAR),
            Op::delete(Space::Transactions, "b"),
            Op::put(Space::Transactions, "c", "first", FAR),
            Op::put(Space::Transactions, "c", "second", FAR),
            Op::put(Space::Dialogs, "z", "gone", FAR),
            Op::delete(Space::Dialogs, "z"),
            Op::delete(Space::Dialogs, "never-existed"),
        ])
        .unwrap();
    assert_eq!(info.ops, 7);
    assert!(info.bytes > 0);
    assert_eq!(
        pairs(&store.load(Space::Transactions, now).unwrap()),
        vec![kv("a", "txn-a2"), kv("c", "second")]
    );
    assert_eq!(
        pairs(&store.load(Space::Dialogs, now).unwrap()),
        vec![kv("a", "dlg-a")]
    );
    let st = store.stats();
    assert_eq!(st.records(Space::Transactions), 2);
    assert_eq!(st.records(Space::Dialogs), 1);
    assert_eq!(st.commits, 2);
    assert_eq!(st.commit_errors, 0);

    // Binary keys and values, empty value.
    let key = vec![0u8, 255, 10, 13];
    let value: Vec<u8> = (0..=255u8).collect();
    store
        .commit(&[
            Op::put(Space::Dialogs, key.clone(), value.clone(), FAR),
            Op::put(Space::Dialogs, "empty", "", FAR),
        ])
        .unwrap();
    let d = store.load(Space::Dialogs, now).unwrap();
    assert!(d.iter().any(|r| r.key == key && r.value == value));
    assert!(d.iter().any(|r| r.key == b"empty" && r.value.is_empty()));

    // Empty batch: nothing happens.
    let info = store.commit(&[]).unwrap();
    assert_eq!(info.ops, 0);
}

#[test]
fn round_trip_memory() {
    round_trip(&mut MemoryStore::new());
}

#[test]
fn round_trip_fjall_buffered() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&mut fjall(&dir.path().join("s")));
}

#[test]
fn round_trip_fjall_strict() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = FjallStore::open(&cfg(&dir.path().join("s"), Durability::Strict)).unwrap();
    round_trip(&mut s);
    let info = s
        .commit(&[Op::put(Space::Transactions, "k", "v", FAR)])
        .unwrap();
    assert!(info.synced);
}

/// A real redis-server of the test's own, and a store of node 1 on it.
fn redis(dir: &Path) -> (RedisServer, RedisStore) {
    let server = RedisServer::start_anywhere(&dir.join("redis.log")).expect("redis-server");
    let mut cfg = RedisConfig::new(server.url(), 1);
    // Generous: the tests check results, not speed, on a loaded machine.
    cfg.commit_timeout_ms = 2000;
    let store = RedisStore::open(&cfg).expect("open");
    (server, store)
}

#[test]
fn round_trip_redis() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut store) = redis(dir.path());
    round_trip(&mut store);
}

#[test]
fn open_dispatches_on_durability() {
    let dir = tempfile::tempdir().unwrap();
    let off = open(&cfg(&dir.path().join("off"), Durability::Off)).unwrap();
    assert_eq!(off.stats().backend, "memory");
    assert!(
        !dir.path().join("off").exists(),
        "off writes nothing, not even the directory"
    );
    let on = open(&cfg(&dir.path().join("on"), Durability::Buffered)).unwrap();
    assert_eq!(on.stats().backend, "fjall");
    assert_eq!(on.durability(), Durability::Buffered);
    assert_eq!("STRICT".parse::<Durability>().unwrap(), Durability::Strict);
    assert!("fast".parse::<Durability>().is_err());
}

fn expiry(store: &mut dyn Store) {
    store
        .commit(&[
            Op::put(Space::Transactions, "dead", "x", 1_000),
            Op::put(Space::Transactions, "edge", "x", 2_000),
            Op::put(Space::Transactions, "live", "x", 5_000),
            Op::put(Space::Dialogs, "dead", "x", 10),
        ])
        .unwrap();
    // Dead *after* expires_at: at exactly 2000, "edge" still lives.
    let live = store.load(Space::Transactions, 2_000).unwrap();
    assert_eq!(
        live.iter().map(|r| r.key.as_slice()).collect::<Vec<_>>(),
        vec![b"edge".as_slice(), b"live"]
    );
    assert_eq!(live[1].expires_at_ms, 5_000);
    assert_eq!(store.stats().expired_purged, 1);
    assert!(store.load(Space::Dialogs, 2_000).unwrap().is_empty());
    assert_eq!(store.stats().expired_purged, 2);
    // Purged: loading with an older clock does not bring them back.
    let again = store.load(Space::Transactions, 0).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(store.stats().expired_purged, 2);
    assert_eq!(store.stats().records(Space::Transactions), 2);
}

#[test]
fn expired_records_skipped_memory() {
    expiry(&mut MemoryStore::new());
}

#[test]
fn expired_records_skipped_and_purged_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    expiry(&mut fjall(&path));
    // Still purged after a reopen.
    let mut s = fjall(&path);
    assert_eq!(s.load(Space::Transactions, 0).unwrap().len(), 2);
    assert_eq!(s.stats().expired_purged, 0);
}

/// The store's engine and one of its keyspaces, opened behind its back.
fn raw_keyspace(path: &Path, space: &str) -> (fjall::Database, fjall::Keyspace) {
    let db = fjall::Database::builder(path).open().unwrap();
    let ks = db
        .keyspace(space, fjall::KeyspaceCreateOptions::default)
        .unwrap();
    (db, ks)
}

/// Writes a value behind the store's back, straight into the engine.
fn raw_put(path: &Path, space: &str, key: &[u8], value: Vec<u8>) {
    let (db, ks) = raw_keyspace(path, space);
    ks.insert(key, value).unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

/// The key a record of `key` is stored under.
fn stored(seq: u64, key: &[u8]) -> Vec<u8> {
    [&seq.to_be_bytes()[..], key].concat()
}

fn raw_get(path: &Path, space: &str, key: &[u8]) -> Option<Vec<u8>> {
    raw_keyspace(path, space)
        .1
        .get(key)
        .unwrap()
        .map(|v| v.to_vec())
}

#[test]
fn corrupt_records_are_skipped_counted_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let mut s = fjall(&path);
        s.commit(&[
            Op::put(Space::Transactions, "a", "alpha", FAR),
            Op::put(Space::Transactions, "b", "bravo-payload", FAR),
            Op::put(Space::Transactions, "c", "charlie", FAR),
            Op::put(Space::Dialogs, "d", "delta", FAR),
        ])
        .unwrap();
    }
    // Flip one payload byte of "b", one header byte (the expiry) of "d",
    // and add a value too short to hold a header, one of an unknown record
    // version, and a key without its sequence number. Keys are stored
    // behind an 8-byte big-endian sequence number given in write order.
    let b_key = stored(2, b"b");
    let mut b = raw_get(&path, "transactions", &b_key).unwrap();
    assert_eq!(&b[HEADER_LEN..], b"bravo-payload");
    b[HEADER_LEN + 3] ^= 0x20;
    raw_put(&path, "transactions", &b_key, b);
    let d_key = stored(4, b"d");
    let mut d = raw_get(&path, "dialogs", &d_key).unwrap();
    d[4] ^= 0x01;
    raw_put(&path, "dialogs", &d_key, d);
    raw_put(
        &path,
        "transactions",
        &stored(5, b"short"),
        b"garbage".to_vec(),
    );
    let mut future = raw_get(&path, "transactions", &stored(1, b"a")).unwrap();
    future[0] = 200;
    raw_put(&path, "transactions", &stored(6, b"future"), future.clone());
    raw_put(&path, "transactions", b"no-seq", future);

    let mut s = fjall(&path);
    let t = s.load(Space::Transactions, 0).unwrap();
    assert_eq!(pairs(&t), vec![kv("a", "alpha"), kv("c", "charlie")]);
    assert!(s.load(Space::Dialogs, 0).unwrap().is_empty());
    let st = s.stats();
    assert_eq!(st.corrupt_skipped, 5);
    assert_eq!(st.records(Space::Transactions), 2);
    // The store keeps working, and the corrupt records are gone for good.
    s.commit(&[Op::put(Space::Dialogs, "d", "delta-2", FAR)])
        .unwrap();
    drop(s);
    let mut s = fjall(&path);
    assert_eq!(s.load(Space::Transactions, 0).unwrap().len(), 2);
    assert_eq!(
        pairs(&s.load(Space::Dialogs, 0).unwrap()),
        vec![kv("d", "delta-2")]
    );
    assert_eq!(s.stats().corrupt_skipped, 0);
}

fn txn_value(i: u32, version: u32) -> Vec<u8> {
    let mut v = format!("txn {i} v{version} ").into_bytes();
    v.resize(1500, b'a' + (i % 26) as u8);
    v
}

#[test]
fn reopen_after_drop_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    // ~36 MB of values: more than one memtable, so tables, journals and a
    // flush are all involved.
    let n = 24_000u32;
    {
        let mut s = fjall(&path);
        for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
            let batch: Vec<Op> = chunk
                .iter()
                .map(|&i| {
                    Op::put(
                        Space::Transactions,
                        format!("t{i:06}"),
                        txn_value(i, 0),
                        FAR,
                    )
                })
                .collect();
            s.commit(&batch).unwrap();
        }
        // Update every 3rd, delete every 5th, one dialog per 100.
        let mut ops = Vec::new();
        for i in 0..n {
            if i % 5 == 0 {
                ops.push(Op::delete(Space::Transactions, format!("t{i:06}")));
            } else if i % 3 == 0 {
                ops.push(Op::put(
                    Space::Transactions,
                    format!("t{i:06}"),
                    txn_value(i, 1),
                    FAR,
                ));
            }
            if i % 100 == 0 {
                ops.push(Op::put(
                    Space::Dialogs,
                    format!("d{i:06}"),
                    format!("dialog {i}"),
                    FAR,
                ));
            }
        }
        for batch in ops.chunks(64) {
            s.commit(batch).unwrap();
        }
        assert!(s.stats().disk_bytes > 0 || s.measure_disk_bytes() > 0);
    }
    for round in 0..2 {
        let mut s = fjall(&path);
        let t = s.load(Space::Transactions, 0).unwrap();
        let expected: Vec<u32> = (0..n).filter(|i| i % 5 != 0).collect();
        assert_eq!(t.len(), expected.len(), "round {round}");
        for (r, &i) in t.iter().zip(&expected) {
            assert_eq!(r.key, format!("t{i:06}").into_bytes());
            let version = if i % 3 == 0 { 1 } else { 0 };
            assert_eq!(r.value, txn_value(i, version), "t{i:06} round {round}");
        }
        assert_eq!(s.load(Space::Dialogs, 0).unwrap().len(), (n / 100) as usize);
        assert_eq!(
            s.stats().records(Space::Transactions),
            expected.len() as u64
        );
        assert_eq!(s.stats().corrupt_skipped, 0);
    }
}

#[test]
fn counts_are_kept_when_committing_before_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let mut s = fjall(&path);
        s.commit(&[
            Op::put(Space::Transactions, "a", "1", FAR),
            Op::put(Space::Transactions, "b", "1", FAR),
        ])
        .unwrap();
    }
    let mut s = fjall(&path);
    s.commit(&[Op::put(Space::Transactions, "c", "1", FAR)])
        .unwrap();
    assert_eq!(s.stats().records(Space::Transactions), 3);
}

#[test]
fn unopenable_regular_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    std::fs::write(&path, b"not a store").unwrap();
    let err = open(&cfg(&path, Durability::Buffered)).err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Unopenable);
    assert_eq!(err.path(), path);
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("open failed"), "{msg}");
    assert!(msg.contains("not a directory"), "{msg}");
    assert!(msg.contains("move the directory aside"), "{msg}");
}

#[test]
fn unopenable_foreign_directory_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("notes.txt"), b"precious").unwrap();
    let err = open(&cfg(&path, Durability::Strict)).err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Unopenable);
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("notes.txt"), "{msg}");
    assert_eq!(
        std::fs::read_dir(&path).unwrap().count(),
        1,
        "nothing written"
    );
}

#[test]
fn unopenable_bad_version_marker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    drop(fjall(&path));
    std::fs::write(path.join("version"), b"garbage!").unwrap();
    let err = open(&cfg(&path, Durability::Buffered)).err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Unopenable, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("format"), "{msg}");
}

#[test]
fn unopenable_other_store_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    drop(fjall(&path));
    raw_put(&path, "meta", b"format", b"cairn-store 99".to_vec());
    let err = open(&cfg(&path, Durability::Buffered)).err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Unopenable);
    assert!(err.to_string().contains("cairn-store 99"), "{err}");
}

#[test]
fn unopenable_foreign_fjall_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    raw_put(&path, "users", b"k", b"v".to_vec());
    let err = open(&cfg(&path, Durability::Buffered)).err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Unopenable);
    assert!(err.to_string().contains("users"), "{err}");
}

#[test]
fn second_open_is_locked_not_unopenable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let _first = fjall(&path);
    let err = FjallStore::open(&cfg(&path, Durability::Buffered))
        .err()
        .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Locked, "{err}");
    assert!(err.to_string().contains("another"), "{err}");
    // And open_or_move_aside must not move a store that is in use.
    let err = open_or_move_aside(&cfg(&path, Durability::Buffered))
        .err()
        .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Locked);
    assert!(path.join("version").exists());
}

#[test]
fn open_or_move_aside_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("junk"), b"x").unwrap();
    let opened = open_or_move_aside(&cfg(&path, Durability::Buffered)).unwrap();
    let (aside, why) = opened.moved_aside.expect("moved aside");
    assert_eq!(why.kind(), StoreErrorKind::Unopenable);
    assert!(aside.to_string_lossy().contains("state.broken-"));
    assert_eq!(std::fs::read(aside.join("junk")).unwrap(), b"x");
    let mut store = opened.store;
    store
        .commit(&[Op::put(Space::Dialogs, "k", "v", FAR)])
        .unwrap();
    assert_eq!(store.load(Space::Dialogs, 0).unwrap().len(), 1);
}

#[test]
fn interrupted_creation_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    std::fs::create_dir_all(path.join("keyspaces")).unwrap();
    std::fs::write(path.join("lock"), b"").unwrap();
    std::fs::write(path.join("0.jnl"), vec![0u8; 100]).unwrap();
    let mut s = fjall(&path);
    s.commit(&[Op::put(Space::Dialogs, "k", "v", FAR)]).unwrap();
}

/// Garbage written over the engine's files: open and load either work or
/// return an error; they never panic, and an error names the path.
#[test]
fn garbage_in_engine_files_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    {
        let mut s = fjall(&good);
        // More than one memtable, so the transactions keyspace has tables.
        for c in 0..250u32 {
            let batch: Vec<Op> = (0..50)
                .map(|j| {
                    let i = c * 50 + j;
                    Op::put(
                        Space::Transactions,
                        format!("t{i:06}"),
                        txn_value(i, 0),
                        FAR,
                    )
                })
                .collect();
            s.commit(&batch).unwrap();
        }
    }
    let files = files_under(&good);
    assert!(files.len() >= 3, "{files:?}");
    let mut outcomes = Vec::new();
    for (n, victim) in files.iter().enumerate() {
        if victim.ends_with("lock") {
            continue;
        }
        let copy = dir.path().join(format!("copy{n}"));
        copy_dir(&good, &copy);
        let target = copy.join(victim.strip_prefix(&good).unwrap());
        let mut bytes = std::fs::read(&target).unwrap();
        if bytes.is_empty() {
            continue;
        }
        // Overwrite a stretch in the middle (and the first bytes).
        let mid = bytes.len() / 2;
        for b in bytes.iter_mut().skip(mid).take(64) {
            *b ^= 0x5a;
        }
        for b in bytes.iter_mut().take(8) {
            *b = 0xff;
        }
        std::fs::write(&target, &bytes).unwrap();
        let outcome = match open(&cfg(&copy, Durability::Buffered)) {
            Err(e) => {
                assert!(e.to_string().contains(&copy.display().to_string()), "{e}");
                assert_eq!(e.kind(), StoreErrorKind::Unopenable, "{e}");
                format!("open error: {e}")
            }
            Ok(mut s) => match s.load(Space::Transactions, 0) {
                Ok(r) => format!("loaded {} (corrupt {})", r.len(), s.stats().corrupt_skipped),
                Err(e) => {
                    assert!(e.to_string().contains(&copy.display().to_string()), "{e}");
                    format!("load error: {e}")
                }
            },
        };
        outcomes.push(format!("{}: {outcome}", victim.display()));
    }
    eprintln!("{}", outcomes.join("\n"));
    assert!(
        outcomes.iter().any(|o| o.contains("keyspaces/2/tables/")),
        "a table of the transactions keyspace was damaged too"
    );
}

fn files_under(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn invalid_ops_reject_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, redis) = redis(dir.path());
    let mut stores: Vec<Box<dyn Store>> = vec![
        Box::new(MemoryStore::new()),
        Box::new(fjall(&dir.path().join("s"))),
        Box::new(redis),
    ];
    for s in &mut stores {
        for bad in [
            Op::put(Space::Transactions, "", "v", FAR),
            Op::put(Space::Transactions, vec![b'k'; 70_000], "v", FAR),
            Op::delete(Space::Dialogs, ""),
            Op::put(
                Space::Dialogs,
                "k",
                vec![0u8; cairn_store::MAX_VALUE_LEN + 1],
                FAR,
            ),
        ] {
            let err = s
                .commit(&[Op::put(Space::Transactions, "good", "v", FAR), bad])
                .err()
                .unwrap();
            assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains("op 1"), "{err}");
        }
        assert!(s.load(Space::Transactions, 0).unwrap().is_empty());
        assert_eq!(s.stats().commit_errors, 4);
    }
}

#[test]
fn disk_limit_refuses_puts_but_applies_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    fjall(&path)
        .commit(&[Op::put(Space::Transactions, "old", "v", FAR)])
        .unwrap();
    let mut c = cfg(&path, Durability::Buffered);
    c.max_disk_bytes = Some(1);
    let mut s = FjallStore::open(&c).unwrap();
    let err = s
        .commit(&[
            Op::put(Space::Transactions, "new", "v", FAR),
            Op::delete(Space::Transactions, "old"),
        ])
        .err()
        .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::QuotaExceeded);
    assert!(err.is_disk_full());
    assert!(err.to_string().contains("1 put(s) refused"), "{err}");
    assert!(s.load(Space::Transactions, 0).unwrap().is_empty());
    assert_eq!(s.stats().commit_errors, 1);
}

#[test]
fn buffered_syncs_in_the_background_and_sync_is_cheap_when_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = fjall(&dir.path().join("s"));
    assert_eq!(s.stats().syncs, 0);
    s.sync().unwrap();
    assert_eq!(s.stats().syncs, 0, "nothing to sync");
    s.commit(&[Op::put(Space::Transactions, "k", "v", FAR)])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.stats().syncs == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(s.stats().syncs, 1, "the ticker synced once");
    std::thread::sleep(std::time::Duration::from_millis(30));
    s.sync().unwrap();
    assert_eq!(s.stats().syncs, 1, "and not again while clean");
    assert_eq!(s.stats().sync_errors, 0);
    assert!(s.stats().available);
}

#[test]
fn error_message_has_path_operation_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, b"").unwrap();
    let err = open(&cfg(&path, Durability::Buffered)).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("state store {}: open failed: ", path.display())),
        "{msg}"
    );
    assert_eq!(err.operation(), cairn_store::Operation::Open);
}

/// Every stored key of a keyspace, in the store's order.
fn raw_keys(path: &Path, space: &str) -> Vec<Vec<u8>> {
    let (_db, ks) = raw_keyspace(path, space);
    ks.iter().map(|g| g.key().unwrap().to_vec()).collect()
}

#[test]
fn records_are_stored_in_write_order_and_unknown_removals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let mut s = fjall(&path);
        s.commit(&[
            Op::put(Space::Transactions, "zz", "1", FAR),
            Op::put(Space::Transactions, "aa", "2", FAR),
        ])
        .unwrap();
        // A new value keeps the key's place; a new key goes last.
        s.commit(&[
            Op::put(Space::Transactions, "zz", "3", FAR),
            Op::put(Space::Transactions, "mm", "4", FAR),
        ])
        .unwrap();
        let info = s
            .commit(&[
                Op::delete(Space::Transactions, "never-written"),
                Op::delete(Space::Dialogs, "aa"),
            ])
            .unwrap();
        assert_eq!(info.bytes, 0, "nothing to remove, nothing written");
    }
    let keys = raw_keys(&path, "transactions");
    assert_eq!(
        keys,
        vec![stored(1, b"zz"), stored(2, b"aa"), stored(3, b"mm")]
    );
    // After a reopen new keys still come after the old ones, and a key
    // removed and written again gets a new place.
    let mut s = fjall(&path);
    assert_eq!(
        pairs(&s.load(Space::Transactions, 0).unwrap()),
        vec![kv("aa", "2"), kv("mm", "4"), kv("zz", "3")]
    );
    s.commit(&[
        Op::delete(Space::Transactions, "zz"),
        Op::put(Space::Transactions, "bb", "5", FAR),
    ])
    .unwrap();
    s.commit(&[Op::put(Space::Transactions, "zz", "6", FAR)])
        .unwrap();
    drop(s);
    let keys = raw_keys(&path, "transactions");
    assert_eq!(
        keys,
        vec![
            stored(2, b"aa"),
            stored(3, b"mm"),
            stored(4, b"bb"),
            stored(5, b"zz")
        ]
    );
}

/// A store written before the sequence numbers (format 1: keys as given)
/// is converted when opened, and nothing in it is lost.
#[test]
fn a_store_of_format_1_is_converted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let mut s = fjall(&path);
        s.commit(&[
            Op::put(Space::Transactions, "t1", "one", FAR),
            Op::put(Space::Transactions, "t2", "two", FAR),
            Op::put(Space::Dialogs, "d1", "dialog", FAR),
        ])
        .unwrap();
    }
    // Rewrite it as format 1 wrote it.
    {
        for space in ["transactions", "dialogs"] {
            let (db, ks) = raw_keyspace(&path, space);
            let all: Vec<_> = ks.iter().map(|g| g.into_inner().unwrap()).collect();
            for (k, v) in all {
                ks.insert(&k[8..], v).unwrap();
                ks.remove(k).unwrap();
            }
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        raw_put(&path, "meta", b"format", b"cairn-store 1".to_vec());
    }
    assert_eq!(raw_keys(&path, "transactions")[0], b"t1".to_vec());
    let mut s = fjall(&path);
    assert_eq!(
        pairs(&s.load(Space::Transactions, 0).unwrap()),
        vec![kv("t1", "one"), kv("t2", "two")]
    );
    assert_eq!(
        pairs(&s.load(Space::Dialogs, 0).unwrap()),
        vec![kv("d1", "dialog")]
    );
    assert_eq!(s.stats().corrupt_skipped, 0);
    // Converted records are removed like any other.
    s.commit(&[Op::delete(Space::Transactions, "t1")]).unwrap();
    drop(s);
    let keys = raw_keys(&path, "transactions");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0][8..], *b"t2");
    assert_eq!(raw_get(&path, "meta", b"format").unwrap(), b"cairn-store 2");
}
