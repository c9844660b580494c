#!/usr/bin/env bash
# cairn durability benchmark: what the state store costs and how fast it
# comes back.
#
# 1. Load, as bench/run.sh: a SIPp UAC calls at a fixed rate through cairn
#    (round robin) to two SIPp UASes, all on one loopback address, once per
#    durability level ([store] durability = off, buffered, strict), ROUNDS
#    times in turn (off, buffered, strict, off, buffered, strict, ...) so
#    that a change in the machine's load hits every level alike. Prints
#    calls completed/failed, cairn's CPU seconds per 1000 calls (utime+stime
#    of every thread of the process, from /proc/PID/stat) and the overhead
#    of each level against off (the median of the rounds), how much of it
#    the store's own threads used (fjall workers, cairn-store-sync), and the
#    store commits per call and their mean latency from cairn's /metrics.
# 2. Restore: crates/cairn/examples/restore_bench.rs writes the records of
#    RESTORE_CALLS INVITEs in flight through cairn's own StateStore, is
#    SIGKILLed, and the time of open + load + rebuild is measured; with the
#    store's disk bytes against the calls in flight.
#
#   bench/durability.sh                    # R=500 calls/s, N=5000 calls, 3 rounds
#   R=300 N=3000 ROUNDS=5 bench/durability.sh
#   SKIP_LOAD=1 bench/durability.sh        # restore part only
#   SKIP_RESTORE=1 bench/durability.sh     # load part only
#   LEVELS="off buffered redis" SKIP_RESTORE=1 bench/durability.sh
#                                          # the Redis store (cluster mode) against the embedded one
#
# Level "redis" runs cairn with [store] backend = "redis" (node 1) against a
# redis-server this script starts on IP:REDIS_PORT (--save "" --appendonly no,
# stopped by PID on exit); its "store thr." column adds the CPU of the
# redis-server process to that of cairn's Redis threads (cairn-redis-*).
#
# Parameters (environment):
#   R              call rate, calls per second                (default 500)
#   N              calls per run                              (default 5000)
#   ROUNDS         runs per level                             (default 3)
#   LEVELS         levels to compare                          (default "off buffered strict")
#   DIALOGS        1: [dialogs] enabled = true                (default 0)
#   SYNC_MS        [store] sync_interval_ms of buffered       (default 50, cairn's default)
#   COMMIT_MS      [store] commit_interval_ms                 (default 10, cairn's default)
#   RESTORE_CALLS  transactions in flight for the restore     (default 100000)
#   IP             loopback address to use                    (default 127.0.98.1)
#   REDIS_PORT     port of the redis-server of level redis    (default 6390)
#   CAIRN_BIN      cairn binary (default target/release/cairn, which the script builds)
#   KEEP=1         keep the work directory
#
# Everything runs on loopback; every process started here is stopped by PID
# on exit; each SIPp run is bounded by its -timeout.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

R=${R:-500}
N=${N:-5000}
ROUNDS=${ROUNDS:-3}
LEVELS=${LEVELS:-off buffered strict}
DIALOGS=${DIALOGS:-0}
SYNC_MS=${SYNC_MS:-50}
COMMIT_MS=${COMMIT_MS:-10}
RESTORE_CALLS=${RESTORE_CALLS:-100000}
IP=${IP:-127.0.98.1}
REDIS_PORT=${REDIS_PORT:-6390}
CAIRN_BIN=${CAIRN_BIN:-$ROOT/target/release/cairn}
MAX_SECS=$(( 3 * N / R + 30 ))
SCEN=$ROOT/crates/cairn/tests/scenarios

case "$IP" in 127.*) ;; *) echo "IP must be a loopback address (127.0.0.0/8)" >&2; exit 2 ;; esac
command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)" >&2; exit 1; }
[ "$DIALOGS" = 1 ] && DIALOGS_TOML=true || DIALOGS_TOML=false

echo "building cairn and the restore benchmark (release)..."
cargo build --release -q -p cairn --bin cairn --example restore_bench
RESTORE_BIN=$ROOT/target/release/examples/restore_bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-durability.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "file system of $WORK: $(df -T "$WORK" | awk 'NR==2 {print $2}')"

# Is IP:PORT bound (udp) / listening (tcp)? Read from /proc/net.
bound() {
    local proto=$1 port=$2 a b c d hex
    IFS=. read -r a b c d <<<"$IP"
    hex=$(printf '%02X%02X%02X%02X:%04X' "$d" "$c" "$b" "$a" "$port")
    if [ "$proto" = udp ]; then
        awk -v h="$hex" 'NR>1 && toupper($2)==h {f=1} END {exit !f}' /proc/net/udp
    else
        awk -v h="$hex" 'NR>1 && toupper($2)==h && $4=="0A" {f=1} END {exit !f}' /proc/net/tcp
    fi
}
wait_bound() { # proto port what
    for _ in $(seq 1 500); do bound "$1" "$2" && return 0; sleep 0.02; done
    echo "$3 did not bind $IP:$2 ($1)" >&2
    return 1
}
wait_gone() { # pid
    for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}
