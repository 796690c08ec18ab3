#!/usr/bin/env bash
# REGISTER + digest MD5 benchmark: rcsd against Kamailio 5.6, driven by SIPp.
# See bench/README.md for what is measured and the caveats.
#
#   bench/register.sh [--rcsd BIN] [--rates "2000 5000 10000 15000"] [--duration 8]
#
# Every run: the server pinned to one core (taskset -c 0; rcsd with
# GOMAXPROCS=1), one SIPp pinned to the other core (taskset -c 1) offering RATE
# registrations/s for DURATION s, each a 401 challenge + an authenticated
# REGISTER of a distinct AOR. The server is restarted for every run so every
# run starts from the same state. Rates are the outer loop and servers the
# inner one, so slow drift of a shared machine hits both servers alike.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCENARIO="$BENCH_DIR/sipp/register_bench.xml"
KAM_CFG="$BENCH_DIR/kamailio/kamailio-register.cfg"

RCSD_BIN=""
RATES="2000 5000 10000 15000"
DURATION=8
REPEAT=1
USERS=0                 # 0: one distinct subscriber per registration of the largest run
IMPI_FORM="full"        # full: user000001@rcs.local ; short: user000001
SERVERS="rcsd kamailio" # of these, those available are run
SERVER_CPU=0
CLIENT_CPU=1
RECV_TIMEOUT_MS=5000
KAM_SHM_MB=256
KAM_MEM="tlsf"
NICE=""               # default: -10 as root, else 0
RCSD_ARGS=""
RCSD_PROVISION=""
RCSD_STORAGE="file"     # file: provisioned store copied per run; memory: provisioned per run via the admin API
OUT_DIR="$BENCH_DIR/out"
KEEP=0

REALM="rcs.local"
PASSWORD="benchpass"

usage() {
	cat <<EOF
usage: bench/register.sh [options]
  --rcsd BIN            rcsd binary (built by the caller, e.g. ./bin/rcsd); rcsd is
                        skipped when not given or not executable
  --rates "R1 R2 ..."   offered registrations/s (default: "$RATES")
  --duration S          seconds per run (default: $DURATION)
  --repeat N            runs per (server, rate); the report keeps the one with the
                        least CPU per registration, the .tsv has them all (default: $REPEAT)
  --servers "A B"       subset of "rcsd kamailio" (default: both, when available)
  --users N             subscribers in the injection file (default: largest
                        rate x duration, so every registration is a new AOR;
                        fewer makes SIPp wrap around and re-register AORs)
  --impi full|short     digest username user000001@rcs.local (default) or user000001
  --rcsd-storage file|memory
                        file (default): 'serve --storage file:DIR', DIR provisioned
                        once with 'rcsd subscriber import' and copied for every run;
                        memory: 'serve --storage memory:', provisioned after every
                        start through its admin API ('subscriber import
                        --storage memory: --http.listen ...'), like Kamailio's
                        in-memory usrloc
  --rcsd-args "ARGS"    extra arguments for 'rcsd serve' (word-split)
  --rcsd-provision CMD  shell command that provisions the subscribers instead of
                        'rcsd subscriber import'; it gets RCSD_BIN, RCSD_STORAGE,
                        RCSD_HTTP (memory only), BENCH_SUBSCRIBERS_CSV,
                        BENCH_USERS_FILE, BENCH_USERS_N
  --recv-timeout MS     SIPp per-message receive timeout (default: $RECV_TIMEOUT_MS)
  --kamailio-shm MB     Kamailio shared memory (default: $KAM_SHM_MB)
  --kamailio-mem M      Kamailio memory manager for shm and pkg: tlsf, fm or qm
                        (default: $KAM_MEM; Debian's default qm costs ~2x the CPU)
  --server-cpu N / --client-cpu N   cores to pin to (default: 0 / 1)
  --nice N              niceness of the server and SIPp, so that other jobs on a shared
                        machine preempt them less (default: -10 as root, else 0)
  --out DIR             where the .tsv and .txt go (default: bench/out)
  --keep                keep the scratch directory (SIPp logs, server logs)
EOF
}

die() { echo "register.sh: $*" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

while (($# > 0)); do
	case "$1" in
	--rcsd) RCSD_BIN=${2:?}; shift 2 ;;
	--rates) RATES=${2:?}; shift 2 ;;
	--duration) DURATION=${2:?}; shift 2 ;;
	--repeat) REPEAT=${2:?}; shift 2 ;;
	--servers) SERVERS=${2:?}; shift 2 ;;
	--users) USERS=${2:?}; shift 2 ;;
	--impi) IMPI_FORM=${2:?}; shift 2 ;;
	--rcsd-args) RCSD_ARGS=${2-}; shift 2 ;;
	--rcsd-provision) RCSD_PROVISION=${2:?}; shift 2 ;;
	--rcsd-storage) RCSD_STORAGE=${2:?}; shift 2 ;;
	--recv-timeout) RECV_TIMEOUT_MS=${2:?}; shift 2 ;;
	--kamailio-shm) KAM_SHM_MB=${2:?}; shift 2 ;;
	--kamailio-mem) KAM_MEM=${2:?}; shift 2 ;;
	--server-cpu) SERVER_CPU=${2:?}; shift 2 ;;
	--client-cpu) CLIENT_CPU=${2:?}; shift 2 ;;
	--nice) NICE=${2:?}; shift 2 ;;
	--out) OUT_DIR=${2:?}; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

