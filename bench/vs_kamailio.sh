#!/usr/bin/env bash
# cairn against Kamailio, side by side, on this machine: the same SIPp
# scenario (INVITE/100/180/200/ACK/BYE/200) through either proxy acting as a
# transaction-stateful load balancer (round robin over two SIPp UAS gateways,
# record_route), all on one loopback address.
#
# Proxies compared ("kinds"):
#   kamailio        Kamailio (Debian package, installed if missing) with
#                   bench/kamailio/kamailio.cfg: dispatcher algorithm 4 (round
#                   robin), record_route, t_relay, stock CANCEL handling,
#                   loose_route; -m 2048 MB shared, -M 64 MB private memory,
#                   CHILDREN UDP and TCP workers, maxbuffer 4 MiB.
#   cairn-off       cairn, [store] durability = "off"
#   cairn-buffered  cairn, [store] durability = "buffered" (cairn's default)
#
# Three measurements:
# 1. CPU per call: CALLS calls at each rate of RATES, over each transport of
#    TRANSPORTS, ROUNDS rounds; within a round the proxies alternate so that
#    a change in the machine's load hits all alike; the median of the rounds.
#    CPU is utime+stime from /proc/PID/stat of the proxy only, every thread:
#    for Kamailio summed over the main process and all its children (found by
#    parent PID), plus the main process's cutime+cstime (children that ended).
# 2. Peak rate: a bounded ramp RAMP_START, +RAMP_STEP, ... up to RAMP_MAX
#    calls/s, RAMP_SECS seconds per step, over UDP, a fresh proxy per step. A
#    step passes with under 0.1% failed calls, every call completed in time,
#    retransmissions (UAC + both UASes, SIPp's Retransmissions(C)) at most
#    1% of the calls and SIPp reaching 90% of the asked rate. The last
#    passing rate is reported; the ramp stops at the first failing step.
# 3. Memory with RING calls ringing at once: the UASes answer 180 and hold
#    the 200 back for longer than the test; the UAC calls at RING_RATE until
#    RING calls ring (the UASes' CurrentCall), then the proxy's memory is
#    read: Kamailio's processes share memory, so the sum of their PSS
#    (/proc/PID/smaps_rollup); cairn is one process: VmRSS. Per ringing call:
#    (memory with the calls - memory idle before them) / calls ringing.
#
#   bench/vs_kamailio.sh
#   CALLS=3000 RATES="500 2000" ROUNDS=3 RAMP_MAX=12000 RING=20000 bench/vs_kamailio.sh
#   SKIP_RAMP=1 SKIP_RING=1 bench/vs_kamailio.sh      # CPU per call only
#
# Parameters (environment):
#   CALLS       calls per fixed-rate run                      (default 3000)
#   RATES       fixed rates, calls/s                          (default "500 2000")
#   TRANSPORTS  transports of the fixed-rate runs             (default "udp tcp")
#   ROUNDS      rounds of the fixed-rate runs                 (default 3)
#   KINDS       proxies to compare                            (default "kamailio cairn-off cairn-buffered")
#   RAMP_START RAMP_STEP RAMP_MAX RAMP_SECS                   (default 1000 1000 12000 4)
#   RING        calls ringing at once                         (default 20000)
#   RING_RATE   call rate while they are set up               (default 1000)
#   CHILDREN    Kamailio UDP and TCP worker processes         (default 4)
#   PIN         1: taskset the proxy on CPU 1, SIPp on CPU 0  (default 0)
#   IP          loopback address to use                       (default 127.0.97.1)
#   CAIRN_BIN   cairn binary (default target/release/cairn, which the script builds)
#   SKIP_CPU=1 SKIP_RAMP=1 SKIP_RING=1  leave a part out;  KEEP=1  keep the work directory
#
# Everything runs on loopback; every SIPp run is bounded by -m and -timeout;
# every process started here is stopped by its PID on exit (Kamailio: TERM to
# the main process, which stops its children, then KILL to any recorded child
# still running).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

