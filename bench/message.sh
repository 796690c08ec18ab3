#!/usr/bin/env bash
# Pager-mode MESSAGE benchmark: rcsd against Kamailio 5.6, driven by SIPp.
# See bench/MESSAGE.md for what is measured and the caveats.
#
#   bench/message.sh [--rcsd BIN] [--case relay|store|drain|all] [--rates "1000 2000 4000 8000"]
#
# Cases (each usable alone):
#   relay  the recipient is registered (a SIPp UAS answering 200 on the port it
#          registered from): the server relays every MESSAGE to it and answers
#          the sender 200. Kamailio: lookup("location") + t_relay().
#   store  the recipients are provisioned but not registered: the server stores
#          every MESSAGE durably and answers 202. Kamailio: msilo on SQLite.
#   drain  N messages are stored for one offline recipient, then it registers
#          (a SIPp UAS on the port it registered from, answering 200): how long
#          until all N are delivered, in messages/s.
# Every run: the server restarted afresh, pinned to one core (taskset -c 0;
# rcsd with GOMAXPROCS=1; Kamailio with one UDP worker), the SIPp sender (and
# UAS) on the other core. The sender first REGISTERs (digest MD5) from the
# port it then sends its MESSAGEs from: rcsd accepts a MESSAGE only on the
# flow its sender registered (Kamailio checks the same with registered()).
# Rates are the outer loop and servers the inner one.
#
# Shared Redis (store case only): the servers rcsd-redis and rcsd-redis-always
# are --redis-nodes rcsd nodes (default 2) sharing one redis-server the script
# starts on loopback (AOF on, appendfsync everysec resp. always, no RDB
# snapshots), the SIPp load split across the nodes (one SIPp per node at
# rate/N, the same total rate as the one-node "rcsd" on its file store). The
# report adds CPU per message of rcsd and redis-server separately, Redis
# commands per stored message (INFO commandstats delta, commands inside Lua
# scripts included) and round trips per stored message (data segments the
# clients wrote to redis-server's sockets, ss -ti); --redis-monitor N lists,
# from redis-cli MONITOR, the commands N stored messages cost, in order.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REG_SCENARIO="$BENCH_DIR/sipp/register_bench.xml"
UAC_SCENARIO="$BENCH_DIR/sipp/message_uac.xml"
UAS_SCENARIO="$BENCH_DIR/sipp/message_uas.xml"
KAM_RELAY_CFG="$BENCH_DIR/kamailio/message-relay.cfg"
KAM_MSILO_CFG="$BENCH_DIR/kamailio/message-msilo.cfg"
KAM_SQL_DIR="/usr/share/kamailio/db_sqlite"

RCSD_BIN=""
CASES="all"
RATES="1000 2000 4000 8000"
STORE_RATES="250 500 1000 2000"
DURATION=8
REPEAT=1
SERVERS="rcsd rcsd-redis kamailio"
DRAIN_SERVERS="rcsd"
STORE_RECIPIENTS=100
DRAIN_COUNT=100000
DRAIN_WINDOW=200
DRAIN_TIMEOUT=900
SKIP_AFTER_FAIL=1
SERVER_CPU=0
CLIENT_CPU=1
RECV_TIMEOUT_MS=10000
KAM_SHM_MB=256
KAM_MEM="tlsf"
NICE=""
RCSD_ARGS=""
OUT_FILE=""
KEEP=0
REDIS_NODES=2
REDIS_CPU=""
REDIS_MONITOR=0
REDIS_BIN=redis-server

REALM="rcs.local"
PASSWORD="benchpass"
SENDER="user000001"
RELAY_RCPT="user000002"
DRAIN_RCPT="user000003"

usage() {
	cat <<EOF
usage: bench/message.sh [options]
  --rcsd BIN            rcsd binary (built by the caller, e.g. go build -o /tmp/rcsd-bench ./cmd/rcsd);
                        rcsd is skipped when not given or not executable
  --case C              relay, store, drain, all, or a quoted list (default: $CASES)
  --rates "R1 R2 ..."   offered MESSAGEs/s for the relay case (default: "$RATES")
  --store-rates "..."   offered MESSAGEs/s for the store case (default: "$STORE_RATES")
  --duration S          seconds per run (default: $DURATION)
  --repeat N            runs per (case, server, rate); the report keeps the one with the
                        least CPU per message, the .tsv has them all (default: $REPEAT)
  --servers "A B"       of "rcsd kamailio" for relay and store (default: "$SERVERS", when available);
                        the store case also takes rcsd-redis and rcsd-redis-always: --redis-nodes
                        rcsd nodes sharing one redis-server (appendonly yes, appendfsync everysec
                        resp. always), the load split evenly across them
  --redis-nodes N       rcsd nodes sharing Redis (default: $REDIS_NODES)
  --redis-cpu N         core for redis-server (default: the server core, so that the Redis set-up
                        gets the same one core as the single embedded-store node)
  --redis-monitor N     after the runs, store N messages (40/s, one node) under redis-cli MONITOR
                        and list the Redis commands one stored message costs (default: 0, off)
  --redis-server BIN    redis-server binary (default: $REDIS_BIN)
  --drain-servers "A B" servers for the drain case (default: "$DRAIN_SERVERS"; Kamailio's
                        msilo can be drained too, but storing N messages in it takes N/500 s)
  --store-recipients N  offline recipients the store case cycles through (default: $STORE_RECIPIENTS)
  --drain-count N       messages stored, then drained, in the drain case (default: $DRAIN_COUNT)
  --drain-window N      MESSAGEs in flight while filling the store (SIPp -l; default: $DRAIN_WINDOW)
  --drain-timeout S     bound on each of the fill and the drain phases (default: $DRAIN_TIMEOUT)
  --no-skip             also run the higher rates after a rate failed (>= 10% failed
                        or 3x the nominal duration); by default they are skipped
  --rcsd-args "ARGS"    extra arguments for 'rcsd serve' (word-split)
  --recv-timeout MS     SIPp per-message receive timeout (default: $RECV_TIMEOUT_MS)
  --kamailio-shm MB     Kamailio shared memory (default: $KAM_SHM_MB)
  --kamailio-mem M      Kamailio memory manager: tlsf, fm or qm (default: $KAM_MEM)
  --server-cpu N / --client-cpu N   cores to pin to (default: 0 / 1)
  --nice N              niceness of the servers and SIPp (default: -10 as root, else 0)
  --out FILE            the report (default: bench/out/message-TIMESTAMP.txt); one row per
                        run goes to FILE with .tsv instead of .txt
  --keep                keep the scratch directory (SIPp logs, server logs)
EOF
}

die() { echo "message.sh: $*" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

while (($# > 0)); do
	case "$1" in
	--rcsd) RCSD_BIN=${2:?}; shift 2 ;;
	--case | --cases) CASES=${2:?}; shift 2 ;;
	--rates) RATES=${2:?}; shift 2 ;;
	--store-rates) STORE_RATES=${2:?}; shift 2 ;;
	--duration) DURATION=${2:?}; shift 2 ;;
	--repeat) REPEAT=${2:?}; shift 2 ;;
	--servers) SERVERS=${2:?}; shift 2 ;;
	--drain-servers) DRAIN_SERVERS=${2:?}; shift 2 ;;
	--store-recipients) STORE_RECIPIENTS=${2:?}; shift 2 ;;
	--drain-count) DRAIN_COUNT=${2:?}; shift 2 ;;
	--drain-window) DRAIN_WINDOW=${2:?}; shift 2 ;;
	--drain-timeout) DRAIN_TIMEOUT=${2:?}; shift 2 ;;
	--no-skip) SKIP_AFTER_FAIL=0; shift ;;
	--rcsd-args) RCSD_ARGS=${2-}; shift 2 ;;
	--recv-timeout) RECV_TIMEOUT_MS=${2:?}; shift 2 ;;
	--kamailio-shm) KAM_SHM_MB=${2:?}; shift 2 ;;
	--kamailio-mem) KAM_MEM=${2:?}; shift 2 ;;
	--server-cpu) SERVER_CPU=${2:?}; shift 2 ;;
	--client-cpu) CLIENT_CPU=${2:?}; shift 2 ;;
	--nice) NICE=${2:?}; shift 2 ;;
	--out) OUT_FILE=${2:?}; shift 2 ;;
	--keep) KEEP=1; shift ;;
	--redis-nodes) REDIS_NODES=${2:?}; shift 2 ;;
	--redis-cpu) REDIS_CPU=${2:?}; shift 2 ;;
	--redis-monitor) REDIS_MONITOR=${2:?}; shift 2 ;;
	--redis-server) REDIS_BIN=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

isint() { [[ $1 =~ ^[0-9]+$ ]]; }
isint "$DURATION" && ((DURATION > 0 && DURATION <= 600)) || die "--duration wants 1..600"
isint "$REPEAT" && ((REPEAT > 0 && REPEAT <= 20)) || die "--repeat wants 1..20"
isint "$STORE_RECIPIENTS" && ((STORE_RECIPIENTS > 0 && STORE_RECIPIENTS <= 99000)) || die "--store-recipients wants 1..99000"
isint "$DRAIN_COUNT" && ((DRAIN_COUNT > 0 && DRAIN_COUNT <= 10000000)) || die "--drain-count wants 1..10000000"
isint "$DRAIN_WINDOW" && ((DRAIN_WINDOW > 0)) || die "--drain-window wants a positive integer"
isint "$DRAIN_TIMEOUT" && ((DRAIN_TIMEOUT > 0 && DRAIN_TIMEOUT <= 86400)) || die "--drain-timeout wants 1..86400"
isint "$RECV_TIMEOUT_MS" || die "--recv-timeout wants an integer"
isint "$KAM_SHM_MB" || die "--kamailio-shm wants an integer"
isint "$SERVER_CPU" && isint "$CLIENT_CPU" || die "--server-cpu/--client-cpu want core numbers"
[[ -n $REDIS_CPU ]] || REDIS_CPU=$SERVER_CPU
isint "$REDIS_CPU" || die "--redis-cpu wants a core number"
isint "$REDIS_NODES" && ((REDIS_NODES >= 1 && REDIS_NODES <= 8)) || die "--redis-nodes wants 1..8"
isint "$REDIS_MONITOR" && ((REDIS_MONITOR <= 100000)) || die "--redis-monitor wants 0..100000"
[[ $KAM_MEM == tlsf || $KAM_MEM == fm || $KAM_MEM == qm ]] || die "--kamailio-mem wants tlsf, fm or qm"
[[ -n $NICE ]] || { if ((EUID == 0)); then NICE=-10; else NICE=0; fi; }
[[ $NICE =~ ^-?[0-9]+$ ]] && ((NICE >= -20 && NICE <= 19)) || die "--nice wants -20..19"
((NICE >= 0 || EUID == 0)) || die "--nice below 0 needs root"

