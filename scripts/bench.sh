#!/usr/bin/env bash
# bench.sh — Kvorum vs etcd, side by side, with etcd's own benchmark tool.
#
#   scripts/bench.sh            # full run: 3 rounds, default totals (~10-15 min on 2 cores)
#   PUT_TOTAL=2000 PUT1C_TOTAL=300 RANGE_TOTAL=2000 RANGES_TOTAL=2000 ROUNDS=1 scripts/bench.sh   # smoke test
#   scripts/bench.sh -h         # this help
#
# What it does:
#   1. builds Kvorum from this checkout (go build ./cmd/kvorum) into OUTDIR/bin;
#   2. builds the real etcd server + etcdctl (ETCD_VERSION, default v3.7.3) and the official
#      benchmark tool (go.etcd.io/etcd/v3/tools/benchmark at BENCH_VERSION, default v3.6.8, the
#      newest go.etcd.io/etcd/v3 on the Go module proxy) into CACHE_DIR, once; later runs reuse them;
#   3. for every round and every workload runs Kvorum and etcd alternately, each on a FRESH
#      3-member cluster on 127.0.0.1 (data dirs under OUTDIR, i.e. on the disk OUTDIR is on);
#   4. prints a markdown table of medians over the rounds (req/s, p50, p99, Kvorum/etcd ratios),
#      per-round ratios, errors and the load average, and writes it to OUTDIR/summary.md.
#
# Workloads (WORKLOADS selects, space separated; default: all seven):
#   put       put, CLIENTS clients over CONNS connections, --target-leader, PUT_TOTAL requests
#   put-1client  put, 1 client over 1 connection, --target-leader, PUT1C_TOTAL requests (latency-bound)
#   range-l   linearizable range of one key, CLIENTS/CONNS, all members, RANGE_TOTAL requests
#   range-s   serializable range of one key, CLIENTS/CONNS, all members, RANGES_TOTAL requests
#   (range workloads first write PRELOAD_KEYS sequential keys plus RANGE_KEY; not timed)
#   watch     WATCH_STREAMS x WATCH_PER_STREAM watchers on one key, WATCH_PUT_TOTAL puts to it;
#             req/s = watch events delivered per second (the tool's p99 here is client-side queueing)
#   watch-latency  WL_STREAMS x WL_WATCHERS watchers, puts at WL_RATE/s, WL_PUT_TOTAL puts;
#             p50/p99 = put completed -> event received
#   lease-keepalive  CLIENTS/CONNS clients renewing leases (one per client), LEASE_TOTAL keep-alives
#
# Knobs (environment):
#   ROUNDS=3  ORDER=abba (abba: etcd first in even rounds; ab: Kvorum first always)
#   WORKLOADS="put put-1client range-l range-s watch watch-latency lease-keepalive"
#   CONNS=10 CLIENTS=100 KEY_SIZE=8 VAL_SIZE=256 KEY_SPACE=100000
#   PUT_TOTAL=60000 PUT1C_TOTAL=6000 RANGE_TOTAL=100000 RANGES_TOTAL=200000
#   PRELOAD_KEYS=10000 RANGE_KEY=bench-range-key
#   WATCH_STREAMS=10 WATCH_PER_STREAM=100 WATCH_PUT_TOTAL=3000
#   WL_STREAMS=10 WL_WATCHERS=10 WL_RATE=200 WL_PUT_TOTAL=2000  LEASE_TOTAL=100000
#   OUTDIR=${TMPDIR:-/tmp}/kvorum-bench-<utc time>   raw outputs, member logs, results.csv, summary.md
#   CACHE_DIR=~/.cache/kvorum-bench/bin               where etcd, etcdctl and benchmark are built
#   ETCD_VERSION=v3.7.3 BENCH_VERSION=v3.6.8
#   KVORUM=/path/to/kvorum  ETCD=... ETCDCTL=... BENCHMARK=...   use these binaries instead of building
#   EXTRA_FLAGS=""        extra flags for every member of both servers
#   KVORUM_FLAGS="" ETCD_FLAGS=""   extra flags for one side only
#   BENCH_TIMEOUT=600     seconds before a single benchmark run is killed
#   HEALTH_TIMEOUT=60     seconds a fresh cluster gets to become healthy
#   WAIT_LOAD=            if set (e.g. 2.5): first wait until the 1-min load average is below it ...
#   WAIT_MAX=1500         ... but at most this many seconds, then run anyway
#   KEEP_DATA=0           1 = keep member data dirs after each run (they are deleted otherwise)
#
# Every process the script starts (servers, benchmark) is killed on exit, error or Ctrl-C.
# Needs: Go (the version in go.mod), bash, awk, ss or /proc/net/tcp, coreutils `timeout`.
set -uo pipefail
{ # the whole script is one compound command: bash parses it before running, so editing this file
  # during a run (e.g. a git checkout) cannot change what the run does

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
(( $# == 0 )) || { echo "bench.sh: takes no arguments (configure with environment variables; -h for help)" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT=bench.sh BENCH_OUTDIR_PREFIX=kvorum-bench
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600} WAIT_MAX=${WAIT_MAX:-1500}
# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
CMDLINE=$(cmdline ROUNDS ORDER WORKLOADS CONNS CLIENTS KEY_SIZE VAL_SIZE KEY_SPACE PUT_TOTAL PUT1C_TOTAL RANGE_TOTAL \
  RANGES_TOTAL PRELOAD_KEYS WATCH_STREAMS WATCH_PER_STREAM WATCH_PUT_TOTAL WL_STREAMS WL_WATCHERS WL_RATE \
  WL_PUT_TOTAL LEASE_TOTAL EXTRA_FLAGS KVORUM_FLAGS ETCD_FLAGS WAIT_LOAD WAIT_MAX ETCD_VERSION BENCH_VERSION)

ROUNDS=${ROUNDS:-3} ORDER=${ORDER:-abba}
WORKLOADS=${WORKLOADS:-put put-1client range-l range-s watch watch-latency lease-keepalive}
CONNS=${CONNS:-10} CLIENTS=${CLIENTS:-100}
KEY_SIZE=${KEY_SIZE:-8} VAL_SIZE=${VAL_SIZE:-256} KEY_SPACE=${KEY_SPACE:-100000}
PUT_TOTAL=${PUT_TOTAL:-60000} PUT1C_TOTAL=${PUT1C_TOTAL:-6000}
RANGE_TOTAL=${RANGE_TOTAL:-100000} RANGES_TOTAL=${RANGES_TOTAL:-200000}
PRELOAD_KEYS=${PRELOAD_KEYS:-10000} RANGE_KEY=${RANGE_KEY:-bench-range-key}
WATCH_STREAMS=${WATCH_STREAMS:-10} WATCH_PER_STREAM=${WATCH_PER_STREAM:-100} WATCH_PUT_TOTAL=${WATCH_PUT_TOTAL:-3000}
WL_STREAMS=${WL_STREAMS:-10} WL_WATCHERS=${WL_WATCHERS:-10} WL_RATE=${WL_RATE:-200} WL_PUT_TOTAL=${WL_PUT_TOTAL:-2000}
LEASE_TOTAL=${LEASE_TOTAL:-100000}
KEEP_DATA=${KEEP_DATA:-0}
MEMBERS=3

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$ORDER" == ab || "$ORDER" == abba ]] || die "ORDER must be ab or abba"
for w in $WORKLOADS; do
  case $w in
    put|put-1client|range-l|range-s|watch|watch-latency|lease-keepalive) ;;
    *) die "unknown workload '$w' (known: put put-1client range-l range-s watch watch-latency lease-keepalive)" ;;
  esac