CALLS=${CALLS:-3000}
RATES=${RATES:-500 2000}
TRANSPORTS=${TRANSPORTS:-udp tcp}
ROUNDS=${ROUNDS:-3}
KINDS=${KINDS:-kamailio cairn-off cairn-buffered}
RAMP_START=${RAMP_START:-1000}
RAMP_STEP=${RAMP_STEP:-1000}
RAMP_MAX=${RAMP_MAX:-12000}
RAMP_SECS=${RAMP_SECS:-4}
RING=${RING:-20000}
RING_RATE=${RING_RATE:-1000}
CHILDREN=${CHILDREN:-4}
PIN=${PIN:-0}
IP=${IP:-127.0.97.1}
CAIRN_BIN=${CAIRN_BIN:-$ROOT/target/release/cairn}
SCEN=$ROOT/crates/cairn/tests/scenarios
KAM_CFG=$ROOT/bench/kamailio/kamailio.cfg

case "$IP" in 127.*) ;; *) echo "IP must be a loopback address (127.0.0.0/8)" >&2; exit 2 ;; esac
for k in $KINDS; do
    case "$k" in kamailio|cairn-off|cairn-buffered) ;; *) echo "KINDS: unknown proxy \"$k\" (kamailio, cairn-off, cairn-buffered)" >&2; exit 2 ;; esac
done
for t in $TRANSPORTS; do
    case "$t" in udp|tcp) ;; *) echo "TRANSPORTS: unknown transport \"$t\" (udp, tcp)" >&2; exit 2 ;; esac
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "error: need root (or sudo) to run: $*" >&2; return 1; fi
}
missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || missing+=(kamailio)
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || { echo "error: missing ${missing[*]} and no apt-get to install them" >&2; exit 1; }
    echo "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
KAMAILIO=$(command -v kamailio || echo /usr/sbin/kamailio)
KAM_TM=$({ dpkg -L kamailio 2>/dev/null || true; } | awk '/\/modules\/tm\.so$/ && !f { print; f = 1 }')
KAM_MPATH=$(dirname "${KAM_TM:-/usr/lib/x86_64-linux-gnu/kamailio/modules/tm.so}")/

echo "building cairn (release)..."
cargo build --release -q -p cairn --bin cairn

PIN_PROXY=() PIN_SIPP=()
if [ "$PIN" = 1 ]; then PIN_PROXY=(taskset -c 1) PIN_SIPP=(taskset -c 0); fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-vs-kamailio.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kamailio: $("$KAMAILIO" -v 2>/dev/null | awk 'NR==1 {print $3}'), sipp: $({ sipp -v 2>&1 || true; } | awk '/SIPp v/ && !f { for (i = 1; i <= NF; i++) if ($i ~ /^v[0-9]/) print $i; f = 1 }'), cairn: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), pinning: $([ "$PIN" = 1 ] && echo 'proxy CPU 1, SIPp CPU 0' || echo none)"

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
    awk -F';' -v c="$2" 'NR==1 { for (i=1;i<=NF;i++) if ($i==c) k=i; next } { v=$k } END { print v+0 }' "$1" 2>/dev/null || echo 0
}
for p in 5060 5070 5071 5072; do
    if bound udp $p || bound tcp $p; then echo "$IP:$p is in use; pick another IP=" >&2; exit 1; fi
done

clk_tck=$(getconf CLK_TCK)
# The proxy's processes: its main PID and, for Kamailio, every descendant.
proxy_pids() { # main-pid
    awk -v root="$1" '
        FNR == 1 { s = $0; sub(/.*\) /, "", s); split(s, f, " "); pid = FILENAME; sub(/^\/proc\//, "", pid); sub(/\/stat$/, "", pid); parent[pid] = f[2] }
        END {
            keep[root] = 1; print root
            do { more = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; print p; more = 1 } } while (more)
        }' /proc/[0-9]*/stat 2>/dev/null
}
# utime+stime of every process of the proxy (all threads), plus the main
# process's cutime+cstime (children that ended and were waited for).
proxy_ticks() { # main-pid
    local pid sum=0 t
    for pid in $(proxy_pids "$1"); do
        if [ "$pid" = "$1" ]; then
            t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        else
            t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        fi
        sum=$(( sum + t ))
    done
    echo "$sum"
}
# Memory in KiB: Kamailio: sum of PSS over its processes (they share the
# -m shared memory and the code); cairn (one process): VmRSS.
proxy_mem_kb() { # kind main-pid
    local pid sum=0 m
    if [ "$1" = kamailio ]; then
        for pid in $(proxy_pids "$2"); do
            m=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
            sum=$(( sum + ${m:-0} ))
        done
        echo "$sum"
    else
        awk '/^VmRSS/ {print $2}' "/proc/$2/status"
    fi
}

