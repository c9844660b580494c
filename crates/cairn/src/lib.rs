//! cairn: the binary's library part: configuration, the tokio driver, admin.

pub mod config;