done

build_all
mkdir -p "$OUTDIR/raw" "$OUTDIR/clusters" || die "cannot create $OUTDIR"

# ------------------------------------------------------------- workloads ----
# wl_args NAME -> ARGS (benchmark argv after --endpoints), PRELOAD (0/1)
wl_args() {
  PRELOAD=0
  case $1 in
    put)         ARGS=(--target-leader --conns="$CONNS" --clients="$CLIENTS" put --key-size="$KEY_SIZE" --key-space-size="$KEY_SPACE" --val-size="$VAL_SIZE" --total="$PUT_TOTAL") ;;
    put-1client) ARGS=(--target-leader --conns=1 --clients=1 put --key-size="$KEY_SIZE" --key-space-size="$KEY_SPACE" --val-size="$VAL_SIZE" --total="$PUT1C_TOTAL") ;;
    range-l)     PRELOAD=1; ARGS=(--conns="$CONNS" --clients="$CLIENTS" range "$RANGE_KEY" --consistency=l --total="$RANGE_TOTAL") ;;
    range-s)     PRELOAD=1; ARGS=(--conns="$CONNS" --clients="$CLIENTS" range "$RANGE_KEY" --consistency=s --total="$RANGES_TOTAL") ;;
    watch)       ARGS=(--conns="$CONNS" --clients="$CONNS" watch --streams="$WATCH_STREAMS" --watch-per-stream="$WATCH_PER_STREAM" --watched-key-total=1 --put-total="$WATCH_PUT_TOTAL") ;;
    watch-latency) ARGS=(--conns="$CONNS" --clients="$CONNS" watch-latency --streams="$WL_STREAMS" --watchers-per-stream="$WL_WATCHERS" --put-rate="$WL_RATE" --put-total="$WL_PUT_TOTAL" --val-size="$VAL_SIZE") ;;
    lease-keepalive) ARGS=(--conns="$CONNS" --clients="$CLIENTS" lease-keepalive --total="$LEASE_TOTAL") ;;
  esac
}

