//! Minimum time per message over many short batches: robust against a
//! busy machine (interference only ever adds time).
//! `cargo run --release -p cairn-sip --example min_time [BATCHES]`
use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;

#[path = "../benches/support/mod.rs"]
mod support;
use support::{cairn_forward, cairn_parse, INVITE};

fn min_ns<T>(batches: usize, mut f: impl FnMut() -> T) -> f64 {
    const PER: usize = 2000;
    let mut best = f64::MAX;
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..PER {
            black_box(f());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / PER as f64);
    }
    best
}

fn main() {
    support::sanity_check();
    let batches: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let buf = Bytes::from_static(INVITE);
    min_ns(50, || cairn_forward(black_box(&buf)));
    let p = min_ns(batches, || cairn_parse(black_box(&buf)));
    let f = min_ns(batches, || cairn_forward(black_box(&buf)));
    println!("min ns per message: parse {p:.0}, parse+forward {f:.0}");
}
