//! Time per message over many short batches, the minimum (robust
//! against a busy machine: interference only ever adds time) and the
//! median.
//! `cargo run --release -p cairn-sip --example min_time [BATCHES]`
use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;

#[path = "../benches/support/mod.rs"]
mod support;
use support::{cairn_forward, cairn_parse, INVITE};

/// The minimum and the median time per call over `batches` batches.
fn min_ns<T>(batches: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    const PER: usize = 2000;
    let mut all: Vec<f64> = (0..batches.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..PER {
                black_box(f());
            }
            t.elapsed().as_nanos() as f64 / PER as f64
        })
        .collect();
    all.sort_by(f64::total_cmp);
    (all[0], all[all.len() / 2])
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
    println!(
        "ns per message, min (median) of {batches} batches: parse {:.0} ({:.0}), parse+forward {:.0} ({:.0})",
        p.0, p.1, f.0, f.1
    );
}
