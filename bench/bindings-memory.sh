#!/usr/bin/env bash
# Memory per active binding: registers N distinct subscribers (default
# 100 000) through SIPp and reports how much rcsd's Go heap and RSS grew,
# divided by N. Usage: bench/bindings-memory.sh --rcsd BIN [--n N] [--rate R]
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
RCSD="" N=100000 RATE=5000 STORAGE=file
while [[ $# -gt 0 ]]; do
	case $1 in
	--rcsd) RCSD=$(realpath "$2"); shift 2 ;;
	--n) N=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--storage) STORAGE=$2; shift 2 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
[[ -x $RCSD ]] || { echo "need --rcsd BIN" >&2; exit 2; }
work=$(mktemp -d)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
awk -v n="$N" 'BEGIN {
	print "impu,impi,password,k,op,opc,amf" > "subs.csv"
	print "SEQUENTIAL" > "users.csv"
	for (i = 0; i < n; i++) {
		u = sprintf("user%06d", i)
		print "sip:" u "@rcs.local," u "@rcs.local,benchpass,,,," > "subs.csv"
		print u ";" u "@rcs.local;benchpass" > "users.csv"
	}
}'
port=$((20000 + RANDOM % 20000)) hport=$((port + 1))
if [[ $STORAGE == file ]]; then
	"$RCSD" subscriber import subs.csv --storage "file:$work/data" >/dev/null
	st="file:$work/data"
else
	st="memory:"
fi
GOMAXPROCS=1 taskset -c 0 "$RCSD" serve --storage "$st" --sip.listen "udp://127.0.0.1:$port" \
	--http.listen "127.0.0.1:$hport" --log.level warn --auth.digest_algorithms MD5 >rcsd.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$hport/readyz" >/dev/null && break; sleep 0.1; done
if [[ $STORAGE == memory ]]; then
	"$RCSD" subscriber import subs.csv --storage memory: --http.listen "127.0.0.1:$hport" >/dev/null
fi
metric() { curl -s "http://127.0.0.1:$hport/metrics" | awk -v m="$1" '$1 == m { printf "%d", $2 }'; }
settle() { sleep 2; }
rss() { awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$pid/status"; }
settle
heap0=$(metric go_memstats_heap_inuse_bytes) rss0=$(rss)
cp "$BENCH_DIR/sipp/register_bench.xml" .
timeout $((N / RATE + 60)) taskset -c 1 sipp "127.0.0.1:$port" -sf register_bench.xml -inf users.csv \
	-r "$RATE" -m "$N" -nostdin -trace_stat -stf stat.csv -fd 1 >sipp.out 2>&1 || true
ok=$(tail -1 stat.csv | cut -d';' -f16)
settle
active=$(metric rcsd_registrations_active)
heap1=$(metric go_memstats_heap_inuse_bytes) rss1=$(rss)
hwm=$(awk '/^VmHWM/ { print $2 * 1024 }' "/proc/$pid/status")
echo "storage=$STORAGE registered=$ok active_bindings=$active"
echo "go heap in use: $((heap0 / 1048576)) MB -> $((heap1 / 1048576)) MB: $(((heap1 - heap0) / active)) bytes per binding"
echo "RSS:            $((rss0 / 1048576)) MB -> $((rss1 / 1048576)) MB: $(((rss1 - rss0) / active)) bytes per binding; peak RSS $((hwm / 1048576)) MB"
