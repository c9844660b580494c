//! Crash safety: a child process (this test binary, re-invoked) commits
//! batches and prints `ACK n` after each commit returns; the parent SIGKILLs
//! it by PID after about a second, reopens the store and checks that every
//! ACKed batch is there, whole, and that nothing else is (at most the one
//! batch that was committed but not yet ACKed, and then all of it: batches
//! are atomic). Several kill/restart cycles on the same directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_store::{Durability, FjallStore, Op, Space, Store, StoreConfig, NEVER};

/// Records written per batch.
const PER: u64 = 8;
/// A batch's records are deleted this many batches later.
const LIFE: u64 = 5;
/// A dialog record lives this many batches.
const DIALOG_LIFE: u64 = 3;

const ENV_DIR: &str = "CAIRN_STORE_CRASH_DIR";
const ENV_DURABILITY: &str = "CAIRN_STORE_CRASH_DURABILITY";
const ENV_START: &str = "CAIRN_STORE_CRASH_START";

fn txn_key(batch: u64, j: u64) -> Vec<u8> {
    format!("t{batch:08}-{j}").into_bytes()
}

fn txn_value(batch: u64, j: u64, version: u64) -> Vec<u8> {
    let mut v = format!("batch {batch} record {j} version {version};").into_bytes();
    v.resize(1500, b'0' + (batch % 10) as u8);
    v
}

fn dialog_key(batch: u64) -> Vec<u8> {
    format!("d{batch:08}").into_bytes()
}

/// The ops of batch `b` (b >= 1).
fn batch_ops(b: u64) -> Vec<Op> {
    let mut ops = Vec::new();
    for j in 0..PER {
        ops.push(Op::put(
            Space::Transactions,
            txn_key(b, j),
            txn_value(b, j, 0),
            NEVER,
        ));
    }
    if b >= 2 {
        ops.push(Op::put(
            Space::Transactions,
            txn_key(b - 1, 0),
            txn_value(b - 1, 0, 1),
            NEVER,
        ));
    }
    if b > LIFE {
        for j in 0..PER {
            ops.push(Op::delete(Space::Transactions, txn_key(b - LIFE, j)));
        }
    }
    ops.push(Op::put(
        Space::Dialogs,
        dialog_key(b),
        format!("dialog {b}"),
        NEVER,
    ));
    if b > DIALOG_LIFE {
        ops.push(Op::delete(Space::Dialogs, dialog_key(b - DIALOG_LIFE)));
    }
    ops
}

type State = (BTreeMap<Vec<u8>, Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>);

/// The store's content once batches 1..=n are applied.
fn expected(n: u64) -> State {
    let mut t = BTreeMap::new();
    let mut d = BTreeMap::new();
    for b in n.saturating_sub(LIFE - 1).max(1)..=n {
        for j in 0..PER {
            let version = u64::from(j == 0 && b < n);
            t.insert(txn_key(b, j), txn_value(b, j, version));
        }
    }
    for b in n.saturating_sub(DIALOG_LIFE - 1).max(1)..=n {
        d.insert(dialog_key(b), format!("dialog {b}").into_bytes());
    }
    (t, d)
}

fn cfg(dir: &Path, durability: Durability) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.durability = durability;
    // Small memtables: flushes and compactions run while the child is
    // killed, not only journal appends.
    c.memtable_bytes = Some(256 * 1024);
    c
}

fn actual(dir: &Path, durability: Durability) -> State {
    let mut s = FjallStore::open(&cfg(dir, durability)).expect("reopen after SIGKILL");
    let now = cairn_store::unix_ms();
    let to_map = |v: Vec<cairn_store::Record>| v.into_iter().map(|r| (r.key, r.value)).collect();
    let t = to_map(s.load(Space::Transactions, now).unwrap());
    let d = to_map(s.load(Space::Dialogs, now).unwrap());
    assert_eq!(s.stats().corrupt_skipped, 0);
    (t, d)
}

/// The child: commits batches from `START` on, printing `ACK n` after each
/// commit returned. Runs only when re-invoked by `crash_cycles`.
#[test]
#[ignore = "child process of the crash tests; runs only when they start it"]
fn crash_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let durability: Durability = std::env::var(ENV_DURABILITY).unwrap().parse().unwrap();
    let start: u64 = std::env::var(ENV_START).unwrap().parse().unwrap();
    let mut store = FjallStore::open(&cfg(Path::new(&dir), durability)).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    // Bounded: the parent kills it long before this.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut b = start;
    while Instant::now() < deadline {
        store.commit(&batch_ops(b)).unwrap();
        writeln!(out, "ACK {b}").unwrap();
        out.flush().unwrap();
        b += 1;
    }
}

/// Runs `cycles` child lives on one directory, killing each after ~1 s.
fn crash_cycles(durability: Durability, cycles: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut applied = 0u64;
    for cycle in 0..cycles {
        let stderr = std::fs::File::create(tmp.path().join(format!("child{cycle}.err"))).unwrap();
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, &dir)
            .env(ENV_DURABILITY, durability.name())
            .env(ENV_START, (applied + 1).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for READY (the child opens the store first).
        let ready_deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = ready_deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                // libtest prints "test crash_child ... " without a newline first.
                Ok(l) if l.ends_with("READY") => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "child never became ready ({e}): {}",
                        std::fs::read_to_string(tmp.path().join(format!("child{cycle}.err")))
                            .unwrap_or_default()
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1000));
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on the PID of our own child, not yet waited.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill failed");
        let status = child.wait().unwrap();
        reader.join().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "child did not die of SIGKILL: {status:?}"
        );

        let mut last_ack = applied;
        for line in rx.try_iter() {
            if let Some(n) = line.strip_prefix("ACK ") {
                let n: u64 = n.parse().unwrap();
                assert_eq!(n, last_ack + 1, "ACKs in order");
                last_ack = n;
            }
        }
        assert!(
            last_ack >= applied + 10,
            "cycle {cycle}: only {} batches ACKed in a second",
            last_ack - applied
        );

        let got = actual(&dir, durability);
        let n = if got == expected(last_ack) {
            last_ack
        } else if got == expected(last_ack + 1) {
            // Committed, killed before the ACK was written: fine, and whole.
            last_ack + 1
        } else {
            let want = expected(last_ack);
            let missing: Vec<String> = want
                .0
                .keys()
                .filter(|k| got.0.get(*k) != want.0.get(*k))
                .take(5)
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            panic!(
                "cycle {cycle} ({durability}): store after SIGKILL matches neither ACKed batch {last_ack} \
                 nor {}: {} txn / {} dialog records, expected {} / {}; differing keys (first 5): {missing:?}",
                last_ack + 1,
                got.0.len(),
                got.1.len(),
                want.0.len(),
                want.1.len()
            );
        };
        eprintln!(
            "{durability} cycle {cycle}: batches {}..={last_ack} ACKed, store holds batch {n}",
            applied + 1
        );
        applied = n;
    }
}

#[test]
fn sigkill_loses_no_acked_batch_buffered() {
    crash_cycles(Durability::Buffered, 3);
}

#[test]
fn sigkill_loses_no_acked_batch_strict() {
    crash_cycles(Durability::Strict, 2);
}
