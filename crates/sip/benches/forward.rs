//! Parse and forward a typical INVITE, cairn-sip against ezk-sip-types.
//!
//! `cargo bench -p cairn-sip --bench forward`
//! (allocation counts: `cargo run --release -p cairn-sip --example alloc_count`)

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod support;
use support::{cairn_forward, cairn_forward_into, cairn_parse, ezk, INVITE};

fn bench(c: &mut Criterion) {
    support::sanity_check();
    let buf = Bytes::from_static(INVITE);

    let mut g = c.benchmark_group("invite_933B");
    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    g.bench_function("cairn/parse", |b| {
        b.iter(|| black_box(cairn_parse(black_box(&buf))))
    });
    g.bench_function("cairn/parse+forward", |b| {
        b.iter(|| black_box(cairn_forward(black_box(&buf))))
    });
    // The same into a reused buffer: what the edit costs without the
    // output allocation.
    let mut out = BytesMut::with_capacity(2048);
    g.bench_function("cairn/parse+forward_into", |b| {
        b.iter(|| {
            out.clear();
            cairn_forward_into(black_box(&buf), &mut out);
            black_box(out.len())
        })
    });
    // What a proxy reads from every request besides the eager fields.
    g.bench_function("cairn/parse+read_routing", |b| {
        b.iter(|| {
            let m = cairn_parse(black_box(&buf));
            let ruri = m.request_uri().map(|u| u.host.len());
            let route = m.routes().next().map(|r| r.uri.len());
            let rport = m.top_via().rport();
            black_box((ruri, route, rport, m.branch(), m.from_tag()));
        })
    });
    g.bench_function("ezk-sip-types/parse", |b| {
        b.iter(|| black_box(ezk::parse(black_box(&buf))))
    });
    g.bench_function("ezk-sip-types/parse+forward", |b| {
        b.iter(|| black_box(ezk::forward(black_box(&buf))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
