//! cairn-sip