isint() { [[ $1 =~ ^[0-9]+$ ]]; }
isint "$DURATION" && ((DURATION > 0)) || die "--duration wants a positive integer"
isint "$REPEAT" && ((REPEAT > 0 && REPEAT <= 20)) || die "--repeat wants 1..20"
isint "$USERS" || die "--users wants an integer"
isint "$RECV_TIMEOUT_MS" || die "--recv-timeout wants an integer"
isint "$KAM_SHM_MB" || die "--kamailio-shm wants an integer"
isint "$SERVER_CPU" && isint "$CLIENT_CPU" || die "--server-cpu/--client-cpu want core numbers"
[[ $KAM_MEM == tlsf || $KAM_MEM == fm || $KAM_MEM == qm ]] || die "--kamailio-mem wants tlsf, fm or qm"
[[ $IMPI_FORM == full || $IMPI_FORM == short ]] || die "--impi wants full or short"
[[ $RCSD_STORAGE == file || $RCSD_STORAGE == memory ]] || die "--rcsd-storage wants file or memory"
[[ -n $NICE ]] || { if ((EUID == 0)); then NICE=-10; else NICE=0; fi; }
[[ $NICE =~ ^-?[0-9]+$ ]] && ((NICE >= -20 && NICE <= 19)) || die "--nice wants -20..19"
((NICE >= 0 || EUID == 0)) || die "--nice below 0 needs root"
read -r -a RATE_LIST <<<"$RATES"
((${#RATE_LIST[@]} > 0)) || die "--rates is empty"
MAX_RATE=0
for r in "${RATE_LIST[@]}"; do
	isint "$r" && ((r > 0)) || die "bad rate: $r"
	if ((r > MAX_RATE)); then MAX_RATE=$r; fi
done
((USERS > 0)) || USERS=$((MAX_RATE * DURATION))
((USERS <= 999999)) || die "at most 999999 users"

for tool in sipp taskset ss pgrep awk sort timeout getconf; do
	command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -r $SCENARIO ]] || die "missing $SCENARIO"

# Which servers run.
RUN_SERVERS=()
for s in $SERVERS; do
	case "$s" in
	rcsd)
		if [[ -n $RCSD_BIN && -f $RCSD_BIN && -x $RCSD_BIN ]]; then
			RCSD_BIN=$(cd "$(dirname "$RCSD_BIN")" && pwd)/$(basename "$RCSD_BIN")
			RUN_SERVERS+=(rcsd)
		elif [[ -n $RCSD_BIN ]]; then
			log "rcsd: $RCSD_BIN is not an executable file; skipping rcsd"
		fi
		;;
	kamailio)
		if command -v kamailio >/dev/null; then RUN_SERVERS+=(kamailio); else log "kamailio not installed; skipping it"; fi
		;;
	*) die "unknown server: $s" ;;
	esac