# Start proxy KIND for TRANSPORT in DIR; sets PROXY_PID.
start_proxy() { # kind transport dir
    local kind=$1 transport=$2 dir=$3 param=""
    [ "$transport" = tcp ] && param=";transport=tcp"
    mkdir -p "$dir"
    if [ "$kind" = kamailio ]; then
        printf '1 sip:%s:5071%s\n1 sip:%s:5072%s\n' "$IP" "$param" "$IP" "$param" >"$dir/dispatcher.list"
        sed -e "s|@IP@|$IP|g; s|@PORT@|5060|g; s|@CHILDREN@|$CHILDREN|g; s|@MAXBUFFER@|4194304|g" \
            -e "s|@DSLIST@|$dir/dispatcher.list|g; s|@MPATH@|$KAM_MPATH|g" "$KAM_CFG" >"$dir/kamailio.cfg"
        "${PIN_PROXY[@]}" "$KAMAILIO" -DD -E -f "$dir/kamailio.cfg" -m 2048 -M 64 -P "$dir/kamailio.pid" \
            -Y "$dir" -w "$dir" >"$dir/kamailio.log" 2>&1 &
        PROXY_PID=$!
    else
        cat >"$dir/cairn.toml" <<TOML
[log]
level = "warn"

[[listen]]
transport = "udp"
address = "$IP:5060"

[[listen]]
transport = "tcp"
address = "$IP:5060"

[proxy]
record_route = true

[[destination_set]]
name = "gateways"
algorithm = "round_robin"
failover_codes = ["5xx", "408"]
failover_on_timeout = true
destinations = [
    { uri = "sip:$IP:5071$param" },
    { uri = "sip:$IP:5072$param" },
]

[[rule]]
name = "calls-to-gateways"
methods = ["INVITE", "OPTIONS", "MESSAGE"]
destination_set = "gateways"

[routing]
no_match = { code = 404, reason = "Not Found" }

[store]
path = "state"
durability = "${kind#cairn-}"
TOML
        "${PIN_PROXY[@]}" "$CAIRN_BIN" --config "$dir/cairn.toml" >"$dir/cairn.log" 2>&1 &
        PROXY_PID=$!
    fi
    PIDS+=("$PROXY_PID")
    wait_bound udp 5060 "$kind" || { tail -20 "$dir"/*.log; exit 1; }
    wait_bound tcp 5060 "$kind" || { tail -20 "$dir"/*.log; exit 1; }
    if [ "$kind" = kamailio ]; then
        # The workers are forked after the sockets are bound: wait for them.
        local n=0
        for _ in $(seq 1 100); do
            n=$(proxy_pids "$PROXY_PID" | wc -l)
            [ "$n" -ge $(( 2 * CHILDREN + 2 )) ] && break
            sleep 0.05
        done
        sleep 0.3
        KAM_CHILDREN=$(proxy_pids "$PROXY_PID" | tail -n +2)
        # shellcheck disable=SC2206
        PIDS+=($KAM_CHILDREN)
    fi
}

stop_proxy() { # kind
    kill -TERM "$PROXY_PID" 2>/dev/null || true
    wait_gone "$PROXY_PID"
    if [ "$1" = kamailio ]; then
        local pid
        for pid in $KAM_CHILDREN; do
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = kamailio ] && kill -KILL "$pid" 2>/dev/null || true
        done
    fi
}

# Start the two UASes; hold_ms: pause between 180 and 200. Sets UAS_PIDS.
start_uas() { # transport dir hold_ms bound_s
    local mode=u1 port
    [ "$1" = tcp ] && mode=t1
    UAS_PIDS=()
    for port in 5071 5072; do
        "${PIN_SIPP[@]}" sipp -sf "$SCEN/uas_answer.xml" -t "$mode" -i "$IP" -p "$port" -mi "$IP" -mp $(( 20000 + (port - 5071) * 100 )) \
            -ci "$IP" -cp $(( 9000 + port - 5071 )) -nostdin -d "$3" -timeout "$4s" \
            -trace_stat -stf "$2/uas_$port.csv" -fd 1 >"$2/uas_$port.out" 2>&1 &
        PIDS+=("$!")
        UAS_PIDS+=("$!")
        wait_bound "$1" "$port" "SIPp UAS" || { cat "$2/uas_$port.out"; exit 1; }
    done
}

stop_uas() { # soft|hard
    local pid
    if [ "$1" = soft ]; then
        kill -USR1 "${UAS_PIDS[@]}" 2>/dev/null || true
    else
        kill -TERM "${UAS_PIDS[@]}" 2>/dev/null || true
    fi
    for pid in "${UAS_PIDS[@]}"; do wait_gone "$pid"; done
}

# One load run: fresh proxy and UASes, CALLS calls at RATE, stop all.
# Sets LOAD_RESULT to "cpu_ticks wall_s ok failed created retransmissions".
load_run() { # kind transport rate calls dir
    local kind=$1 transport=$2 rate=$3 calls=$4 dir=$5 mode=u1 max_secs k0 k1 t0 t1
    [ "$transport" = tcp ] && mode=t1
    max_secs=$(( 3 * calls / rate + 20 ))
    start_proxy "$kind" "$transport" "$dir"
    start_uas "$transport" "$dir" 0 $(( max_secs + 60 ))
    k0=$(proxy_ticks "$PROXY_PID")
    t0=$(date +%s.%N)
    set +e
    "${PIN_SIPP[@]}" sipp "$IP:5060" -sf "$SCEN/uac_call.xml" -t "$mode" -i "$IP" -p 5070 -mi "$IP" -mp 21000 \
        -ci "$IP" -cp 9010 -nostdin -r "$rate" -m "$calls" -l $(( rate * 4 )) -d 0 \
        -timeout "${max_secs}s" -timeout_error \
        -key ruri_host "$IP:5060" -key max_forwards 70 \
        -trace_stat -stf "$dir/uac.csv" -fd 1 >"$dir/uac.out" 2>&1
    set -e
    t1=$(date +%s.%N)
    k1=$(proxy_ticks "$PROXY_PID")
    stop_uas soft
    stop_proxy "$kind"
    local ok failed created retrans
    ok=$(col "$dir/uac.csv" 'SuccessfulCall(C)')
    failed=$(col "$dir/uac.csv" 'FailedCall(C)')
    created=$(col "$dir/uac.csv" 'TotalCallCreated')
    retrans=$(( $(col "$dir/uac.csv" 'Retransmissions(C)') + $(col "$dir/uas_5071.csv" 'Retransmissions(C)') + $(col "$dir/uas_5072.csv" 'Retransmissions(C)') ))
    LOAD_RESULT="$(( k1 - k0 )) $(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", t1 - t0 }') $ok $failed $created $retrans"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }

: >"$WORK/cpu.results"
if [ "${SKIP_CPU:-0}" != 1 ]; then
    echo
    echo "== CPU per call: $CALLS calls at $RATES calls/s over $TRANSPORTS, $ROUNDS round(s), proxies alternating =="
    for round in $(seq 1 "$ROUNDS"); do
        for transport in $TRANSPORTS; do
            for rate in $RATES; do
                for kind in $KINDS; do
                    load_run "$kind" "$transport" "$rate" "$CALLS" "$WORK/cpu-$kind-$transport-$rate-$round"
                    read -r ticks wall ok failed created retrans <<<"$LOAD_RESULT"
                    echo "$kind $transport $rate $round $ticks $wall $ok $failed $created $retrans" >>"$WORK/cpu.results"
                    awk -v k="$kind" -v t="$transport" -v r="$rate" -v n="$round" -v ticks="$ticks" -v hz="$clk_tck" \
                        -v ok="$ok" -v f="$failed" -v re="$retrans" 'BEGIN {
                        printf "  round %d %-3s %5d/s %-15s %6d ok %4d failed %5d retrans  %.3f CPU s/1000 calls\n", n, t, r, k, ok, f, re, (ok > 0 ? 1000 * ticks / hz / ok : 0) }'
                done
            done
        done
    done
fi

: >"$WORK/ramp.results"
if [ "${SKIP_RAMP:-0}" != 1 ]; then
    echo
    echo "== peak rate: UDP, $RAMP_START to $RAMP_MAX calls/s step $RAMP_STEP, ${RAMP_SECS} s per step =="
    for kind in $KINDS; do
        best=0 why="reached RAMP_MAX"
        for rate in $(seq "$RAMP_START" "$RAMP_STEP" "$RAMP_MAX"); do
            calls=$(( rate * RAMP_SECS ))
            load_run "$kind" udp "$rate" "$calls" "$WORK/ramp-$kind-$rate"
            read -r ticks wall ok failed created retrans <<<"$LOAD_RESULT"
            verdict=$(awk -v calls="$calls" -v rate="$rate" -v wall="$wall" -v ok="$ok" -v f="$failed" -v c="$created" -v re="$retrans" 'BEGIN {
                if (c < calls) { print "not all calls created in time (" c "/" calls ")"; exit }
                if (f * 1000 >= c) { print "failed calls " f " (>= 0.1%)"; exit }
                if (ok + f < c) { print "calls not completed (" ok "+" f "/" c ")"; exit }
                if (re * 100 > c) { print "retransmissions " re " (> 1% of calls)"; exit }
                if (c / wall < 0.9 * rate) { printf "SIPp reached %.0f calls/s only\n", c / wall; exit }
                print "pass" }')
            printf '  %-15s %6d/s: %6d ok %5d failed %6d retrans, %6.0f calls/s over %.2f s: %s\n' \
                "$kind" "$rate" "$ok" "$failed" "$retrans" "$(awk -v c="$created" -v w="$wall" 'BEGIN { print (w > 0 ? c / w : 0) }')" "$wall" "$verdict"
            if [ "$verdict" = pass ]; then best=$rate; else why="$rate/s: $verdict"; break; fi
        done
        echo "$kind $best $why" >>"$WORK/ramp.results"
    done
fi

: >"$WORK/ring.results"
if [ "${SKIP_RING:-0}" != 1 ]; then
    echo
    echo "== memory: $RING calls ringing at once (UDP, set up at $RING_RATE calls/s) =="
    setup_s=$(( RING / RING_RATE + 30 ))
    for kind in $KINDS; do
        dir=$WORK/ring-$kind
        start_proxy "$kind" udp "$dir"
        # The 200 is held back longer than the whole test lasts.
        start_uas udp "$dir" $(( (setup_s + 60) * 1000 )) $(( setup_s + 120 ))
        sleep 1
        idle=$(proxy_mem_kb "$kind" "$PROXY_PID")
        "${PIN_SIPP[@]}" sipp "$IP:5060" -sf "$SCEN/uac_call.xml" -t u1 -i "$IP" -p 5070 -mi "$IP" -mp 21000 \
            -ci "$IP" -cp 9010 -nostdin -r "$RING_RATE" -m "$RING" -l "$RING" -d 0 \
            -timeout "$(( setup_s + 90 ))s" \
            -key ruri_host "$IP:5060" -key max_forwards 70 \
            -trace_stat -stf "$dir/uac.csv" -fd 1 >"$dir/uac.out" 2>&1 &
        uac=$!
        PIDS+=("$uac")
        ringing=0
        for _ in $(seq 1 $(( setup_s * 4 ))); do
            sleep 0.25
            ringing=$(( $(col "$dir/uas_5071.csv" 'CurrentCall') + $(col "$dir/uas_5072.csv" 'CurrentCall') ))
            [ "$ringing" -ge "$RING" ] && break
        done
        sleep 1
        ringing=$(( $(col "$dir/uas_5071.csv" 'CurrentCall') + $(col "$dir/uas_5072.csv" 'CurrentCall') ))
        mem=$(proxy_mem_kb "$kind" "$PROXY_PID")
        kill -TERM "$uac" 2>/dev/null || true
        wait_gone "$uac"
        stop_uas hard
        stop_proxy "$kind"
        echo "$kind $idle $mem $ringing" >>"$WORK/ring.results"
        awk -v k="$kind" -v i="$idle" -v m="$mem" -v n="$ringing" 'BEGIN {
            printf "  %-15s idle %.1f MiB, with %d ringing %.1f MiB: %.2f KiB per ringing call\n", k, i / 1024, n, m / 1024, (n > 0 ? (m - i) / n : 0) }'
    done
fi

# ---- the table ----
# "calls not ok": failed or not completed within the bound, of the calls asked.
echo
echo "== cairn vs Kamailio (medians of $ROUNDS round(s); ratio = cairn / Kamailio) =="
printf '%-44s %10s %10s %14s %10s %14s\n' "measure" "kamailio" "cairn-off" "off/kamailio" "cairn-buf" "buf/kamailio"
row() { # label kam off buf [format]
    awk -v l="$1" -v k="$2" -v o="$3" -v b="$4" -v fmt="${5:-%10.3f}" 'BEGIN {
        ro = (k > 0 && o != "") ? sprintf("%.2f", o / k) : "-"
        rb = (k > 0 && b != "") ? sprintf("%.2f", b / k) : "-"
        printf "%-44s " fmt " " fmt " %14s " fmt " %14s\n", l, k, o, ro, b, rb }'
}
cpu_median() { # kind transport rate
    awk -v k="$1" -v t="$2" -v r="$3" -v hz="$clk_tck" '$1==k && $2==t && $3==r && $7>0 { print 1000 * $5 / hz / $7 }' "$WORK/cpu.results" | median
}
cpu_fail() { # kind transport rate -> failed+not completed/asked over the rounds
    awk -v k="$1" -v t="$2" -v r="$3" -v n="$CALLS" '$1==k && $2==t && $3==r { f += n - $7; c += n } END { printf "%d/%d", f, c }' "$WORK/cpu.results"
}
if [ -s "$WORK/cpu.results" ]; then
    for transport in $TRANSPORTS; do
        for rate in $RATES; do
            row "CPU s / 1000 calls, $transport, $rate/s" "$(cpu_median kamailio "$transport" "$rate")" \
                "$(cpu_median cairn-off "$transport" "$rate")" "$(cpu_median cairn-buffered "$transport" "$rate")"
        done
    done
    for transport in $TRANSPORTS; do
        for rate in $RATES; do
            printf '%-44s %10s %10s %14s %10s\n' "  calls not ok, $transport, $rate/s" \
                "$(cpu_fail kamailio "$transport" "$rate")" "$(cpu_fail cairn-off "$transport" "$rate")" "" "$(cpu_fail cairn-buffered "$transport" "$rate")"
        done
    done
fi
if [ -s "$WORK/ramp.results" ]; then
    peak() { awk -v k="$1" '$1==k { print $2 }' "$WORK/ramp.results"; }
    row "peak rate, UDP, calls/s (ramp step $RAMP_STEP)" "$(peak kamailio)" "$(peak cairn-off)" "$(peak cairn-buffered)" "%10d"
    awk '{ k = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); printf "  %-15s stopped at %s\n", k, $0 }' "$WORK/ramp.results"
fi
if [ -s "$WORK/ring.results" ]; then
    ring() { awk -v k="$1" -v c="$2" '$1==k { if (c == "idle") print $2 / 1024; else if (c == "with") print $3 / 1024; else if (c == "n") print $4; else print ($4 > 0 ? ($3 - $2) / $4 : 0) }' "$WORK/ring.results"; }
    row "memory idle, MiB" "$(ring kamailio idle)" "$(ring cairn-off idle)" "$(ring cairn-buffered idle)" "%10.1f"
    row "memory with calls ringing, MiB" "$(ring kamailio with)" "$(ring cairn-off with)" "$(ring cairn-buffered with)" "%10.1f"
    row "calls ringing" "$(ring kamailio n)" "$(ring cairn-off n)" "$(ring cairn-buffered n)" "%10d"
    row "memory per ringing call, KiB" "$(ring kamailio per)" "$(ring cairn-off per)" "$(ring cairn-buffered per)" "%10.2f"
    echo "  (Kamailio: sum of PSS over its processes; cairn: VmRSS)"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
