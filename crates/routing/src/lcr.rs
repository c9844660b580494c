//! Least-cost routing: `[[lcr]]` tables and the serial plans they make.
//!
//! A table maps number prefixes to carriers, each with a priority and a weight. For a
//! request, the Request-URI user is normalised (`digits_only`, then the first matching
//! `normalize` rule), the longest prefix of the table that begins it is found
//! ([`PrefixTable`]), and its carriers are ordered by ascending priority, carriers of equal
//! priority in a weighted random order. The plan is serial: each carrier's destinations in
//! its sets' order, then the next carrier's, so failover moves down the carrier list.
//!
//! The prefixes come from the configuration (`prefixes`) and/or a CSV file (`file`), read
//! when the policy is built (the only I/O of this crate).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Algorithm, DestinationSetConfig, LcrConfig, StringList};
use crate::error::{BuildError, KeyPath};
use crate::failover::{CodeSet, Failover};
use crate::policy::{build_response, check_name, Target};
use crate::prefix::PrefixTable;
use crate::rng::Rng;
use crate::set::DestinationSet;

/// The longest prefix of a table, in characters (E.164 numbers have at most 15 digits).
pub const MAX_LCR_PREFIX_LEN: usize = 32;
/// The most prefix entries (lines) of one table.
pub const MAX_LCR_ENTRIES: usize = 16_000_000;
/// The longest `strip` or `prefix` of a `normalize` rule.
pub const MAX_NORMALIZE_LEN: usize = 32;

/// Characters of the cleaned number kept for matching: enough for any strip rule plus the
/// longest prefix (longer numbers are cut; no prefix can tell the difference).
const CLEAN_MAX: usize = MAX_NORMALIZE_LEN + 2 * MAX_LCR_PREFIX_LEN;
const NORM_MAX: usize = CLEAN_MAX + MAX_NORMALIZE_LEN;

/// A compiled `normalize` rule: (strip, prefix).
type Rewrite = (Box<[u8]>, Box<[u8]>);

/// A carrier of a table: a name and the destination sets that make it up.
#[derive(Debug)]
pub struct Carrier {
    name: Arc<str>,
    /// (index in `Policy::destination_sets`, offset of its destinations in the table's
    /// union set).
    sets: Box<[(usize, usize)]>,
}

impl Carrier {
    /// The carrier's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
    /// The destination sets (indexes of [`Policy::destination_sets`](crate::Policy::destination_sets)),
    /// in the order they are tried.
    pub fn sets(&self) -> impl Iterator<Item = usize> + '_ {
        self.sets.iter().map(|&(s, _)| s)
    }
}

/// One carrier of a matched prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    carrier: u32,
    priority: u32,
    weight: u32,
}

/// A route of a matched prefix, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LcrRoute<'a> {
    pub carrier: &'a str,
    pub priority: u32,
    pub weight: u32,
}

/// The longest prefix of a table that begins a number.
#[derive(Debug, Clone, Copy)]
pub struct LcrMatch<'a> {
    table: &'a LcrTable,
    index: usize,
    prefix: [u8; MAX_LCR_PREFIX_LEN],
    len: u8,
}

impl<'a> LcrMatch<'a> {
    /// The matched prefix.
    pub fn prefix(&self) -> &str {
        // Prefixes are `+` and digits.
        std::str::from_utf8(&self.prefix[..usize::from(self.len)]).unwrap_or("")
    }
    /// Its carriers, ascending priority then configuration order.
    pub fn routes(&self) -> impl Iterator<Item = LcrRoute<'a>> + 'a {
        let table = self.table;
        table.routes_of(self.index).iter().map(move |r| LcrRoute {
            carrier: &table.carriers[r.carrier as usize].name,
            priority: r.priority,
            weight: r.weight,
        })
    }
}

