//! The TOML configuration of cairn.
