//! Dialog tracking: early and confirmed dialogs, counted per destination
//! and per rule, ended by BYE or by timeout. Stored and restored like
//! transactions.

use std::net::SocketAddr;
use std::sync::Arc;

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use crate::Millis;

/// Dialog states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DialogState {
    /// A 1xx with a To tag was relayed.
    Early,
    /// A 2xx was relayed.
    Confirmed,
}

/// A dialog cairn record-routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialog {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    pub state: DialogState,
    /// The destination (gateway) of the dialog.
    pub destination: String,
    pub destination_addr: SocketAddr,
    /// Index of the destination in its set (for the dialog limit).
    pub destination_index: u32,
    pub set: String,
    pub rule: String,
    pub created: Millis,
    pub updated: Millis,
    pub expires_at: Millis,
}

/// The key of a dialog, the same from both ends: Call-ID and the two tags
/// in a fixed order.
pub fn key(call_id: &[u8], tag_a: &[u8], tag_b: &[u8]) -> [u8; 8] {
    let (a, b) = if tag_a <= tag_b {
        (tag_a, tag_b)
    } else {
        (tag_b, tag_a)
    };
    let mut h = crate::branch::Fnv::default();
    h.write(b"dialog").write(call_id).write(a).write(b);
    h.finish().to_be_bytes()
}

/// The current dialog record format.
pub const VERSION: u8 = 1;

pub fn encode(d: &Dialog) -> Vec<u8> {
    postcard::to_extend(d, vec![VERSION]).unwrap_or_default()
}

pub fn decode(b: &[u8]) -> Option<Dialog> {
    match b.split_first() {
        Some((&VERSION, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

/// Every live dialog, and the counts per destination and per rule.
#[derive(Debug, Default)]
pub struct DialogTable {
    pub(crate) dialogs: AHashMap<[u8; 8], Dialog>,
    per_destination: AHashMap<Arc<str>, usize>,
    per_rule: AHashMap<Arc<str>, usize>,
}

impl DialogTable {
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    pub fn get(&self, key: &[u8; 8]) -> Option<&Dialog> {
        self.dialogs.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Dialog> {
        self.dialogs.values()
    }

    /// Dialogs per destination name.
    pub fn per_destination(&self) -> impl Iterator<Item = (&str, usize)> {
        self.per_destination.iter().map(|(k, v)| (&**k, *v))
    }

    /// Dialogs per rule name.
    pub fn per_rule(&self) -> impl Iterator<Item = (&str, usize)> {
        self.per_rule.iter().map(|(k, v)| (&**k, *v))
    }

    /// Add a dialog; `false` when it was there already.
    pub(crate) fn insert(&mut self, key: [u8; 8], d: Dialog) -> bool {
        if self.dialogs.contains_key(&key) {
            return false;
        }
        *self
            .per_destination
            .entry(Arc::from(d.destination.as_str()))
            .or_default() += 1;
        *self.per_rule.entry(Arc::from(d.rule.as_str())).or_default() += 1;
        self.dialogs.insert(key, d);
        true
    }

    pub(crate) fn get_mut(&mut self, key: &[u8; 8]) -> Option<&mut Dialog> {
        self.dialogs.get_mut(key)
    }

    pub(crate) fn remove(&mut self, key: &[u8; 8]) -> Option<Dialog> {
        let d = self.dialogs.remove(key)?;
        for (map, name) in [
            (&mut self.per_destination, &d.destination),
            (&mut self.per_rule, &d.rule),
        ] {
            if let Some(n) = map.get_mut(name.as_str()) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(name.as_str());
                }
            }
        }
        Some(d)
    }
}
