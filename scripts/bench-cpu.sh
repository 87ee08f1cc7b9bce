#!/usr/bin/env bash
# bench-cpu.sh — server CPU per put, Kvorum vs etcd, side by side, and where it goes.
#
#   scripts/bench-cpu.sh                    # 3 rounds of the standard put run on each server
#   PUT_TOTAL=10000 ROUNDS=1 scripts/bench-cpu.sh   # smoke test
#   PUT_TOTAL=300000 PROF_DELAY=15 PROF_SECONDS=10 scripts/bench-cpu.sh   # a sustained load (~45 s a run)
#   scripts/bench-cpu.sh -h                 # this help
#
# For every round, Kvorum and etcd alternately (etcd first in even rounds), each on a fresh
# 3-member cluster started with --enable-pprof:
#   1. the standard put run of bench.sh: benchmark --target-leader --conns CONNS --clients CLIENTS
#      put --key-size 8 --key-space-size KEY_SPACE --val-size VAL_SIZE --total PUT_TOTAL;
#   2. the CPU time (user + system, /proc/PID/stat) each member spent during it, per put: all
#      members together (the issue's "server CPU per put"), the leader, and a follower; the
#      leader's RSS and peak RSS (VmRSS, VmHWM) at the end; the bytes the members wrote to storage
#      (/proc/PID/io write_bytes) per put;
#   3. if PROFILE=1, a CPU profile of the leader and of one follower over PROF_SECONDS, taken
#      PROF_DELAY seconds into the run, split into categories by the frames on each sample's stack
#      (client gRPC, apply and the state machine's storage, raft, peer transport, the storage
#      engine's write-ahead log and its compactions, garbage collection, scheduler, other); each
#      category's share of the profile times the member's CPU per put gives microseconds per put.
# Prints medians over the rounds with Kvorum/etcd ratios, and writes summary.md, results.csv,
# categories.csv, the profiles and the benchmark output to OUTDIR.
#
# Knobs (environment):
#   ROUNDS=3  PUT_TOTAL=60000  CLIENTS=100  CONNS=10  KEY_SPACE=100000  VAL_SIZE=256
#   PROFILE=1  PROF_DELAY=2  PROF_SECONDS=4 (keep it shorter than the run: ~7 s at 60,000 puts here)
#   OUTDIR=${TMPDIR:-/tmp}/kvorum-bench-cpu-<utc time>   CACHE_DIR=~/.cache/kvorum-bench/bin
#   ETCD_VERSION=v3.7.3 BENCH_VERSION=v3.6.8  KVORUM= ETCD= ETCDCTL= BENCHMARK= (use these binaries)
#   SERVERS="kvorum etcd"   EXTRA_FLAGS="" (both servers)  KVORUM_FLAGS="" ETCD_FLAGS=""
#   KVORUM_BASE=<kvorum binary>: also run this other Kvorum build ("base", e.g. the code before a
#     change) in every round, with KVORUM_FLAGS; the summary adds its column and Kvorum/base ratios.
#     The machine's speed drifts between runs by more than most changes; measured in the same
#     rounds, a change is compared with its base and with etcd under the same conditions.
#   HEALTH_TIMEOUT=60  BENCH_TIMEOUT=1800  WAIT_LOAD= WAIT_MAX=600  KEEP_DATA=0
#
# Every process the script starts is killed on exit, error or Ctrl-C.
set -uo pipefail
{ # one compound command: bash parses it whole, so editing the file during a run changes nothing

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
(( $# == 0 )) || { echo "bench-cpu.sh: takes no arguments (configure with environment variables; -h for help)" >&2; exit 2; }

SCRIPT=bench-cpu.sh BENCH_OUTDIR_PREFIX=kvorum-bench-cpu
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
CMDLINE=$(cmdline SERVERS KVORUM_BASE ROUNDS PUT_TOTAL CLIENTS CONNS KEY_SPACE VAL_SIZE PROFILE PROF_DELAY PROF_SECONDS EXTRA_FLAGS KVORUM_FLAGS ETCD_FLAGS)

ROUNDS=${ROUNDS:-3} PUT_TOTAL=${PUT_TOTAL:-60000} CLIENTS=${CLIENTS:-100} CONNS=${CONNS:-10}
KEY_SPACE=${KEY_SPACE:-100000} VAL_SIZE=${VAL_SIZE:-256} KEEP_DATA=${KEEP_DATA:-0}
PROFILE=${PROFILE:-1} PROF_DELAY=${PROF_DELAY:-2} PROF_SECONDS=${PROF_SECONDS:-4}
EXTRA_FLAGS="--enable-pprof ${EXTRA_FLAGS:-}"
for v in ROUNDS PUT_TOTAL PROF_SECONDS; do [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"; done
[[ "$PROF_DELAY" =~ ^[0-9]+$ ]] || die "PROF_DELAY must be a number of seconds"
command -v curl >/dev/null || die "needs curl (to fetch the CPU profiles)"
HZ=$(getconf CLK_TCK)

build_all
if [[ -n "${KVORUM_BASE:-}" ]]; then
  [[ -x "$KVORUM_BASE" ]] || die "KVORUM_BASE=$KVORUM_BASE is not executable"
  KVORUM_BASE="$(cd "$(dirname "$KVORUM_BASE")" && pwd)/$(basename "$KVORUM_BASE")" BENCH_BASE=1
fi
mkdir -p "$OUTDIR/raw" "$OUTDIR/clusters"
write_meta "$OUTDIR/meta.txt" "$CMDLINE" \
  "rounds: $ROUNDS  ${KVORUM_BASE:+base: $KVORUM_BASE  }put run: $CLIENTS clients / $CONNS conns, $PUT_TOTAL puts of $VAL_SIZE bytes over $KEY_SPACE keys  profiles: $PROFILE (${PROF_SECONDS}s from ${PROF_DELAY}s)  flags: $EXTRA_FLAGS | kvorum: ${KVORUM_FLAGS:-} | etcd: ${ETCD_FLAGS:-}"
cat "$OUTDIR/meta.txt" >&2
log "output: $OUTDIR"
wait_quiet

CSV=$OUTDIR/results.csv CATS=$OUTDIR/categories.csv
echo "round,server,rps,p99_ms,errors,cpu_us_all,cpu_us_leader,cpu_us_follower,leader_rss_mb,leader_hwm_mb,disk_bytes,load1" >"$CSV"
echo "round,server,role,category,share,us_per_put" >"$CATS"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; } # PID -> user+system clock ticks
disk_bytes() { awk '/^write_bytes:/ {print $2}' "/proc/$1/io" 2>/dev/null; } # PID -> bytes written to storage

# categorize PROFILE: "category seconds" lines, one category per sample by the frames on its stack
categorize() {
  go tool pprof -traces "$1" 2>/dev/null | awk '
    /^-----------/ { if (n) emit(); n = 0; next }
    /^ *[0-9.]+(ms|s|us|µs) / { t = $1; u = t; sub(/[0-9.]+/, "", u); sub(/[a-zµ]+$/, "", t)
                               t = (u == "ms") ? t / 1000 : (u == "s") ? t + 0 : t / 1e6; n = 1; st = $2; next }
    n { st = st " " $1 }
    function emit(   c) {
      if (st ~ /gcBgMarkWorker|gcDrain|gcAssist/) c = "garbage collection"
      else if (st ~ /compactAndWrite|flush1|runCompaction/) c = "engine compactions and flushes"
      else if (st ~ /LogWriter|syncingFile|Fdatasync|SyncData|wal\.\(\*WAL\)|fileutil\.Fsync/) c = "write-ahead log (write + sync)"
      else if (st ~ /kvorum\/internal\/(apply|mvcc)|stateMachine\)\.Apply|applierV3|applyEntries|applyAll|etcdserver\/apply|storage\/mvcc|storage\/backend|bbolt/) c = "apply + state machine storage"
      else if (st ~ /kvorum\/internal\/transport|rafthttp|net\/http\.\(\*persistConn\)/) c = "peer transport"
      else if (st ~ /go\.etcd\.io\/raft|kvorum\/internal\/raftnode|raftNode/) c = "raft"
      else if (st ~ /google\.golang\.org\/grpc|golang\.org\/x\/net\/http2/) c = "client gRPC (incl. request handling)"
      else if (st ~ /runtime\.(schedule|findRunnable|park_m|mcall|goexit0|stopm|notesleep|futex)/) c = "scheduler"
      else c = "other"
      a[c] += t
    }
    END { if (n) emit(); for (c in a) printf "%s\t%.4f\n", c, a[c] }'
}

putrun() { # SERVER ROUND
  local srv=$1 r=$2 dir="$OUTDIR/clusters/r$2-$1" raw="$OUTDIR/raw/r$2-$1.txt" l0 lead fol n pids=() t0=() t1=() w0=() w1=() i ep
  l0=$(load1)
  start_cluster "$srv" "$dir" 3 || { echo "$r,$srv,,,,,,,,,,$l0" >>"$CSV"; return; }
  lead=$(leader_of "$dir") || { log "  no leader in $dir"; kill_servers "$dir"; echo "$r,$srv,,,,,,,,,,$l0" >>"$CSV"; return; }
  for n in $(member_names "$dir"); do [[ $n != "$lead" ]] && { fol=$n; break; }; done
  for n in "$lead" "$fol" $(member_names "$dir"); do
    [[ " ${pids[*]} " == *" $(member_pid "$dir" "$n") "* ]] || pids+=("$(member_pid "$dir" "$n")")
  done
  local prof=()
  if (( PROFILE )); then
    for n in "$lead" "$fol"; do
      ep=$(member_ep "$dir" "$n")
      ( sleep "$PROF_DELAY"; curl -s -o "$OUTDIR/raw/r$r-$srv-$([[ $n == "$lead" ]] && echo leader || echo follower).pprof" \
          "$ep/debug/pprof/profile?seconds=$PROF_SECONDS" ) &
      prof+=($!); BG_PIDS+=($!)
    done
  fi
  for i in "${!pids[@]}"; do t0[i]=$(cpu_ticks "${pids[i]}") w0[i]=$(disk_bytes "${pids[i]}"); done
  echo "# $(date -u -Is) $srv: benchmark --endpoints=$EPS --target-leader --conns=$CONNS --clients=$CLIENTS put --key-size=8 --key-space-size=$KEY_SPACE --val-size=$VAL_SIZE --total=$PUT_TOTAL" >"$raw"
  bg_wait "$raw.full" timeout "$BENCH_TIMEOUT" "$BENCHMARK" --endpoints="$EPS" --target-leader --conns="$CONNS" --clients="$CLIENTS" \
    --precise put --key-size=8 --key-space-size="$KEY_SPACE" --val-size="$VAL_SIZE" --total="$PUT_TOTAL"
  for i in "${!pids[@]}"; do t1[i]=$(cpu_ticks "${pids[i]}") w1[i]=$(disk_bytes "${pids[i]}"); done
  for i in "${prof[@]}"; do wait "$i"; done
  filter_bench_output <"$raw.full" >>"$raw"; rm -f "$raw.full"
  local rps p99 errs all=0 us_l us_f rss hwm disk=0
  rps=$(bench_field "$raw" rps) p99=$(bench_field "$raw" p99) errs=$(bench_field "$raw" errors)
  rss=$(mb "$(vm_kb "${pids[0]}" VmRSS)") hwm=$(mb "$(vm_kb "${pids[0]}" VmHWM)")
  for i in "${!pids[@]}"; do all=$(( all + t1[i] - t0[i] )) disk=$(( disk + ${w1[i]:-0} - ${w0[i]:-0} )); done
  disk=$(( disk / PUT_TOTAL ))
  per() { awk -v t="$1" -v hz="$HZ" -v n="$PUT_TOTAL" 'BEGIN{printf "%.1f", t / hz / n * 1e6}'; }
  us_l=$(per $(( t1[0] - t0[0] ))) us_f=$(per $(( t1[1] - t0[1] ))) all=$(per "$all")
  echo "$r,$srv,$rps,$p99,$errs,$all,$us_l,$us_f,$rss,$hwm,$disk,$l0" >>"$CSV"
  printf '  r%s %-6s %8s put/s  p99 %7s ms  %s errors  CPU per put: %6s us (leader %s, follower %s)  leader RSS %s MB (peak %s)  disk %s B/put  load %s\n' \
    "$r" "$srv" "${rps:-?}" "${p99:-?}" "$errs" "$all" "$us_l" "$us_f" "$rss" "$hwm" "$disk" "$l0" >&2
  if (( PROFILE )); then
    local role us f
    for role in leader follower; do
      f="$OUTDIR/raw/r$r-$srv-$role.pprof" us=$us_l; [[ $role == follower ]] && us=$us_f
      [[ -s $f ]] || { log "  no $role profile for $srv (is --enable-pprof accepted?)"; continue; }
      categorize "$f" | awk -F'\t' -v r="$r" -v s="$srv" -v role="$role" -v us="$us" '
        { c[$1] = $2; tot += $2 }
        END { for (k in c) printf "%s,%s,%s,%s,%.4f,%.2f\n", r, s, role, k, c[k] / tot, us * c[k] / tot }' >>"$CATS"
    done
  fi
  kill_servers "$dir"; (( KEEP_DATA )) || rm -rf "$dir"/m*.data
}

echo "measurements started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)" >>"$OUTDIR/meta.txt"
T0=$SECONDS
for (( r = 1; r <= ROUNDS; r++ )); do
  log "== round $r/$ROUNDS (load $(loadavg))"
  for srv in $(order "$r"); do putrun "$srv" "$r"; done
done
echo "measurements ended: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg); took $((SECONDS - T0))s" >>"$OUTDIR/meta.txt"

# ---------------------------------------------------------------- summary ----
summarize() {
  sed 's/^/    /' "$OUTDIR/meta.txt"
  echo
  awk -F, -v R="$ROUNDS" -v B="${BENCH_BASE:-0}" "$AWK_LIB"'
    NR == 1 || $3 == "" { next }
    { for (c = 3; c <= 11; c++) { v[$2, c] = v[$2, c] " " $c; per[$2, c, $1] = $c } }
    function row(label, c, fmt,   a, b, s, r, x, t) {
      a = med(v["kvorum", c]); b = med(v["etcd", c]); s = ""
      for (r = 1; r <= R; r++) s = s ((("kvorum", c, r) in per && ("etcd", c, r) in per) ? ratio(per["kvorum", c, r], per["etcd", c, r]) " " : "- ")
      if (!B) { printf "| %s | %s | %s | %s | %s |\n", label, f(a, fmt), f(b, fmt), ratio(a, b), s; return }
      x = med(v["base", c]); t = ""
      for (r = 1; r <= R; r++) t = t ((("kvorum", c, r) in per && ("base", c, r) in per) ? ratio(per["kvorum", c, r], per["base", c, r]) " " : "- ")
      printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", label, f(a, fmt), f(b, fmt), ratio(a, b), s, f(x, fmt), ratio(a, x), t
    }
    END {
      if (!B) {
        print "| standard put run | Kvorum | etcd | ratio | ratio per round |"
        print "|---|---:|---:|---:|---|"
      } else {
        print "| standard put run | Kvorum | etcd | ratio | ratio per round | base | Kvorum/base | per round |"
        print "|---|---:|---:|---:|---|---:|---:|---|"
      }
      row("put/s", 3, "%.0f"); row("p99, ms", 4, "%.1f"); row("errors", 5, "%d")
      row("server CPU per put, all 3 members, µs", 6, "%.1f")
      row("CPU per put, leader, µs", 7, "%.1f"); row("CPU per put, a follower, µs", 8, "%.1f")
      row("leader RSS at the end, MB", 9, "%.0f"); row("leader peak RSS (VmHWM), MB", 10, "%.0f")
      row("bytes written to disk per put, all 3 members", 11, "%.0f")
      print ""
      print "Medians over " R " round(s); ratio = Kvorum/etcd" (B ? "; base = KVORUM_BASE, the other Kvorum build" : "") ". CPU = user + system time of the member processes"
      print "during the run, divided by the puts."
    }' "$CSV"
  if (( PROFILE )) && [[ $(wc -l <"$CATS") -gt 1 ]]; then
    echo
    awk -F, -v R="$ROUNDS" "$AWK_LIB"'
      NR == 1 { next }
      { v[$3, $4, $2] = v[$3, $4, $2] " " $6; cats[$4] = 1 }
      END {
        print "| CPU per put by category, µs (median over rounds) | Kvorum leader | etcd leader | Kvorum follower | etcd follower |"
        print "|---|---:|---:|---:|---:|"
        for (c in cats) printf "| %s | %s | %s | %s | %s |\n", c, f(med(v["leader", c, "kvorum"]), "%.1f"), f(med(v["leader", c, "etcd"]), "%.1f"),
          f(med(v["follower", c, "kvorum"]), "%.1f"), f(med(v["follower", c, "etcd"]), "%.1f")
        print ""
        print "From CPU profiles of " ENVIRON["PROF_SECONDS"] " s in each run: a category'"'"'s share of the profile times the member'"'"'s CPU"
        print "per put. Each sample counts once, in the first category (top to bottom of the list in the"
        print "script) whose frames are on its stack; \"client gRPC\" includes the request handlers up to the"
        print "proposal, and \"apply\" includes etcd'"'"'s bbolt commits."
      }' "$CATS"
  fi
}
export PROF_SECONDS
summarize | tee "$OUTDIR/summary.md"
log "summary: $OUTDIR/summary.md"
exit 0
}
