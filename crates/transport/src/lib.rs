//! cairn-transport
