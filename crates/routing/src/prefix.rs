//! A longest-prefix-match table for number prefixes, compact enough for millions of entries.
//!
//! A trie over the 11 symbols of number prefixes (`+` and the digits), stored as one array
//! of 8-byte nodes in breadth-first order: each node has a bitmap of the symbols it has
//! children for, the position of its first child and the value of the prefix that ends
//! there; the children of a node are contiguous, so the child for symbol `s` is
//! `first_child + popcount(bitmap below s)`.
//! A lookup walks one node per character of the number (at most the longest prefix, 32),
//! remembering the last node that ends a prefix: no comparison of strings, no branch on the
//! table size, and the upper levels (the busiest) stay in the CPU cache.
//!
//! Built from the sorted distinct prefixes in one pass per level; immutable and
//! `Send + Sync` once built.

/// Bits of a node: 11 for the children bitmap, 24 for the value, 29 for the first child.
const VALUE_SHIFT: u32 = 11;
const VALUE_BITS: u32 = 24;
const CHILD_SHIFT: u32 = VALUE_SHIFT + VALUE_BITS;
/// No value.
const NO_VALUE: u32 = (1 << VALUE_BITS) - 1;
/// The most prefixes of a table (values are 24 bits, one is "none").
pub const MAX_PREFIXES: usize = NO_VALUE as usize;
/// The most nodes (first-child positions are 29 bits).
const MAX_NODES: usize = 1 << (64 - CHILD_SHIFT);

/// Symbols: `+` is 0, `0`..`9` are 1..10 (byte order is kept, not that it matters here).
fn symbol(b: u8) -> Option<u32> {
    match b {
        b'+' => Some(0),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 1),
        _ => None,
    }
}

/// A node, packed: bit `s` of the low 11 bits set means a child for symbol `s`; then the
/// value of the prefix that ends here (its sorted position, or `NO_VALUE`); then the
/// position of the first child.
#[derive(Debug, Clone, Copy)]
struct Node(u64);

impl Node {
    fn new(children: u16, value: u32, first_child: usize) -> Node {
        Node(
            u64::from(children)
                | u64::from(value) << VALUE_SHIFT
                | (first_child as u64) << CHILD_SHIFT,
        )
    }
    fn children(self) -> u32 {
        (self.0 & 0x7ff) as u32
    }
    fn value(self) -> u32 {
        ((self.0 >> VALUE_SHIFT) as u32) & NO_VALUE
    }
    fn first_child(self) -> usize {
        (self.0 >> CHILD_SHIFT) as usize
    }
}

/// Sorted distinct prefixes (over `+` and digits) in a trie; each prefix's value is its
/// position in sorted order.
#[derive(Debug, Default)]
pub struct PrefixTable {
    nodes: Vec<Node>,
    len: usize,
}

/// Why prefixes could not be built into a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// Prefix `i` is not strictly after prefix `i - 1`.
    Unsorted(usize),
    /// Prefix `i` has a character other than `+` and the digits.
    BadCharacter(usize),
    /// More than [`MAX_PREFIXES`] prefixes, or too many characters in all.
    TooLarge,
}

impl PrefixTable {
    /// Build from prefixes that are distinct, sorted ascending (byte order) and made of
    /// `+` and digits only. Prefix `i` gets value `i`.
    pub fn from_sorted(prefixes: &[&[u8]]) -> Result<PrefixTable, PrefixError> {
        for (i, p) in prefixes.iter().enumerate() {
            if i > 0 && prefixes[i - 1] >= *p {
                return Err(PrefixError::Unsorted(i));
            }
            if p.iter().any(|&b| symbol(b).is_none()) {
                return Err(PrefixError::BadCharacter(i));
            }
        }
        let n = prefixes.len();
        if n > MAX_PREFIXES {
            return Err(PrefixError::TooLarge);
        }
        // Breadth-first: node k covers the prefixes in `ranges[k]` (all begin with the
        // node's path, of length `depth`).
        let mut nodes: Vec<Node> = Vec::with_capacity(2 * n + 1);
        let mut ranges: Vec<(u32, u32, u8)> = Vec::with_capacity(2 * n + 1);
        nodes.push(Node(0));
        ranges.push((0, n as u32, 0));
        let mut k = 0;
        while k < nodes.len() {
            let (mut lo, hi, depth) = ranges[k];
            let d = usize::from(depth);
            let mut value = NO_VALUE;
            // The path itself sorts first among the prefixes that begin with it.
            if lo < hi && prefixes[lo as usize].len() == d {
                value = lo;
                lo += 1;
            }
            let first_child = nodes.len();
            let mut bits = 0u16;
            let mut i = lo;
            while i < hi {
                let b = prefixes[i as usize][d];
                let mut j = i + 1;
                while j < hi && prefixes[j as usize][d] == b {
                    j += 1;
                }
                bits |= 1 << symbol(b).unwrap_or(0);
                nodes.push(Node(0));
                ranges.push((i, j, depth + 1));
                i = j;
            }
            if nodes.len() > MAX_NODES {
                return Err(PrefixError::TooLarge);
            }
            nodes[k] = Node::new(bits, value, if bits == 0 { 0 } else { first_child });
            k += 1;
        }
        drop(ranges);
        nodes.shrink_to_fit();
        Ok(PrefixTable { nodes, len: n })
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value (sorted position) and length of the longest prefix of `number` in the
    /// table.
    pub fn longest_match(&self, number: &[u8]) -> Option<(usize, usize)> {
        let mut node = *self.nodes.first()?;
        let mut best = (node.value() != NO_VALUE).then_some((node.value() as usize, 0));
        for (depth, &b) in number.iter().enumerate() {
            let Some(s) = symbol(b) else { break };
            let bit = 1u32 << s;
            let children = node.children();
            if children & bit == 0 {
                break;
            }
            let rank = (children & (bit - 1)).count_ones() as usize;
            node = self.nodes[node.first_child() + rank];
            if node.value() != NO_VALUE {
                best = Some((node.value() as usize, depth + 1));
            }
        }
        best
    }

    /// Trie nodes.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(prefixes: &[&str]) -> (PrefixTable, Vec<String>) {
        let mut v: Vec<String> = prefixes.iter().map(|s| s.to_string()).collect();
        v.sort();
        let bytes: Vec<&[u8]> = v.iter().map(|s| s.as_bytes()).collect();
        (PrefixTable::from_sorted(&bytes).unwrap(), v)
    }