CSV=$OUTDIR/results.csv
echo "round,server,workload,rps,p50_ms,p99_ms,errors,rc,start_s,bench_s,load1_before,load1_after,log_errors,log_warnings,members_alive_after" >"$CSV"

# log_marks DIR -> "n1 n2 n3": current line counts of the member logs
log_marks() { local i m=""; for (( i = 1; i <= MEMBERS; i++ )); do m+="$(wc -l <"$1/m$i.log" 2>/dev/null || echo 0) "; done; echo "$m"; }
# log_trouble DIR "MARKS" -> "errors warnings": error/panic/fatal and warning lines logged after MARKS
# (etcd logs zap JSON "level":"error", Kvorum slog JSON "level":"ERROR"; Go panics are plain text)
log_trouble() {
  local dir=$1 i e=0 w=0 x y; local -a m; read -r -a m <<<"$2"
  for (( i = 1; i <= MEMBERS; i++ )); do
    read -r x y < <(tail -n +"$(( ${m[i-1]:-0} + 1 ))" "$dir/m$i.log" 2>/dev/null | awk '
      /"level":"(error|dpanic|panic|fatal|ERROR|DPANIC|PANIC|FATAL)"/ || /^panic: / || /^fatal error: / || /level=(ERROR|error|FATAL|fatal)/ { e++; next }
      /"level":"(warn|WARN|WARNING)"/ || /level=(WARN|warn)/ { w++ }
      END { print e + 0, w + 0 }')
    e=$(( e + ${x:-0} )) w=$(( w + ${y:-0} ))
  done
  echo "$e $w"
}
run_one() { # round server(kvorum|etcd) workload
  local round=$1 srv=$2 wl=$3
  wl_args "$wl"
  local dir=$OUTDIR/clusters/r$round-$srv-$wl raw=$OUTDIR/raw/r$round-$srv-$wl.txt l0
  l0=$(load1)
  if ! start_cluster "$srv" "$dir" "$MEMBERS"; then   # (it tries 3 times, on new ports each time)
    echo "$round,$srv,$wl,,,,,start-failed,,,$l0,$(load1),,," >>"$CSV"
    printf '  r%s %-7s %-12s CLUSTER START FAILED (logs in %s)\n' "$round" "$srv" "$wl" "$dir" >&2
    return
  fi
  : >"$raw"
  local marks; marks=$(log_marks "$dir")
  if (( PRELOAD )); then
    echo "# preload: $PRELOAD_KEYS sequential keys + $RANGE_KEY" >>"$raw"
    bg_wait "$raw.pre" "$BENCHMARK" --endpoints="$EPS" --target-leader --conns="$CONNS" --clients="$CLIENTS" put --key-size="$KEY_SIZE" \
      --sequential-keys --key-space-size="$PRELOAD_KEYS" --val-size="$VAL_SIZE" --total="$PRELOAD_KEYS"
    local prc=$?
    filter_bench_output <"$raw.pre" | grep -avE '^(Summary|Response time histogram|Latency distribution):$|^  [0-9.]+ \[[0-9]+\]|^  [0-9.]+% in |^  (Total|Slowest|Fastest|Average|Stddev):' >>"$raw"; rm -f "$raw.pre"
    head -c "$VAL_SIZE" /dev/zero | tr '\0' v | "$ETCDCTL" --endpoints="$EPS" --command-timeout=10s put "$RANGE_KEY" >>"$raw" 2>&1 || prc=1
    (( prc == 0 )) || log "  !! preload failed for $srv/$wl (see $raw)"
    echo "# end of preload (rc $prc)" >>"$raw"
  fi
  echo "# $(date -u -Is) $srv: benchmark --endpoints=$EPS ${ARGS[*]}" >>"$raw"
  local t0 t1 rc
  t0=$(date +%s.%N)
  bg_wait "$raw.full" timeout "$BENCH_TIMEOUT" "$BENCHMARK" --endpoints="$EPS" --precise "${ARGS[@]}"
  rc=$?
  t1=$(date +%s.%N)
  filter_bench_output <"$raw.full" >>"$raw"; rm -f "$raw.full"
  local lerr lwarn nalive=0 pid
  read -r lerr lwarn <<<"$(log_trouble "$dir" "$marks")"
  while read -r _ pid _; do alive "$pid" && nalive=$((nalive + 1)); done <"$dir/pids"
  (( nalive == MEMBERS )) || log "  !! only $nalive/$MEMBERS $srv members still running after $wl (logs in $dir)"
  kill_servers "$dir"
  (( KEEP_DATA )) || rm -rf "$dir"/m*.data
  local rps p50 p99 errs bs
  rps=$(bench_field "$raw" rps) p50=$(bench_field "$raw" p50) p99=$(bench_field "$raw" p99)
  errs=$(awk '/^# .*: benchmark --endpoints/{m=1} m && /Error distribution/{e=1; next} m && e && /^ *\[[0-9]+\]/{gsub(/[^0-9]/, "", $1); s += $1} END{print s + 0}' "$raw")
  bs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}')
  echo "$round,$srv,$wl,${rps:-},${p50:-},${p99:-},$errs,$rc,$START_S,$bs,$l0,$(load1),$lerr,$lwarn,$nalive" >>"$CSV"
  printf '  r%s %-7s %-12s %9s req/s  p50 %8s ms  p99 %8s ms  errors %s  rc %s  start %ss  bench %ss  load %s  log err/warn %s/%s\n' \
    "$round" "$srv" "$wl" "${rps:-?}" "${p50:-?}" "${p99:-?}" "$errs" "$rc" "$START_S" "$bs" "$l0" "$lerr" "$lwarn" >&2
}

