//! When a serial destination set moves on to its next destination.

use std::fmt;

/// A set of final response codes (300 to 699), stored as a bitmap: `contains` is O(1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CodeSet {
    bits: [u64; 11], // codes 0..704
}

impl CodeSet {
    /// No code.
    pub const fn empty() -> CodeSet {
        CodeSet { bits: [0; 11] }
    }

    /// Add one code (ignored outside 300..=699).
    pub fn insert(&mut self, code: u16) {
        if (300..=699).contains(&code) {
            self.bits[usize::from(code) / 64] |= 1 << (code % 64);
        }
    }

    /// Add a whole class: `5` adds 500..=599.
    pub fn insert_class(&mut self, class: u8) {
        let base = u16::from(class) * 100;
        for code in base..base + 100 {
            self.insert(code);
        }
    }

    /// Whether `code` is in the set.
    pub fn contains(&self, code: u16) -> bool {
        let i = usize::from(code) / 64;
        i < self.bits.len() && self.bits[i] & (1 << (code % 64)) != 0
    }

    /// Parse one pattern: an exact code `"486"` or a class `"5xx"` (`x` or `X`),
    /// for final non-2xx responses (300 to 699).
    pub fn parse_pattern(&mut self, pattern: &str) -> Result<(), String> {
        let b = pattern.as_bytes();
        if b.len() == 3 && b[1..].eq_ignore_ascii_case(b"xx") {
            return match b[0] {
                c @ b'3'..=b'6' => {
                    self.insert_class(c - b'0');
                    Ok(())
                }
                b'1' | b'2' => Err(format!(
                    "\"{pattern}\": only final non-2xx responses (3xx to 6xx) can trigger failover"
                )),
                _ => Err(format!(
                    "\"{pattern}\" is not a response class (3xx, 4xx, 5xx or 6xx)"
                )),
            };
        }
        match pattern.parse::<u16>() {
            Ok(code @ 300..=699) if b.iter().all(u8::is_ascii_digit) => {
                self.insert(code);
                Ok(())
            }
            Ok(100..=299) => Err(format!(
                "\"{pattern}\": only final non-2xx responses (300 to 699) can trigger failover"
            )),
            _ => Err(format!(
                "\"{pattern}\" is not a response code (300 to 699) or class (\"5xx\")"
            )),
        }
    }

    /// The codes in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (300..=699).filter(|&c| self.contains(c))
    }

    /// The set as runs of consecutive codes, `(first, last)` inclusive,
    /// ascending: `5xx` and `408` are `[(408, 408), (500, 599)]`.
    pub fn ranges(&self) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut code = 300u16;
        while let Some(first) = self.next_with(code, true) {
            let last = self.next_with(first, false).map_or(699, |c| c - 1);
            out.push((first, last));
            code = last + 1;
        }
        out
    }

    /// The first code from `from` (up to 699) that is in the set
    /// (`member`) or not.
    fn next_with(&self, from: u16, member: bool) -> Option<u16> {
        let mut code = from;
        while code <= 699 {
            let word = self.bits[usize::from(code) / 64];
            let word = if member { word } else { !word };
            let rest = word >> (code % 64);
            if rest != 0 {
                let found = code + rest.trailing_zeros() as u16;
                return (found <= 699).then_some(found);
            }
            code = (code / 64 + 1) * 64;
        }
        None
    }

    /// Add every code of `first..=last`.
    pub fn insert_range(&mut self, first: u16, last: u16) {
        for code in first.max(300)..=last.min(699) {
            self.insert(code);
        }
    }
}

impl fmt::Debug for CodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for class in 3..=6u16 {
            let codes = class * 100..class * 100 + 100;
            if codes.clone().all(|c| self.contains(c)) {
                list.entry(&format_args!("{class}xx"));
            } else {
                for c in codes.filter(|&c| self.contains(c)) {
                    list.entry(&c);
                }
            }
        }
        list.finish()
    }
}

/// The failover policy of a serial plan: which final responses, and whether a timeout,
/// make the proxy try the next target. A parallel plan does not fail over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Failover {
    /// Final response codes that move on to the next target.
    pub codes: CodeSet,
    /// Whether no final response before the branch timer (Timer C / B / F) moves on.
    pub on_timeout: bool,
}

impl Failover {
    /// Whether a final response with this code should make the proxy try the next target.
    /// Never true for 1xx or 2xx.
    pub fn should_failover(&self, code: u16) -> bool {
        self.codes.contains(code)
    }

    /// Whether a branch that timed out should make the proxy try the next target.
    pub fn on_timeout(&self) -> bool {
        self.on_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_set_is_its_ranges() {
        let cases: &[&[&str]] = &[
            &[],
            &["5xx", "408"],
            &["3xx", "4xx", "5xx", "6xx"],
            &["300", "363", "364", "383", "384", "699"],
            &["486", "487", "6xx", "599"],
        ];
        for patterns in cases {
            let s = set(patterns);
            let ranges = s.ranges();
            let mut back = CodeSet::empty();
            for &(a, b) in &ranges {
                assert!(a <= b);
                back.insert_range(a, b);
            }
            assert_eq!(back, s, "{patterns:?} -> {ranges:?}");
            // Runs are maximal: no two touch.
            assert!(ranges.windows(2).all(|w| w[0].1 + 1 < w[1].0), "{ranges:?}");
        }
        assert_eq!(set(&["5xx", "408"]).ranges(), vec![(408, 408), (500, 599)]);
        assert_eq!(set(&["6xx"]).ranges(), vec![(600, 699)]);
    }

    fn set(patterns: &[&str]) -> CodeSet {
        let mut s = CodeSet::empty();
        for p in patterns {
            s.parse_pattern(p).unwrap();
        }
        s
    }

    #[test]
    fn classes_and_codes() {
        let f = Failover {
            codes: set(&["5xx", "486", "4XX"]),
            on_timeout: true,
        };
        assert!(f.should_failover(500));
        assert!(f.should_failover(503));
        assert!(f.should_failover(599));
        assert!(f.should_failover(486));
        assert!(f.should_failover(404));
        assert!(!f.should_failover(600));
        assert!(!f.should_failover(302));
        assert!(!f.should_failover(200));
        assert!(!f.should_failover(180));
        assert!(!f.should_failover(0));
        assert!(!f.should_failover(u16::MAX));

        let exact = set(&["486", "408"]);
        assert!(exact.contains(486) && exact.contains(408));
        assert!(!exact.contains(487) && !exact.contains(500));
        assert_eq!(exact.iter().collect::<Vec<_>>(), vec![408, 486]);
        assert_eq!(format!("{:?}", set(&["5xx", "408"])), "[408, 5xx]");
    }

    #[test]
    fn refuses_bad_patterns() {
        for (p, want) in [
            ("2xx", "final non-2xx"),
            ("200", "final non-2xx"),
            ("180", "final non-2xx"),
            ("7xx", "not a response class"),
            ("700", "not a response code"),
            ("5x", "not a response code"),
            ("abc", "not a response code"),
            ("+500", "not a response code"),
            ("", "not a response code"),
        ] {
            let e = CodeSet::empty().parse_pattern(p).unwrap_err();
            assert!(e.contains(want), "{p}: {e}");
        }
    }
}
