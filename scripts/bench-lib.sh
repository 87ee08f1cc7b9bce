# bench-lib.sh — shared parts of the measurement scripts (bench.sh, bench-cpu.sh, bench-memory.sh,
# bench-restart.sh, bench-failover.sh, bench-stall.sh). Sourced, not run. It builds or finds the
# binaries (etcd, etcdctl and the benchmark tool in ~/.cache/kvorum-bench/bin), starts and
# restarts members on free loopback ports, reads a process's memory, and kills every process it
# started when the script exits, fails or is interrupted.
#
# The sourcing script sets SCRIPT (its name, for messages) before sourcing, and may set
# BENCH_OUTDIR_PREFIX (default kvorum-bench). Every server started through start_cluster or
# start_member is recorded in RUNNING; any other background process goes into BG_PIDS.

ETCD_VERSION=${ETCD_VERSION:-v3.7.3} BENCH_VERSION=${BENCH_VERSION:-v3.6.8}
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvorum-bench/bin}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-60} BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
OUTDIR=${OUTDIR:-${TMPDIR:-/tmp}/${BENCH_OUTDIR_PREFIX:-kvorum-bench}-$(date -u +%Y%m%d-%H%M%S)}

die() { echo "$SCRIPT: $*" >&2; exit 1; }
log() { echo "$*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b - a}'; } # seconds since a now() value

# cmdline VAR... -> "VAR=value ... scripts/NAME" for the variables the caller set
cmdline() {
  local v c="scripts/$SCRIPT"
  for v in "$@"; do [[ -n "${!v+x}" ]] && c="$v=$(printf %q "${!v}") $c"; done
  echo "$c"
}

# ---------------------------------------------------------------- cleanup ----
RUNNING=() BG_PIDS=() CUR_BG="" CLEANED=0

alive() { # running and not a zombie
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
  local st; st=$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}
ours() { # pid dir: still our process (guards against PID reuse)
  alive "$1" && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$2/"
}
kill_servers() { # [dir]: kill (KILL) our servers, all or those of one cluster dir
  local e pid dir keep=()
  for e in "${RUNNING[@]}"; do
    pid=${e%% *} dir=${e#* }
    if [[ -n "${1:-}" && "$dir" != "$1" ]]; then keep+=("$e"); continue; fi
    ours "$pid" "$dir" && kill -KILL "$pid" 2>/dev/null
    wait_gone "$pid"
  done
  RUNNING=("${keep[@]}")
}
# Servers are disowned when started, so that bash does not print a "Killed" line each time a script
# (or tools/failover) kills one; wait_gone waits for such a process to be gone instead of `wait`.
# A killed process counts as gone only when every one of its threads has exited: the main thread turns
# zombie first, while the others may still hold its files (a restart then finds the data dir locked).
gone() {
  [[ -d /proc/$1 ]] || return 0
  local t st
  for t in /proc/"$1"/task/*; do
    st=$(awk '/^State:/{print $2}' "$t/status" 2>/dev/null)
    [[ -z "$st" || "$st" == Z || "$st" == X ]] || return 1
  done
  return 0
}
wait_gone() { local i; for (( i = 0; i < 600; i++ )); do gone "$1" && return 0; sleep 0.05; done; log "  process $1 still exiting after 30s"; return 1; }
forget_server() { # pid: drop one server from RUNNING (after we killed it ourselves)
  local e keep=()
  for e in "${RUNNING[@]}"; do [[ "${e%% *}" == "$1" ]] || keep+=("$e"); done
  RUNNING=("${keep[@]}")
}
stop_bg() { # pid: TERM, then KILL, a background helper we started
  alive "$1" || { wait "$1" 2>/dev/null; return 0; }
  kill -TERM "$1" 2>/dev/null
  local i; for (( i = 0; i < 20; i++ )); do alive "$1" || break; sleep 0.1; done
  alive "$1" && kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
cleanup() {
  (( CLEANED )) && return; CLEANED=1
  [[ -n "$CUR_BG" ]] && stop_bg "$CUR_BG"
  local p; for p in "${BG_PIDS[@]}"; do stop_bg "$p"; done
  kill_servers
}
on_signal() { log ""; log "$SCRIPT: interrupted ($1), stopping everything we started"; cleanup; trap - EXIT; exit "$2"; }
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

bg_wait() { # OUTFILE CMD...: run CMD in the background with output to OUTFILE and wait for it
  local out=$1; shift  # (waiting in the builtin `wait` lets the traps run at once on Ctrl-C)
  "$@" </dev/null >"$out" 2>&1 & CUR_BG=$!
  wait "$CUR_BG"; local rc=$?
  CUR_BG=""; return $rc
}

# ----------------------------------------------------------------- build -----
build_anchors() { # etcd + etcdctl (ETCD_VERSION) and the benchmark tool (BENCH_VERSION) into CACHE_DIR, once
  mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
  CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
  local need=0 f w
  for f in etcd etcdctl; do [[ -n "${!f+x}" ]] || [[ -x "$CACHE_DIR/$f" && -f "$CACHE_DIR/$f.$ETCD_VERSION" ]] || need=1; done
  if (( need )); then
    log "building etcd $ETCD_VERSION and etcdctl from the Go module proxy into $CACHE_DIR (a few minutes the first time) ..."
    w=$(mktemp -d "${TMPDIR:-/tmp}/kvorum-bench-build.XXXXXX")
    if ! ( cd "$w" && printf 'module kvorumbench\n\ngo 1.24\n' >go.mod &&
           GOWORK=off GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" &&
           GOWORK=off GOFLAGS=-mod=mod go build -o "$CACHE_DIR/etcd.tmp" go.etcd.io/etcd/server/v3 &&
           GOWORK=off GOFLAGS=-mod=mod go build -o "$CACHE_DIR/etcdctl.tmp" go.etcd.io/etcd/etcdctl/v3 ) >"$OUTDIR/build-etcd.log" 2>&1; then
      tail -30 "$OUTDIR/build-etcd.log" >&2; rm -rf "$w"; die "building etcd failed (log: $OUTDIR/build-etcd.log)"
    fi
    rm -rf "$w"
    mv "$CACHE_DIR/etcd.tmp" "$CACHE_DIR/etcd" && mv "$CACHE_DIR/etcdctl.tmp" "$CACHE_DIR/etcdctl" &&
      touch "$CACHE_DIR/etcd.$ETCD_VERSION" "$CACHE_DIR/etcdctl.$ETCD_VERSION"
  fi
  if [[ -z "${BENCHMARK+x}" ]] && ! [[ -x "$CACHE_DIR/benchmark" && -f "$CACHE_DIR/benchmark.$BENCH_VERSION" ]]; then
    log "building the benchmark tool (go.etcd.io/etcd/v3@$BENCH_VERSION tools/benchmark) into $CACHE_DIR ..."
    w=$(mktemp -d "${TMPDIR:-/tmp}/kvorum-bench-build.XXXXXX")
    if ! ( cd "$w" && printf 'module kvorumbench\n\ngo 1.24\n' >go.mod &&
           GOWORK=off GOFLAGS=-mod=mod go get "go.etcd.io/etcd/v3@$BENCH_VERSION" &&
           GOWORK=off GOFLAGS=-mod=mod go build -o "$CACHE_DIR/benchmark.tmp" go.etcd.io/etcd/v3/tools/benchmark ) >"$OUTDIR/build-benchmark.log" 2>&1; then
      tail -30 "$OUTDIR/build-benchmark.log" >&2; rm -rf "$w"; die "building the benchmark tool failed (log: $OUTDIR/build-benchmark.log)"
    fi
    rm -rf "$w"
    mv "$CACHE_DIR/benchmark.tmp" "$CACHE_DIR/benchmark" && touch "$CACHE_DIR/benchmark.$BENCH_VERSION"
  fi
}

# build_all [TOOL...]: anchors, Kvorum from this checkout (unless KVORUM is set), and the named
# tools/<TOOL> programs into OUTDIR/bin; sets ETCD ETCDCTL BENCHMARK KVORUM (absolute paths)
build_all() {
  command -v go >/dev/null || die "needs Go in PATH"
  command -v timeout >/dev/null || die "needs coreutils 'timeout'"
  mkdir -p "$OUTDIR/bin" || die "cannot create $OUTDIR"
  OUTDIR=$(cd "$OUTDIR" && pwd)
  build_anchors
  ETCD=${ETCD:-$CACHE_DIR/etcd} ETCDCTL=${ETCDCTL:-$CACHE_DIR/etcdctl} BENCHMARK=${BENCHMARK:-$CACHE_DIR/benchmark}
  if [[ -z "${KVORUM:-}" ]]; then
    log "building kvorum from $REPO ..."
    ( cd "$REPO" && go build -o "$OUTDIR/bin/kvorum" ./cmd/kvorum ) || die "go build ./cmd/kvorum failed"
    KVORUM=$OUTDIR/bin/kvorum
  fi
  local t
  for t in "$@"; do
    ( cd "$REPO" && go build -o "$OUTDIR/bin/$t" "./tools/$t" ) || die "go build ./tools/$t failed"
  done
  local b
  for b in KVORUM ETCD ETCDCTL BENCHMARK; do
    [[ -x "${!b}" ]] || die "$b=${!b} is not executable"
    printf -v "$b" '%s' "$(cd "$(dirname "${!b}")" && pwd)/$(basename "${!b}")"
  done
}

# write_meta FILE "command" "extra lines": the header every summary starts with
write_meta() {
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC') (script start)"
    echo "command: $2"
    echo "machine: $(nproc) cores ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
    echo "data dirs: $OUTDIR/clusters on $(df -PT "$OUTDIR" | awk 'NR==2{print $2" ("$1")"}')"
    echo "kvorum: $KVORUM ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n "$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null | head -1)" ]] && echo ', uncommitted changes'))"
    echo "etcd: $ETCD ($("$ETCD" --version 2>/dev/null | awk -F': ' '/etcd Version/{print $2}'))  benchmark: $BENCHMARK ($BENCH_VERSION)  $(go version | awk '{print $3}')"
    [[ -n "${3:-}" ]] && echo "$3"
    echo "load average at start: $(loadavg)"
  } >"$1"
}

# server_bin SERVER -> path and flags of kvorum|etcd|base (KVORUM_BASE, another Kvorum build), into
# SRV_BIN and SRV_FLAGS
server_bin() {
  if [[ $1 == kvorum ]]; then SRV_BIN=$KVORUM SRV_FLAGS="${EXTRA_FLAGS:-} ${KVORUM_FLAGS:-}"
  elif [[ $1 == base ]]; then SRV_BIN=$KVORUM_BASE SRV_FLAGS="${EXTRA_FLAGS:-} ${KVORUM_FLAGS:-}"
  else SRV_BIN=$ETCD SRV_FLAGS="${EXTRA_FLAGS:-} ${ETCD_FLAGS:-}"; fi
}

# --------------------------------------------------------------- clusters ----
port_in_use() { # port -> 0 if something uses it
  if command -v ss >/dev/null; then
    ss -Htan "( sport = :$1 )" 2>/dev/null | grep -q . && return 0
    return 1
  fi
  local hex; hex=$(printf ':%04X ' "$1")
  grep -qF "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
pick_base() { # N: free block of 2*N ports in 10000-19999 (below the ephemeral range)
  local tries base p ok
  for (( tries = 0; tries < 200; tries++ )); do
    base=$(( 10000 + (RANDOM * 32768 + RANDOM) % 4900 * 2 )) ok=1
    for (( p = base; p < base + 2 * $1; p++ )); do port_in_use "$p" && { ok=0; break; }; done
    (( ok )) && { echo "$base"; return 0; }
  done
  return 1
}

# A cluster lives in DIR: DIR/cluster.env (how to start a member again), DIR/pids ("name pid endpoint"
# per member, the latest start last), DIR/mN.data and DIR/mN.log.

# start_member DIR NAME: (re)start one member of the cluster in DIR with the flags it was created
# with (in the background; the log is appended to)
start_member() {
  local dir=$1 name=$2 C_BIN C_FLAGS C_INITIAL C_TOKEN C_BASE i
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  i=${name#m}
  local cport=$((C_BASE + 2 * (i - 1))) pport=$((C_BASE + 2 * (i - 1) + 1))
  local -a extra=(); [[ -n "$C_FLAGS" ]] && read -r -a extra <<<"$C_FLAGS"
  "$C_BIN" --name "$name" --data-dir "$dir/$name.data" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$C_INITIAL" --initial-cluster-state new --initial-cluster-token "$C_TOKEN" \
    "${extra[@]}" >>"$dir/$name.log" 2>&1 </dev/null &
  RUNNING+=("$! $dir")
  disown "$!"
  echo "$name $! http://127.0.0.1:$cport" >>"$dir/pids"
}
member_pid() { awk -v n="$2" '$1 == n {p = $2} END {print p}' "$1/pids"; }   # DIR NAME
member_ep() { awk -v n="$2" '$1 == n {p = $3} END {print p}' "$1/pids"; }    # DIR NAME
member_names() { awk '{print $1}' "$1/pids" | sort -u; }                     # DIR

healthy() { "$ETCDCTL" --endpoints="$1" --dial-timeout=1s --command-timeout=2s endpoint health </dev/null >/dev/null 2>&1; }

# wait_healthy DIR [NAME...]: until the members (all by default) answer `endpoint health`; 1 on
# timeout or if one exits
wait_healthy() {
  local dir=$1; shift
  local -a names=("$@"); (( ${#names[@]} )) || mapfile -t names < <(member_names "$dir")
  local t0 n ok pid; t0=$(now)
  while :; do
    ok=0
    for n in "${names[@]}"; do
      pid=$(member_pid "$dir" "$n")
      if ! alive "$pid"; then log "  member $n ($dir) exited; log tail:"; tail -15 "$dir/$n.log" >&2; return 1; fi
      healthy "$(member_ep "$dir" "$n")" && ok=$((ok + 1))
    done
    (( ok == ${#names[@]} )) && return 0
    awk -v a="$t0" -v b="$(now)" -v t="$HEALTH_TIMEOUT" 'BEGIN{exit !(b - a >= t)}' &&
      { log "  only $ok/${#names[@]} members healthy after ${HEALTH_TIMEOUT}s (logs in $dir)"; return 1; }
    sleep 0.2
  done
}

# start_cluster SERVER DIR N -> a fresh N-member cluster of kvorum|etcd; sets EPS (client endpoints,
# comma separated) and START_S (seconds to all healthy); 1 on failure (after 3 tries on new ports)
start_cluster() {
  local srv=$1 dir=$2 n=$3 try base i initial eps
  server_bin "$srv"
  for try in 1 2 3; do
    kill_servers "$dir"
    rm -rf "${dir:?}"/m*.data "$dir/pids"; mkdir -p "$dir"
    base=$(pick_base "$n") || { log "  no free port block"; continue; }
    initial="" eps=""
    for (( i = 1; i <= n; i++ )); do
      initial+="${initial:+,}m$i=http://127.0.0.1:$((base + 2 * (i - 1) + 1))"
      eps+="${eps:+,}http://127.0.0.1:$((base + 2 * (i - 1)))"
    done
    printf 'C_BIN=%q\nC_FLAGS=%q\nC_INITIAL=%q\nC_TOKEN=%q\nC_BASE=%q\n' "$SRV_BIN" "$SRV_FLAGS" "$initial" "bench-$RANDOM$RANDOM" "$base" >"$dir/cluster.env"
    : >"$dir/pids"
    local t0; t0=$(now)
    for (( i = 1; i <= n; i++ )); do start_member "$dir" "m$i"; done
    if wait_healthy "$dir"; then
      EPS=$eps START_S=$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}')
      return 0
    fi
    log "  cluster start attempt $try failed for $srv ($dir)"
  done
  kill_servers "$dir"
  return 1
}

# leader_of DIR -> name of the member that is leader (by `endpoint status`), empty if none answers
leader_of() {
  local n ep st mid lid
  for n in $(member_names "$1"); do
    alive "$(member_pid "$1" "$n")" || continue
    ep=$(member_ep "$1" "$n")
    st=$("$ETCDCTL" --endpoints="$ep" --dial-timeout=1s --command-timeout=2s endpoint status -w fields 2>/dev/null </dev/null) || continue
    mid=$(awk -F' : ' '/^"MemberID"/{print $2}' <<<"$st") lid=$(awk -F' : ' '/^"Leader"/{print $2}' <<<"$st")
    [[ -n "$mid" && "$mid" == "$lid" ]] && { echo "$n"; return 0; }
  done
  return 1
}

# ---------------------------------------------------------------- measure ----
vm_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null; }  # PID FIELD -> kB (VmRSS, VmHWM)
mb() { awk -v k="${1:-}" 'BEGIN{ if (k == "") print ""; else printf "%.0f", k / 1024 }'; }  # kB -> MB
dir_mb() { du -sb "$1" 2>/dev/null | awk '{printf "%.0f", $1 / 1048576}'; }

# filter_bench_output < benchmark output: drop the progress bar and gRPC's INFO logging
filter_bench_output() {
  tr '\r' '\n' | awk '
    /INFO: .*Resolver state updated: \{$/ { skip = 1; next }
    skip { if (/^\} \(service config updated\)/) skip = 0; next }
    /^[0-9][0-9][0-9][0-9]\/[0-9][0-9]\/[0-9][0-9] [0-9:.]+ INFO: / { next }
    /^ *[0-9]+ \/ [0-9]+ / && (/p\/s *$/ || /[0-9]s *$/ || /\[/) { next }
    /^ *$/ { next }
    { print }'
}
# bench_field FILE rps|p50|p99|max|errors: one figure from a (filtered) benchmark report; ms for latencies
bench_field() {
  case $2 in
    rps) grep -a 'Requests/sec:' "$1" | tail -1 | awk '{printf "%.1f", $2}' ;;
    p50) grep -a ' 50% in ' "$1" | tail -1 | awk '{printf "%.3f", $3 * 1000}' ;;
    p99) grep -a ' 99% in ' "$1" | tail -1 | awk '{printf "%.3f", $3 * 1000}' ;;
    max) grep -a 'Slowest:' "$1" | tail -1 | awk '{printf "%.3f", $2 * 1000}' ;;
    errors) awk '/Error distribution/{e=1; next} e && /^ *\[[0-9]+\]/{gsub(/[^0-9]/, "", $1); s += $1} END{print s + 0}' "$1" ;;
  esac
}

# Awk helpers for the summaries: med(list of numbers separated by spaces), ratio, fmt
AWK_LIB='
function med(s,   n, a, i, j, t) {
  n = split(s, a, " "); if (n == 0) return ""
  for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function maxof(s,   n, a, i, m) { n = split(s, a, " "); m = ""; for (i = 1; i <= n; i++) if (m == "" || a[i] + 0 > m) m = a[i] + 0; return m }
function ratio(x, y) { return (x == "" || y == "" || y + 0 == 0) ? "n/a" : sprintf("%.2f", x / y) }
function f(x, fmt) { return x == "" ? "n/a" : sprintf(fmt, x) }
'

# order ROUND -> "kvorum etcd" or "etcd kvorum" (etcd first in even rounds, as bench.sh ORDER=abba),
# keeping only the servers named in SERVERS (default both; e.g. SERVERS=etcd to measure one side alone).
# With KVORUM_BASE set in a script that supports it (it sets BENCH_BASE=1), a third server "base" runs that Kvorum binary, and
# the three take turns going first: etcd kvorum base, kvorum base etcd, base etcd kvorum.
order() {
  local s o
  if [[ -n "${KVORUM_BASE:-}" && "${BENCH_BASE:-0}" == 1 ]]; then
    case $(( $1 % 3 )) in 1) o="etcd kvorum base";; 2) o="kvorum base etcd";; *) o="base etcd kvorum";; esac
  elif (( $1 % 2 == 0 )); then o="etcd kvorum"; else o="kvorum etcd"; fi
  for s in $o; do [[ " ${SERVERS:-kvorum etcd} base " == *" $s "* ]] && echo "$s"; done
}

# wait_quiet: if WAIT_LOAD is set, wait (at most WAIT_MAX s) for the 1-min load average to drop below it
wait_quiet() {
  [[ -n "${WAIT_LOAD:-}" ]] || return 0
  local w0=$SECONDS
  while awk -v l="$(load1)" -v m="$WAIT_LOAD" 'BEGIN{exit !(l >= m)}' && (( SECONDS - w0 < ${WAIT_MAX:-600} )); do
    log "waiting for 1-min load < $WAIT_LOAD (now $(loadavg), waited $((SECONDS - w0))s of ${WAIT_MAX:-600}s)"; sleep 20
  done
}
