//! The Redis backend against a real redis-server (started by each test as a
//! child process on a loopback port): real-time expiry, ownership by node and
//! takeover, owner lookups, corrupt values, and what happens when Redis is
//! slow, down, or restarted empty.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_store::testing::RedisServer;
use cairn_store::{unix_ms, Op, RedisConfig, RedisStore, Space, Store, StoreErrorKind, NEVER};

fn server(dir: &Path) -> RedisServer {
    RedisServer::start_anywhere(&dir.join("redis.log")).expect("redis-server")
}

fn store(server: &RedisServer, node: u16) -> RedisStore {
    let mut cfg = RedisConfig::new(server.url(), node);
    // Generous: the tests check results, not speed, on a loaded machine.
    cfg.commit_timeout_ms = 2000;
    RedisStore::open(&cfg).expect("open")
}

/// Sends `sig` (`-STOP`, `-CONT`) to the server, by its PID.
fn signal(srv: &RedisServer, sig: &str) {
    let pid = srv.pid().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn keys_of(records: &[cairn_store::Record]) -> Vec<&[u8]> {
    records.iter().map(|r| r.key.as_slice()).collect()
}

fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out after {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn records_expire_in_redis_and_are_skipped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path());
    let mut s = store(&srv, 1);
    let now = unix_ms();
    s.commit(&[
        Op::put(Space::Transactions, "short", "x", now + 300),
        Op::put(Space::Transactions, "long", "x", now + 60_000),
        Op::put(Space::Transactions, "never", "x", NEVER),
    ])
    .unwrap();
    let pttl: i64 = srv
        .command(&["PTTL", "cairn:n1:t:6c6f6e67"])
        .unwrap()
        .parse()
        .unwrap();
    assert!((50_000..=60_000).contains(&pttl), "PTTL {pttl}");
    assert_eq!(
        srv.command(&["PTTL", "cairn:n1:t:6e65766572"]).unwrap(),
        "-1"
    );
    // A load with a clock past "short" skips it even if Redis still has it.
    let live = s.load(Space::Transactions, now + 301).unwrap();
    assert_eq!(keys_of(&live), vec![b"long".as_slice(), b"never"]);
    wait(
        "Redis expires the short record",
        Duration::from_secs(5),
        || srv.keys("cairn:n1:t:73*").unwrap().is_empty(),
    );
}

#[test]
fn nodes_own_their_records_and_a_node_takes_over_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path());
    let far = unix_ms() + 120_000;
    let mut a = store(&srv, 1);
    let mut b = store(&srv, 2);
    a.commit(&[
        Op::put(Space::Transactions, [1u8; 8], "a-txn-1", far),
        Op::put(Space::Transactions, [2u8; 8], "a-txn-2", far),
        Op::put(Space::Dialogs, [3u8; 8], "a-dlg", far),
    ])
    .unwrap();
    b.commit(&[Op::put(Space::Transactions, [9u8; 8], "b-txn", far)])
        .unwrap();
    let now = unix_ms();
    assert_eq!(a.load(Space::Transactions, now).unwrap().len(), 2);
    assert_eq!(
        b.load(Space::Transactions, now).unwrap().len(),
        1,
        "B sees only its own"
    );

    // A owner lookup from anywhere.
    let finder = b.finder();
    let (tx, rx) = mpsc::channel();
    for key in [[2u8; 8], [9u8; 8], [7u8; 8]] {
        let tx = tx.clone();
        finder.find(Space::Transactions, key.to_vec(), vec![1, 2, 3], move |r| {
            tx.send(r).unwrap()
        });
    }
    let owners: Vec<_> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(2)).unwrap().unwrap())
        .collect();
    assert_eq!(owners, vec![Some(1), Some(2), None]);

    // A dies; B takes over its records: renamed to B's keys, expiry kept.
    drop(a);
    let t = b.adopt(1, Space::Transactions, unix_ms()).unwrap();
    assert_eq!(keys_of(&t), vec![[1u8; 8].as_slice(), &[2u8; 8]]);
    assert_eq!(t[0].value, b"a-txn-1");
    let d = b.adopt(1, Space::Dialogs, unix_ms()).unwrap();
    assert_eq!(d.len(), 1);
    assert!(
        srv.keys("cairn:n1:*").unwrap().is_empty(),
        "nothing left under node 1"
    );
    let pttl: i64 = srv
        .command(&["PTTL", "cairn:n2:t:0101010101010101"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(pttl > 100_000, "expiry kept across the takeover: {pttl}");
    assert_eq!(b.load(Space::Transactions, unix_ms()).unwrap().len(), 3);
    assert_eq!(b.stats().records(Space::Transactions), 3);
    // Taking over again finds nothing.
    assert!(b
        .adopt(1, Space::Transactions, unix_ms())
        .unwrap()
        .is_empty());
}

#[test]
fn corrupt_and_foreign_values_are_skipped_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path());
    let mut s = store(&srv, 4);
    s.commit(&[Op::put(Space::Dialogs, "ok", "fine", NEVER)])
        .unwrap();
    srv.command(&["SET", "cairn:n4:d:6261", "garbage that is no record"])
        .unwrap();
    srv.command(&["SET", "cairn:n4:d:zz", "x"]).unwrap();
    let live = s.load(Space::Dialogs, unix_ms()).unwrap();
    assert_eq!(keys_of(&live), vec![b"ok".as_slice()]);
    assert_eq!(s.stats().corrupt_skipped, 2);
    assert_eq!(srv.keys("cairn:n4:d:*").unwrap().len(), 1);
}