done
((${#RUN_SERVERS[@]} > 0)) || die "no server to benchmark"

# PRIO CMD...: run CMD in a session of its own at niceness NICE. With
# autogroup scheduling (kernel.sched_autogroup_enabled=1) niceness only ranks
# processes within one session's group, so the new session's group gets the
# niceness too (/proc/PID/autogroup). setsid does not fork here (a background
# job of a script is no process group leader), so $! stays the server's PID.
PRIO=(setsid bash -c '[[ $0 == 0 ]] || echo "$0" >/proc/$$/autogroup 2>/dev/null || true; exec nice -n "$0" "$@"' "$NICE")

CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT_DIR"
TSV="$OUT_DIR/register-$STAMP.tsv"
REPORT="$OUT_DIR/register-$STAMP.txt"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/register-bench.XXXXXX")

# ---------------------------------------------------------------- results
# One TSV row per run, written when the script ends (also on failure).
TSV_HEADER="server	rate	repeat	selected	duration_s	calls	ok	failed	fail_pct	sipp_failed	retrans	server_udp_drops	all_udp_drops	elapsed_s	achieved_per_s	p50_ms	p99_ms	max_ms	cpu_us_per_reg	server_cpu_pct	rss_mb	pss_mb	hwm_mb	nprocs	sipp_cpu_pct	other_cpu_pct	users	timestamp"
ROWS=()        # "server:rate:repeat<TAB>rest of the row"
declare -A SEL # "server:rate" -> selected repeat
declare -A R_OK R_FAIL R_FAILPCT R_ELAPSED R_P50 R_P99 R_CPU R_RSS R_PSS R_HWM R_SCPU R_SIPPCPU R_OTHER R_ACH
TSV_WRITTEN=0

write_tsv() {
	((TSV_WRITTEN == 0 && ${#ROWS[@]} > 0)) || return 0
	TSV_WRITTEN=1
	local row id rest server rate rep sel
	{
		echo "$TSV_HEADER"
		for row in "${ROWS[@]}"; do
			id=${row%%	*} rest=${row#*	}
			IFS=: read -r server rate rep <<<"$id"
			sel=0
			if [[ ${SEL[$server:$rate]-} == "$rep" ]]; then sel=1; fi
			printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$rate" "$rep" "$sel" "$rest"
		done
	} >"$TSV"
}

# ---------------------------------------------------------------- cleanup
SERVER_PID=""
SERVER_PIDS=()
SERVER_COMM=""
SIPP_PID=""

stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	local p i
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	# whatever of ours is still there (a Kamailio child left behind, a hung
	# rcsd), checked by name so that a recycled PID is left alone
	for p in "$SERVER_PID" "${SERVER_PIDS[@]}"; do
		if [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$SERVER_COMM" ]]; then
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
	SERVER_PIDS=()
}

cleanup() {
	local rc=$?
	if [[ -n $SIPP_PID ]]; then
		kill -TERM "$SIPP_PID" 2>/dev/null || true
		wait "$SIPP_PID" 2>/dev/null || true
		SIPP_PID=""
	fi
	stop_server
	write_tsv
	if ((KEEP)); then log "scratch directory kept: $WORK"; else rm -rf "$WORK"; fi
	return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers

# pick_port u|t: a free UDP/TCP port in 20000-39999 (bounded number of tries).
pick_port() {
	local proto=$1 p i
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % 20000))
		if [[ -z $(ss -Hln"$proto" "sport = :$p" 2>/dev/null) ]]; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# tree_pids PID: PID and all its descendants.
tree_pids() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" || true); do tree_pids "$c"; done
}

# cpu_ticks PID...: utime+stime (clock ticks, all threads) summed over the PIDs.
cpu_ticks() {
	local p files=()
	for p in "$@"; do if [[ -r /proc/$p/stat ]]; then files+=("/proc/$p/stat"); fi; done
	((${#files[@]} > 0)) || { echo 0; return; }
	# the fields after "pid (comm) ": $12 utime, $13 stime
	awk '{ sub(/^.*\) /, ""); s += $12 + $13 } END { print s + 0 }' "${files[@]}" 2>/dev/null || echo 0
}

# busy_ticks: busy clock ticks (all but idle and iowait) of the two cores used.
busy_ticks() {
	awk -v a="cpu$SERVER_CPU" -v b="cpu$CLIENT_CPU" '$1 == a || $1 == b {
		for (i = 2; i <= NF; i++) if (i != 5 && i != 6) s += $i
	} END { print s + 0 }' /proc/stat
}

# udp_drops: datagrams the kernel dropped for want of receive buffer space
# (all UDP sockets of this network namespace, from /proc/net/snmp).
udp_drops() {
	awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] + 0 }' /proc/net/snmp
}

# sock_drops PORT: datagrams dropped by the UDP socket bound to PORT (ss skmem d…).
sock_drops() {
	ss -Huamn "sport = :$1" 2>/dev/null | grep -o 'skmem:([^)]*)' | grep -o ',d[0-9]*' | tr -d ',d' |
		awk '{ s += $1 } END { print s + 0 }'
}

# mem_kb PID...: "rss_kb pss_kb hwm_kb" summed over the PIDs.
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

# children_cpu_ms: sets CHILD_MS to the user+sys CPU (ms) of this shell's
# reaped children, from the `times` builtin. It must run in this shell, not in
# a $(...) subshell, whose counters would be its own.
CHILD_MS=0
children_cpu_ms() {
	times >"$WORK/times.out"
	CHILD_MS=$(awk 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
		printf "%d\n", t * 1000 }' "$WORK/times.out")
}

# wait_ready PORT: the server's UDP port is bound and (preferably) it answers SIP OPTIONS.
wait_ready() {
	local port=$1 i rc
	for ((i = 0; i < 150; i++)); do
		kill -0 "$SERVER_PID" 2>/dev/null || return 1
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
		# 0: 200 received; 1: another final response; either means it answers
		((rc <= 1)) && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || return 1
		sleep 0.3
	done
	log "WARNING: udp 127.0.0.1:$port is bound but does not answer OPTIONS; running anyway"
	return 0
}

# ---------------------------------------------------------------- workload

# SIPp injection file, one line per subscriber: user;impi;password
# (see sipp/register_bench.xml), and the same subscribers as an rcsd import
# file (header impu,impi,password,k,op,opc,amf).
USERS_FILE="$WORK/users.csv"
SUBS_CSV="$WORK/subscribers.csv"
awk -v n="$USERS" -v realm="$REALM" -v pw="$PASSWORD" -v form="$IMPI_FORM" \
	-v subs="$SUBS_CSV" 'BEGIN {
	print "SEQUENTIAL"
	print "impu,impi,password,k,op,opc,amf" > subs
	for (i = 1; i <= n; i++) {
		u = sprintf("user%06d", i)
		impi = (form == "full") ? u "@" realm : u
		printf "%s;%s;%s\n", u, impi, pw
		printf "sip:%s@%s,%s,%s,,,,\n", u, realm, impi, pw > subs
	}
}' >"$USERS_FILE"

# provision_rcsd STORAGE LOGDIR [HTTP]: loads the subscribers into rcsd:
# straight into a file store that no server holds, or through the admin API
# (HTTP) of the server running on memory:.
provision_rcsd() {
	local storage=$1 logdir=$2 http=${3-} t0=$SECONDS
	local -a target=(--storage "$storage")
	[[ -z $http ]] || target+=(--http.listen "$http")
	mkdir -p "$logdir"
	if [[ -n $RCSD_PROVISION ]]; then
		RCSD_BIN="$RCSD_BIN" RCSD_STORAGE="$storage" RCSD_HTTP="$http" BENCH_SUBSCRIBERS_CSV="$SUBS_CSV" \
			BENCH_USERS_FILE="$USERS_FILE" BENCH_USERS_N="$USERS" \
			bash -c "$RCSD_PROVISION" </dev/null >"$logdir/provision.log" 2>&1 ||
			{ tail -20 "$logdir/provision.log" >&2; die "the rcsd provisioning command failed"; }
	else
		(cd "$logdir" && exec "$RCSD_BIN" subscriber import "$SUBS_CSV" "${target[@]}" \
			--domain "$REALM" --log.level warn) </dev/null >"$logdir/provision.log" 2>&1 ||
			{ tail -20 "$logdir/provision.log" >&2; die "rcsd subscriber import failed (see --rcsd-provision)"; }
	fi
	log "rcsd: $USERS subscribers provisioned into $storage${http:+ via http://$http} in $((SECONDS - t0)) s"
}

# A file store is provisioned once, before any server runs, into SEED, and
# copied afresh for every run.
SEED="$WORK/rcsd-seed"
RCSD_HTTP=""

start_server() { # NAME RUNDIR PORT
	local name=$1 dir=$2 port=$3 hport
	case "$name" in
	kamailio)
		"${PRIO[@]}" taskset -c "$SERVER_CPU" kamailio -DD -E -x "$KAM_MEM" -X "$KAM_MEM" -m "$KAM_SHM_MB" \
			-w "$dir" -f "$KAM_CFG" -A "PORT=$port" -A "BENCH_PASS=\"$PASSWORD\"" \
			</dev/null >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		SERVER_COMM=kamailio
		;;
	rcsd)
		local storage="memory:"
		if [[ $RCSD_STORAGE == file ]]; then
			rm -rf "$dir/data"
			cp -a "$SEED/data" "$dir/data"
			storage="file:$dir/data"
		fi
		hport=$(pick_port t)
		RCSD_HTTP="127.0.0.1:$hport"
		# shellcheck disable=SC2086 # RCSD_ARGS is word-split on purpose
		(cd "$dir" && exec env GOMAXPROCS=1 "${PRIO[@]}" taskset -c "$SERVER_CPU" "$RCSD_BIN" serve \
			--storage "$storage" --sip.listen "udp://127.0.0.1:$port" \
			--http.listen "127.0.0.1:$hport" --log.level warn --domain "$REALM" \
			--auth.digest_algorithms MD5 $RCSD_ARGS) </dev/null >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		SERVER_COMM=$(basename "$RCSD_BIN" | cut -c1-15)
		;;
	esac
}

# pct RTTFILE RTD P: the P quantile (1 = max) of one rtd's response times (ms).
pct() {
	[[ -n $1 && -r $1 ]] || { echo NA; return; }
	awk -F';' -v r="$2" 'NR > 1 && $3 == r { print $2 }' "$1" | sort -g |
		awk -v p="$3" '{ v[NR] = $1 } END {
			if (NR == 0) { print "NA"; exit }
			k = (p >= 1) ? NR : int(NR * p + 0.999999); if (k < 1) k = 1
			printf "%.1f\n", v[k] }'
}

# ---------------------------------------------------------------- one run
run_one() { # SERVER RATE REPEAT
	local server=$1 rate=$2 rep=$3
	local dir="$WORK/$server-$rate-$rep" port sport calls rc p
	mkdir -p "$dir"
	cp "$SCENARIO" "$dir/register_bench.xml"
	port=$(pick_port u)
	sport=$(pick_port u)
	((sport != port)) || sport=$((port + 1))
	calls=$((rate * DURATION))

	start_server "$server" "$dir" "$port"
	if ! wait_ready "$port"; then
		tail -20 "$dir/server.log" >&2 || true
		stop_server
		die "$server did not come up on udp 127.0.0.1:$port"
	fi
	if [[ $server == rcsd && $RCSD_STORAGE == memory ]]; then
		provision_rcsd memory: "$dir" "$RCSD_HTTP"
	fi
	mapfile -t SERVER_PIDS < <(tree_pids "$SERVER_PID")
	[[ $(cat "/proc/$SERVER_PID/comm" 2>/dev/null) == "$SERVER_COMM" ]] ||
		die "$server: PID $SERVER_PID is not $SERVER_COMM"

	local t0 t1 c0 c1 b0 b1 d0 d1
	t0=$(cpu_ticks "${SERVER_PIDS[@]}")
	b0=$(busy_ticks)
	d0=$(udp_drops)
	children_cpu_ms; c0=$CHILD_MS
	(cd "$dir" && exec timeout $((DURATION * 4 + 40)) "${PRIO[@]}" taskset -c "$CLIENT_CPU" \
		sipp "127.0.0.1:$port" -sf register_bench.xml -inf "$USERS_FILE" \
		-i 127.0.0.1 -p "$sport" -buff_size 4194304 -r "$rate" -rp 1000 -m "$calls" \
		-timeout "$((DURATION * 4 + 20))s" -recv_timeout "$RECV_TIMEOUT_MS" -nd \
		-trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1000 \
		-trace_err -error_file errors.log) </dev/null >"$dir/sipp.out" 2>"$dir/sipp.err" &
	SIPP_PID=$!
	rc=0
	wait "$SIPP_PID" || rc=$?
	SIPP_PID=""
	children_cpu_ms; c1=$CHILD_MS
	b1=$(busy_ticks)
	d1=$(udp_drops)
	# the server's processes again, in case it forked during the run
	mapfile -t SERVER_PIDS < <({ printf '%s\n' "${SERVER_PIDS[@]}"; tree_pids "$SERVER_PID"; } | sort -un)
	t1=$(cpu_ticks "${SERVER_PIDS[@]}")
	local mem nprocs=0 sdrops
	mem=$(mem_kb "${SERVER_PIDS[@]}")
	sdrops=$(sock_drops "$port")
	for p in "${SERVER_PIDS[@]}"; do if [[ -d /proc/$p ]]; then nprocs=$((nprocs + 1)); fi; done
	kill -0 "$SERVER_PID" 2>/dev/null || log "$server: WARNING: the server died during the run (see $dir/server.log)"
	stop_server

	# 0: every call succeeded, 1: some failed; anything else: SIPp itself failed
	if ((rc != 0 && rc != 1)) || [[ ! -s $dir/stat.csv ]]; then
		log "$server @ $rate/s: sipp exited $rc"
		tail -5 "$dir/sipp.err" >&2 || true
	fi

	# SIPp's counters: the last line of stat.csv. Its ElapsedTime(C) has whole
	# seconds only, so the elapsed time is CurrentTime - StartTime, both
	# "date<TAB>time<TAB>epoch.micros".
	local stats ok sfail retr elapsed
	stats=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ last = $0 }
		END {
			if (last == "") { print "0 0 0 0"; exit }
			split(last, f, ";")
			split(f[col["StartTime"]], s, "\t"); split(f[col["CurrentTime"]], c, "\t")
			printf "%d %d %d %.3f\n", f[col["SuccessfulCall(C)"]], f[col["FailedCall(C)"]],
				f[col["Retransmissions(C)"]], c[3] - s[3]
		}' "$dir/stat.csv" 2>/dev/null || echo "0 0 0 0")
	read -r ok sfail retr elapsed <<<"$stats"

	# Response times (ms) of the whole registration (rtd 1) from the -trace_rtt file.
	local rtt p50 p99 pmax
	rtt=$(find "$dir" -maxdepth 1 -name 'register_bench_*_rtt.csv' | head -1)
	p50=$(pct "$rtt" 1 0.50); p99=$(pct "$rtt" 1 0.99); pmax=$(pct "$rtt" 1 1)

	local failed fail_pct cpu_us scpu rss pss hwm sippcpu other ach
	failed=$((calls - ok))
	read -r rss pss hwm <<<"$mem"
	fail_pct=$(awk -v f="$failed" -v n="$calls" 'BEGIN { printf "%.3f", 100 * f / n }')
	cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "NA" }')
	scpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v e="$elapsed" 'BEGIN { if (e > 0) printf "%.0f", 100 * t / hz / e; else print "NA" }')
	sippcpu=$(awk -v c=$((c1 - c0)) -v e="$elapsed" 'BEGIN { if (e > 0) printf "%.0f", c / 10 / e; else print "NA" }')
	# everything else that kept the two cores busy: other processes, softirq
	other=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v e="$elapsed" \
		'BEGIN { if (e > 0) { o = (b - t) / hz - c / 1000; if (o < 0) o = 0; printf "%.0f", 100 * o / e } else print "NA" }')
	ach=$(awk -v n="$ok" -v e="$elapsed" 'BEGIN { if (e > 0) printf "%.0f", n / e; else print "NA" }')
	rss=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
	pss=$(awk -v k="$pss" 'BEGIN { printf "%.1f", k / 1024 }')
	hwm=$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')

	ROWS+=("$server:$rate:$rep	$DURATION	$calls	$ok	$failed	$fail_pct	$sfail	$retr	$sdrops	$((d1 - d0))	$elapsed	$ach	$p50	$p99	$pmax	$cpu_us	$scpu	$rss	$pss	$hwm	$nprocs	$sippcpu	$other	$USERS	$(date -Is)")

	# Keep the repeat with the least CPU per registration: on a shared machine
	# interference only ever adds CPU time (cache and core contention).
	local key="$server:$rate" take=0
	if [[ -z ${SEL[$key]-} ]]; then
		take=1
	elif [[ $cpu_us != NA ]] && awk -v a="$cpu_us" -v b="${R_CPU[$key]}" 'BEGIN { exit !(b == "NA" || a < b) }'; then
		take=1
	fi
	if ((take)); then
		SEL[$key]=$rep
		R_OK[$key]=$ok R_FAIL[$key]=$failed R_FAILPCT[$key]=$fail_pct R_ELAPSED[$key]=$elapsed
		R_P50[$key]=$p50 R_P99[$key]=$p99 R_CPU[$key]=$cpu_us R_RSS[$key]=$rss R_PSS[$key]=$pss
		R_HWM[$key]=$hwm R_SCPU[$key]=$scpu R_SIPPCPU[$key]=$sippcpu R_OTHER[$key]=$other R_ACH[$key]=$ach
	fi
	log "$server @ $rate/s #$rep: ok $ok/$calls in ${elapsed} s, $retr retransmissions, UDP drops $sdrops by the server/$((d1 - d0)) in all, ${cpu_us} us CPU/reg (server ${scpu}%, sipp ${sippcpu}%, other ${other}%), p50/p99 ${p50}/${p99} ms, RSS ${rss} MB"
}