RUN_CASES=()
for c in $CASES; do
	case "$c" in
	all) RUN_CASES+=(relay store drain) ;;
	relay | store | drain) RUN_CASES+=("$c") ;;
	*) die "unknown case: $c (relay, store, drain, all)" ;;
	esac
done
((${#RUN_CASES[@]} > 0)) || die "--case is empty"
has_case() { local c; for c in "${RUN_CASES[@]}"; do [[ $c == "$1" ]] && return 0; done; return 1; }

read -r -a RELAY_RATES <<<"$RATES"
read -r -a STORE_RATE_LIST <<<"$STORE_RATES"
for r in "${RELAY_RATES[@]}" "${STORE_RATE_LIST[@]}"; do
	isint "$r" && ((r > 0 && r <= 100000)) || die "bad rate: $r"
done
if has_case relay; then ((${#RELAY_RATES[@]} > 0)) || die "--rates is empty"; fi
if has_case store; then ((${#STORE_RATE_LIST[@]} > 0)) || die "--store-rates is empty"; fi

for tool in sipp taskset ss pgrep awk sort timeout getconf curl; do
	command -v "$tool" >/dev/null || die "$tool not found"
done
for f in "$REG_SCENARIO" "$UAC_SCENARIO" "$UAS_SCENARIO" "$KAM_RELAY_CFG" "$KAM_MSILO_CFG"; do
	[[ -r $f ]] || die "missing $f"
done

# server_ok NAME: whether NAME can run (prints why not).
RCSD_OK=0 KAM_OK=0 KAM_MSILO_OK=0
if [[ -n $RCSD_BIN && -f $RCSD_BIN && -x $RCSD_BIN ]]; then
	RCSD_BIN=$(cd "$(dirname "$RCSD_BIN")" && pwd)/$(basename "$RCSD_BIN")
	RCSD_OK=1
elif [[ -n $RCSD_BIN ]]; then
	log "rcsd: $RCSD_BIN is not an executable file; skipping rcsd"
fi
if command -v kamailio >/dev/null; then
	KAM_OK=1
	if command -v sqlite3 >/dev/null && [[ -r $KAM_SQL_DIR/msilo-create.sql && -r $KAM_SQL_DIR/standard-create.sql ]] &&
		kamailio -c -f "$KAM_MSILO_CFG" -A PORT=5060 >/dev/null 2>&1; then
		KAM_MSILO_OK=1
	fi
fi
REDIS_OK=0
if [[ " $SERVERS " == *" rcsd-redis"* ]]; then
	if command -v "$REDIS_BIN" >/dev/null && command -v redis-cli >/dev/null; then
		REDIS_OK=1
	else
		log "$REDIS_BIN or redis-cli not found; skipping rcsd-redis*"
	fi
fi
is_redis() { [[ $1 == rcsd-redis* ]]; }
# redis_fsync SERVER: the appendfsync policy of an rcsd-redis* server.
redis_fsync() { if [[ $1 == rcsd-redis-always ]]; then echo always; else echo everysec; fi; }
servers_for() { # CASE: the servers that run it
	local list=$SERVERS s out=()
	[[ $1 != drain ]] || list=$DRAIN_SERVERS
	for s in $list; do
		case "$s" in
		rcsd) ((RCSD_OK)) && out+=(rcsd) ;;
		rcsd-redis | rcsd-redis-always)
			# the store case only (relay/drain would need forwarding between nodes)
			[[ $1 == store ]] && ((RCSD_OK && REDIS_OK)) && out+=("$s")
			;;
		kamailio)
			if ((KAM_OK == 0)); then
				:
			elif [[ $1 == relay ]] || ((KAM_MSILO_OK)); then
				out+=(kamailio)
			fi
			;;
		*) die "unknown server: $s" ;;
		esac
	done
	echo "${out[*]-}"
}
if ((KAM_OK == 0)); then log "kamailio not installed; skipping it"; fi
if ((KAM_OK && !KAM_MSILO_OK)) && { has_case store || has_case drain; }; then
	log "kamailio: msilo on SQLite unavailable (needs kamailio-sqlite-modules, sqlite3, $KAM_SQL_DIR); Kamailio skipped in store/drain"
fi
ANY=0
for c in "${RUN_CASES[@]}"; do [[ -z $(servers_for "$c") ]] || ANY=1; done
((ANY)) || die "no server to benchmark (give --rcsd BIN, install kamailio)"

PRIO=(setsid bash -c '[[ $0 == 0 ]] || echo "$0" >/proc/$$/autogroup 2>/dev/null || true; exec nice -n "$0" "$@"' "$NICE")

CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
if [[ -z $OUT_FILE ]]; then OUT_FILE="$BENCH_DIR/out/message-$STAMP.txt"; fi
mkdir -p "$(dirname "$OUT_FILE")"
REPORT=$OUT_FILE
TSV="${OUT_FILE%.txt}.tsv"
[[ $TSV != "$REPORT" ]] || TSV="$REPORT.tsv"
: >"$REPORT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/message-bench.XXXXXX")

# ---------------------------------------------------------------- results
TSV_HEADER="case	server	rate	repeat	selected	duration_s	calls	ok	failed	fail_pct	fail_codes	sipp_failed	retrans	delivered	stored	server_udp_drops	all_udp_drops	elapsed_s	achieved_per_s	p50_ms	p99_ms	max_ms	cpu_us_per_msg	server_cpu_pct	rss_mb	pss_mb	hwm_mb	nprocs	sipp_cpu_pct	other_cpu_pct	timestamp	nodes	rcsd_us_per_msg	redis_us_per_msg	redis_cpu_pct	redis_cmds_per_msg	redis_rt_per_msg	redis_cmds_list"
ROWS=()
declare -A R_NODES R_RCSDUS R_REDISUS R_REDISCPU R_CMDS R_RT R_CMDLIST
declare -A SEL R_OK R_FAIL R_FAILPCT R_CODES R_ELAPSED R_P50 R_P99 R_CPU R_RSS R_PSS R_SCPU R_SIPPCPU R_OTHER R_ACH R_DELIV R_STORED SKIPPED
DRAIN_ROWS=()
TSV_WRITTEN=0

write_tsv() {
	((TSV_WRITTEN == 0)) || return 0
	((${#ROWS[@]} > 0 || ${#DRAIN_ROWS[@]} > 0)) || return 0
	TSV_WRITTEN=1
	local row id rest cs server rate rep sel
	{
		echo "$TSV_HEADER"
		for row in "${ROWS[@]}"; do
			id=${row%%	*} rest=${row#*	}
			IFS=: read -r cs server rate rep <<<"$id"
			sel=0
			if [[ ${SEL[$cs:$server:$rate]-} == "$rep" ]]; then sel=1; fi
			printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$cs" "$server" "$rate" "$rep" "$sel" "$rest"
		done
		if ((${#DRAIN_ROWS[@]} > 0)); then
			echo
			echo "case	server	count	fill_ok	fill_failed	fill_codes	fill_s	fill_per_s	stored_metric	delivered	drain_s	drain_per_s	first_delivery_s	cpu_us_per_msg	rss_mb	pss_mb	timestamp"
			printf '%s\n' "${DRAIN_ROWS[@]}"
		fi
	} >"$TSV"
}

# ---------------------------------------------------------------- cleanup
SERVER_PID=""
SERVER_PIDS=()
SERVER_COMM=""
SIPP_PID=""
UAS_PID=""
# rcsd-redis*: the nodes (SERVER_PID is the first), their SIP and HTTP
# addresses, and the redis-server they share.
NODE_PIDS=()
NODE_PORTS=()
NODE_HTTP=()
REDIS_PID=""
REDIS_PORT=""
LEG_PIDS=()
MON_PID=""

stop_pid() { # PID: TERM, wait up to 2 s, KILL
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 20; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

stop_server() {
	[[ -n $SERVER_PID ]] || { stop_nodes; return 0; }
	local p i
	for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	for p in "$SERVER_PID" "${SERVER_PIDS[@]}"; do
		if [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$SERVER_COMM" ]]; then
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
	SERVER_PIDS=()
	stop_nodes
}

# stop_nodes: the other rcsd nodes and redis-server of an rcsd-redis* run.
stop_nodes() {
	local p i
	for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${NODE_PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	NODE_PIDS=()
	NODE_PORTS=()
	NODE_HTTP=()
	if [[ -n $REDIS_PID ]]; then
		stop_pid "$REDIS_PID"
		REDIS_PID=""
		REDIS_PORT=""
	fi
}

cleanup() {
	local rc=$?
	stop_pid "$SIPP_PID"; SIPP_PID=""
	stop_pid "$UAS_PID"; UAS_PID=""
	local lp
	for lp in "${LEG_PIDS[@]}"; do stop_pid "$lp"; done
	LEG_PIDS=()
	stop_pid "$MON_PID"; MON_PID=""
	stop_server
	write_tsv
	if ((KEEP)); then log "scratch directory kept: $WORK"; else rm -rf "$WORK"; fi
	return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
USED_PORTS=" "
# Below the kernel's ephemeral range where it allows, so that a port picked
# now is not taken meanwhile as the local port of some outgoing connection
# (rcsd-redis nodes bind TCP too); any TCP socket on the port, connected or
# listening, counts as taken.
EPHEMERAL_LOW=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 40000)
PORT_SPAN=20000
((EPHEMERAL_LOW - 20000 >= 5000)) && PORT_SPAN=$((EPHEMERAL_LOW - 20000))
PORT_SPAN=$((PORT_SPAN > 20000 ? 20000 : PORT_SPAN))
pick_port() { # u|t: a free port in 20000-39999 (below the ephemeral range) not handed out before
	local proto=$1 p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % PORT_SPAN))
		[[ $USED_PORTS != *" $p "* ]] || continue
		if [[ -z $(ss -Hanu "sport = :$p" 2>/dev/null) && -z $(ss -Hant "sport = :$p" 2>/dev/null) ]]; then
			USED_PORTS+="$p "
			echo "$p"
			return 0
		fi
	done
	die "no free $proto port found"
}

tree_pids() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" || true); do tree_pids "$c"; done
}

cpu_ticks() {
	local p files=()
	for p in "$@"; do if [[ -r /proc/$p/stat ]]; then files+=("/proc/$p/stat"); fi; done
	((${#files[@]} > 0)) || { echo 0; return; }
	awk '{ sub(/^.*\) /, ""); s += $12 + $13 } END { print s + 0 }' "${files[@]}" 2>/dev/null || echo 0
}

busy_ticks() {
	awk -v a="cpu$SERVER_CPU" -v b="cpu$CLIENT_CPU" '$1 == a || $1 == b {
		for (i = 2; i <= NF; i++) if (i != 5 && i != 6) s += $i
	} END { print s + 0 }' /proc/stat
}

udp_drops() {
	awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] + 0 }' /proc/net/snmp
}

sock_drops() {
	ss -Huamn "sport = :$1" 2>/dev/null | grep -o 'skmem:([^)]*)' | grep -o ',d[0-9]*' | tr -d ',d' |
		awk '{ s += $1 } END { print s + 0 }'
}

mem_kb() {
	local p rss=0 pss=0 hwm=0 v
	for p in "$@"; do
		[[ -r /proc/$p/status ]] || continue
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true); rss=$((rss + ${v:-0}))
		v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true); hwm=$((hwm + ${v:-0}))
		v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true); pss=$((pss + ${v:-0}))
	done
	echo "$rss $pss $hwm"
}

CHILD_MS=0
children_cpu_ms() {
	times >"$WORK/times.out"
	CHILD_MS=$(awk 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
		printf "%d\n", t * 1000 }' "$WORK/times.out")
}

now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

wait_ready() { # PORT [PID]
	local port=$1 pid=${2:-$SERVER_PID} i rc
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		[[ -n $(ss -Hlnu "sport = :$port" 2>/dev/null) ]] && break
		sleep 0.1
	done
	((i < 150)) || return 1
	if ! command -v sipsak >/dev/null; then
		sleep 0.5
		return 0
	fi
	for ((i = 0; i < 5; i++)); do
		rc=0
		timeout 3 sipsak -s "sip:probe@127.0.0.1:$port" >/dev/null 2>&1 || rc=$?
		((rc <= 1)) && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.3
	done
	log "WARNING: udp 127.0.0.1:$port is bound but does not answer OPTIONS; running anyway"
	return 0
}

# metric NAME: the sum of a Prometheus sample family of the running rcsd
# (NA when absent or not rcsd).
RCSD_HTTP=""
metric() {
	[[ -n $RCSD_HTTP ]] || { echo NA; return; }
	curl -s --max-time 2 "http://$RCSD_HTTP/metrics" 2>/dev/null |
		awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2; f = 1 } END { if (f) printf "%.0f\n", s; else print "NA" }' ||
		echo NA
}

# held SERVER RUNDIR: messages the server holds in its store now (rcsd:
# rcsd_messages_stored; Kamailio: rows in msilo's table, which it deletes only
# every check_time seconds after their delivery).
held() {
	if [[ $1 == kamailio ]]; then
		sqlite3 "$2/msilo.db" 'select count(*) from silo' 2>/dev/null || echo NA
	else
		metric rcsd_messages_stored
	fi
}

# last_stats FILE: "ok failed retrans elapsed" from a SIPp -trace_stat file.
last_stats() {
	awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ last = $0 }
		END {
			if (last == "") { print "0 0 0 0"; exit }
			split(last, f, ";")
			split(f[col["StartTime"]], s, "\t"); split(f[col["CurrentTime"]], c, "\t")
			printf "%d %d %d %.3f\n", f[col["SuccessfulCall(C)"]], f[col["FailedCall(C)"]],
				f[col["Retransmissions(C)"]], c[3] - s[3]
		}' "$1" 2>/dev/null || echo "0 0 0 0"
}

# fail_codes STATFILE ERRFILE CALLS OK: what the failed calls got, e.g.
# "480x8000" (an unexpected final response: status x count, from SIPp's
# -trace_err file), "recv_timeout x54" (no answer within --recv-timeout),
# "max_retrans x3" (no answer to any retransmission), "unfinished x2" (calls
# SIPp never finished, e.g. cut by -timeout); "-" when none failed.
fail_codes() {
	local stat=$1 err=$2 calls=$3 ok=$4
	{
		[[ ! -r $err ]] || awk '/Aborting call on unexpected message/ && match($0, /received .SIP\/2\.0 [0-9][0-9][0-9]/) {
			c[substr($0, RSTART + 18, 3)]++ } END { for (k in c) print k, c[k] }' "$err"
		[[ ! -r $stat ]] || awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } { last = $0 }
			END {
				if (last == "") exit
				split(last, f, ";")
				n["recv_timeout"] = f[col["FailedTimeoutOnRecv(C)"]]
				n["send_timeout"] = f[col["FailedTimeoutOnSend(C)"]]
				n["max_retrans"] = f[col["FailedMaxUDPRetrans(C)"]]
				n["cannot_send"] = f[col["FailedCannotSendMessage(C)"]]
				n["rejected"] = f[col["FailedCallRejected(C)"]]
				n["aborted_other"] = f[col["FailedCmdNotSent(C)"]] + f[col["FailedOutboundCongestion(C)"]]
				for (k in n) if (n[k] + 0 > 0) print k, n[k]
				u = '"$calls"' - f[col["SuccessfulCall(C)"]] - f[col["FailedCall(C)"]]
				if (u > 0) print "unfinished", u
			}' "$stat"
	} | awk '{ s = s (s == "" ? "" : ",") $1 "x" $2 } END { print (s == "" ? "-" : s) }'
	: "$ok"
}

pct() { # RTTFILE RTD P
	[[ -n $1 && -r $1 ]] || { echo NA; return; }
	awk -F';' -v r="$2" 'NR > 1 && $3 == r { print $2 }' "$1" | sort -g |
		awk -v p="$3" '{ v[NR] = $1 } END {
			if (NR == 0) { print "NA"; exit }
			k = (p >= 1) ? NR : int(NR * p + 0.999999); if (k < 1) k = 1
			printf "%.1f\n", v[k] }'
}

# ---------------------------------------------------------------- subscribers
# rcsd: sender, relay recipient, drain recipient, and the store case's
# offline recipients user001001..; every one with password benchpass.
SUBS_CSV="$WORK/subscribers.csv"
STORE_RCPTS="$WORK/store-recipients.csv"
awk -v n="$STORE_RECIPIENTS" -v realm="$REALM" -v pw="$PASSWORD" -v subs="$SUBS_CSV" \
	-v a="$SENDER" -v b="$RELAY_RCPT" -v c="$DRAIN_RCPT" 'BEGIN {
	print "impu,impi,password,k,op,opc,amf" > subs
	u[1] = a; u[2] = b; u[3] = c
	for (i = 1; i <= 3; i++) printf "sip:%s@%s,%s@%s,%s,,,,\n", u[i], realm, u[i], realm, pw > subs
	print "SEQUENTIAL"
	for (i = 1; i <= n; i++) {
		r = sprintf("user%06d", 1000 + i)
		printf "sip:%s@%s,%s@%s,%s,,,,\n", r, realm, r, realm, pw > subs
		print r
	}
}' >"$STORE_RCPTS"
for u in "$SENDER" "$RELAY_RCPT" "$DRAIN_RCPT"; do
	printf 'SEQUENTIAL\n%s;%s@%s;%s\n' "$u" "$u" "$REALM" "$PASSWORD" >"$WORK/reg-$u.csv"
	printf 'SEQUENTIAL\n%s\n' "$u" >"$WORK/rcpt-$u.csv"
done
SEED="$WORK/rcsd-seed"
KAM_DB_SEED="$WORK/msilo-seed.db"

# ---------------------------------------------------------------- servers
start_server() { # NAME CASE RUNDIR PORT
	local name=$1 cs=$2 dir=$3 port=$4 hport
	RCSD_HTTP=""
	case "$name" in
	kamailio)
		local -a kargs=(-f "$KAM_RELAY_CFG" -A "PORT=$port" -A "BENCH_PASS=\"$PASSWORD\"")
		if [[ $cs != relay ]]; then
			cp "$KAM_DB_SEED" "$dir/msilo.db"
			kargs=(-f "$KAM_MSILO_CFG" -A "PORT=$port" -A "BENCH_PASS=\"$PASSWORD\""
				-A "MSILO_PROXY=\"sip:127.0.0.1:$port;transport=udp\"" -A "DBURL=\"sqlite:///$dir/msilo.db\"")
		fi
		"${PRIO[@]}" taskset -c "$SERVER_CPU" kamailio -DD -E -x "$KAM_MEM" -X "$KAM_MEM" -m "$KAM_SHM_MB" \
			-w "$dir" "${kargs[@]}" </dev/null >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		SERVER_COMM=kamailio
		;;
	rcsd)
		rm -rf "$dir/data"
		cp -a "$SEED/data" "$dir/data"
		hport=$(pick_port t)
		RCSD_HTTP="127.0.0.1:$hport"
		# shellcheck disable=SC2086 # RCSD_ARGS is word-split on purpose
		(cd "$dir" && exec env GOMAXPROCS=1 "${PRIO[@]}" taskset -c "$SERVER_CPU" "$RCSD_BIN" serve \
			--storage "file:$dir/data" --sip.listen "udp://127.0.0.1:$port" \
			--http.listen "$RCSD_HTTP" --log.level warn --domain "$REALM" \
			--auth.digest_algorithms MD5,SHA-256 $RCSD_ARGS) </dev/null >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		SERVER_COMM=$(basename "$RCSD_BIN" | cut -c1-15)
		;;
	rcsd-redis | rcsd-redis-always)
		start_redis "$dir" "$(redis_fsync "$name")"
		(cd "$dir" && exec "$RCSD_BIN" subscriber import "$SUBS_CSV" --storage "redis://127.0.0.1:$REDIS_PORT" \
			--domain "$REALM" --log.level warn) </dev/null >"$dir/provision.log" 2>&1 ||
			{ tail -20 "$dir/provision.log" >&2; stop_server; die "rcsd subscriber import into Redis failed"; }
		SERVER_COMM=$(basename "$RCSD_BIN" | cut -c1-15)
		local k np hp pid secret
		secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
		NODE_PORTS=() NODE_HTTP=()
		for ((k = 1; k <= REDIS_NODES; k++)); do
			if ((k == 1)); then np=$port; else np=$(pick_port u); fi
			hp="127.0.0.1:$(pick_port t)"
			mkdir -p "$dir/node$k"
			# shellcheck disable=SC2086 # RCSD_ARGS is word-split on purpose
			(cd "$dir/node$k" && exec env GOMAXPROCS=1 "${PRIO[@]}" taskset -c "$SERVER_CPU" "$RCSD_BIN" serve \
				--storage "redis://127.0.0.1:$REDIS_PORT" --sip.listen "udp://127.0.0.1:$np,tcp://127.0.0.1:$np" \
				--http.listen "$hp" --log.level warn --domain "$REALM" \
				--auth.digest_algorithms MD5,SHA-256 --auth.nonce_secret "$secret" \
				--node.id "bench-node$k" --node.address "127.0.0.1:$np" $RCSD_ARGS) \
				</dev/null >"$dir/node$k/server.log" 2>&1 &
			pid=$!
			if ((k == 1)); then SERVER_PID=$pid; RCSD_HTTP=$hp; else NODE_PIDS+=("$pid"); fi
			NODE_PORTS+=("$np")
			NODE_HTTP+=("$hp")
		done
		for ((k = 2; k <= REDIS_NODES; k++)); do
			if ! wait_ready "${NODE_PORTS[k - 1]}" "${NODE_PIDS[k - 2]}"; then
				tail -20 "$dir/node$k/server.log" >&2 || true
				stop_server
				die "$name: node $k did not come up on udp 127.0.0.1:${NODE_PORTS[k - 1]}"
			fi
		done
		ln -sf node1/server.log "$dir/server.log"
		;;
	esac
	if ! wait_ready "$port"; then
		tail -20 "$dir/server.log" >&2 || true
		stop_server
		die "$name did not come up on udp 127.0.0.1:$port"
	fi
	mapfile -t SERVER_PIDS < <(node_pids)
	[[ $(cat "/proc/$SERVER_PID/comm" 2>/dev/null) == "$SERVER_COMM" ]] ||
		die "$name: PID $SERVER_PID is not $SERVER_COMM"
}

