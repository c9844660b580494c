//! Heap allocations (and a rough time) per parsed and per forwarded
//! message, for cairn-sip and ezk-sip-types, counted with a counting
//! global allocator. Exits non-zero when cairn-sip misses its targets
//! (at most 2 allocations and under 1 µs per forwarded message).
//!
//! `cargo run --release -p cairn-sip --example alloc_count [ITERATIONS [ROW]]`
//!
//! ROW (1-4) runs one row only, e.g. to count instructions per message:
//! `valgrind --tool=cachegrind --cache-sim=no target/release/examples/alloc_count 1000 2`
//! twice with different ITERATIONS, and divide the difference.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;

#[path = "../benches/support/mod.rs"]
mod support;
use support::{cairn_forward, cairn_parse, ezk, INVITE};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size(), Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new, Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (allocations, bytes) per call, and ns per call over `n` calls.
fn measure<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, f64, f64) {
    for _ in 0..n / 10 {
        black_box(f());
    }
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    let t = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    let a = (ALLOCS.load(Relaxed) - a0) as f64 / n as f64;
    let b = (BYTES.load(Relaxed) - b0) as f64 / n as f64;
    (a, b, ns)
}

fn main() {
    support::sanity_check();
    let buf = Bytes::from_static(INVITE);
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let only: Option<usize> = args.next().and_then(|a| a.parse().ok());
    println!(
        "INVITE of {} bytes, {n} iterations each (time includes the counting allocator)",
        INVITE.len()
    );
    println!(
        "{:<30} {:>12} {:>12} {:>10}",
        "", "allocs/msg", "bytes/msg", "ns/msg"
    );
    type Row<'a> = (&'static str, Box<dyn Fn() -> usize + 'a>);
    let rows: [Row; 4] = [
        (
            "cairn-sip parse",
            Box::new(|| cairn_parse(&buf).headers().len()),
        ),
        (
            "cairn-sip parse+forward",
            Box::new(|| cairn_forward(&buf).len()),
        ),
        (
            "ezk-sip-types parse",
            Box::new(|| ezk::parse(&buf).body.len()),
        ),
        (
            "ezk-sip-types parse+forward",
            Box::new(|| ezk::forward(&buf).len()),
        ),
    ];
    let mut cairn_fwd = (0.0, 0.0);
    for (k, (name, f)) in rows.iter().enumerate() {
        if only.is_some_and(|o| o != k + 1) {
            continue;
        }
        let (a, b, ns) = measure(n, f);
        println!("{name:<30} {a:>12.1} {b:>12.0} {ns:>10.0}");
        if *name == "cairn-sip parse+forward" {
            cairn_fwd = (a, ns);
        }
    }
    if only.is_some() {
        return;
    }
    let ok = cairn_fwd.0 <= 2.0 && cairn_fwd.1 < 1000.0;
    println!(
        "target (cairn-sip forward: <= 2 allocations, < 1000 ns): {}",
        if ok { "met" } else { "MISSED" }
    );
    if !ok {
        std::process::exit(1);
    }
}