/// A compiled `[[lcr]]` table.
pub struct LcrTable {
    name: Arc<str>,
    digits_only: bool,
    /// Rules, first match applies.
    normalize: Box<[Rewrite]>,
    prefixes: PrefixTable,
    /// The routes of prefix `i` (its value in `prefixes`) are
    /// `routes[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    routes: Vec<Route>,
    carriers: Box<[Carrier]>,
    /// Every destination of every carrier (sharing state with their sets): plans name
    /// their targets by index in this set, under the table's name.
    union: DestinationSet,
    failover: Failover,
    no_match_code: u16,
    no_match_reason: Arc<str>,
}

impl fmt::Debug for LcrTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LcrTable")
            .field("name", &self.name)
            .field("prefixes", &self.prefixes.len())
            .field("routes", &self.routes.len())
            .field("carriers", &self.carriers)
            .finish_non_exhaustive()
    }
}

/// Where a prefix entry was written, for error messages.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// `prefixes[k]`.
    Config(u32),
    /// A line of the file.
    Line(u32),
}

/// A prefix entry being built: its prefix lives in an arena.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// The first 8 bytes of the prefix, big-endian, zero-padded: ordering rows by it and
    /// then by the whole prefix is byte order (prefix bytes are never 0), mostly without
    /// touching the arena.
    head: u64,
    start: u32,
    len: u8,
    carrier: u32,
    priority: u32,
    weight: u32,
    origin: Origin,
}

fn head(prefix: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = prefix.len().min(8);
    b[..n].copy_from_slice(&prefix[..n]);
    u64::from_be_bytes(b)
}

/// Resolve `lcr.file` against the configuration's directory (`None`: as given, i.e.
/// relative to the current directory). Absolute paths stay as they are.
pub fn resolve_lcr_path(file: &str, base_dir: Option<&Path>) -> PathBuf {
    match base_dir {
        Some(dir) => dir.join(file),
        None => PathBuf::from(file),
    }
}

/// A prefix as written: digits with an optional leading `+`, at most
/// [`MAX_LCR_PREFIX_LEN`] characters.
fn check_prefix(p: &str) -> Result<(), String> {
    if p.len() > MAX_LCR_PREFIX_LEN {
        return Err(format!(
            "prefix \"{p}\" is longer than {MAX_LCR_PREFIX_LEN} characters"
        ));
    }
    let digits = p.strip_prefix('+').unwrap_or(p);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "prefix \"{p}\" is not a number prefix: digits, with an optional leading '+'"
        ));
    }
    Ok(())
}