# node_pids: every process of the server (all rcsd nodes; not redis-server).
node_pids() {
	local p
	for p in "$SERVER_PID" "${NODE_PIDS[@]}"; do [[ -z $p ]] || tree_pids "$p"; done
}

# start_redis DIR FSYNC: a fresh redis-server on loopback (AOF with
# appendfsync FSYNC, no RDB snapshots), pinned to --redis-cpu.
start_redis() {
	local dir=$1 fsync=$2 i
	REDIS_PORT=$(pick_port t)
	mkdir -p "$dir/redis"
	"${PRIO[@]}" taskset -c "$REDIS_CPU" "$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize no \
		--save "" --appendonly yes --appendfsync "$fsync" --dir "$dir/redis" --logfile "$dir/redis.log" \
		</dev/null >/dev/null 2>&1 &
	REDIS_PID=$!
	for ((i = 0; i < 100; i++)); do
		[[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
		kill -0 "$REDIS_PID" 2>/dev/null || break
		sleep 0.1
	done
	tail -20 "$dir/redis.log" >&2 || true
	die "redis-server did not come up on 127.0.0.1:$REDIS_PORT"
}

# redis_snapshot FILE: redis-server's command counts (INFO commandstats) and
# the data segments its client sockets received (one per client write: a
# command, a pipeline, a MULTI/EXEC block), written to FILE.
redis_snapshot() {
	{
		redis-cli -p "$REDIS_PORT" info commandstats 2>/dev/null | tr -d '\r' |
			awk -F'[:=,]' '/^cmdstat_/ { sub(/^cmdstat_/, "", $1); print "cmd", $1, $3 }'
		ss -Htin state established "( sport = :$REDIS_PORT )" 2>/dev/null |
			grep -o 'data_segs_in:[0-9]*' | awk -F: '{ s += $2 } END { print "segs", s + 0 }'
	} >"$1"
}

# redis_delta BEFORE AFTER MSGS: "commands round-trips per-command-list" per
# message. Commands include those run inside Lua
# scripts; INFO and redis-cli's own are left out. Round trips are the client
# data segments, less the redis-cli connections of the two snapshots.
redis_delta() {
	awk -v n="$3" '
		FNR == NR { if ($1 == "cmd") b[$2] = $3; else if ($1 == "segs") bs = $2; next }
		$1 == "cmd" { a[$2] = $3 } $1 == "segs" { as = $2 }
		END {
			if (n <= 0) { print "NA NA -"; exit }
			t = 0; list = ""
			for (c in a) {
				if (c == "info" || c == "command" || c == "ping") continue
				d = a[c] - b[c]; if (d <= 0) continue
				t += d; cs[c] = d
			}
			# the list, most frequent first
			m = 0; for (c in cs) { keys[++m] = c }
			for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (cs[keys[j]] > cs[keys[i]]) { x = keys[i]; keys[i] = keys[j]; keys[j] = x }
			for (i = 1; i <= m; i++) list = list (list == "" ? "" : ",") keys[i] "=" sprintf("%.2f", cs[keys[i]] / n)
			printf "%.2f %.2f %s\n", t / n, (as - bs) / n, (list == "" ? "-" : list)
		}' "$1" "$2"
}

# register USER SERVERPORT LOCALPORT DIR: one REGISTER + digest of USER from
# 127.0.0.1:LOCALPORT; dies unless it got its 200.
register() {
	local user=$1 port=$2 lport=$3 dir=$4 rc=0
	(cd "$dir" && exec timeout 30 sipp "127.0.0.1:$port" -sf "$REG_SCENARIO" -inf "$WORK/reg-$user.csv" \
		-i 127.0.0.1 -p "$lport" -m 1 -recv_timeout 5000 -nd -trace_err -error_file "register-$user.err") \
		</dev/null >"$dir/register-$user.out" 2>&1 || rc=$?
	if ((rc != 0)); then
		tail -5 "$dir/register-$user.out" >&2 || true
		grep -m1 -o "received 'SIP/2.0 [^']*" "$dir/register-$user.err" >&2 2>/dev/null || true
		die "REGISTER of $user from 127.0.0.1:$lport failed (sipp exit $rc; see $dir, --keep)"
	fi
}

# start_uas LOCALPORT DIR CALLS: the recipient's handset (background).
start_uas() {
	local lport=$1 dir=$2 calls=$3
	(cd "$dir" && exec "${PRIO[@]}" taskset -c "$CLIENT_CPU" sipp -sf "$UAS_SCENARIO" -i 127.0.0.1 -p "$lport" \
		-m "$calls" -buff_size 4194304 -nd -trace_stat -stf uas_stat.csv -fd 1 \
		-trace_err -error_file uas_errors.log) </dev/null >"$dir/uas.out" 2>"$dir/uas.err" &
	UAS_PID=$!
	# until it holds its port (bounded)
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -n $(ss -Hlnu "sport = :$lport" 2>/dev/null) ]] && return 0
		kill -0 "$UAS_PID" 2>/dev/null || break
		sleep 0.05
	done
	tail -5 "$dir/uas.err" >&2 || true
	die "the SIPp UAS did not bind udp 127.0.0.1:$lport"
}

