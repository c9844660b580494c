//! Restore benchmark of cairn's durable state (bench/durability.sh runs it).
//!
//! A child process builds the proxy core with records on (`persist`), feeds it N INVITEs
//! (distinct calls, no responses: every one stays in flight) through `handle_message`,
//! and commits the records each group of messages produced into a real state store
//! through the driver's own `cairn::state::StateStore` (one group commit per turn of
//! `--turn` messages, as the event loop does). At checkpoints it prints the store's size
//! on disk against the calls in flight. Then it says READY and the parent SIGKILLs it
//! (by PID): the store is left as a crash leaves it, journal not replayed.
//!
//! The parent then does what cairn does at start: `StateStore::open` (the engine
//! recovers its journal), and `StateStore::restore` (load both spaces, rebuild every
//! transaction in a fresh `Proxy`), timing each, and checks that all N came back.
//!
//! ```text
//! cargo run --release -p cairn --example restore_bench -- --calls 100000 --dir /tmp/x
//!   --durability buffered|strict   (default buffered)
//!   --turn N                       messages per group commit (default 64)
//!   --keep                         keep the directory
//!   --restore-only                 restore what an earlier `--keep` run left in --dir
//!                                  (within 3 minutes: the records expire), e.g. under perf
//! ```
//!
//! Everything stays in `--dir` (removed at the end unless `--keep`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn::admin::DriverMetrics;
use cairn::state::{Grouping, StateStore};
use cairn_proxy::{CoreConfig, LocalAddr, Output, Peer, Proxy};
use cairn_sip::Transport;
use cairn_store::{Durability, StoreConfig};

const PROXY: &str = "127.0.0.1:5060";

const CONFIG: &str = r#"
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[destination_set]]
name = "gateways"
algorithm = "round_robin"
destinations = [
    { uri = "sip:127.0.0.1:5071" },
    { uri = "sip:127.0.0.1:5072" },
]

[[rule]]
name = "calls"
methods = ["INVITE"]
destination_set = "gateways"
"#;

struct Args {
    calls: usize,
    dir: PathBuf,
    durability: Durability,
    turn: usize,
    keep: bool,
    child: bool,
    restore_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        calls: 100_000,
        dir: std::env::temp_dir().join(format!("cairn-restore-bench.{}", std::process::id())),
        durability: Durability::Buffered,
        turn: 64,
        keep: false,
        child: false,
        restore_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{k} needs a value")))
        };
        match k.as_str() {
            "--calls" => a.calls = val().parse().unwrap_or_else(|_| die("--calls N")),
            "--dir" => a.dir = PathBuf::from(val()),
            "--durability" => {
                a.durability = val()
                    .parse()
                    .unwrap_or_else(|e| die(&format!("--durability: {e}")))
            }
            "--turn" => a.turn = val().parse().unwrap_or_else(|_| die("--turn N")),
            "--keep" => a.keep = true,
            "--child" => a.child = true,
            "--restore-only" => a.restore_only = true,
            _ => die(&format!("unknown argument {k}")),
        }
    }
    if a.durability == Durability::Off {
        die("--durability off keeps nothing to restore");
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("restore_bench: {msg}");
    std::process::exit(2)
}

fn new_proxy() -> Proxy {
    let cfg = cairn::config::parse(CONFIG, "restore_bench").unwrap_or_else(|e| die(&e.to_string()));
    let core = CoreConfig {
        listeners: vec![LocalAddr {
            transport: Transport::Udp,
            addr: PROXY.parse().unwrap(),
        }],
        persist: true,
        cancel: cfg.cancel.clone(),
        ..Default::default()
    };
    Proxy::new(core, Arc::new(cfg.routing))
}

/// A typical INVITE with an SDP body (about 600 bytes), call `n`.
fn invite(n: usize) -> Bytes {
    let sdp = "v=0\r\no=user1 53655765 2353687637 IN IP4 10.1.2.3\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    Bytes::from(format!(
        "INVITE sip:+1555{n:07}@gw.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-bench-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Caller {n}\" <sip:+1666{n:07}@example.org>;tag=from-{n}\r\n\
         To: <sip:+1555{n:07}@gw.example.com>\r\n\
         Call-ID: bench-{n}-a84b4c76e66710@10.1.2.3\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:+1666{n:07}@10.1.2.3:5060>\r\n\
         User-Agent: restore_bench\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
}

