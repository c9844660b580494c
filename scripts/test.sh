#!/usr/bin/env bash
# cairn's test command: installs what the tests need (SIPp, redis-server)
# when it is missing, builds the workspace in release mode and runs every
# test, including the integration tests that drive the real cairn binary
# with SIPp over loopback.
#
#   scripts/test.sh                  # everything
#   scripts/test.sh -p cairn         # arguments replace --workspace and go
#   scripts/test.sh -p cairn --test basic_call -- basic_call_udp   # to cargo test
#
# Environment: CAIRN_TEST_LOG sets cairn's log level in the integration
# tests (default debug); SIPP points at another sipp binary.
set -euo pipefail

cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "error: need root (or sudo) to run: $*" >&2; return 1; fi
}

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing ${missing[*]} and no apt-get to install them" >&2
        exit 1
    fi
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v sipp >/dev/null 2>&1 || { echo "error: sipp still missing after install" >&2; exit 1; }
say "sipp: $(sipp -v 2>/dev/null | grep -m1 -o 'SIPp v[^ ]*' || echo unknown)"

locked=()
[ -f Cargo.lock ] && locked=(--locked)

say "cargo build --release --workspace ${locked[*]}"
cargo build --release --workspace "${locked[@]}"

# No arguments: the whole workspace. Arguments select what to test instead
# (e.g. -p cairn, --test basic_call, a test name filter after --).
scope=(--workspace)
[ "$#" -gt 0 ] && scope=()
say "cargo test ${scope[*]} --release ${locked[*]} --no-fail-fast $*"
# --no-fail-fast: one failing test binary does not hide the others' results.
if cargo test "${scope[@]}" --release "${locked[@]}" --no-fail-fast "$@"; then
    say "all tests passed"
else
    status=$?
    say "TESTS FAILED (exit $status); integration test files are kept under target/tmp/cairn-it/"
    exit "$status"
fi
