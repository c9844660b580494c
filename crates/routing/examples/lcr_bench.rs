//! LCR benchmark: build time, memory and lookup time of a least-cost routing table with
//! 500,000 prefixes (by default), loaded from a CSV file as cairn loads it.
//!
//! ```text
//! cargo run --release -p cairn-routing --example lcr_bench -- [--prefixes N] [--lookups N] [--carriers N] [--seed N]
//! ```
//!
//! The table: N distinct random prefixes `+` and 1 to 11 digits, each with 1 to 3 of the
//! carriers (random priority 0..3 and weight 1..100); each carrier is a destination set of
//! two gateways. The numbers looked up: 3 in 4 are a random prefix of the table extended
//! by 0 to 8 random digits (a match of every length), 1 in 4 wholly random 4 to 15 digits.
//! Written in national form with a leading `00` half of the time, so the `normalize` rule
//! (`00` -> `+`) and `digits_only` work on every lookup.

use std::hint::black_box;
use std::time::Instant;

use cairn_routing::*;

const HOT: usize = 1000;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, len: usize, out: &mut String) {
        for _ in 0..len {
            out.push(char::from(b'0' + self.below(10) as u8));
        }
    }
}

/// (VmRSS, VmHWM) of this process in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_prefixes = arg(&args, "--prefixes", 500_000) as usize;
    let n_lookups = arg(&args, "--lookups", 1_000_000) as usize;
    let n_carriers = arg(&args, "--carriers", 20).clamp(1, 250) as usize;
    let seed = arg(&args, "--seed", 1);
    let mut rng = SplitMix(seed);

    // The table, as a CSV file.
    let t0 = Instant::now();
    let mut seen = std::collections::HashSet::with_capacity(n_prefixes);
    let mut prefixes: Vec<String> = Vec::with_capacity(n_prefixes);
    let mut csv = String::with_capacity(n_prefixes * 40);
    csv.push_str("prefix,carrier,priority,weight\n");
    let mut entries = 0usize;
    while prefixes.len() < n_prefixes {
        let mut p = String::from("+");
        let len = 1 + rng.below(11) as usize;
        rng.digits(len, &mut p);
        if !seen.insert(p.clone()) {
            continue;
        }
        let k = 1 + rng.below(3) as usize;
        let first = rng.below(n_carriers as u64) as usize;
        for j in 0..k {
            let c = (first + j * 7) % n_carriers;
            let (priority, weight) = (rng.below(3), 1 + rng.below(100));
            csv.push_str(&format!("{p},c{c},{priority},{weight}\n"));
            entries += 1;
        }
        prefixes.push(p);
    }
    drop(seen);
    let dir = std::env::temp_dir().join(format!("cairn-lcr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("lcr.csv");
    std::fs::write(&file, &csv).expect("write csv");
    let csv_bytes = csv.len();
    drop(csv);
    let generate = t0.elapsed();

    let sets: Vec<DestinationSetConfig> = (0..n_carriers)
        .map(|c| {
            DestinationSetConfig::new(
                &format!("gw{c}"),
                Algorithm::Priority,
                &[
                    &format!("sip:10.1.{c}.1:5060"),
                    &format!("sip:10.1.{c}.2:5060"),
                ],
            )
        })
        .collect();
    let carriers: Vec<CarrierConfig> = (0..n_carriers)
        .map(|c| CarrierConfig {
            name: format!("c{c}"),
            destination_sets: Some([format!("gw{c}")].into_iter().collect()),
            ..Default::default()
        })
        .collect();
    let mut table = LcrConfig::new("pstn", carriers, Vec::new());
    table.file = Some("lcr.csv".into());
    table.normalize = vec![NormalizeRule {
        strip: "00".into(),
        prefix: "+".into(),
    }];
    let cfg = RoutingConfig {
        destination_sets: sets,
        rules: vec![RuleConfig {
            name: "calls".into(),
            lcr: Some("pstn".into()),
            ..Default::default()
        }],
        lcr: vec![table],
        base_dir: Some(dir.clone()),
        ..Default::default()
    };

    // Build (read + parse the CSV, sort, check, compile), twice: the second is what a
    // reload costs with a warm page cache.
    let (rss0, _) = memory();
    let t = Instant::now();
    let policy = Policy::build(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let build1 = t.elapsed();
    let (rss1, hwm1) = memory();
    let t = Instant::now();
    let policy2 = Policy::build(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let build2 = t.elapsed();
    drop(policy2);
    let (rss2, hwm2) = memory();
    std::fs::remove_dir_all(&dir).ok();
    let table = policy.lcr_table("pstn").expect("table");
    assert_eq!(table.len(), n_prefixes);

    // The numbers.
    let mut numbers: Vec<String> = Vec::with_capacity(n_lookups.min(1 << 20));
    for k in 0..n_lookups.min(1 << 20) {
        let mut e164 = if k % 4 == 3 {
            let mut s = String::from("+");
            let len = 4 + rng.below(12) as usize;
            rng.digits(len, &mut s);
            s
        } else {
            let mut s = prefixes[rng.below(prefixes.len() as u64) as usize].clone();
            let extra = rng.below(9) as usize;
            rng.digits(extra, &mut s);
            s
        };
        if k % 2 == 0 {
            e164 = format!("00{}", &e164[1..]);
        }
        numbers.push(e164);
    }

    // Lookups: normalise + longest-prefix match.
    let mut hits = 0usize;
    for n in &numbers {
        hits += usize::from(table.lookup(n).is_some());
    }
    let t = Instant::now();
    let mut found = 0usize;
    for i in 0..n_lookups {
        let n = &numbers[i % numbers.len()];
        if let Some(m) = black_box(table.lookup(black_box(n))) {
            found += m.prefix().len();
        }
    }
    let lookup_ns = t.elapsed().as_nanos() as f64 / n_lookups as f64;
    black_box(found);

    // The parts: normalisation alone, longest-prefix match alone (numbers normalised
    // beforehand).
    let normalized: Vec<String> = numbers.iter().map(|n| table.normalize(n)).collect();
    let t = Instant::now();
    let mut len = 0usize;
    for i in 0..n_lookups {
        len += black_box(table.normalize(black_box(&numbers[i % numbers.len()]))).len();
    }
    let normalize_ns = t.elapsed().as_nanos() as f64 / n_lookups as f64;
    black_box(len);
    let t = Instant::now();
    for i in 0..n_lookups {
        let n = &normalized[i % normalized.len()];
        black_box(table.lookup_normalized(black_box(n.as_bytes())));
    }
    let lpm_ns = t.elapsed().as_nanos() as f64 / n_lookups as f64;
    drop(normalized);
    // Warm: the same 1,000 numbers over and over (their trie paths stay in the cache), as
    // when most calls go to a few popular destinations.
    let hot = &numbers[..numbers.len().min(HOT)];
    let t = Instant::now();
    for i in 0..n_lookups {
        black_box(table.lookup(black_box(&hot[i % hot.len()])));
    }
    let warm_ns = t.elapsed().as_nanos() as f64 / n_lookups as f64;

    // Lookups one by one, for the tail (each timing includes ~20-30 ns of clock reads).
    let sample = numbers.len().min(200_000);
    let mut single: Vec<u64> = Vec::with_capacity(sample);
    for n in numbers.iter().take(sample) {
        let t = Instant::now();
        black_box(table.lookup(black_box(n)));
        single.push(t.elapsed().as_nanos() as u64);
    }
    single.sort_unstable();
    let pct = |p: f64| single[((single.len() as f64 * p) as usize).min(single.len() - 1)];

    // Whole routing decisions: rule match, lookup, carrier order, plan (allocated).
    let t = Instant::now();
    let mut targets = 0usize;
    for i in 0..n_lookups {
        let n = &numbers[i % numbers.len()];
        let input = RouteInput {
            method: "INVITE",
            ruri_user: Some(n),
            ruri_host: "example.com",
            ruri_port: None,
            source: "192.0.2.1:5060".parse().unwrap(),
            call_id: b"a84b4c76e66710@pc33.atlanta.com",
            now_unix_ms: 1_790_000_000_000,
            transport: cairn_sip::Transport::Udp,
            request: None,
        };
        if let Decision::Forward(plan) = black_box(policy.route(black_box(&input))) {
            targets += plan.targets.len();
        }
    }
    let route_ns = t.elapsed().as_nanos() as f64 / n_lookups as f64;
    black_box(targets);

    // A time condition (Europe/Berlin, office hours) evaluated per request.
    let window = TimeWindowConfig {
        zone: Some("Europe/Berlin".into()),
        days: Some(["mon..fri"].into_iter().collect()),
        from: Some("08:00".into()),
        to: Some("18:00".into()),
        ..Default::default()
    };
    let tcfg = RoutingConfig {
        destination_sets: vec![DestinationSetConfig::new(
            "gw",
            Algorithm::Priority,
            &["sip:10.0.0.1"],
        )],
        rules: vec![RuleConfig {
            name: "office".into(),
            destination_set: Some("gw".into()),
            time: Some(TimeConditions(vec![window])),
            ..Default::default()
        }],
        ..Default::default()
    };
    let tpol = Policy::build(&tcfg).expect("time policy");
    let windows = tpol.rules()[0].time_windows().expect("windows");
    let t = Instant::now();
    let mut held = 0usize;
    let k = n_lookups.max(1);
    for i in 0..k {
        let now = 1_790_000_000_000u64 + (i as u64 % 604_800) * 1000;
        held += usize::from(black_box(windows[0].holds(black_box(now))));
    }
    let time_ns = t.elapsed().as_nanos() as f64 / k as f64;
    black_box(held);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("prefixes                  {n_prefixes} distinct, {entries} entries (prefix, carrier), {n_carriers} carriers");
    println!(
        "csv file                  {:.1} MiB (generated in {:.2} s)",
        csv_bytes as f64 / 1048576.0,
        generate.as_secs_f64()
    );
    println!(
        "build from csv            {:.0} ms (second build, as a reload: {:.0} ms)",
        build1.as_secs_f64() * 1e3,
        build2.as_secs_f64() * 1e3
    );
    println!(
        "table heap                {:.1} MiB ({:.1} bytes per prefix)",
        table.heap_bytes() as f64 / 1048576.0,
        table.heap_bytes() as f64 / n_prefixes as f64
    );
    println!("process rss               {:.1} MiB before, {:.1} MiB after the first build (peak {:.1} MiB), {:.1} MiB after the second (peak {:.1} MiB)", mib(rss0), mib(rss1), mib(hwm1), mib(rss2), mib(hwm2));
    println!(
        "numbers matched           {:.1}% of {}",
        100.0 * hits as f64 / numbers.len() as f64,
        numbers.len()
    );
    println!("lookup (normalise + lpm)  {lookup_ns:.0} ns mean over {n_lookups} (cold: a different random number each time)");
    println!(
        "  normalise alone         {normalize_ns:.0} ns mean (allocates the String it returns)"
    );
    println!(
        "  lpm alone               {lpm_ns:.0} ns mean (trie of {} nodes)",
        table.trie_nodes()
    );
    println!("lookup, warm              {warm_ns:.0} ns mean (1,000 numbers repeated)");
    println!(
        "lookup one by one         p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns ({} timed)",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        single[single.len() - 1],
        single.len()
    );
    println!("Policy::route (lcr rule)  {route_ns:.0} ns mean (lookup + carrier order + plan of {:.1} targets)", targets as f64 / n_lookups as f64);
    println!(
        "time window check         {time_ns:.0} ns mean (Europe/Berlin, mon..fri 08:00-18:00)"
    );
}