/// Allocated bytes of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            total += disk_bytes(&e.path());
        } else {
            total += md.blocks() * 512;
        }
    }
    total
}

fn store_config(a: &Args) -> StoreConfig {
    StoreConfig {
        durability: a.durability,
        ..StoreConfig::new(&a.dir)
    }
}

/// The child: write the records of `calls` INVITEs in flight, report, wait to be killed.
fn generate(a: &Args) {
    let mut store =
        StateStore::open(&store_config(a), Grouping::default()).unwrap_or_else(|e| die(&e));
    let mut proxy = new_proxy();
    let mut m = DriverMetrics::default();
    let peer = Peer::new(
        "10.1.2.3:5060".parse::<SocketAddr>().unwrap(),
        Transport::Udp,
    );
    let local = Some(PROXY.parse::<SocketAddr>().unwrap());
    let checkpoints = [1_000, 10_000, 50_000, 100_000, 200_000, 500_000, 1_000_000];
    let (mut puts, mut value_bytes, mut sends) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    for n in 0..a.calls {
        let now = cairn_store::unix_ms();
        proxy.handle_message(now, invite(n), peer, local);
        let last = n + 1 == a.calls;
        if (n + 1) % a.turn == 0 || last {
            // One turn of the event loop: the turn's records, then its messages.
            while let Some(o) = proxy.poll_output() {
                match o {
                    Output::Persist {
                        space,
                        key,
                        value,
                        expires_at,
                        urgent,
                        fresh,
                    } => {
                        puts += 1;
                        value_bytes += value.len() as u64;
                        store.put(space, key, value, expires_at, urgent, fresh);
                    }
                    Output::Forget { space, key } => store.forget(space, key),
                    Output::Transmit(_) => sends += 1,
                    Output::Lookup { .. }
                    | Output::ProbeResponse { .. }
                    | Output::FindOwner { .. } => {}
                }
            }
            store.commit(&mut m);
        }
        if checkpoints.contains(&(n + 1)) || last {
            // fjall writes asynchronously to its tables; let the journal settle a moment.
            std::thread::sleep(Duration::from_millis(200));
            let _ = writeln!(out, "IN_FLIGHT {} {}", n + 1, disk_bytes(&a.dir));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "WROTE {} records {} value_bytes {} commits {} messages {:.3} s {:.1} us_per_commit {}",
        puts,
        value_bytes,
        m.store_commits,
        sends,
        secs,
        if m.store_commits > 0 {
            1e6 * m.store_commit_seconds_sum / m.store_commits as f64
        } else {
            0.0
        },
        m.store_commit_errors
    );
    let _ = writeln!(out, "READY");
    let _ = out.flush();
    drop(out);
    // Wait for the SIGKILL (bounded: a parent that died leaves no process behind).
    std::thread::sleep(Duration::from_secs(600));
    std::process::exit(3);
}

fn main() {
    let a = args();
    if a.child {
        generate(&a);
        return;
    }
    if !a.restore_only {
        write_and_kill(&a);
    }
    restore(&a);
}

/// Run the writer as a child process and SIGKILL it once its records are committed.
fn write_and_kill(a: &Args) {
    let _ = std::fs::remove_dir_all(&a.dir);
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--child",
            "--calls",
            &a.calls.to_string(),
            "--dir",
            &a.dir.display().to_string(),
            "--durability",
            &a.durability.to_string(),
            "--turn",
            &a.turn.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(&format!("spawn the writer: {e}")));
    println!(
        "records of {} INVITEs in flight, durability {}, one group commit per {} INVITEs, store {}",
        a.calls,
        a.durability,
        a.turn,
        a.dir.display()
    );
    println!(
        "{:>12} {:>14} {:>14}",
        "in flight", "disk bytes", "bytes/call"
    );
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut ready = false;
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first().copied() {
            Some("IN_FLIGHT") => {
                let n: f64 = f[1].parse().unwrap_or(0.0);
                let b: f64 = f[2].parse().unwrap_or(0.0);
                println!("{:>12} {:>14} {:>14.0}", f[1], f[2], b / n.max(1.0));
            }
            Some("WROTE") => println!(
                "written: {} records ({} bytes of values, {:.0} per record) in {} commits, \
                 {:.2} s, commit mean {} us, commit errors {}",
                f[1],
                f[3],
                f[3].parse::<f64>().unwrap_or(0.0) / f[1].parse::<f64>().unwrap_or(1.0),
                f[5],
                f[9].parse::<f64>().unwrap_or(0.0),
                f[11],
                f[13]
            ),
            Some("READY") => {
                ready = true;
                break;
            }
            _ => println!("{line}"),
        }
    }
    // A crash, not a shutdown: SIGKILL by PID.
    let _ = child.kill();
    let _ = child.wait();
    if !ready {
        die("the writer did not finish");
    }
}

