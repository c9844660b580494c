#!/usr/bin/env bash
# cairn load benchmark: SIPp UAC -> cairn (round robin) -> two SIPp UASes,
# all on one loopback address, at a fixed call rate for a fixed number of
# calls. Prints calls completed/failed, cairn's CPU seconds per 1000 calls
# (utime+stime from /proc/PID/stat) and cairn's peak RSS (VmHWM).
#
#   bench/run.sh                         # R=500 calls/s, N=5000 calls, UDP
#   R=1000 N=20000 bench/run.sh
#   TRANSPORT=tcp bench/run.sh
#
# Parameters (environment):
#   R          call rate, calls per second            (default 500)
#   N          number of calls                         (default 5000)
#   TRANSPORT  udp | tcp                               (default udp)
#   IP         loopback address to use                 (default 127.0.99.1)
#   MAX_SECS   hard bound on the UAC run, in seconds   (default 3*N/R + 30)
#   CAIRN_BIN  cairn binary (default target/release/cairn, built if missing)
#   LOG_LEVEL  cairn's log level                       (default warn)
#   KEEP=1     keep the work directory (logs, SIPp statistics)
#
# Everything runs on loopback; every process started here is stopped by PID
# on exit; the run is bounded by MAX_SECS (SIPp -timeout) whatever happens.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

R=${R:-500}
N=${N:-5000}
TRANSPORT=${TRANSPORT:-udp}
IP=${IP:-127.0.99.1}
MAX_SECS=${MAX_SECS:-$(( 3 * N / R + 30 ))}
LOG_LEVEL=${LOG_LEVEL:-warn}
CAIRN_BIN=${CAIRN_BIN:-$ROOT/target/release/cairn}
SCEN=$ROOT/crates/cairn/tests/scenarios

case "$IP" in 127.*) ;; *) echo "IP must be a loopback address (127.0.0.0/8)" >&2; exit 2 ;; esac
case "$TRANSPORT" in
    udp) MODE=u1; URI_PARAM="" ;;
    tcp) MODE=t1; URI_PARAM=";transport=tcp" ;;
    *) echo "TRANSPORT must be udp or tcp" >&2; exit 2 ;;
esac
command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)" >&2; exit 1; }
if [ ! -x "$CAIRN_BIN" ]; then
    echo "building cairn (release)..."
    cargo build --release -p cairn
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

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
for p in 5060 5070 5071 5072; do
    if bound udp $p || bound tcp $p; then echo "$IP:$p is in use; pick another IP=" >&2; exit 1; fi
done

cat >"$WORK/cairn.toml" <<TOML
[log]
level = "$LOG_LEVEL"
format = "human"

[[listen]]
transport = "udp"
address = "$IP:5060"

[[listen]]
transport = "tcp"
address = "$IP:5060"

[proxy]
record_route = true

[timers]
t1_ms = 500
t2_ms = 4000
t4_ms = 5000
timer_c_ms = 180000

[[destination_set]]
name = "gateways"
algorithm = "round_robin"
failover_codes = ["5xx", "408"]
failover_on_timeout = true
destinations = [
    { uri = "sip:$IP:5071$URI_PARAM" },
    { uri = "sip:$IP:5072$URI_PARAM" },
]

[[rule]]
name = "calls-to-gateways"
methods = ["INVITE", "OPTIONS", "MESSAGE"]
destination_set = "gateways"

[routing]
no_match = { code = 404, reason = "Not Found" }
TOML

"$CAIRN_BIN" --config "$WORK/cairn.toml" >"$WORK/cairn.log" 2>&1 &
CAIRN_PID=$!
PIDS+=("$CAIRN_PID")
wait_bound udp 5060 cairn || { cat "$WORK/cairn.log"; exit 1; }
wait_bound tcp 5060 cairn || { cat "$WORK/cairn.log"; exit 1; }

