//! cairn-routing