/// What cairn does at start, timed: open, then load and rebuild.
fn restore(a: &Args) {
    let on_disk = disk_bytes(&a.dir);

    let t0 = Instant::now();
    let mut store =
        StateStore::open(&store_config(a), Grouping::default()).unwrap_or_else(|e| die(&e));
    let open = t0.elapsed();
    let mut proxy = new_proxy();
    let mut m = DriverMetrics::default();
    let t1 = Instant::now();
    store
        .restore(&mut proxy, cairn_store::unix_ms(), &mut m)
        .unwrap_or_else(|e| die(&e));
    let restore = t1.elapsed();
    let total = t0.elapsed();
    let (servers, clients) = proxy.transaction_counts();
    println!("after SIGKILL: store on disk {on_disk} bytes");
    println!(
        "restore: open {:.3} s + load and rebuild {:.3} s = {:.3} s for {} transactions \
         ({} server, {} client transactions live, {} skipped)",
        open.as_secs_f64(),
        restore.as_secs_f64(),
        total.as_secs_f64(),
        m.restored_transactions,
        servers,
        clients,
        m.restore_skipped
    );
    let ok = m.restored_transactions as usize == a.calls && m.restore_skipped == 0;
    println!(
        "RESULT calls={} open_s={:.3} restore_s={:.3} total_s={:.3} restored={} disk_bytes={} {}",
        a.calls,
        open.as_secs_f64(),
        restore.as_secs_f64(),
        total.as_secs_f64(),
        m.restored_transactions,
        on_disk,
        if ok { "OK" } else { "MISSING" }
    );
    drop(store);
    drop(proxy);

    // The same again, in its parts (the page cache is as warm as above): the engine's
    // load of each space, then the core's rebuild from the loaded values.
    let t0 = Instant::now();
    let mut raw = cairn_store::open(&store_config(a)).unwrap_or_else(|e| die(&e.to_string()));
    let open2 = t0.elapsed();
    let now = cairn_store::unix_ms();
    let t1 = Instant::now();
    let txns = raw
        .load(cairn_store::Space::Transactions, now)
        .unwrap_or_else(|e| die(&e.to_string()));
    let dialogs = raw
        .load(cairn_store::Space::Dialogs, now)
        .unwrap_or_else(|e| die(&e.to_string()));
    let load = t1.elapsed();
    let mut proxy = new_proxy();
    let t2 = Instant::now();
    let report = proxy.restore(now, txns.iter().map(|r| r.value.as_slice()));
    let rebuild = t2.elapsed();
    println!(
        "in parts: open {:.3} s, load {:.3} s ({} + {} records, {} bytes), rebuild {:.3} s ({} restored)",
        open2.as_secs_f64(),
        load.as_secs_f64(),
        txns.len(),
        dialogs.len(),
        txns.iter().map(|r| r.value.len()).sum::<usize>(),
        rebuild.as_secs_f64(),
        report.restored
    );
    drop(raw);
    if !a.keep {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
    if !ok {
        std::process::exit(1);
    }
}