col() { # file column -> value of the last row
    awk -F';' -v c="$2" 'NR==1 { for (i=1;i<=NF;i++) if ($i==c) k=i; next } { v=$k } END { print v+0 }' "$1"
}
metric() { # metrics-file sample
    awk -v s="$2" '$1==s {print $2; f=1} END {if (!f) print 0}' "$1" 2>/dev/null || echo 0
}
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# utime+stime of the store's threads (fjall workers, cairn-store-sync) of PID.
store_ticks() {
    local t sum=0 comm
    for t in /proc/"$1"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null || true)
        case "$comm" in
            fjall*|cairn-store*|cairn-redis*) sum=$(( sum + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "$t/stat" 2>/dev/null || echo 0) )) ;;
        esac
    done
    echo "$sum"
}

if [ "${SKIP_LOAD:-0}" != 1 ]; then
for p in 5060 5070 5071 5072 8089; do
    if bound udp $p || bound tcp $p; then echo "$IP:$p is in use; pick another IP=" >&2; exit 1; fi
done
REDIS_PID=
case " $LEVELS " in *" redis "*)
    command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }
    redis-server --port "$REDIS_PORT" --bind "$IP" --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_bound tcp "$REDIS_PORT" redis-server || { cat "$WORK/redis.log"; exit 1; }
    echo "redis-server $(redis-server --version | awk '{print $3}') on $IP:$REDIS_PORT (pid $REDIS_PID)"
    ;;
esac

# One run: start cairn at LEVEL and two UASes, N calls at R/s, stop all.
# Appends "level round cpu_s wall_s ok failed commits commit_mean_us
# store_threads_cpu_s store_kib" to $WORK/results.
run_level() {
    local level=$1 round=$2 dir=$WORK/$1-$2
    mkdir -p "$dir"
    local store_toml
    if [ "$level" = redis ]; then
        store_toml=$(printf '[store]\nbackend = "redis"\nurl = "redis://%s:%s"\nkey_prefix = "bench%s:"\n\n[cluster]\nnode_id = 1\n' "$IP" "$REDIS_PORT" "$round")
    else
        store_toml=$(printf '[store]\npath = "state"\ndurability = "%s"\nsync_interval_ms = %s\ncommit_interval_ms = %s\n' "$level" "$SYNC_MS" "$COMMIT_MS")
    fi
    cat >"$dir/cairn.toml" <<TOML
[log]
level = "warn"

[[listen]]
transport = "udp"
address = "$IP:5060"

[proxy]
record_route = true

[[destination_set]]
name = "gateways"
algorithm = "round_robin"
destinations = [
    { uri = "sip:$IP:5071" },
    { uri = "sip:$IP:5072" },
]

[[rule]]
name = "calls-to-gateways"
methods = ["INVITE"]
destination_set = "gateways"

$store_toml

[dialogs]
enabled = $DIALOGS_TOML

[admin]
listen = "$IP:8089"
TOML
    "$CAIRN_BIN" --config "$dir/cairn.toml" >"$dir/cairn.log" 2>&1 &
    local cairn_pid=$!
    PIDS+=("$cairn_pid")
    wait_bound udp 5060 cairn || { cat "$dir/cairn.log"; exit 1; }
    local uas_pids=()
    for port in 5071 5072; do
        sipp -sf "$SCEN/uas_answer.xml" -t u1 -i "$IP" -p "$port" -mi "$IP" -mp $(( 20000 + (port - 5071) * 100 )) \
            -ci "$IP" -cp $(( 9000 + port - 5071 )) -nostdin -timeout "$(( MAX_SECS + 60 ))s" \
            -trace_stat -stf "$dir/uas_$port.csv" -fd 1 >"$dir/uas_$port.out" 2>&1 &
        PIDS+=("$!")
        uas_pids+=("$!")
        wait_bound udp "$port" "SIPp UAS" || { cat "$dir/uas_$port.out"; exit 1; }
    done
    local t0 t1 k0 k1 s0 s1
    k0=$(cpu_ticks "$cairn_pid")
    s0=$(store_ticks "$cairn_pid")
    local r0=0 r1=0
    if [ "$level" = redis ]; then r0=$(cpu_ticks "$REDIS_PID"); fi
    t0=$(date +%s.%N)
    set +e
    sipp "$IP:5060" -sf "$SCEN/uac_call.xml" -t u1 -i "$IP" -p 5070 -mi "$IP" -mp 21000 \
        -ci "$IP" -cp 9010 -nostdin -r "$R" -m "$N" -l $(( R * 4 )) -d 0 \
        -timeout "${MAX_SECS}s" -timeout_error \
        -key ruri_host "$IP:5060" -key max_forwards 70 \
        -trace_stat -stf "$dir/uac.csv" -fd 1 >"$dir/uac.out" 2>&1
    set -e
    t1=$(date +%s.%N)
    k1=$(cpu_ticks "$cairn_pid")
    s1=$(store_ticks "$cairn_pid")
    if [ "$level" = redis ]; then r1=$(cpu_ticks "$REDIS_PID"); s1=$(( s1 + r1 - r0 )); fi
    curl -s --max-time 5 "http://$IP:8089/metrics" >"$dir/metrics.txt" || true
    kill -USR1 "${uas_pids[@]}" 2>/dev/null || true
    for pid in "${uas_pids[@]}"; do wait_gone "$pid"; done
    kill -TERM "$cairn_pid" 2>/dev/null || true
    wait_gone "$cairn_pid"
    local ok failed commits csum disk
    ok=$(col "$dir/uac.csv" 'SuccessfulCall(C)')
    failed=$(col "$dir/uac.csv" 'FailedCall(C)')
    commits=$(metric "$dir/metrics.txt" cairn_store_commits_total)
    csum=$(metric "$dir/metrics.txt" cairn_store_commit_seconds_sum)
    disk=$( { du -sk "$dir/state" 2>/dev/null || echo 0; } | awk '{print $1}')
    awk -v l="$level" -v r="$round" -v k0="$k0" -v k1="$k1" -v hz="$clk_tck" -v t0="$t0" -v t1="$t1" \
        -v ok="$ok" -v failed="$failed" -v c="$commits" -v cs="$csum" -v s0="$s0" -v s1="$s1" -v disk="${disk:-0}" 'BEGIN {
        cpu = (k1 - k0) / hz
        printf "%s %d %.2f %.2f %d %d %d %.1f %.2f %d\n", l, r, cpu, t1 - t0, ok, failed, c, (c > 0 ? 1e6 * cs / c : 0), (s1 - s0) / hz, disk
    }' >>"$WORK/results"
    printf '  %-8s round %d: %s calls ok, %s failed\n' "$level" "$round" "$ok" "$failed"
}

