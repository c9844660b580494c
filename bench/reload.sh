#!/usr/bin/env bash
# cairn live-reload benchmark: the real binary with an LCR table of PREFIXES
# prefixes in a CSV file, reloaded ROUNDS times through the admin API
# (POST /reload, what SIGHUP does too). Prints, per reload, what cairn
# measured itself and returned:
#   load_ms  reading the configuration and the CSV, parsing, building the
#            policy (off the event loop, in a thread of its own)
#   swap_ms  the swap on the event loop (health carry-over, the core's and
#            the lookups' policy, the old policy freed): the only part during
#            which no SIP message is handled
# and the wall time of the whole POST, cairn's resident memory after each
# reload, the median of each, and cairn's start time with the same table.
# Every other reload changes the CSV (a different carrier for every
# prefix), so each one really rebuilds the table.
#
#   bench/reload.sh                          # 500,000 prefixes, 5 reloads
#   PREFIXES=1000000 ROUNDS=10 bench/reload.sh
#
# Parameters (environment):
#   PREFIXES   distinct prefixes in the table      (default 500000)
#   ROUNDS     reloads timed                       (default 5)
#   IP         loopback address to use             (default 127.0.97.1)
#   CAIRN_BIN  cairn binary (default target/release/cairn, which the script builds)
#   KEEP=1     keep the work directory
#
# Loopback only; the cairn started here is stopped by its PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PREFIXES=${PREFIXES:-500000}
ROUNDS=${ROUNDS:-5}
IP=${IP:-127.0.97.1}
CAIRN_BIN=${CAIRN_BIN:-$ROOT/target/release/cairn}
case "$IP" in 127.*) ;; *) echo "IP must be a loopback address (127.0.0.0/8)" >&2; exit 2 ;; esac

if [ "$CAIRN_BIN" = "$ROOT/target/release/cairn" ]; then
    cargo build --release -q -p cairn
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-reload-bench.XXXXXX")
CAIRN_PID=
cleanup() {
    if [ -n "$CAIRN_PID" ]; then kill "$CAIRN_PID" 2>/dev/null || true; wait "$CAIRN_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# PREFIXES distinct prefixes "+<country><digits>", carriers c0..c19 (each a
# destination set of two gateways); round $2 picks the carrier.
write_csv() {
    awk -v n="$PREFIXES" -v round="$1" 'BEGIN {
        print "prefix,carrier,priority,weight"
        for (i = 0; i < n; i++) {
            printf "+%d%07d,c%d,%d,%d\n", 1 + i % 9, i, (i + round) % 20, i % 3, 1 + i % 5
        }
    }' > "$WORK/lcr.csv"
}

{
    printf '[log]\nlevel = "warn"\n\n[[listen]]\ntransport = "udp"\naddress = "%s:5060"\n\n' "$IP"
    printf '[admin]\nlisten = "%s:8081"\n\n[store]\ndurability = "off"\npath = "state"\n\n' "$IP"
    for c in $(seq 0 19); do
        printf '[[destination_set]]\nname = "c%d-gw"\ndestinations = [{ uri = "sip:192.0.2.%d" }, { uri = "sip:198.51.100.%d" }]\n\n' "$c" "$((c + 1))" "$((c + 1))"
    done
    printf '[[lcr]]\nname = "pstn"\nfile = "lcr.csv"\ncarriers = [\n'
    for c in $(seq 0 19); do printf '  { name = "c%d", destination_sets = ["c%d-gw"] },\n' "$c" "$c"; done
    printf ']\n\n[[rule]]\nname = "pstn"\nmethods = ["INVITE"]\nlcr = "pstn"\n'
} > "$WORK/cairn.toml"
write_csv 0
echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "table: $PREFIXES prefixes, $(du -h "$WORK/lcr.csv" | cut -f1) CSV"

start=$(date +%s%N)
"$CAIRN_BIN" --config "$WORK/cairn.toml" > "$WORK/cairn.log" 2>&1 &
CAIRN_PID=$!
for _ in $(seq 1 600); do
    curl -sf "http://$IP:8081/health" > /dev/null 2>&1 && break
    kill -0 "$CAIRN_PID" 2>/dev/null || { cat "$WORK/cairn.log"; exit 1; }
    sleep 0.05
done
echo "start (config + table + bind, until the admin API answers): $(( ($(date +%s%N) - start) / 1000000 )) ms"

loads=(); swaps=(); walls=()
for r in $(seq 1 "$ROUNDS"); do
    write_csv "$r"
    t0=$(date +%s%N)
    answer=$(curl -sf -X POST "http://$IP:8081/reload")
    wall=$(( ($(date +%s%N) - t0) / 1000000 ))
    load=$(echo "$answer" | sed -n 's/.*"load_ms":\([0-9.]*\).*/\1/p')
    swap=$(echo "$answer" | sed -n 's/.*"swap_ms":\([0-9.]*\).*/\1/p')
    [ -n "$load" ] || { echo "reload $r failed: $answer"; exit 1; }
    rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$CAIRN_PID/status")
    printf 'reload %d: load %.1f ms, swap %.3f ms, POST %d ms, RSS %d MiB\n' "$r" "$load" "$swap" "$wall" "$rss"
    loads+=("$load"); swaps+=("$swap"); walls+=("$wall")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf 'median of %d: load %.1f ms, swap %.3f ms, POST %d ms\n' "$ROUNDS" "$(median "${loads[@]}")" "$(median "${swaps[@]}")" "$(median "${walls[@]}")"