# ---------------------------------------------------------------- main
{
	echo "REGISTER benchmark $(date -Is) on $(hostname), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "offered rates: $RATES /s, ${DURATION} s per run, $REPEAT run(s) each; server on CPU $SERVER_CPU, SIPp on CPU $CLIENT_CPU, niceness $NICE"
	echo "$USERS subscribers, password shared, digest username $([[ $IMPI_FORM == full ]] && echo "userNNNNNN@$REALM" || echo userNNNNNN)"
	echo "sipp: $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1)"
	for s in "${RUN_SERVERS[@]}"; do
		case "$s" in
		kamailio) echo "kamailio: $(kamailio -v 2>/dev/null | head -1 | sed 's/^version: //;s/ *$//'), memory manager $KAM_MEM, $KAM_CFG" ;;
		rcsd) echo "rcsd: $RCSD_BIN ($("$RCSD_BIN" version 2>/dev/null | head -1 || echo 'version unknown')), storage $RCSD_STORAGE${RCSD_ARGS:+, extra args: $RCSD_ARGS}" ;;
		esac
	done
} | tee "$REPORT" >&2

for s in "${RUN_SERVERS[@]}"; do
	if [[ $s == rcsd && $RCSD_STORAGE == file ]]; then
		provision_rcsd "file:$SEED/data" "$SEED"
		[[ -e $SEED/data ]] || die "rcsd provisioning left no store at $SEED/data"
	fi