echo
echo "== load: $N calls at $R calls/s over UDP, $ROUNDS round(s) per level, dialogs $DIALOGS_TOML, sync_interval_ms $SYNC_MS =="
: >"$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
    for level in $LEVELS; do
        run_level "$level" "$round"
    done
done
echo
awk -v levels="$LEVELS" '
function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
    return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
{
    l = $1; n[l]++
    per = ($5 > 0) ? 1000 * $3 / $5 : 0
    cpu[l, n[l]] = per; ok[l] += $5; failed[l] += $6; wall[l] += $4
    commits[l] += $7; cmean[l, n[l]] = $8; disk[l] = $10
    scpu[l, n[l]] = ($5 > 0) ? 1000 * $9 / $5 : 0
    runs[l] = runs[l] " " sprintf("%.3f", per)
}
END {
    printf "%-9s %9s %7s %16s %8s %18s %13s %12s  %s\n", "level", "completed", "failed", "CPU s/1000 calls", "vs off", "of which store thr.", "commits/call", "commit mean", "per round (CPU s/1000 calls)"
    k = split(levels, L, " ")
    for (i = 1; i <= k; i++) {
        l = L[i]; if (!(l in n)) continue
        delete a; for (j = 1; j <= n[l]; j++) a[j] = cpu[l, j]; m[l] = median(a, n[l])
        delete b; for (j = 1; j <= n[l]; j++) b[j] = cmean[l, j]; cm = median(b, n[l])
        delete c; for (j = 1; j <= n[l]; j++) c[j] = scpu[l, j]; sc = median(c, n[l])
        vs = ("off" in m && m["off"] > 0) ? sprintf("%+.1f%%", 100 * (m[l] - m["off"]) / m["off"]) : "-"
        printf "%-9s %9d %7d %16.3f %8s %18.3f %13.2f %9.1f us %s\n", l, ok[l], failed[l], m[l], vs, sc, (ok[l] > 0 ? commits[l] / ok[l] : 0), cm, runs[l]
    }
}' "$WORK/results"
fi

if [ "${SKIP_RESTORE:-0}" != 1 ]; then
    echo
    echo "== restore: $RESTORE_CALLS INVITE transactions in flight, SIGKILL, open + load + rebuild =="
    "$RESTORE_BIN" --calls "$RESTORE_CALLS" --dir "$WORK/restore" --durability buffered
fi
