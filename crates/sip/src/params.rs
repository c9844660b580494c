//! Generic `;name=value` parameters, as found in URIs, Via and name-addr
//! headers. LWS around `;` and `=` is tolerated (RFC 3261 7.3.1, 25.1).

use crate::scan::{eq_nocase, skip_lws, skip_quoted};

/// A parameter list: the raw bytes starting at the first `;` (or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a [u8],
}

/// One parameter: its name and, when it has one, its value (quotes kept).
pub type Param<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a> Params<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Params { raw }
    }

    /// The raw text, starting with `;` when not empty.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Iterate the parameters. An item is `Err` when a name is empty or a
    /// quoted value is not terminated; iteration stops after it.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            s: self.raw,
            pos: 0,
        }
    }

    /// Look up a parameter by name (case-insensitive): `Some(None)` when it
    /// is present without a value, `None` when absent or malformed.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        for p in self.iter() {
            match p {
                Ok((n, v)) if eq_nocase(n, name.as_bytes()) => return Some(v),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Whether every parameter is well formed.
    pub fn validate(&self) -> Result<(), &'static str> {
        self.validate_each(|_, _| {})
    }

    /// Check every parameter, handing each well-formed one to `f` in
    /// order: one pass for checking and picking out the ones the caller
    /// needs.
    pub(crate) fn validate_each(
        &self,
        mut f: impl FnMut(&'a [u8], Option<&'a [u8]>),
    ) -> Result<(), &'static str> {
        for p in self.iter() {
            let (n, v) = p?;
            f(n, v);
        }
        Ok(())
    }
}

/// Bytes that end a parameter name: `;`, `=` and LWS.
static NAME_END: [bool; 256] = stop_table(b";= \t\r\n");
/// Bytes that end an unquoted parameter value: `;` and LWS.
static VALUE_END: [bool; 256] = stop_table(b"; \t\r\n");

/// The first offset at or after `i` whose byte is in `stop`, or the end.
#[inline(always)]
fn run_to(s: &[u8], mut i: usize, stop: &[bool; 256]) -> usize {
    while i < s.len() && !stop[s[i] as usize] {
        i += 1;
    }
    i
}

const fn stop_table(stops: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut k = 0;
    while k < stops.len() {
        t[stops[k] as usize] = true;
        k += 1;
    }
    t
}

/// Iterator over [`Params`].
pub struct ParamIter<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Result<Param<'a>, &'static str>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        let mut i = skip_lws(s, self.pos);
        if i >= s.len() {
            return None;
        }
        if s[i] != b';' {
            self.pos = s.len();
            return Some(Err("expected ';' before a parameter"));
        }
        i = skip_lws(s, i + 1);
        let name_start = i;
        i = run_to(s, i, &NAME_END);
        let name = &s[name_start..i];
        if name.is_empty() {
            self.pos = s.len();
            return Some(Err("empty parameter"));
        }
        i = skip_lws(s, i);
        let mut value = None;
        if i < s.len() && s[i] == b'=' {
            i = skip_lws(s, i + 1);
            let v_start = i;
            if i < s.len() && s[i] == b'"' {
                match skip_quoted(s, i) {
                    Some(e) => i = e,
                    None => {
                        self.pos = s.len();
                        return Some(Err("unterminated quoted parameter value"));
                    }
                }
            } else {
                i = run_to(s, i, &VALUE_END);
            }
            if i == v_start {
                self.pos = s.len();
                return Some(Err("parameter with '=' but no value"));
            }
            value = Some(&s[v_start..i]);
        }
        self.pos = i;
        Some(Ok((name, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_tolerant() {
        let p = Params::new(b";   tag    = 1918181833n ; lr;x=\"a;b\"");
        assert_eq!(p.get("tag"), Some(Some(&b"1918181833n"[..])));
        assert_eq!(p.get("LR"), Some(None));
        assert_eq!(p.get("x"), Some(Some(&b"\"a;b\""[..])));
        assert_eq!(p.get("nope"), None);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn folded() {
        let p = Params::new(b"\r\n  ;\r\n  tag = 98asjd8");
        assert_eq!(p.get("tag"), Some(Some(&b"98asjd8"[..])));
    }

    #[test]
    fn malformed() {
        assert!(Params::new(b";;").validate().is_err());
        assert!(Params::new(b";a=").validate().is_err());
        assert!(Params::new(b";a=\"x").validate().is_err());
        assert!(Params::new(b"x").validate().is_err());
    }
}
