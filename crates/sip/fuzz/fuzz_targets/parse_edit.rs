//! parse + every accessor + forward edit + serialize + re-parse + builders
//! (response, CANCEL, ACK) on arbitrary bytes. The checks are the ones the
//! never-panic test runs: `crates/sip/tests/common/mod.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::exercise(data);
});
