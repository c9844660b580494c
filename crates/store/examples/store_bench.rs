//! State store benchmark: commit throughput and latency per durability level
//! and batch size, restore time (open + load) after SIGKILL, disk bytes per
//! live record. Run it through `bench/store_restore.sh` (release build).
//!
//! ```text
//! store_bench [--secs S] [--rate R] [--sync-ms MS] [--only ROW-PREFIX] [--live L] [--records N] [--churn C] [--dir D] [--skip-commit] [--skip-restore]
//! ```
//!
//! * commit: for each level (off, buffered, strict) and batch size (1, 10,
//!   50): for S seconds (default 3), commit batches of that many new
//!   1.5 KB transaction records, each batch also deleting as many records
//!   written L (default 10,000) records earlier, so the live set stays at L.
//!   Rows "max" commit back to back (throughput); rows "paced" commit R
//!   records/s (default 5,000) in batches of that size (latency at a
//!   steady load). Reports commits/s, records/s, commit latency p50/p99/p99.9/max, process
//!   CPU per 1000 records, and disk bytes per live record at the end.
//! * restore: a child process writes N (default 100,000) live 1.5 KB records
//!   in batches of 50 (buffered), then C (default 100,000) more with as many
//!   deletes (the live set stays N), prints DONE and is SIGKILLed; then
//!   open + load is timed, twice (after the kill, then after a clean close).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_store::{
    dir_disk_bytes, open, unix_ms, Durability, FjallStore, Op, Space, Store, StoreConfig,
};

const VALUE_LEN: usize = 1500;

fn value(seq: u64) -> Vec<u8> {
    // Not all one byte: compressible like SIP text, not trivially.
    let mut v = Vec::with_capacity(VALUE_LEN);
    let line = format!(
        "INVITE sip:+4930{seq:08}@gw.example.net SIP/2.0;branch=z9hG4bK{seq:016x};cseq={};",
        seq % 997
    );
    while v.len() < VALUE_LEN {
        v.extend_from_slice(line.as_bytes());
    }
    v.truncate(VALUE_LEN);
    v
}

fn key(seq: u64) -> Vec<u8> {
    format!("z9hG4bK{seq:016x}/INVITE/10.0.0.1:5060").into_bytes()
}

fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer we give it.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Args {
    secs: f64,
    rate: f64,
    sync_ms: u64,
    live: u64,
    records: u64,
    churn: u64,
    dir: PathBuf,
    commit: bool,
    restore: bool,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        secs: 3.0,
        rate: 5_000.0,
        sync_ms: 5,
        live: 10_000,
        records: 100_000,
        churn: 100_000,
        dir: std::env::temp_dir().join(format!("cairn-store-bench-{}", std::process::id())),
        commit: true,
        restore: true,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().expect("missing value");
        if arg == "--only" {
            a.only = Some(val());
            continue;
        }
        match arg.as_str() {
            "--secs" => a.secs = val().parse().unwrap(),
            "--rate" => a.rate = val().parse().unwrap(),
            "--sync-ms" => a.sync_ms = val().parse().unwrap(),
            "--live" => a.live = val().parse().unwrap(),
            "--records" => a.records = val().parse().unwrap(),
            "--churn" => a.churn = val().parse().unwrap(),
            "--dir" => a.dir = PathBuf::from(val()),
            "--skip-commit" => a.commit = false,
            "--skip-restore" => a.restore = false,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn bench_commit(args: &Args, durability: Durability, batch: u64, rate: Option<f64>) {
    let dir = args.dir.join(format!("commit-{durability}-{batch}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = StoreConfig::new(&dir);
    cfg.durability = durability;
    cfg.sync_interval_ms = args.sync_ms;
    let mut store = open(&cfg).unwrap();
    let expires = unix_ms() + 3_600_000;
    let mut lat = Vec::with_capacity(1 << 20);
    let mut seq = 0u64;
    let mut ops = Vec::with_capacity(2 * batch as usize);
    let cpu0 = cpu_time();
    let start = Instant::now();
    let until = Duration::from_secs_f64(args.secs);
    let mut next = start;
    while start.elapsed() < until {
        if let Some(rate) = rate {
            // Paced: one batch every batch/rate seconds.
            next += Duration::from_secs_f64(batch as f64 / rate);
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        ops.clear();
        for _ in 0..batch {
            ops.push(Op::put(Space::Transactions, key(seq), value(seq), expires));
            if seq >= args.live {
                ops.push(Op::delete(Space::Transactions, key(seq - args.live)));
            }
            seq += 1;
        }
        let t = Instant::now();
        store.commit(&ops).unwrap();
        lat.push(t.elapsed());
    }
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu0;
    let st = store.stats();
    drop(store);
    let disk = if durability == Durability::Off {
        0
    } else {
        dir_disk_bytes(&dir).unwrap_or(0)
    };
    let live = seq.min(args.live);
    lat.sort_unstable();
    let commits = lat.len() as f64;
    println!(
        "{:<7} {:<8} batch {:>2}  {:>8.0} commits/s {:>9.0} records/s  p50 {:>7} us  p99 {:>7} us  p99.9 {:>8} us  max {:>8} us  cpu {:>6.1} ms/1000 rec  syncs {:>5}  disk {:>7.0} B/live rec",
        if rate.is_some() { "paced" } else { "max" },
        durability.name(),
        batch,
        commits / wall.as_secs_f64(),
        seq as f64 / wall.as_secs_f64(),
        us(pct(&lat, 0.50)),
        us(pct(&lat, 0.99)),
        us(pct(&lat, 0.999)),
        us(*lat.last().unwrap_or(&Duration::ZERO)),
        cpu.as_secs_f64() * 1e3 / (seq as f64 / 1000.0),
        st.syncs,
        disk as f64 / live.max(1) as f64,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Child mode: `store_bench fill DIR N CHURN`.
fn fill(dir: &Path, n: u64, churn: u64) {
    let mut cfg = StoreConfig::new(dir);
    cfg.durability = Durability::Buffered;
    let mut store = FjallStore::open(&cfg).unwrap();
    let expires = unix_ms() + 3_600_000;
    let t = Instant::now();
    let mut seq = 0u64;
    let mut ops = Vec::with_capacity(100);
    while seq < n + churn {
        ops.clear();
        for _ in 0..50 {
            if seq >= n + churn {
                break;
            }
            ops.push(Op::put(Space::Transactions, key(seq), value(seq), expires));
            if seq >= n {
                ops.push(Op::delete(Space::Transactions, key(seq - n)));
            }
            seq += 1;
        }
        store.commit(&ops).unwrap();
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "DONE {} ms", t.elapsed().as_millis()).unwrap();
    out.flush().unwrap();
    // Wait to be killed (bounded).
    std::thread::sleep(Duration::from_secs(120));
}

fn restore_once(dir: &Path, expect: u64, label: &str) {
    let mut cfg = StoreConfig::new(dir);
    cfg.durability = Durability::Buffered;
    let t0 = Instant::now();
    let mut store = FjallStore::open(&cfg).unwrap();
    let t1 = Instant::now();
    let now = unix_ms();
    let txns = store.load(Space::Transactions, now).unwrap();
    let dialogs = store.load(Space::Dialogs, now).unwrap();
    let t2 = Instant::now();
    assert_eq!(txns.len() as u64, expect, "records restored");
    let disk = store.measure_disk_bytes();
    println!(
        "restore {label:<28} {:>7} records  open {:>6.0} ms  load {:>6.0} ms  total {:>6.0} ms  disk {:>6.1} MB = {:>5.0} B/live rec (payload {VALUE_LEN} B)",
        txns.len() + dialogs.len(),
        (t1 - t0).as_secs_f64() * 1e3,
        (t2 - t1).as_secs_f64() * 1e3,
        (t2 - t0).as_secs_f64() * 1e3,
        disk as f64 / 1e6,
        disk as f64 / expect.max(1) as f64,
    );
}

fn bench_restore(args: &Args, churn: u64) {
    let dir = args.dir.join(format!("restore-{churn}"));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .arg("fill")
        .arg(&dir)
        .arg(args.records.to_string())
        .arg(churn.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // SIGKILL (std's kill is SIGKILL on Unix): no clean close, no flush.
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "fill    {} live + {churn} churned records (batches of 50, buffered): {}",
        args.records,
        line.trim()
    );
    restore_once(&dir, args.records, "after SIGKILL");
    restore_once(&dir, args.records, "again, after a clean close");
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("fill") {
        fill(
            Path::new(&argv[2]),
            argv[3].parse().unwrap(),
            argv[4].parse().unwrap(),
        );
        return;
    }
    let args = parse_args();
    std::fs::create_dir_all(&args.dir).unwrap();
    println!(
        "cairn-store bench: records of {VALUE_LEN} B, keys of {} B; dir {}",
        key(0).len(),
        args.dir.display()
    );
    if args.commit {
        println!(
            "commit: {} s per row; each batch puts N new records and deletes N written {} records earlier",
            args.secs, args.live
        );
        for rate in [None, Some(args.rate)] {
            match rate {
                None => println!("max: batches back to back (throughput at saturation)"),
                Some(r) => println!("paced: {r} records/s (latency at a steady load)"),
            }
            for durability in [Durability::Off, Durability::Buffered, Durability::Strict] {
                for batch in [1, 10, 50] {
                    let row = format!(
                        "{}-{}-{batch}",
                        if rate.is_some() { "paced" } else { "max" },
                        durability.name()
                    );
                    if args
                        .only
                        .as_ref()
                        .is_some_and(|o| !row.starts_with(o.as_str()))
                    {
                        continue;
                    }
                    bench_commit(&args, durability, batch, rate);
                }
            }
        }
    }
    if args.restore {
        bench_restore(&args, 0);
        if args.churn > 0 {
            bench_restore(&args, args.churn);
        }
    }
    let _ = std::fs::remove_dir(&args.dir);
}
