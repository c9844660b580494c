#!/usr/bin/env bash
# cairn LCR benchmark (crates/routing): a least-cost routing table of 500,000
# prefixes loaded from a CSV file as cairn loads it; prints the build time
# (read + parse + sort + compile, and again as a reload), the table's memory,
# and the time of a lookup (normalisation + longest-prefix match), of a whole
# Policy::route with an `lcr` rule, and of a time-window check.
#
#   bench/lcr.sh                                  # 500,000 prefixes, 1,000,000 lookups
#   PREFIXES=1000000 LOOKUPS=5000000 bench/lcr.sh
#
# Parameters (environment):
#   PREFIXES  distinct prefixes in the table       (default 500000)
#   LOOKUPS   lookups timed                        (default 1000000)
#   CARRIERS  carriers (each a set of 2 gateways)  (default 20)
#   SEED      seed of the generated table/numbers  (default 1)
#
# Everything is in-process; the CSV file is written under the temp directory
# and removed by the benchmark.
set -euo pipefail

cd "$(dirname "$0")/.."

PREFIXES=${PREFIXES:-500000}
LOOKUPS=${LOOKUPS:-1000000}
CARRIERS=${CARRIERS:-20}
SEED=${SEED:-1}

cargo build --release -q -p cairn-routing --example lcr_bench
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --release -q -p cairn-routing --example lcr_bench -- \
    --prefixes "$PREFIXES" --lookups "$LOOKUPS" --carriers "$CARRIERS" --seed "$SEED"
