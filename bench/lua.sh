#!/usr/bin/env bash
# cairn Lua routing benchmark (crates/routing): the time of one routing
# decision (Policy::route) made by a Lua script (`rule.script`), next to a
# plain rule, with the parsed request as the proxy core passes it: mean over
# DECISIONS calls, and p50/p99 of 100,000 calls timed one by one.
#
#   bench/lua.sh                       # 1,000,000 decisions per case
#   DECISIONS=5000000 bench/lua.sh
#
# Everything is in-process; the scripts are written under the temp directory
# and removed by the benchmark.
set -euo pipefail

cd "$(dirname "$0")/.."

DECISIONS=${DECISIONS:-1000000}

cargo build --release -q -p cairn-routing --example lua_bench
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --release -q -p cairn-routing --example lua_bench -- --decisions "$DECISIONS"
