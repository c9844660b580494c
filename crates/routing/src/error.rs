//! Errors raised while compiling a [`RoutingConfig`](crate::RoutingConfig) into a
//! [`Policy`](crate::Policy). Every error names the configuration key it is about.

use std::fmt;

/// One step of a [`KeyPath`]: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A key of a table (`name` in `rule[0].name`).
    Key(String),
    /// An index into an array, counted from 0 (`0` in `rule[0]`).
    Index(usize),
}

/// The path of a configuration key, as written in the TOML file, e.g.
/// `destination_set[0].destinations[1].uri`. Array indexes count from 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<PathSegment>);

impl KeyPath {
    /// The path of a top-level key.
    pub fn root(key: &str) -> KeyPath {
        KeyPath(vec![PathSegment::Key(key.to_owned())])
    }

    /// This path extended by a table key.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(PathSegment::Key(key.to_owned()));
        p
    }

    /// This path extended by an array index.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(PathSegment::Index(index));
        p
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSegment::Key(k) if i == 0 => f.write_str(k)?,
                PathSegment::Key(k) => write!(f, ".{k}")?,
                PathSegment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A routing configuration that cannot be compiled: the key and the problem.
///
/// Display: `destination_set[0].destinations[1].uri: DNS names are not supported yet ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// The key the problem is about.
    pub path: KeyPath,
    /// What is wrong, for a human.
    pub message: String,
}

impl BuildError {
    pub(crate) fn new(path: KeyPath, message: impl Into<String>) -> BuildError {
        BuildError {
            path,
            message: message.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_display() {
        let p = KeyPath::root("destination_set")
            .index(0)
            .key("destinations")
            .index(1)
            .key("uri");
        assert_eq!(p.to_string(), "destination_set[0].destinations[1].uri");
        assert_eq!(
            KeyPath::root("routing").key("no_match").to_string(),
            "routing.no_match"
        );
    }
}
