//! cairn-transaction
