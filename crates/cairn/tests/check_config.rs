//! `cairn check-config FILE`: 0 for a good file, non-zero with the
//! offending key named for a bad one; `cairn --config BAD` refuses to start.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cairn.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example()).expect("examples/cairn.toml")
}

/// The example with `from` replaced by `to` (which must change it).
fn variant(from: &str, to: &str) -> PathBuf {
    let text = example_text();
    assert!(
        text.contains(from),
        "examples/cairn.toml no longer contains {from:?}: update this test"
    );
    let path = test_dir("bad-config").join("bad.toml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

fn check(path: &Path) -> (std::process::ExitStatus, String) {
    run_cairn(&["check-config", path.to_str().unwrap()])
}

#[track_caller]
fn assert_rejected_naming(path: &Path, key: &str) {
    let (st, out) = check(path);
    assert!(
        !st.success(),
        "check-config accepted a bad file ({st}):\n{out}"
    );
    assert!(out.contains(key), "the error should name {key:?}:\n{out}");
}

#[test]
fn example_config_is_valid() {
    let (st, out) = check(&example());
    assert!(
        st.success(),
        "check-config rejected examples/cairn.toml ({st}):\n{out}"
    );
}

#[test]
fn bad_algorithm_is_named() {
    assert_rejected_naming(
        &variant("algorithm = \"round_robin\"", "algorithm = \"fastest\""),
        "algorithm",
    );
}

#[test]
fn unknown_key_is_named() {
    assert_rejected_naming(&variant("t1_ms = 500", "t1_msec = 500"), "t1_msec");
}

#[test]
fn wrong_type_is_named() {
    assert_rejected_naming(&variant("t1_ms = 500", "t1_ms = \"fast\""), "t1_ms");
}

#[test]
fn undefined_destination_set_is_named() {
    assert_rejected_naming(
        &variant(
            "destination_set = \"gateways\"",
            "destination_set = \"nowhere\"",
        ),
        "destination_set",
    );
}

#[test]
fn bad_listen_address_is_named() {
    assert_rejected_naming(
        &variant(
            "address = \"127.0.0.1:5060\"",
            "address = \"127.0.0.1:99999\"",
        ),
        "address",
    );
}

#[test]
fn missing_file_fails() {
    let path = test_dir("missing").join("no-such-file.toml");
    let (st, out) = check(&path);
    assert!(
        !st.success(),
        "check-config of a missing file succeeded:\n{out}"
    );
    assert!(
        out.contains("no-such-file.toml"),
        "the error should name the file:\n{out}"
    );
}

/// The daemon refuses a bad config: it exits non-zero, naming the key,
/// instead of serving.
#[test]
fn bad_config_does_not_start() {
    let path = variant("algorithm = \"round_robin\"", "algorithm = \"fastest\"");
    let (st, out) = run_cairn(&["--config", path.to_str().unwrap()]);
    assert!(
        !st.success(),
        "cairn --config with a bad file exited {st}:\n{out}"
    );
    assert!(
        out.contains("algorithm"),
        "the error should name \"algorithm\":\n{out}"
    );
}

/// A rule's script is found next to the configuration file; a script that
/// does not compile is a configuration error naming the key, the TOML line
/// and the script's own file and line; a bad manipulation key is named.
#[test]
fn scripts_and_manipulation_keys_are_checked() {
    let path = variant(
        "destination_set = \"gateways\"\n# ring_timeout_ms",
        "script = { file = \"route.lua\" }\n# ring_timeout_ms",
    );
    let dir = path.parent().unwrap();
    std::fs::write(
        dir.join("route.lua"),
        "function route()\n  return 'gateways'\nend\n",
    )
    .unwrap();
    let (st, out) = check(&path);
    assert!(st.success(), "a good script is accepted ({st}):\n{out}");

    std::fs::write(
        dir.join("route.lua"),
        "function route()\n  return 'gateways' +\nend\n",
    )
    .unwrap();
    let (st, out) = check(&path);
    assert!(!st.success(), "a broken script is refused:\n{out}");
    assert!(out.contains("rule[0].script.file"), "{out}");
    assert!(
        out.contains("route.lua:3: unexpected symbol near 'end'"),
        "{out}"
    );

    let path = variant(
        "destination_set = \"gateways\"\n# ring_timeout_ms",
        "destination_set = \"gateways\"\nremove_headers = [\"Call-ID\"]\n# ring_timeout_ms",
    );
    assert_rejected_naming(&path, "rule[0].remove_headers[0]");
}