done

for rate in "${RATE_LIST[@]}"; do
	for ((rep = 1; rep <= REPEAT; rep++)); do
		for s in "${RUN_SERVERS[@]}"; do
			run_one "$s" "$rate" "$rep"
		done
	done
done
write_tsv

# ---------------------------------------------------------------- report
{
	echo
	for s in "${RUN_SERVERS[@]}"; do
		echo "== $s: ${DURATION} s per run$( ((REPEAT > 1)) && echo ", least CPU/reg of $REPEAT runs"); CPU = utime+stime of all its processes / successful registrations"
		printf '%7s %8s %7s %7s %8s %8s %7s %7s %10s %8s %7s %7s %7s %6s %6s\n' \
			rate ok failed fail% elapsed_s achieved p50_ms p99_ms cpu_us/reg srv_cpu rss_mb pss_mb hwm_mb sipp other
		for rate in "${RATE_LIST[@]}"; do
			k="$s:$rate"
			printf '%7s %8s %7s %7s %8s %8s %7s %7s %10s %7s%% %7s %7s %7s %5s%% %5s%%\n' \
				"$rate" "${R_OK[$k]}" "${R_FAIL[$k]}" "${R_FAILPCT[$k]}" "${R_ELAPSED[$k]}" "${R_ACH[$k]}" \
				"${R_P50[$k]}" "${R_P99[$k]}" "${R_CPU[$k]}" "${R_SCPU[$k]}" "${R_RSS[$k]}" "${R_PSS[$k]}" \
				"${R_HWM[$k]}" "${R_SIPPCPU[$k]}" "${R_OTHER[$k]}"
		done
		echo
	done

	echo "== highest offered rate with < 0.1% failed registrations"
	for s in "${RUN_SERVERS[@]}"; do
		best="none" best_ontime="none"
		for rate in "${RATE_LIST[@]}"; do
			k="$s:$rate"
			awk -v f="${R_FAILPCT[$k]}" 'BEGIN { exit !(f < 0.1) }' || continue
			if [[ $best == none ]] || ((rate > best)); then best=$rate; fi
			# on time: finished within 10% (+0.5 s) of the nominal duration
			awk -v e="${R_ELAPSED[$k]}" -v d="$DURATION" 'BEGIN { exit !(e <= d * 1.1 + 0.5) }' || continue
			if [[ $best_ontime == none ]] || ((rate > best_ontime)); then best_ontime=$rate; fi
		done
		printf '  %-9s %s/s  (also finishing on time, within 10%% of %s s: %s/s)\n' "$s" "$best" "$DURATION" "$best_ontime"
	done

	if [[ -n ${R_OK[rcsd:${RATE_LIST[0]}]+x} && -n ${R_OK[kamailio:${RATE_LIST[0]}]+x} ]]; then
		echo
		echo "== rcsd / Kamailio at each rate"
		printf '%7s %11s %8s %8s\n' rate cpu_per_reg rss pss
		for rate in "${RATE_LIST[@]}"; do
			a="rcsd:$rate" b="kamailio:$rate"
			printf '%7s %11s %8s %8s\n' "$rate" \
				"$(awk -v x="${R_CPU[$a]}" -v y="${R_CPU[$b]}" 'BEGIN { if (x + 0 > 0 && y + 0 > 0) printf "%.2fx", x / y; else print "NA" }')" \
				"$(awk -v x="${R_RSS[$a]}" -v y="${R_RSS[$b]}" 'BEGIN { if (y + 0 > 0) printf "%.2fx", x / y; else print "NA" }')" \
				"$(awk -v x="${R_PSS[$a]}" -v y="${R_PSS[$b]}" 'BEGIN { if (y + 0 > 0) printf "%.2fx", x / y; else print "NA" }')"
		done
	fi
	echo
	echo "results: $TSV"
} | tee -a "$REPORT"