#[test]
fn a_slow_redis_times_the_commit_out_and_the_batch_is_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path());
    let mut cfg = RedisConfig::new(srv.url(), 1);
    cfg.commit_timeout_ms = 50;
    let mut s = RedisStore::open(&cfg).unwrap();
    s.commit(&[Op::put(Space::Transactions, "before", "v", NEVER)])
        .unwrap();
    let kill = |sig: &str| signal(&srv, sig);
    kill("-STOP");
    let started = Instant::now();
    let err = s
        .commit(&[Op::put(Space::Transactions, "slow", "v", NEVER)])
        .unwrap_err();
    let waited = started.elapsed();
    kill("-CONT");
    assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("stays queued"), "{err}");
    // Bounded by the commit timeout (50 ms), with slack for a loaded machine.
    assert!(waited < Duration::from_millis(500), "waited {waited:?}");
    s.sync().unwrap();
    let live = s.load(Space::Transactions, unix_ms()).unwrap();
    assert_eq!(keys_of(&live), vec![b"before".as_slice(), b"slow"]);
    assert!(s.stats().available);
}

#[test]
fn redis_down_then_back_remembered_deletes_and_a_resync() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path());
    let mut cfg = RedisConfig::new(srv.url(), 1);
    cfg.io_timeout_ms = 200;
    cfg.commit_timeout_ms = 2000;
    let mut s = RedisStore::open(&cfg).unwrap();
    s.commit(&[
        Op::put(Space::Transactions, "ended", "v", NEVER),
        Op::put(Space::Transactions, "kept", "v", NEVER),
    ])
    .unwrap();
    assert!(!s.take_resync(), "no resync without an outage");
    // Frozen past the I/O timeout: down.
    let kill = |sig: &str| signal(&srv, sig);
    kill("-STOP");
    let _ = s.commit(&[Op::put(Space::Transactions, "x", "v", NEVER)]);
    wait("the store sees Redis down", Duration::from_secs(5), || {
        !s.is_up()
    });
    let started = Instant::now();
    let err = s
        .commit(&[
            Op::delete(Space::Transactions, "ended"),
            Op::put(Space::Transactions, "during", "v", NEVER),
        ])
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "a commit while down does not wait: {:?}",
        started.elapsed()
    );
    let st = s.stats();
    assert!(!st.available);
    assert!(st.dropped_ops >= 1 && st.pending_ops >= 1, "{st:?}");
    kill("-CONT");
    wait(
        "the store is healthy again",
        Duration::from_secs(10),
        || s.is_up(),
    );
    assert!(
        s.take_resync(),
        "the driver is asked to write every live record"
    );
    assert!(!s.take_resync(), "once");
    let live = s.load(Space::Transactions, unix_ms()).unwrap();
    // "ended" was deleted when Redis came back; "during" was dropped (the
    // resync writes it again if it is still live).
    assert_eq!(keys_of(&live), vec![b"kept".as_slice(), b"x"]);
    assert_eq!(s.stats().resyncs, 1);
}

#[test]
fn redis_killed_and_restarted_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = server(dir.path());
    let mut s = store(&srv, 1);
    s.commit(&[Op::put(Space::Transactions, "a", "v", NEVER)])
        .unwrap();
    srv.stop();
    let _ = s.commit(&[Op::put(Space::Transactions, "b", "v", NEVER)]);
    wait("down", Duration::from_secs(5), || !s.is_up());
    let err = s.load(Space::Transactions, unix_ms()).unwrap_err();
    assert!(err.to_string().contains("redis://"), "{err}");
    srv.restart().unwrap();
    wait("up again", Duration::from_secs(10), || s.is_up());
    assert!(s.take_resync());
    // Writes go through again (the reader reconnects too).
    s.commit(&[Op::put(Space::Transactions, "c", "v", NEVER)])
        .unwrap();
    let live = s.load(Space::Transactions, unix_ms()).unwrap();
    assert!(live.iter().any(|r| r.key == b"c"), "{live:?}");
}

#[test]
fn unreachable_at_start_the_store_opens_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = server(dir.path());
    let url = srv.url();
    srv.stop();
    let mut s = RedisStore::open(&RedisConfig::new(url, 3)).unwrap();
    wait("degraded", Duration::from_secs(2), || !s.is_up());
    let err = s
        .commit(&[Op::put(Space::Dialogs, "k", "v", NEVER)])
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let bad = RedisStore::open(&RedisConfig::new("redis://h:notaport", 1))
        .err()
        .unwrap();
    assert_eq!(bad.kind(), StoreErrorKind::InvalidInput);
    assert!(bad.to_string().contains("port"), "{bad}");
}