impl LcrTable {
    /// Compile table `cfg` at `path` (`lcr[i]`). Carriers with their own destinations add
    /// a destination set `TABLE.CARRIER` to `sets` (and `set_names`).
    pub(crate) fn build(
        cfg: &LcrConfig,
        path: &KeyPath,
        sets: &mut Vec<DestinationSet>,
        set_names: &mut HashMap<String, usize>,
        base_dir: Option<&Path>,
    ) -> Result<LcrTable, BuildError> {
        check_name(&cfg.name, &path.key("name"))?;

        // Normalisation.
        let mut normalize = Vec::with_capacity(cfg.normalize.len());
        for (k, r) in cfg.normalize.iter().enumerate() {
            let p = path.key("normalize").index(k);
            for (key, v) in [("strip", &r.strip), ("prefix", &r.prefix)] {
                if v.len() > MAX_NORMALIZE_LEN {
                    return Err(BuildError::new(
                        p.key(key),
                        format!("\"{v}\" is longer than {MAX_NORMALIZE_LEN} characters"),
                    ));
                }
                if !v.bytes().all(|b| b.is_ascii_digit() || b == b'+') {
                    return Err(BuildError::new(
                        p.key(key),
                        format!("\"{v}\": only digits and '+' are allowed"),
                    ));
                }
            }
            normalize.push((
                r.strip.as_bytes().to_vec().into_boxed_slice(),
                r.prefix.as_bytes().to_vec().into_boxed_slice(),
            ));
        }

        // Failover and no-match answer.
        let mut codes = CodeSet::empty();
        for (k, pattern) in cfg.failover_codes.iter().enumerate() {
            codes
                .parse_pattern(&pattern.0)
                .map_err(|m| BuildError::new(path.key("failover_codes").index(k), m))?;
        }
        let failover = Failover {
            codes,
            on_timeout: cfg.failover_on_timeout,
        };
        let (no_match_code, no_match_reason) =
            build_response(&cfg.no_match, &path.key("no_match"))?;

        // Carriers.
        let cpath = path.key("carriers");
        if cfg.carriers.is_empty() {
            return Err(BuildError::new(cpath, "a table needs at least one carrier"));
        }
        let mut carrier_index: HashMap<&str, u32> = HashMap::new();
        let mut carrier_sets: Vec<(Arc<str>, Vec<usize>)> = Vec::new();
        for (j, c) in cfg.carriers.iter().enumerate() {
            let p = cpath.index(j);
            check_name(&c.name, &p.key("name"))?;
            if let Some(k) = carrier_index.insert(&c.name, j as u32) {
                return Err(BuildError::new(
                    p.key("name"),
                    format!(
                        "duplicate carrier name \"{}\" (already carriers[{k}])",
                        c.name
                    ),
                ));
            }
            let members = match (&c.destination_sets, &c.destinations) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(BuildError::new(
                        p,
                        "a carrier has exactly one of destination_sets = [\"SET\", ...] or destinations = [{ uri = \"sip:...\" }, ...]",
                    ))
                }
                (Some(list), None) => {
                    for (key, given) in [
                        ("algorithm", c.algorithm.is_some()),
                        ("health", c.health.is_some()),
                    ] {
                        if given {
                            return Err(BuildError::new(
                                p.key(key),
                                format!("{key} goes with the carrier's own destinations; set it on the destination sets"),
                            ));
                        }
                    }
                    carrier_members(list, &p.key("destination_sets"), sets, set_names)?
                }
                (None, Some(dests)) => {
                    let name = format!("{}.{}", cfg.name, c.name);
                    if let Some(&k) = set_names.get(&name) {
                        return Err(BuildError::new(
                            p.key("name"),
                            format!("the carrier's destination set would be named \"{name}\", which destination_set[{k}] already is"),
                        ));
                    }
                    let algorithm = c.algorithm.unwrap_or(Algorithm::Priority);
                    if algorithm == Algorithm::Parallel {
                        return Err(BuildError::new(
                            p.key("algorithm"),
                            "parallel cannot order a carrier: LCR plans are serial",
                        ));
                    }
                    let set_cfg = DestinationSetConfig {
                        name: name.clone(),
                        algorithm,
                        failover_codes: cfg.failover_codes.clone(),
                        failover_on_timeout: cfg.failover_on_timeout,
                        rewrite_ruri_host: false,
                        destinations: dests.clone(),
                        health: c.health.clone(),
                    };
                    let set = DestinationSet::build(&set_cfg, &p)?;
                    set_names.insert(name, sets.len());
                    sets.push(set);
                    vec![sets.len() - 1]
                }
            };
            carrier_sets.push((Arc::from(c.name.as_str()), members));
        }

        // The union of the carriers' destinations.
        let mut union = Vec::new();
        let mut base_of: HashMap<usize, usize> = HashMap::new();
        let mut carriers = Vec::with_capacity(carrier_sets.len());
        for (name, members) in carrier_sets {
            let mut with_base = Vec::with_capacity(members.len());
            for s in members {
                let base = *base_of.entry(s).or_insert_with(|| {
                    let base = union.len();
                    union.extend(sets[s].destinations().iter().cloned());
                    base
                });
                with_base.push((s, base));
            }
            carriers.push(Carrier {
                name,
                sets: with_base.into_boxed_slice(),
            });
        }
        let name: Arc<str> = Arc::from(cfg.name.as_str());
        let union = DestinationSet::union(name.clone(), failover, union);

        // Prefix entries.
        let mut arena: Vec<u8> = Vec::new();
        let mut rows: Vec<Row> = Vec::with_capacity(cfg.prefixes.len());
        let ppath = path.key("prefixes");
        for (k, e) in cfg.prefixes.iter().enumerate() {
            let p = ppath.index(k);
            check_prefix(&e.prefix).map_err(|m| BuildError::new(p.key("prefix"), m))?;
            let carrier = *carrier_index.get(e.carrier.as_str()).ok_or_else(|| {
                BuildError::new(p.key("carrier"), unknown_carrier(&e.carrier, cfg))
            })?;
            rows.push(Row {
                head: head(e.prefix.as_bytes()),
                start: arena.len() as u32,
                len: e.prefix.len() as u8,
                carrier,
                priority: e.priority,
                weight: e.weight,
                origin: Origin::Config(k as u32),
            });
            arena.extend_from_slice(e.prefix.as_bytes());
        }
        if let Some(file) = &cfg.file {
            let fpath = path.key("file");
            let full = resolve_lcr_path(file, base_dir);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                BuildError::new(
                    fpath.clone(),
                    format!("cannot read {}: {e}", full.display()),
                )
            })?;
            parse_csv(&text, &carrier_index, cfg, &mut rows, &mut arena).map_err(|(line, m)| {
                BuildError::new(fpath.clone(), format!("{file}:{line}: {m}"))
            })?;
        }
        if rows.len() > MAX_LCR_ENTRIES {
            return Err(BuildError::new(
                path.clone(),
                format!("{} prefix entries: at most {MAX_LCR_ENTRIES}", rows.len()),
            ));
        }
        if rows.is_empty() {
            return Err(BuildError::new(
                ppath,
                "the table has no prefix entries: give prefixes or a file",
            ));
        }

        // Sort by prefix, then carrier (to find duplicates), then where written.
        let bytes = |r: &Row| &arena[r.start as usize..r.start as usize + r.len as usize];
        let seq = |r: &Row| match r.origin {
            Origin::Config(k) => (0u8, k),
            Origin::Line(l) => (1u8, l),
        };
        let same = |a: &Row, b: &Row| a.head == b.head && bytes(a) == bytes(b);
        rows.sort_unstable_by(|a, b| {
            a.head
                .cmp(&b.head)
                .then_with(|| bytes(a).cmp(bytes(b)))
                .then(a.carrier.cmp(&b.carrier))
                .then(seq(a).cmp(&seq(b)))
        });
        for w in rows.windows(2) {
            if same(&w[0], &w[1]) && w[0].carrier == w[1].carrier {
                let prefix = String::from_utf8_lossy(bytes(&w[1]));
                let carrier = &cfg.carriers[w[1].carrier as usize].name;
                let first = origin_text(w[0].origin, cfg);
                let msg = format!(
                    "prefix \"{prefix}\" names carrier \"{carrier}\" again (first at {first})"
                );
                return Err(match w[1].origin {
                    Origin::Config(k) => BuildError::new(ppath.index(k as usize), msg),
                    Origin::Line(l) => BuildError::new(
                        path.key("file"),
                        format!("{}:{l}: {msg}", cfg.file.as_deref().unwrap_or("")),
                    ),
                });
            }
        }
        // Group by prefix; each group by (priority, where written).
        let mut routes = Vec::with_capacity(rows.len());
        let mut starts: Vec<u32> = Vec::new();
        let mut distinct: Vec<&[u8]> = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && same(&rows[j], &rows[i]) {
                j += 1;
            }
            rows[i..j].sort_by(|a, b| a.priority.cmp(&b.priority).then(seq(a).cmp(&seq(b))));
            starts.push(routes.len() as u32);
            distinct.push(bytes(&rows[i]));
            routes.extend(rows[i..j].iter().map(|r| Route {
                carrier: r.carrier,
                priority: r.priority,
                weight: r.weight,
            }));
            i = j;
        }
        starts.push(routes.len() as u32);
        let prefixes = PrefixTable::from_sorted(&distinct).map_err(|e| {
            BuildError::new(path.clone(), format!("internal error: prefix table: {e:?}"))
        })?;
        drop(distinct);
        drop(rows);
        drop(arena);

        Ok(LcrTable {
            name,
            digits_only: cfg.digits_only,
            normalize: normalize.into_boxed_slice(),
            prefixes,
            starts,
            routes,
            carriers: carriers.into_boxed_slice(),
            union,
            failover,
            no_match_code,
            no_match_reason,
        })
    }

    /// The table's name (also the `set` of its plans).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Distinct prefixes.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether the table has no prefix (never: building refuses it).
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Prefix entries (prefix, carrier pairs).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// The carriers, in configuration order.
    pub fn carriers(&self) -> &[Carrier] {
        &self.carriers
    }

    /// Every destination of every carrier, as one set named after the table: the
    /// [`Target::index`] of the table's plans indexes its destinations.
    pub fn destinations(&self) -> &DestinationSet {
        &self.union
    }

    /// The failover policy of the table's plans.
    pub fn failover(&self) -> Failover {
        self.failover
    }

    /// The answer when no prefix matches.
    pub fn no_match(&self) -> (u16, &Arc<str>) {
        (self.no_match_code, &self.no_match_reason)
    }

    /// Heap bytes of the prefix table and its routes (not counting the carriers).
    pub fn heap_bytes(&self) -> usize {
        self.prefixes.heap_bytes()
            + self.starts.capacity() * 4
            + self.routes.capacity() * std::mem::size_of::<Route>()
    }

    /// Nodes of the prefix trie (for sizing).
    pub fn trie_nodes(&self) -> usize {
        self.prefixes.nodes()
    }

    /// The normalised form of a Request-URI user, as matched (cut to the characters that
    /// can matter for matching).
    pub fn normalize(&self, user: &str) -> String {
        let mut buf = [0u8; NORM_MAX];
        let n = self.normalize_into(user.as_bytes(), &mut buf);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn normalize_into(&self, user: &[u8], out: &mut [u8; NORM_MAX]) -> usize {
        let user = match user.iter().position(|&b| b == b';') {
            Some(i) => &user[..i],
            None => user,
        };
        // A leading '+' escaped as "%2B" (some user agents do) is a '+'.
        let (plus, user) = match user {
            [b'%', b'2', b'b' | b'B', rest @ ..] => (true, rest),
            _ => (false, user),
        };
        let mut clean = [0u8; CLEAN_MAX];
        let mut n = 0;
        if plus {
            clean[0] = b'+';
            n = 1;
        }
        if self.digits_only {
            for (i, &b) in user.iter().enumerate() {
                if n == CLEAN_MAX {
                    break;
                }
                if b.is_ascii_digit() || (b == b'+' && i == 0 && !plus) {
                    clean[n] = b;
                    n += 1;
                }
            }
        } else {
            let m = user.len().min(CLEAN_MAX - n);
            clean[n..n + m].copy_from_slice(&user[..m]);
            n += m;
        }
        let clean = &clean[..n];
        let (strip, prefix): (usize, &[u8]) = self
            .normalize
            .iter()
            .find(|(s, _)| clean.starts_with(s))
            .map_or((0, &[][..]), |(s, p)| (s.len(), &p[..]));
        let rest = &clean[strip..];
        out[..prefix.len()].copy_from_slice(prefix);
        let m = rest.len().min(NORM_MAX - prefix.len());
        out[prefix.len()..prefix.len() + m].copy_from_slice(&rest[..m]);
        prefix.len() + m
    }

    /// The longest prefix of the table that begins the normalised `user`.
    pub fn lookup(&self, user: &str) -> Option<LcrMatch<'_>> {
        let mut buf = [0u8; NORM_MAX];
        let n = self.normalize_into(user.as_bytes(), &mut buf);
        self.lookup_normalized(&buf[..n])
    }

    /// [`lookup`](LcrTable::lookup) of a number already normalised.
    pub fn lookup_normalized(&self, number: &[u8]) -> Option<LcrMatch<'_>> {
        let (index, len) = self.prefixes.longest_match(number)?;
        let mut prefix = [0u8; MAX_LCR_PREFIX_LEN];
        let len = len.min(MAX_LCR_PREFIX_LEN);
        prefix[..len].copy_from_slice(&number[..len]);
        Some(LcrMatch {
            table: self,
            index,
            prefix,
            len: len as u8,
        })
    }

    fn routes_of(&self, i: usize) -> &[Route] {
        &self.routes[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// The targets for a user: `None` when no prefix matches; empty when every
    /// destination is down.
    pub(crate) fn targets(
        &self,
        user: Option<&str>,
        call_id: &[u8],
        sets: &[DestinationSet],
        rng: &Rng,
    ) -> Option<Vec<Target>> {
        let m = self.lookup(user?)?;
        let routes = self.routes_of(m.index);
        let mut order: Vec<u32> = Vec::with_capacity(routes.len());
        let mut i = 0;
        while i < routes.len() {
            let mut j = i + 1;
            while j < routes.len() && routes[j].priority == routes[i].priority {
                j += 1;
            }
            weighted_order(&routes[i..j], rng, &mut order);
            i = j;
        }
        let mut out: Vec<Target> = Vec::with_capacity(4 * order.len());
        for c in order {
            for &(s, base) in self.carriers[c as usize].sets.iter() {
                // Append the set's order, then keep only destinations not already in the
                // plan (a gateway shared by two carriers is tried once), renumbered into
                // the table's union set.
                let start = out.len();
                sets[s].push_targets(call_id, rng, &mut out);
                let mut kept = start;
                for k in start..out.len() {
                    let (addr, transport) = (out[k].addr, out[k].transport);
                    if out[..kept]
                        .iter()
                        .any(|t| t.addr == addr && t.transport == transport)
                    {
                        continue;
                    }
                    out.swap(kept, k);
                    out[kept].index += base;
                    kept += 1;
                }
                out.truncate(kept);
            }
        }
        Some(out)
    }
}

/// Carriers of one priority in a weighted random order without replacement (weight 0
/// after the others, in configuration order).
fn weighted_order(group: &[Route], rng: &Rng, out: &mut Vec<u32>) {
    if group.len() == 1 {
        out.push(group[0].carrier);
        return;
    }
    let start = out.len();
    let mut weights: Vec<u64> = Vec::with_capacity(group.len());
    for r in group.iter().filter(|r| r.weight > 0) {
        weights.push(u64::from(r.weight));
        out.push(r.carrier);
    }
    let mut total: u64 = weights.iter().sum();
    for pos in 0..weights.len() {
        let mut r = rng.below(total);
        let mut j = pos;
        while r >= weights[j] {
            r -= weights[j];
            j += 1;
        }
        total -= weights[j];
        weights.swap(pos, j);
        out.swap(start + pos, start + j);
    }
    out.extend(group.iter().filter(|r| r.weight == 0).map(|r| r.carrier));
}

fn carrier_members(
    list: &StringList,
    path: &KeyPath,
    sets: &[DestinationSet],
    set_names: &HashMap<String, usize>,
) -> Result<Vec<usize>, BuildError> {
    if list.0.is_empty() {
        return Err(BuildError::new(
            path.clone(),
            "a carrier needs at least one destination set",
        ));
    }
    let mut out: Vec<usize> = Vec::with_capacity(list.0.len());
    for (k, name) in list.0.iter().enumerate() {
        let Some(&s) = set_names.get(name.as_str()) else {
            let mut known: Vec<&str> = sets.iter().map(|s| &**s.name()).collect();
            known.sort_unstable();
            let known = if known.is_empty() {
                "none are defined".to_owned()
            } else {
                format!("known: {}", known.join(", "))
            };
            return Err(BuildError::new(
                path.index(k),
                format!("no destination set named \"{name}\" ({known})"),
            ));
        };
        if sets[s].algorithm() == Algorithm::Parallel {
            return Err(BuildError::new(
                path.index(k),
                format!("destination set \"{name}\" is parallel: LCR plans are serial, so a carrier's sets must be too"),
            ));
        }
        if out.contains(&s) {
            return Err(BuildError::new(
                path.index(k),
                format!("destination set \"{name}\" is listed twice"),
            ));
        }
        out.push(s);
    }
    Ok(out)
}

fn unknown_carrier(name: &str, cfg: &LcrConfig) -> String {
    let known: Vec<&str> = cfg.carriers.iter().map(|c| c.name.as_str()).collect();
    format!(
        "no carrier named \"{name}\" in this table (known: {})",
        known.join(", ")
    )
}

fn origin_text(o: Origin, cfg: &LcrConfig) -> String {
    match o {
        Origin::Config(k) => format!("prefixes[{k}]"),
        Origin::Line(l) => format!("{}:{l}", cfg.file.as_deref().unwrap_or("")),
    }
}

/// Parse the CSV text of `lcr.file` into rows: `(line, message)` on error.
///
/// Format: one entry per line, `prefix,carrier[,priority[,weight]]`; fields trimmed of
/// spaces and tabs; blank lines and lines starting with `#` ignored; a first line starting
/// with the field `prefix` is a header and skipped; CRLF line ends and a UTF-8 BOM are
/// accepted. No quoting (no field can hold a comma).
fn parse_csv(
    text: &str,
    carriers: &HashMap<&str, u32>,
    cfg: &LcrConfig,
    rows: &mut Vec<Row>,
    arena: &mut Vec<u8>,
) -> Result<(), (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut first = true;
    // A cache of the last carrier name: files are usually sorted by carrier or prefix.
    let mut last: Option<(&str, u32)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(',').map(|f| f.trim_matches([' ', '\t']));
        let prefix = fields.next().unwrap_or("");
        if first {
            first = false;
            if prefix.eq_ignore_ascii_case("prefix") {
                continue;
            }
        }
        if line.contains('"') {
            return Err((
                n,
                "quoted fields are not supported (no field needs them)".into(),
            ));
        }
        let carrier = fields
            .next()
            .ok_or_else(|| (n, "expected prefix,carrier[,priority[,weight]]".to_owned()))?;
        let number = |name: &str, v: Option<&str>, default: u32| -> Result<u32, (usize, String)> {
            match v {
                None | Some("") => Ok(default),
                Some(v) => v.parse::<u32>().map_err(|_| {
                    (
                        n,
                        format!("{name} \"{v}\" is not a whole number (0 to 4294967295)"),
                    )
                }),
            }
        };
        let priority = number("priority", fields.next(), 0)?;
        let weight = number("weight", fields.next(), 1)?;
        if fields.next().is_some() {
            return Err((
                n,
                "too many fields: expected prefix,carrier[,priority[,weight]]".into(),
            ));
        }
        check_prefix(prefix).map_err(|m| (n, m))?;
        let carrier = match last {
            Some((name, c)) if name == carrier => c,
            _ => {
                let c = *carriers
                    .get(carrier)
                    .ok_or_else(|| (n, unknown_carrier(carrier, cfg)))?;
                last = Some((carrier, c));
                c
            }
        };
        if rows.len() >= MAX_LCR_ENTRIES {
            return Err((n, format!("more than {MAX_LCR_ENTRIES} entries")));
        }
        rows.push(Row {
            head: head(prefix.as_bytes()),
            start: arena.len() as u32,
            len: prefix.len() as u8,
            carrier,
            priority,
            weight,
            origin: Origin::Line(n as u32),
        });
        arena.extend_from_slice(prefix.as_bytes());
    }
    Ok(())
}