# ------------------------------------------------------------------- run -----
write_meta "$OUTDIR/meta.txt" "$CMDLINE" "rounds: $ROUNDS  order: $ORDER  workloads: $WORKLOADS
CONNS=$CONNS CLIENTS=$CLIENTS KEY_SIZE=$KEY_SIZE VAL_SIZE=$VAL_SIZE KEY_SPACE=$KEY_SPACE PUT_TOTAL=$PUT_TOTAL PUT1C_TOTAL=$PUT1C_TOTAL RANGE_TOTAL=$RANGE_TOTAL RANGES_TOTAL=$RANGES_TOTAL PRELOAD_KEYS=$PRELOAD_KEYS WATCH=${WATCH_STREAMS}x${WATCH_PER_STREAM}/${WATCH_PUT_TOTAL} WL=${WL_STREAMS}x${WL_WATCHERS}@${WL_RATE}/${WL_PUT_TOTAL} LEASE_TOTAL=$LEASE_TOTAL EXTRA_FLAGS=${EXTRA_FLAGS:-} KVORUM_FLAGS=${KVORUM_FLAGS:-} ETCD_FLAGS=${ETCD_FLAGS:-}"
cat "$OUTDIR/meta.txt" >&2
log "output: $OUTDIR"

wait_quiet
echo "benchmarks started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)" >>"$OUTDIR/meta.txt"
log "benchmarks started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)"

