//! cairn: the binary's library part: configuration, the tokio driver that
//! runs the sans-I/O proxy core, logging.

pub mod admin;
pub mod config;
pub mod driver;
pub mod health;
pub mod logging;
pub mod lookup;
pub mod reload;
pub mod state;