# wait_uas SECONDS: wait for the UAS to exit on its own (it stops after -m
# calls), then stop it.
wait_uas() {
	local limit=$1 i
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$UAS_PID" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$UAS_PID"
	UAS_PID=""
}

# ---------------------------------------------------------------- relay / store run
run_one() { # CASE SERVER RATE REPEAT
	local cs=$1 server=$2 rate=$3 rep=$4
	local dir="$WORK/$cs-$server-$rate-$rep" port sport rport calls rc p expect
	mkdir -p "$dir"
	expect=200
	[[ $cs == store ]] && expect=202
	sed "s/<recv response=\"200\" rtd=\"1\"\/>/<recv response=\"$expect\" rtd=\"1\"\/>/" "$UAC_SCENARIO" >"$dir/message_uac.xml"
	grep -q "response=\"$expect\" rtd=\"1\"" "$dir/message_uac.xml" || die "could not set the expected response in $dir/message_uac.xml"
	port=$(pick_port u)
	sport=$(pick_port u)
	rport=$(pick_port u)
	calls=$((rate * DURATION))

	start_server "$server" "$cs" "$dir" "$port"
	# legs: one SIPp sender per node (one for a single server), each from
	# its own port, registered on that node, at an even share of the rate
	local nlegs=1 k
	local -a lports=("$port") ldirs=("$dir") lsports=("$sport") lrates=() lcalls=()
	if is_redis "$server"; then
		nlegs=$REDIS_NODES
		lports=("${NODE_PORTS[@]}") ldirs=() lsports=()
		for ((k = 1; k <= nlegs; k++)); do
			ldirs+=("$dir/leg$k")
			mkdir -p "$dir/leg$k"
			cp "$dir/message_uac.xml" "$dir/leg$k/"
			if ((k == 1)); then lsports+=("$sport"); else lsports+=("$(pick_port u)"); fi
		done
	fi
	for ((k = 0; k < nlegs; k++)); do
		lrates+=($((rate / nlegs + (k < rate % nlegs ? 1 : 0))))
		lcalls+=($((calls / nlegs + (k < calls % nlegs ? 1 : 0))))
		register "$SENDER" "${lports[k]}" "${lsports[k]}" "${ldirs[k]}"
	done
	local rcpts="$STORE_RCPTS"
	if [[ $cs == relay ]]; then
		register "$RELAY_RCPT" "$port" "$rport" "$dir"
		start_uas "$rport" "$dir" "$calls"
		rcpts="$WORK/rcpt-$RELAY_RCPT.csv"
	fi

	local t0 t1 c0 c1 b0 b1 d0 d1 s0 s1 r0=0 r1=0
	local -a rpids=()
	s0=$(metric rcsd_messages_stored)
	if is_redis "$server"; then
		mapfile -t rpids < <(tree_pids "$REDIS_PID")
		redis_snapshot "$dir/redis-before.txt"
		r0=$(cpu_ticks "${rpids[@]}")
	fi
	t0=$(cpu_ticks "${SERVER_PIDS[@]}")
	b0=$(busy_ticks)
	d0=$(udp_drops)
	children_cpu_ms; c0=$CHILD_MS
	LEG_PIDS=()
	for ((k = 0; k < nlegs; k++)); do
		# SIPp writes its RTT file every -rtt_freq calls and drops the
		# remainder at exit: take a frequency that divides the call count
		local rf
		for rf in 1000 500 100 50 10 1; do ((lcalls[k] % rf == 0)) && break; done
		(cd "${ldirs[k]}" && exec timeout $((DURATION * 4 + 60)) "${PRIO[@]}" taskset -c "$CLIENT_CPU" \
			sipp "127.0.0.1:${lports[k]}" -sf message_uac.xml -inf "$rcpts" \
			-key sender "$SENDER" -key conv "conv-$STAMP-$cs-$rate-$rep" -key datetime "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
			-i 127.0.0.1 -p "${lsports[k]}" -buff_size 4194304 -r "${lrates[k]}" -rp 1000 -m "${lcalls[k]}" \
			-timeout "$((DURATION * 4 + 40))s" -recv_timeout "$RECV_TIMEOUT_MS" -nd \
			-trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq "$rf" \
			-trace_err -error_file errors.log) </dev/null >"${ldirs[k]}/sipp.out" 2>"${ldirs[k]}/sipp.err" &
		LEG_PIDS+=($!)
	done
	SIPP_PID=${LEG_PIDS[0]}
	rc=0
	local -a lrc=()
	for ((k = 0; k < nlegs; k++)); do
		lrc[k]=0
		wait "${LEG_PIDS[k]}" || lrc[k]=$?
		((lrc[k] == 0 || lrc[k] == 1)) || rc=${lrc[k]}
	done
	LEG_PIDS=()
	SIPP_PID=""
	b1=$(busy_ticks)
	# the UAS: every relayed MESSAGE has been answered by now, unless lost
	if [[ -n $UAS_PID ]]; then wait_uas 2; fi
	children_cpu_ms; c1=$CHILD_MS
	d1=$(udp_drops)
	mapfile -t SERVER_PIDS < <({ printf '%s\n' "${SERVER_PIDS[@]}"; node_pids; } | sort -un)
	t1=$(cpu_ticks "${SERVER_PIDS[@]}")
	if is_redis "$server"; then
		r1=$(cpu_ticks "${rpids[@]}")
		redis_snapshot "$dir/redis-after.txt"
	fi
	s1=$(metric rcsd_messages_stored)
	local mem nprocs=0 sdrops=0 lp
	mem=$(mem_kb "${SERVER_PIDS[@]}" "${rpids[@]}")
	for lp in "${lports[@]}"; do sdrops=$((sdrops + $(sock_drops "$lp"))); done
	for p in "${SERVER_PIDS[@]}" "${rpids[@]}"; do if [[ -d /proc/$p ]]; then nprocs=$((nprocs + 1)); fi; done
	for p in "$SERVER_PID" "${NODE_PIDS[@]}"; do
		kill -0 "$p" 2>/dev/null || log "$server: WARNING: a server process ($p) died during the run (see $dir/server.log)"
	done
	if [[ -n $REDIS_PID ]] && ! kill -0 "$REDIS_PID" 2>/dev/null; then
		log "$server: WARNING: redis-server died during the run (see $dir/redis.log)"
	fi
	stop_server

	local ok=0 sfail=0 retr=0 elapsed=0 delivered="-" stored="-" codes lok lsf lre lel
	local -a lcodes=()
	for ((k = 0; k < nlegs; k++)); do
		if ((lrc[k] != 0 && lrc[k] != 1)) || [[ ! -s ${ldirs[k]}/stat.csv ]]; then
			log "$cs/$server @ $rate/s: sipp (leg $((k + 1))) exited ${lrc[k]}"
			tail -5 "${ldirs[k]}/sipp.err" >&2 || true
		fi
		read -r lok lsf lre lel <<<"$(last_stats "${ldirs[k]}/stat.csv")"
		ok=$((ok + lok)) sfail=$((sfail + lsf)) retr=$((retr + lre))
		elapsed=$(awk -v a="$elapsed" -v b="$lel" 'BEGIN { printf "%.3f", (b > a ? b : a) }')
		lcodes+=("$(fail_codes "${ldirs[k]}/stat.csv" "${ldirs[k]}/errors.log" "${lcalls[k]}" "$lok")")
	done
	# merge the legs' "code x count" lists
	codes=$(printf '%s\n' "${lcodes[@]}" | tr ',' '\n' | awk '$0 != "-" && $0 != "" {
			i = match($0, /x[0-9]+$/); c[substr($0, 1, i - 1)] += substr($0, i + 1) }
		END { for (k in c) s = s (s == "" ? "" : ",") k "x" c[k]; print (s == "" ? "-" : s) }')
	if [[ $cs == relay ]]; then
		delivered=$(last_stats "$dir/uas_stat.csv" | awk '{ print $1 }')
	else
		# what the server holds after the run: msilo's table, rcsd's gauge
		# (with Redis, node 1's gauge counts what all nodes stored)
		if [[ $server == kamailio ]]; then
			stored=$(sqlite3 "$dir/msilo.db" 'select count(*) from silo' 2>/dev/null || echo NA)
		elif [[ $s1 != NA && $s0 != NA ]]; then
			stored=$((s1 - s0))
		else
			stored=NA
		fi
	fi

	local rtt p50 p99 pmax
	rtt="$dir/rtt-all.csv"
	: >"$rtt"
	for ((k = 0; k < nlegs; k++)); do
		find "${ldirs[k]}" -maxdepth 1 -name 'message_uac_*_rtt.csv' -exec cat {} + >>"$rtt" 2>/dev/null || true
	done
	[[ -s $rtt ]] || rtt=""
	p50=$(pct "$rtt" 1 0.50); p99=$(pct "$rtt" 1 0.99); pmax=$(pct "$rtt" 1 1)

	# rcsd-redis*: CPU of rcsd (all nodes) and of redis-server apart; Redis
	# commands and round trips per stored message
	local rcsd_us="-" redis_us="-" redis_pct="-" rcmds="-" rrt="-" rlist="-"
	if is_redis "$server"; then
		rcsd_us=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "NA" }')
		redis_us=$(awk -v t=$((r1 - r0)) -v hz="$CLK_TCK" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "NA" }')
		redis_pct=$(awk -v t=$((r1 - r0)) -v hz="$CLK_TCK" -v e="$elapsed" 'BEGIN { if (e > 0) printf "%.0f", 100 * t / hz / e; else print "NA" }')
		local nstored=$ok
		[[ $stored == NA || $stored == - ]] || nstored=$stored
		read -r rcmds rrt rlist <<<"$(redis_delta "$dir/redis-before.txt" "$dir/redis-after.txt" "$nstored")"
		# the server's CPU is rcsd's and redis-server's together
		t1=$((t1 + r1 - r0))
	fi

	local failed fail_pct cpu_us scpu rss pss hwm sippcpu other ach
	failed=$((calls - ok))
	read -r rss pss hwm <<<"$mem"
	fail_pct=$(awk -v f="$failed" -v n="$calls" 'BEGIN { printf "%.3f", 100 * f / n }')
	cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "NA" }')
	scpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v e="$elapsed" 'BEGIN { if (e > 0) printf "%.0f", 100 * t / hz / e; else print "NA" }')
	sippcpu=$(awk -v c=$((c1 - c0)) -v e="$elapsed" 'BEGIN { if (e > 0) printf "%.0f", c / 10 / e; else print "NA" }')
	other=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v e="$elapsed" \
		'BEGIN { if (e > 0) { o = (b - t) / hz - c / 1000; if (o < 0) o = 0; printf "%.0f", 100 * o / e } else print "NA" }')
	ach=$(awk -v n="$ok" -v e="$elapsed" 'BEGIN { if (e > 0) printf "%.0f", n / e; else print "NA" }')
	rss=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
	pss=$(awk -v k="$pss" 'BEGIN { printf "%.1f", k / 1024 }')
	hwm=$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')

	ROWS+=("$cs:$server:$rate:$rep	$DURATION	$calls	$ok	$failed	$fail_pct	$codes	$sfail	$retr	$delivered	$stored	$sdrops	$((d1 - d0))	$elapsed	$ach	$p50	$p99	$pmax	$cpu_us	$scpu	$rss	$pss	$hwm	$nprocs	$sippcpu	$other	$(date -Is)	$nlegs	$rcsd_us	$redis_us	$redis_pct	$rcmds	$rrt	$rlist")

	local key="$cs:$server:$rate" take=0
	if [[ -z ${SEL[$key]-} ]]; then
		take=1
	elif [[ $cpu_us != NA ]] && awk -v a="$cpu_us" -v b="${R_CPU[$key]}" 'BEGIN { exit !(b == "NA" || a < b) }'; then
		take=1
	fi
	if ((take)); then
		SEL[$key]=$rep
		R_OK[$key]=$ok R_FAIL[$key]=$failed R_FAILPCT[$key]=$fail_pct R_CODES[$key]=$codes R_ELAPSED[$key]=$elapsed
		R_P50[$key]=$p50 R_P99[$key]=$p99 R_CPU[$key]=$cpu_us R_RSS[$key]=$rss R_PSS[$key]=$pss
		R_SCPU[$key]=$scpu R_SIPPCPU[$key]=$sippcpu R_OTHER[$key]=$other R_ACH[$key]=$ach
		R_DELIV[$key]=$delivered R_STORED[$key]=$stored
		R_NODES[$key]=$nlegs R_RCSDUS[$key]=$rcsd_us R_REDISUS[$key]=$redis_us R_REDISCPU[$key]=$redis_pct
		R_CMDS[$key]=$rcmds R_RT[$key]=$rrt R_CMDLIST[$key]=$rlist
	fi
	local extra=""
	[[ $cs == relay ]] && extra=", delivered to the UAS $delivered"
	[[ $cs == store ]] && extra=", stored $stored"
	is_redis "$server" && extra+=" by $nlegs nodes; rcsd ${rcsd_us} + redis-server ${redis_us} us CPU/msg (redis ${redis_pct}%), Redis ${rcmds} commands and ${rrt} round trips per stored message: ${rlist}"
	log "$cs/$server @ $rate/s #$rep: ok ($expect) $ok/$calls in ${elapsed} s${extra}, failed: ${codes}, $retr retransmissions, UDP drops $sdrops by the server/$((d1 - d0)) in all, ${cpu_us} us CPU/msg (server ${scpu}%, sipp ${sippcpu}%, other ${other}%), p50/p99 ${p50}/${p99} ms, RSS ${rss} MB"
	if ((ok == 0 && calls > 0)); then
		log "$cs/$server @ $rate/s: NO MESSAGE got its $expect; first errors:"
		grep -m3 -o "received 'SIP/2.0 [^']*\|timed out[^.]*" "${ldirs[0]}/errors.log" >&2 2>/dev/null || true
	fi
	# a failed step: the higher rates of this (case, server) are skipped
	if ((SKIP_AFTER_FAIL)) && awk -v f="$fail_pct" -v e="$elapsed" -v d="$DURATION" 'BEGIN { exit !(f >= 10 || e > 3 * d) }'; then
		SKIPPED[$cs:$server]=$rate
	fi
}

