//! cairn-proxy
