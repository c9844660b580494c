#!/usr/bin/env bash
# cairn state store benchmark (crates/store): commit throughput and latency
# per durability level (off, buffered, strict) and batch size (1, 10, 50
# records of 1.5 KB), restore time (open + load) of 100,000 live
# transaction records after SIGKILL, and disk bytes per live record.
#
#   bench/store_restore.sh                    # defaults below
#   SECS=5 RECORDS=200000 bench/store_restore.sh
#   ARGS="--skip-commit" bench/store_restore.sh
#
# Parameters (environment):
#   SECS     seconds per commit row                  (default 3)
#   RATE     records/s of the paced rows             (default 5000)
#   LIVE     live records kept during commit rows    (default 10000)
#   RECORDS  live records for the restore test       (default 100000)
#   CHURN    extra put+delete pairs before the kill  (default 100000)
#   DIR      work directory (removed at the end)     (default under target/)
#   ARGS     extra arguments for store_bench
#
# Everything is local files; the child process of the restore test is
# SIGKILLed by the benchmark itself (by PID), which then removes its files.
set -euo pipefail

cd "$(dirname "$0")/.."

SECS=${SECS:-3}
RATE=${RATE:-5000}
LIVE=${LIVE:-10000}
RECORDS=${RECORDS:-100000}
CHURN=${CHURN:-100000}
DIR=${DIR:-$PWD/target/store-bench.$$}

cargo build --release -q -p cairn-store --example store_bench
BIN=target/release/examples/store_bench

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "file system of $DIR: $(df -T "$(dirname "$DIR")" | awk 'NR==2 {print $2}')"
trap 'rm -rf "$DIR"' EXIT
# shellcheck disable=SC2086
"$BIN" --secs "$SECS" --rate "$RATE" --live "$LIVE" --records "$RECORDS" --churn "$CHURN" --dir "$DIR" ${ARGS:-}