T0=$SECONDS
for (( r = 1; r <= ROUNDS; r++ )); do
  log "== round $r/$ROUNDS (elapsed $((SECONDS - T0))s, load $(loadavg))"
  for wl in $WORKLOADS; do
    if [[ $ORDER == abba ]] && (( r % 2 == 0 )); then
      run_one "$r" etcd "$wl"; run_one "$r" kvorum "$wl"
    else
      run_one "$r" kvorum "$wl"; run_one "$r" etcd "$wl"
    fi
  done
done
echo "benchmarks ended: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg); took $((SECONDS - T0))s" >>"$OUTDIR/meta.txt"
log "benchmarks ended: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg); took $((SECONDS - T0))s"

# ---------------------------------------------------------------- summary ----
summarize() {
  sed 's/^/    /' "$OUTDIR/meta.txt"
  echo
  awk -F, -v WLS="$WORKLOADS" -v R="$ROUNDS" -v CONNS="$CONNS" -v CLIENTS="$CLIENTS" "$AWK_LIB"'
    NR == 1 { next }
    {
      k = $3 SUBSEP $2
      if ($4 != "") { rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6; n[k]++
                      per[$3, $2, $1] = $4; lat[$3, $2, $1] = $6 }
      else failed[k]++
      errs[k] += $7; if ($8 != "0" && $8 != "") bad[k]++
      if ($9 != "") st[$2] = st[$2] " " $9
      lerr[k] += $13; lwarn[k] += $14; if ($15 != "" && $15 < 3) dead[k]++
      if ($11 != "") loads = loads " " $11
    }
    END {
      desc["put"] = "put, " CLIENTS " clients / " CONNS " conns, leader"
      desc["put-1client"] = "put, 1 client / 1 conn, leader"
      desc["range-l"] = "range 1 key, linearizable, " CLIENTS "/" CONNS ", all members"
      desc["range-s"] = "range 1 key, serializable, " CLIENTS "/" CONNS ", all members"
      desc["watch"] = "watch fan-out, events/s delivered"
      desc["watch-latency"] = "watch, put -> event latency"
      desc["lease-keepalive"] = "lease keep-alive, " CLIENTS "/" CONNS ", all members"
      print "| workload | Kvorum req/s | etcd req/s | ratio | Kvorum p50 ms | etcd p50 ms | Kvorum p99 ms | etcd p99 ms | p99 ratio |"
      print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      nw = split(WLS, W, " ")
      for (i = 1; i <= nw; i++) {
        w = W[i]; a = w SUBSEP "kvorum"; b = w SUBSEP "etcd"
        ra = med(rps[a]); rb = med(rps[b]); pa = med(p99[a]); pb = med(p99[b])
        printf "| %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s |\n", w, desc[w], f(ra, "%.0f"), f(rb, "%.0f"), ratio(ra, rb),
          f(med(p50[a]), "%.2f"), f(med(p50[b]), "%.2f"), f(pa, "%.2f"), f(pb, "%.2f"), ratio(pa, pb)
        RA[w] = ra; RB[w] = rb; PA[w] = pa; PB[w] = pb
      }
      print ""
      print "Ratios are Kvorum/etcd of the medians: req/s ratio > 1 and p99 ratio < 1 favour Kvorum."
      print ""
      print "Target (issue): put throughput ratio >= 1.00 and p99 ratio <= 1.50, in the same run:"
      print ""
      for (i = 1; i <= nw; i++) {
        w = W[i]; if (w !~ /^put/) continue
        if (RA[w] == "" || RB[w] == "" || PA[w] == "" || PB[w] == "") { printf "- %s: n/a (missing results)\n", w; continue }
        printf "- %s: throughput %.2f (%s), p99 %.2f (%s)\n", w, RA[w] / RB[w], (RA[w] >= RB[w] ? "met" : "NOT met"),
          PA[w] / PB[w], (PA[w] <= 1.5 * PB[w] ? "met" : "NOT met")
      }
      print ""
      print "Per-round Kvorum/etcd ratios (both runs of a round are back to back, so these cancel slow drifts in machine"
      print "load better than the ratio of medians above; their spread is the noise floor):"
      print ""
      print "| workload | req/s ratio per round | median | p99 ratio per round | median | Kvorum req/s per round | etcd req/s per round |"
      print "|---|---|---:|---|---:|---|---|"
      for (i = 1; i <= nw; i++) {
        w = W[i]; s1 = s2 = s3 = s4 = q1 = q2 = ""
        for (r = 1; r <= R; r++) {
          s3 = s3 (((w, "kvorum", r) in per) ? sprintf("%.0f ", per[w, "kvorum", r]) : "- ")
          s4 = s4 (((w, "etcd", r) in per) ? sprintf("%.0f ", per[w, "etcd", r]) : "- ")
          if ((w, "kvorum", r) in per && (w, "etcd", r) in per && per[w, "etcd", r] > 0) {
            s1 = s1 sprintf("%.2f ", per[w, "kvorum", r] / per[w, "etcd", r]); q1 = q1 " " per[w, "kvorum", r] / per[w, "etcd", r]
            if (lat[w, "etcd", r] > 0) { s2 = s2 sprintf("%.2f ", lat[w, "kvorum", r] / lat[w, "etcd", r]); q2 = q2 " " lat[w, "kvorum", r] / lat[w, "etcd", r] }
            else s2 = s2 "n/a "
          }
        }
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", w, s1, f(med(q1), "%.2f"), s2, f(med(q2), "%.2f"), s3, s4
      }
      print ""
      print "Problems (benchmark errors = failed requests in the Error distribution; rc = benchmark exit code != 0;"
      print "log errors/warnings = error|panic|fatal / warn lines the members logged from healthy start-up to the end of the run):"
      print ""
      any = 0
      for (i = 1; i <= nw; i++) for (s = 1; s <= 2; s++) {
        srv = (s == 1 ? "kvorum" : "etcd"); k = W[i] SUBSEP srv
        if (errs[k] + bad[k] + failed[k] + lerr[k] + lwarn[k] + dead[k] > 0) {
          any = 1
          printf "- %s %s: %d benchmark errors, %d runs with rc != 0, %d cluster start failures, %d runs with a member gone, %d log errors, %d log warnings\n",
            srv, W[i], errs[k], bad[k], failed[k], dead[k], lerr[k], lwarn[k]
        }
      }
      if (!any) print "- none"
      print ""
      printf "Cluster start-up (launch to all members healthy), median: Kvorum %ss, etcd %ss\n", f(med(st["kvorum"]), "%.1f"), f(med(st["etcd"]), "%.1f")
      nl = split(loads, L, " "); lmin = lmax = ""
      for (i = 1; i <= nl; i++) { if (lmin == "" || L[i] + 0 < lmin) lmin = L[i] + 0; if (lmax == "" || L[i] + 0 > lmax) lmax = L[i] + 0 }
      printf "1-min load average before each run: min %s, median %s, max %s (%d runs)\n", lmin, med(loads), lmax, nl
    }' "$CSV"
  echo
  echo "Medians of $ROUNDS round(s). Raw outputs: $OUTDIR/raw/  per-run CSV: $CSV  member logs: $OUTDIR/clusters/"
}
summarize | tee "$OUTDIR/summary.md"
exit
}