UAS_SECS=$(( MAX_SECS + 60 ))
for port in 5071 5072; do
    sipp -sf "$SCEN/uas_answer.xml" -t "$MODE" -i "$IP" -p "$port" -mi "$IP" -mp $(( 20000 + (port - 5071) * 100 )) \
        -ci "$IP" -cp $(( 9000 + port - 5071 )) -nostdin -timeout "${UAS_SECS}s" \
        -trace_stat -stf "$WORK/uas_$port.csv" -fd 1 -trace_screen -screen_file "$WORK/uas_$port.screen" \
        >"$WORK/uas_$port.out" 2>&1 &
    PIDS+=("$!")
    eval "UAS_$port=$!"
    wait_bound "$TRANSPORT" "$port" "SIPp UAS" || { cat "$WORK/uas_$port.out"; exit 1; }
done

clk_tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

echo "cairn bench: $N calls at $R calls/s over $TRANSPORT on $IP (bound ${MAX_SECS}s), cairn pid $CAIRN_PID"
ticks0=$(cpu_ticks "$CAIRN_PID")
t0=$(date +%s.%N)
set +e
sipp "$IP:5060" -sf "$SCEN/uac_call.xml" -t "$MODE" -i "$IP" -p 5070 -mi "$IP" -mp 21000 \
    -ci "$IP" -cp 9010 -nostdin -r "$R" -m "$N" -l $(( R * 4 )) -d 0 \
    -timeout "${MAX_SECS}s" -timeout_error \
    -key ruri_host "$IP:5060" -key max_forwards 70 \
    -trace_stat -stf "$WORK/uac.csv" -fd 1 -trace_screen -screen_file "$WORK/uac.screen" \
    -trace_err -error_file "$WORK/uac_errors.log" >"$WORK/uac.out" 2>&1
uac_rc=$?
set -e
t1=$(date +%s.%N)
ticks1=$(cpu_ticks "$CAIRN_PID")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$CAIRN_PID/status")
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$CAIRN_PID/status")

# Soft-stop the UASes (finish open calls), then stop cairn.
kill -USR1 "$UAS_5071" "$UAS_5072" 2>/dev/null || true
for pid in "$UAS_5071" "$UAS_5072"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done

col() { # file column -> value of the last row
    awk -F';' -v c="$2" 'NR==1 { for (i=1;i<=NF;i++) if ($i==c) k=i; next } { v=$k } END { print v+0 }' "$1"
}
ok=$(col "$WORK/uac.csv" 'SuccessfulCall(C)')
failed=$(col "$WORK/uac.csv" 'FailedCall(C)')
created=$(col "$WORK/uac.csv" 'TotalCallCreated')
g1=$(col "$WORK/uas_5071.csv" 'TotalCallCreated')
g2=$(col "$WORK/uas_5072.csv" 'TotalCallCreated')

awk -v ok="$ok" -v failed="$failed" -v created="$created" -v n="$N" -v r="$R" \
    -v t0="$t0" -v t1="$t1" -v k0="$ticks0" -v k1="$ticks1" -v hz="$clk_tck" \
    -v hwm="$hwm_kb" -v rss="$rss_kb" -v g1="$g1" -v g2="$g2" -v rc="$uac_rc" -v tr="$TRANSPORT" 'BEGIN {
    wall = t1 - t0; cpu = (k1 - k0) / hz
    printf "\n"
    printf "transport                 %s\n", tr
    printf "calls asked / created     %d / %d (rate %d/s)\n", n, created, r
    printf "calls completed           %d\n", ok
    printf "calls failed              %d\n", failed
    printf "gateway split             %d / %d\n", g1, g2
    printf "wall time                 %.2f s (%.0f calls/s completed)\n", wall, (wall > 0 ? ok / wall : 0)
    printf "cairn CPU                 %.2f s (%.1f%% of one core)\n", cpu, (wall > 0 ? 100 * cpu / wall : 0)
    printf "cairn CPU per 1000 calls  %.3f s\n", (ok > 0 ? 1000 * cpu / ok : 0)
    printf "cairn peak RSS            %.1f MiB (now %.1f MiB)\n", hwm / 1024, rss / 1024
    printf "SIPp UAC exit code        %d\n", rc
}'

if [ "$failed" -gt 0 ] || [ "$ok" -lt "$N" ]; then
    echo "(some calls failed: see $WORK/uac.screen and uac_errors.log; KEEP=1 keeps them)"
    exit 1
fi