# ---------------------------------------------------------------- Redis MONITOR
# run_monitor N: store N messages (40/s, one SIPp, node 1 of rcsd-redis)
# under redis-cli MONITOR, and print the commands per stored message in
# order: one group per MESSAGE (it starts with the GET of the sender's
# bindings), patterns counted, keys with the users' names replaced.
MONITOR_REPORT=""
run_monitor() {
	local n=$1 dir="$WORK/monitor" port sport rc=0
	mkdir -p "$dir"
	sed 's/<recv response="200" rtd="1"\/>/<recv response="202" rtd="1"\/>/' "$UAC_SCENARIO" >"$dir/message_uac.xml"
	port=$(pick_port u)
	sport=$(pick_port u)
	log "monitor: storing $n messages at 40/s through node 1 of rcsd-redis under redis-cli MONITOR"
	start_server rcsd-redis store "$dir" "$port"
	register "$SENDER" "$port" "$sport" "$dir"
	redis-cli -p "$REDIS_PORT" monitor >"$dir/monitor.log" 2>/dev/null &
	MON_PID=$!
	sleep 0.5
	(cd "$dir" && exec timeout $((n / 40 + 60)) sipp "127.0.0.1:$port" -sf message_uac.xml -inf "$STORE_RCPTS" \
		-key sender "$SENDER" -key conv "conv-$STAMP-monitor" -key datetime "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		-i 127.0.0.1 -p "$sport" -r 40 -rp 1000 -m "$n" -recv_timeout "$RECV_TIMEOUT_MS" -nd \
		-trace_stat -stf stat.csv -fd 1 -trace_err -error_file errors.log) </dev/null >"$dir/sipp.out" 2>"$dir/sipp.err" || rc=$?
	sleep 0.5
	stop_pid "$MON_PID"; MON_PID=""
	stop_server
	local ok
	ok=$(last_stats "$dir/stat.csv" | awk '{ print $1 }')
	((KEEP)) && log "monitor: raw log $dir/monitor.log"
	MONITOR_REPORT=$(awk -v sender="sip:$SENDER@$REALM" -v ok="$ok" -v n="$n" -v rc="$rc" '
		function norm(a,   i) {
			gsub(/rcsd:/, "", a)
			i = index(a, sender); while (i > 0) { a = substr(a, 1, i - 1) "SENDER" substr(a, i + length(sender)); i = index(a, sender) }
			gsub(/sip:user[0-9]+@[a-z.]+/, "RCPT", a)
			gsub(/\\x00[0-9a-f]+/, "<NUL>ID", a)
			gsub(/sub:user[0-9]+@[a-z.]+/, "sub:RCPT-IMPI", a)
			gsub(/cid:SENDER\/[^ ]*/, "cid:SENDER/CALLID/CSEQ", a)
			gsub(/mid:SENDER\/[^ ]*/, "mid:SENDER/IMDN-ID", a)
			if (a ~ /^[0-9]+ [0-9]+ [0-9a-f]+$/) a = "<sec nsec ID>"
			else if (a ~ /^[0-9a-f]+$/ && length(a) >= 24) a = "ID"
			else if (a ~ /^[0-9]+$/ && length(a) >= 10) a = "T"
			return a
		}
		{
			# 1732526400.123456 [0 127.0.0.1:54321] "GET" "key" ...
			t = $1 + 0
			src = ($3 == "lua]") ? "lua" : "client"
			line = $0; sub(/^[^]]*\] /, "", line)
			# the quoted arguments (escapes inside kept as they are)
			m = 0; delete arg
			while (match(line, /"([^"\\]|\\.)*"/)) {
				arg[++m] = substr(line, RSTART + 1, RLENGTH - 2); line = substr(line, RSTART + RLENGTH)
			}
			if (m == 0) next
			cmd = toupper(arg[1])
			if (cmd == "MONITOR") next
			if (src == "client" && cmd == "GET" && index(arg[2], sender) > 0 && index(arg[2], ":bindings") > 0) {
				g++; started = 1
			}
			if (!started) next
			# the command with its keys; long values shortened
			txt = cmd
			if (cmd == "EVALSHA" || cmd == "EVAL") {
				nk = arg[3] + 0
				txt = txt " " substr(arg[2], 1, 8) " " nk
				for (i = 4; i < 4 + nk && i <= m; i++) txt = txt " " norm(arg[i])
				txt = txt " +" (m - 3 - nk) " args"
			} else {
				for (i = 2; i <= m && i <= 4; i++) {
					v = norm(arg[i]); if (length(v) > 48) v = "<" (length(v) > 200 ? "message" : "value") ">"
					txt = txt " " v
				}
				if (m > 4) txt = txt " …"
			}
			if (src == "lua") { txt = "    (lua) " txt; luac[g]++ } else {
				top[g]++
				if (cmd == "MULTI") inmulti[g] = 1
				else if (cmd == "EXEC") { inmulti[g] = 0; rt[g]++ }
				else if (!inmulti[g]) rt[g]++
			}
			pat[g] = pat[g] txt "\n"
		}
		END {
			if (g == 0) { print "no MESSAGE seen in the MONITOR log (sipp exit " rc ", " ok " of " n " stored)"; exit }
			for (i = 1; i <= g; i++) { cnt[pat[i]]++; if (!(pat[i] in first)) { first[pat[i]] = i; order[++np] = pat[i] } ; T += top[i]; L += luac[i]; R += rt[i] }
			printf "%d MESSAGEs (%d answered 202) under MONITOR: per stored message %.2f round trips, %.2f commands sent by rcsd, %.2f run inside Lua scripts, %.2f in all\n", g, ok, R / g, T / g, L / g, (T + L) / g
			# patterns, most frequent first
			for (i = 1; i <= np; i++) for (j = i + 1; j <= np; j++) if (cnt[order[j]] > cnt[order[i]]) { x = order[i]; order[i] = order[j]; order[j] = x }
			for (i = 1; i <= np && i <= 4; i++) {
				p = order[i]; k = first[p]
				printf "\n-- %d of %d messages: %d round trips, %d commands from rcsd + %d inside Lua\n", cnt[p], g, rt[k], top[k], luac[k]
				printf "%s", p
			}
			if (np > 4) printf "\n(%d other patterns, %d messages: background sweeps interleaved)\n", np - 4, g - cnt[order[1]] - cnt[order[2]] - cnt[order[3]] - cnt[order[4]]
		}' "$dir/monitor.log")
	log "monitor: done"
}