    fn naive<'a>(prefixes: &[&'a str], n: &str) -> Option<&'a str> {
        prefixes
            .iter()
            .filter(|p| n.starts_with(**p))
            .max_by_key(|p| p.len())
            .copied()
    }

    fn lpm(t: &(PrefixTable, Vec<String>), n: &str) -> Option<String> {
        t.0.longest_match(n.as_bytes()).map(|(i, len)| {
            assert_eq!(t.1[i].len(), len);
            assert!(n.starts_with(&t.1[i]));
            t.1[i].clone()
        })
    }

    #[test]
    fn overlapping_prefixes() {
        let ps = [
            "+1", "+1555", "+15551", "+1555123", "+44", "+4420", "+49", "+49301",
        ];
        let t = table(&ps);
        for (n, want) in [
            ("+15551234567", Some("+1555123")),
            ("+15551299999", Some("+15551")),
            ("+15559", Some("+1555")),
            ("+1555", Some("+1555")),
            ("+155", Some("+1")),
            ("+1", Some("+1")),
            ("+2", None),
            ("+", None),
            ("", None),
            ("+442071234567", Some("+4420")),
            ("+441", Some("+44")),
            ("+49301234", Some("+49301")),
            ("+4930", Some("+49")),
            ("+5", None),
            ("1555", None),
            ("+1x555", Some("+1")),
        ] {
            assert_eq!(lpm(&t, n).as_deref(), want, "{n}");
            assert_eq!(naive(&ps, n), want, "naive {n}");
        }
    }

    #[test]
    fn empty_prefix_matches_everything() {
        let t = table(&["", "+1", "+12"]);
        assert_eq!(lpm(&t, "+44").as_deref(), Some(""));
        assert_eq!(lpm(&t, "").as_deref(), Some(""));
        assert_eq!(lpm(&t, "abc").as_deref(), Some(""));
        assert_eq!(lpm(&t, "+13").as_deref(), Some("+1"));
        assert_eq!(lpm(&t, "+123").as_deref(), Some("+12"));
        let empty = table(&[]);
        assert!(empty.0.longest_match(b"+1").is_none());
        assert!(empty.0.is_empty());
    }

    #[test]
    fn values_are_sorted_positions() {
        let t = table(&["+2", "+1", "+12", "3"]);
        assert_eq!(t.1, ["+1", "+12", "+2", "3"]);
        assert_eq!(t.0.longest_match(b"+129"), Some((1, 3)));
        assert_eq!(t.0.longest_match(b"+2"), Some((2, 2)));
        assert_eq!(t.0.longest_match(b"31"), Some((3, 1)));
        assert_eq!(t.0.len(), 4);
        // Nodes: root, '+', '3', '+1', '+2', '+12'.
        assert_eq!(t.0.nodes(), 6);
    }

    #[test]
    fn refuses_unsorted_duplicates_and_other_characters() {
        assert_eq!(
            PrefixTable::from_sorted(&[b"+2", b"+1"]).unwrap_err(),
            PrefixError::Unsorted(1)
        );
        assert_eq!(
            PrefixTable::from_sorted(&[b"+1", b"+1"]).unwrap_err(),
            PrefixError::Unsorted(1)
        );
        assert_eq!(
            PrefixTable::from_sorted(&[b"+1", b"+1a"]).unwrap_err(),
            PrefixError::BadCharacter(1)
        );
    }

    #[test]
    fn random_sets_over_a_small_alphabet() {
        // Prefix sets over {1, 2, +} up to length 3, every number up to length 4.
        let sym = ['1', '2', '+'];
        let strings = |max: usize| -> Vec<String> {
            let mut out = vec![String::new()];
            let mut level = vec![String::new()];
            for _ in 0..max {
                level = level
                    .iter()
                    .flat_map(|s| sym.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(level.iter().cloned());
            }
            out
        };
        let all = strings(3);
        let numbers = strings(4);
        let mut seed = 0x1234_5678_u64;
        for _ in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut s2 = seed;
            let ps: Vec<&str> = all
                .iter()
                .filter(|_| {
                    s2 = s2.rotate_left(7) ^ 0x9E37_79B9;
                    s2 & 3 == 0
                })
                .map(|s| s.as_str())
                .collect();
            let t = table(&ps);
            for n in &numbers {
                assert_eq!(lpm(&t, n).as_deref(), naive(&ps, n), "{ps:?} {n}");
            }
        }
    }
}
