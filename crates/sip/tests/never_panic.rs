//! Never-panic property test: a deterministic mutation run over the RFC 4475
//! torture corpus and the typical messages of `testdata/messages/`. Every case runs parse, all
//! accessors, a forward edit, serialize, re-parse and the builders (see
//! `common/mod.rs`), with no `catch_unwind`: a panic fails the test.
//!
//! Mutations: byte flips, random bytes, truncation at every offset of every
//! seed, insertion of CR / LF / SP / `;` / `,` / `"` / `<` (and a few more
//! SIP-significant bytes), duplicated, dropped and swapped lines, deleted
//! ranges; 1 to 4 of them stacked per case (half the cases get one).
//!
//! Case count: 200,000 in a release build (about a second or two), 20,000
//! in a debug build; `CAIRN_SIP_MUTATIONS=N` overrides, `CAIRN_SIP_SEED=N`
//! changes the PRNG seed.

mod common;

use std::path::Path;

/// Bytes the inserts pick from: the ones the brief names, and a few more
/// that the parsers branch on.
const SPECIAL: &[u8] = b"\r\n ;,\"<\r\n ;,\"<>:=@?\\\t[]%/\x00";

struct Rng(u64);

impl Rng {
    /// splitmix64
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Files with a given extension in a testdata folder, sorted by name.
fn files(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The 49 torture messages, then the typical messages of
/// `testdata/messages/`.
fn corpus() -> Vec<Vec<u8>> {
    let mut seeds = files("rfc4475", "dat");
    assert_eq!(seeds.len(), 49, "the 49 torture messages");
    let typical = files("messages", "sip");
    assert!(typical.len() >= 5);
    seeds.extend(typical);
    seeds
}

/// Line boundaries: offsets just past each LF, plus 0 and len.
fn line_starts(d: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        d.iter()
            .enumerate()
            .filter(|(_, &c)| c == b'\n')
            .map(|(i, _)| i + 1),
    );
    if *v.last().unwrap() != d.len() {
        v.push(d.len());
    }
    v
}

fn mutate(rng: &mut Rng, d: &mut Vec<u8>) {
    match rng.below(10) {
        // Flip one bit.
        0 if !d.is_empty() => {
            let i = rng.below(d.len());
            d[i] ^= 1 << rng.below(8);
        }
        // Replace a byte with any byte.
        1 if !d.is_empty() => {
            let i = rng.below(d.len());
            d[i] = rng.next() as u8;
        }
        // Replace a byte with a special one.
        2 if !d.is_empty() => {
            let i = rng.below(d.len());
            d[i] = SPECIAL[rng.below(SPECIAL.len())];
        }
        // Insert 1-3 special bytes.
        3 | 4 => {
            let i = rng.below(d.len() + 1);
            for _ in 0..1 + rng.below(3) {
                d.insert(i, SPECIAL[rng.below(SPECIAL.len())]);
            }
        }
        // Duplicate a line.
        5 => {
            let ls = line_starts(d);
            if ls.len() >= 2 {
                let k = rng.below(ls.len() - 1);
                let line = d[ls[k]..ls[k + 1]].to_vec();
                let at = ls[rng.below(ls.len())];
                d.splice(at..at, line);
            }
        }
        // Drop a line.
        6 => {
            let ls = line_starts(d);
            if ls.len() >= 2 {
                let k = rng.below(ls.len() - 1);
                d.drain(ls[k]..ls[k + 1]);
            }
        }
        // Swap two adjacent lines.
        7 => {
            let ls = line_starts(d);
            if ls.len() >= 3 {
                let k = rng.below(ls.len() - 2);
                d[ls[k]..ls[k + 2]].rotate_left(ls[k + 1] - ls[k]);
            }
        }
        // Delete a short range.
        8 if !d.is_empty() => {
            let i = rng.below(d.len());
            let n = 1 + rng.below(8.min(d.len() - i));
            d.drain(i..i + n);
        }
        // Truncate (rarely: every truncation of every seed has its own test).
        _ if rng.below(4) == 0 => {
            let i = rng.below(d.len() + 1);
            d.truncate(i);
        }
        // Insert a CR, LF or CRLF.
        _ => {
            let i = rng.below(d.len() + 1);
            let ins: &[u8] = [&b"\r"[..], b"\n", b"\r\n", b"\r\n "][rng.below(4)];
            d.splice(i..i, ins.iter().copied());
        }
    }
}

fn env_usize(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_truncation_of_every_seed() {
    let mut n = 0;
    for seed in corpus() {
        for i in 0..=seed.len() {
            common::exercise(&seed[..i]);
            n += 1;
        }
    }
    eprintln!("{n} truncations run");
}

#[test]
fn seeds_pass_unchanged() {
    let torture = files("rfc4475", "dat");
    let parsed = torture.iter().filter(|s| common::exercise(s)).count();
    // 28 of the 49 torture messages parse (see tests/rfc4475.rs).
    assert_eq!(parsed, 28);
    for m in files("messages", "sip") {
        assert!(common::exercise(&m), "{}", String::from_utf8_lossy(&m));
    }
}

#[test]
fn random_mutations() {
    let cases = env_usize("CAIRN_SIP_MUTATIONS").unwrap_or(if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    });
    let mut rng = Rng(env_usize("CAIRN_SIP_SEED").unwrap_or(0x00ca_1a5e));
    let seeds = corpus();
    let t = std::time::Instant::now();
    let mut parsed = 0u64;
    let mut buf = Vec::new();
    for _ in 0..cases {
        buf.clear();
        buf.extend_from_slice(&seeds[rng.below(seeds.len())]);
        // 1 mutation in half the cases, 2 in a quarter, 3 or 4 in the rest.
        let n = 1 + (rng.next().trailing_zeros() as usize).min(3);
        for _ in 0..n {
            mutate(&mut rng, &mut buf);
        }
        if common::exercise(&buf) {
            parsed += 1;
        }
    }
    eprintln!(
        "{cases} mutated cases in {:.2?}, {parsed} parsed",
        t.elapsed()
    );
    // The mutations must leave a fair share parseable, or the edit and
    // build paths would go untested.
    assert!(parsed * 5 > cases, "only {parsed} of {cases} parsed");
}