# ---------------------------------------------------------------- drain run
run_drain() { # SERVER
	local server=$1 cs=drain
	local dir="$WORK/drain-$server" port sport rport rc
	mkdir -p "$dir"
	sed 's/<recv response="200" rtd="1"\/>/<recv response="202" rtd="1"\/>/' "$UAC_SCENARIO" >"$dir/message_uac.xml"
	port=$(pick_port u)
	sport=$(pick_port u)
	rport=$(pick_port u)
	start_server "$server" "$cs" "$dir" "$port"
	register "$SENDER" "$port" "$sport" "$dir"

	# 1. fill: DRAIN_COUNT MESSAGEs for the offline recipient, at most
	# DRAIN_WINDOW in flight (closed loop: as fast as the server stores)
	local f0 f1 fill_s ok sfail retr elapsed codes
	log "drain/$server: storing $DRAIN_COUNT messages for $DRAIN_RCPT (at most $DRAIN_WINDOW in flight)"
	f0=$(now)
	rc=0
	(cd "$dir" && exec timeout "$DRAIN_TIMEOUT" "${PRIO[@]}" taskset -c "$CLIENT_CPU" \
		sipp "127.0.0.1:$port" -sf message_uac.xml -inf "$WORK/rcpt-$DRAIN_RCPT.csv" \
		-key sender "$SENDER" -key conv "conv-$STAMP-drain" -key datetime "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		-i 127.0.0.1 -p "$sport" -buff_size 4194304 -r 100000 -rp 1000 -l "$DRAIN_WINDOW" -m "$DRAIN_COUNT" \
		-recv_timeout "$RECV_TIMEOUT_MS" -nd -trace_stat -stf fill_stat.csv -fd 1 \
		-trace_err -error_file fill_errors.log) </dev/null >"$dir/fill.out" 2>"$dir/fill.err" &
	SIPP_PID=$!
	wait "$SIPP_PID" || rc=$?
	SIPP_PID=""
	f1=$(now)
	fill_s=$(fsub "$f1" "$f0")
	read -r ok sfail retr elapsed <<<"$(last_stats "$dir/fill_stat.csv")"
	codes=$(fail_codes "$dir/fill_stat.csv" "$dir/fill_errors.log" "$DRAIN_COUNT" "$ok")
	((rc == 0 || rc == 1)) || log "drain/$server: the filling sipp exited $rc (124: --drain-timeout $DRAIN_TIMEOUT s reached)"
	local fill_rate stored_metric
	fill_rate=$(awk -v n="$ok" -v e="$fill_s" 'BEGIN { if (e > 0) printf "%.0f", n / e; else print "NA" }')
	stored_metric=$(held "$server" "$dir")
	log "drain/$server: $ok/$DRAIN_COUNT stored (202) in $fill_s s = $fill_rate/s; failed: $codes; the server holds $stored_metric"

	local delivered=0 drain_s=NA drain_rate=NA first_s=NA cpu_us=NA rss=NA pss=NA
	if ((ok == 0)); then
		log "drain/$server: NOTHING WAS STORED (no 202): no drain to measure"
		grep -m3 -o "received 'SIP/2.0 [^']*" "$dir/fill_errors.log" >&2 2>/dev/null || true
	else
		# 2. drain: the recipient registers from rport, then its UAS takes over
		# rport and counts what arrives (-m ok: it exits after the last one)
		local t0 t1 d0 d1 first last
		t0=$(cpu_ticks "${SERVER_PIDS[@]}")
		d0=$(now)
		register "$DRAIN_RCPT" "$port" "$rport" "$dir"
		start_uas "$rport" "$dir" "$ok"
		log "drain/$server: $DRAIN_RCPT registered, its UAS listening $(fsub "$(now)" "$d0") s after the REGISTER began; waiting for $ok deliveries (at most $DRAIN_TIMEOUT s)"
		wait_uas "$DRAIN_TIMEOUT"
		d1=$(now)
		mapfile -t SERVER_PIDS < <({ printf '%s\n' "${SERVER_PIDS[@]}"; tree_pids "$SERVER_PID"; } | sort -un)
		t1=$(cpu_ticks "${SERVER_PIDS[@]}")
		read -r rss pss _ <<<"$(mem_kb "${SERVER_PIDS[@]}")"
		rss=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
		pss=$(awk -v k="$pss" 'BEGIN { printf "%.1f", k / 1024 }')
		delivered=$(last_stats "$dir/uas_stat.csv" | awk '{ print $1 }')
		# the UAS's first statistics line with a call: when deliveries began
		# (1 s resolution of -fd 1)
		first=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
			$col["TotalCallCreated"] + 0 > 0 || $col["IncomingCall(C)"] + 0 > 0 {
				split($col["CurrentTime"], c, "\t"); print c[3]; exit }' "$dir/uas_stat.csv" 2>/dev/null || true)
		[[ -z $first ]] || first_s=$(fsub "$first" "$d0")
		# when the UAS took its last message: the first statistics line with
		# the final count (the line SIPp writes when it exits after -m, or,
		# if some never came, a periodic line: 1 s resolution)
		last=$(awk -F';' -v n="$delivered" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
			$col["SuccessfulCall(C)"] + 0 == n + 0 { split($col["CurrentTime"], c, "\t"); print c[3]; exit }' \
			"$dir/uas_stat.csv" 2>/dev/null || true)
		[[ -n $last ]] || last=$d1
		if ((delivered > 0)); then
			drain_s=$(fsub "$last" "$d0")
			drain_rate=$(awk -v n="$delivered" -v e="$drain_s" 'BEGIN { if (e > 0) printf "%.0f", n / e; else print "NA" }')
			cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$delivered" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
		fi
		log "drain/$server: $delivered/$ok delivered in $drain_s s (from the recipient's REGISTER to the last delivery) = $drain_rate/s; ${cpu_us} us CPU/msg; the server holds $(held "$server" "$dir") now"
		((delivered == ok)) || log "drain/$server: WARNING: $((ok - delivered)) stored messages were not delivered within $DRAIN_TIMEOUT s (drain_s is then the time to the last one that was)"
	fi
	stop_server
	DRAIN_ROWS+=("drain	$server	$DRAIN_COUNT	$ok	$((DRAIN_COUNT - ok))	$codes	$fill_s	$fill_rate	$stored_metric	$delivered	$drain_s	$drain_rate	$first_s	$cpu_us	$rss	$pss	$(date -Is)")
}

# ---------------------------------------------------------------- main
{
	echo "MESSAGE benchmark $(date -Is) on $(hostname), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "cases: ${RUN_CASES[*]}; ${DURATION} s per run, $REPEAT run(s) each; server on CPU $SERVER_CPU, SIPp on CPU $CLIENT_CPU, niceness $NICE"
	has_case relay && echo "relay: offered $RATES /s; servers: $(servers_for relay)"
	has_case store && echo "store: offered $STORE_RATES /s to $STORE_RECIPIENTS offline recipients; servers: $(servers_for store)"
	has_case drain && echo "drain: $DRAIN_COUNT messages to one offline recipient, at most $DRAIN_WINDOW in flight; servers: $(servers_for drain)"
	echo "sipp: $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1)"
	if ((KAM_OK)); then
		echo "kamailio: $(kamailio -v 2>/dev/null | head -1 | sed 's/^version: //;s/ *$//'), memory manager $KAM_MEM; relay $KAM_RELAY_CFG, store/drain $KAM_MSILO_CFG"
		if ((KAM_MSILO_OK)); then
			echo "msilo store: SQLite $(sqlite3 -version 2>/dev/null | cut -d' ' -f1), journal_mode $(sqlite3 "$WORK/probe.db" 'pragma journal_mode' 2>/dev/null), synchronous $(sqlite3 "$WORK/probe.db" 'pragma synchronous' 2>/dev/null) (2 = FULL), autocommit per message"
			rm -f "$WORK/probe.db"
		fi
	fi
	if ((REDIS_OK)) && [[ " $(servers_for store) " == *" rcsd-redis"* ]]; then
		echo "rcsd-redis*: $REDIS_NODES rcsd nodes (GOMAXPROCS=1 each, CPU $SERVER_CPU) sharing $("$REDIS_BIN" --version | awk '{ print $1, $2, $3 }') (CPU $REDIS_CPU), loopback TCP; redis-server --save \"\" --appendonly yes --appendfsync everysec (rcsd-redis) / always (rcsd-redis-always); the SIPp load split evenly, one SIPp per node"
	fi
	if ((RCSD_OK)); then
		echo "rcsd: $RCSD_BIN ($("$RCSD_BIN" version 2>/dev/null | head -1 || echo 'version unknown')), storage file: (the provisioned store copied for every run)${RCSD_ARGS:+, extra args: $RCSD_ARGS}"
	fi
} | tee "$REPORT" >&2

if ((RCSD_OK)); then
	mkdir -p "$SEED"
	(cd "$SEED" && exec "$RCSD_BIN" subscriber import "$SUBS_CSV" --storage "file:$SEED/data" \
		--domain "$REALM" --log.level warn) </dev/null >"$SEED/provision.log" 2>&1 ||
		{ tail -20 "$SEED/provision.log" >&2; die "rcsd subscriber import failed"; }
	[[ -e $SEED/data ]] || die "rcsd provisioning left no store at $SEED/data"
fi
if ((KAM_MSILO_OK)); then
	sqlite3 "$KAM_DB_SEED" <"$KAM_SQL_DIR/standard-create.sql" && sqlite3 "$KAM_DB_SEED" <"$KAM_SQL_DIR/msilo-create.sql" ||
		die "could not create the msilo database"
fi

for cs in relay store; do
	has_case "$cs" || continue
	read -r -a svs <<<"$(servers_for "$cs")"
	((${#svs[@]} > 0)) || continue
	if [[ $cs == relay ]]; then rl=("${RELAY_RATES[@]}"); else rl=("${STORE_RATE_LIST[@]}"); fi
	for rate in "${rl[@]}"; do
		for ((rep = 1; rep <= REPEAT; rep++)); do
			for s in "${svs[@]}"; do
				if [[ -n ${SKIPPED[$cs:$s]-} ]] && ((rate > ${SKIPPED[$cs:$s]})); then continue; fi
				run_one "$cs" "$s" "$rate" "$rep"
			done
		done
	done
done
if has_case drain; then
	for s in $(servers_for drain); do run_drain "$s"; done
fi
if ((REDIS_MONITOR > 0 && RCSD_OK && REDIS_OK)); then run_monitor "$REDIS_MONITOR"; fi
write_tsv

# ---------------------------------------------------------------- report
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (x + 0 > 0 && y + 0 > 0) printf "%.2fx", x / y; else print "NA" }'; }
{
	for cs in relay store; do
		has_case "$cs" || continue
		read -r -a svs <<<"$(servers_for "$cs")"
		((${#svs[@]} > 0)) || continue
		if [[ $cs == relay ]]; then rl=("${RELAY_RATES[@]}"); col=delivered; else rl=("${STORE_RATE_LIST[@]}"); col=stored; fi
		echo
		for s in "${svs[@]}"; do
			echo "== $cs / $s: ${DURATION} s per run$( ((REPEAT > 1)) && echo ", least CPU/msg of $REPEAT runs"); success = $([[ $cs == relay ]] && echo 200 || echo 202); CPU = utime+stime of all its processes / successful MESSAGEs"
			printf '%6s %7s %7s %7s %-14s %9s %8s %8s %7s %7s %10s %7s %7s %7s %5s %5s\n' \
				rate ok failed fail% failed_with "$col" elapsed_s achieved p50_ms p99_ms cpu_us/msg srv_cpu rss_mb pss_mb sipp other
			for rate in "${rl[@]}"; do
				k="$cs:$s:$rate"
				if [[ -z ${R_OK[$k]+x} ]]; then
					printf '%6s   skipped (a lower rate failed; --no-skip runs it)\n' "$rate"
					continue
				fi
				printf '%6s %7s %7s %7s %-14s %9s %8s %8s %7s %7s %10s %6s%% %7s %7s %4s%% %4s%%\n' \
					"$rate" "${R_OK[$k]}" "${R_FAIL[$k]}" "${R_FAILPCT[$k]}" "${R_CODES[$k]}" \
					"$([[ $cs == relay ]] && echo "${R_DELIV[$k]}" || echo "${R_STORED[$k]}")" \
					"${R_ELAPSED[$k]}" "${R_ACH[$k]}" "${R_P50[$k]}" "${R_P99[$k]}" "${R_CPU[$k]}" "${R_SCPU[$k]}" \
					"${R_RSS[$k]}" "${R_PSS[$k]}" "${R_SIPPCPU[$k]}" "${R_OTHER[$k]}"
			done
			if is_redis "$s"; then
				echo "   Redis ($REDIS_NODES nodes, appendfsync $(redis_fsync "$s")): CPU per stored message of rcsd (all nodes) and of redis-server (both are in cpu_us/msg above);"
				echo "   Redis commands per stored message (commandstats delta, commands inside Lua scripts included) and round trips (client writes to redis-server)"
				printf '%6s %8s %9s %9s %10s %9s  %s\n' rate nodes rcsd_us redis_us redis_cpu cmds/msg "rt/msg  commands per message"
				for rate in "${rl[@]}"; do
					k="$cs:$s:$rate"
					[[ -n ${R_OK[$k]+x} ]] || continue
					printf '%6s %8s %9s %9s %9s%% %9s  %6s  %s\n' "$rate" "${R_NODES[$k]}" "${R_RCSDUS[$k]}" "${R_REDISUS[$k]}" \
						"${R_REDISCPU[$k]}" "${R_CMDS[$k]}" "${R_RT[$k]}" "${R_CMDLIST[$k]}"
				done
			fi
			echo
		done
		echo "== $cs: highest offered rate with < 0.1% failed MESSAGEs"
		for s in "${svs[@]}"; do
			best="none" best_ontime="none"
			for rate in "${rl[@]}"; do
				k="$cs:$s:$rate"
				[[ -n ${R_OK[$k]+x} ]] || continue
				awk -v f="${R_FAILPCT[$k]}" 'BEGIN { exit !(f < 0.1) }' || continue
				if [[ $best == none ]] || ((rate > best)); then best=$rate; fi
				awk -v e="${R_ELAPSED[$k]}" -v d="$DURATION" 'BEGIN { exit !(e <= d * 1.1 + 0.5) }' || continue
				if [[ $best_ontime == none ]] || ((rate > best_ontime)); then best_ontime=$rate; fi
			done
			printf '  %-9s %s/s  (also finishing within 10%% of %s s: %s/s)\n' "$s" "$best" "$DURATION" "$best_ontime"
		done
		for s in "${svs[@]}"; do
			is_redis "$s" && [[ " ${svs[*]} " == *" rcsd "* ]] || continue
			echo
			echo "== $cs: $s ($REDIS_NODES nodes sharing Redis, appendfsync $(redis_fsync "$s")) / rcsd (one node, file store) at each rate"
			echo "   (target: stored throughput >= 0.80x, <= 3 Redis round trips per stored message)"
			printf '%6s %10s %10s %8s %8s %8s %12s %9s %8s\n' rate achieved embedded ratio p50 p99 cpu_per_msg cmds/msg rt/msg
			for rate in "${rl[@]}"; do
				a="$cs:$s:$rate" b="$cs:rcsd:$rate"
				[[ -n ${R_OK[$a]+x} && -n ${R_OK[$b]+x} ]] || continue
				printf '%6s %10s %10s %8s %8s %8s %12s %9s %8s\n' "$rate" "${R_ACH[$a]}" "${R_ACH[$b]}" \
					"$(ratio "${R_ACH[$a]}" "${R_ACH[$b]}")" "$(ratio "${R_P50[$a]}" "${R_P50[$b]}")" \
					"$(ratio "${R_P99[$a]}" "${R_P99[$b]}")" "$(ratio "${R_CPU[$a]}" "${R_CPU[$b]}")" "${R_CMDS[$a]}" "${R_RT[$a]}"
			done
			echo "   achieved = stored (202) per second of the run; a run that took longer than --duration shows as a lower rate"
		done
		if [[ " ${svs[*]} " == *" rcsd "* && " ${svs[*]} " == *" kamailio "* ]]; then
			echo
			echo "== $cs: rcsd / Kamailio at each rate (both ran it)"
			printf '%6s %12s %8s %8s %8s %8s\n' rate cpu_per_msg p50 p99 rss pss
			for rate in "${rl[@]}"; do
				a="$cs:rcsd:$rate" b="$cs:kamailio:$rate"
				[[ -n ${R_OK[$a]+x} && -n ${R_OK[$b]+x} ]] || continue
				printf '%6s %12s %8s %8s %8s %8s\n' "$rate" "$(ratio "${R_CPU[$a]}" "${R_CPU[$b]}")" \
					"$(ratio "${R_P50[$a]}" "${R_P50[$b]}")" "$(ratio "${R_P99[$a]}" "${R_P99[$b]}")" \
					"$(ratio "${R_RSS[$a]}" "${R_RSS[$b]}")" "$(ratio "${R_PSS[$a]}" "${R_PSS[$b]}")"
			done
		fi
	done
	if ((${#DRAIN_ROWS[@]} > 0)); then
		echo
		echo "== drain: store N for an offline recipient (closed loop, $DRAIN_WINDOW in flight), then it registers"
		printf '%-9s %8s %8s %-12s %8s %8s %8s %9s %8s %9s %8s %10s %7s\n' \
			server count stored_ok fill_failed fill_s fill/s held delivered drain_s drain/s first_s cpu_us/msg rss_mb
		for row in "${DRAIN_ROWS[@]}"; do
			IFS=$'\t' read -r _ s n ok nf codes fs fr held del ds dr first cpu rss _ _ <<<"$row"
			printf '%-9s %8s %8s %-12s %8s %8s %8s %9s %8s %9s %8s %10s %7s\n' \
				"$s" "$n" "$ok" "$nf:$codes" "$fs" "$fr" "$held" "$del" "$ds" "$dr" "$first" "$cpu" "$rss"
		done
		echo "  held: what the server reports holding after the fill (rcsd: rcsd_messages_stored, NA if absent; Kamailio: rows in silo)"
		echo "  drain_s: from the recipient's REGISTER to its UAS taking the last message; first_s: to the first (1 s resolution)"
		echo "  delivered < stored_ok: the rest did not arrive within --drain-timeout; drain/s then counts only what did"
	fi
	if [[ -n $MONITOR_REPORT ]]; then
		echo
		echo "== Redis commands of one stored MESSAGE, in order (redis-cli MONITOR, $REDIS_MONITOR messages at 40/s to $STORE_RECIPIENTS offline recipients in turn, node 1 of $REDIS_NODES)"
		echo "   SENDER = the sender's public identity, RCPT = the recipient's; EVALSHA shows its SHA1 prefix, key count, keys"
		echo "$MONITOR_REPORT"
	fi
	echo
	echo "results: $TSV"
} | tee -a "$REPORT"
