#!/usr/bin/env bash
# bench-stall.sh — put latency while a compaction and a defragmentation run: Kvorum vs etcd, side by side.
#
#   scripts/bench-stall.sh                  # 2 rounds, 1M revisions to compact
#   PRELOAD_REVS=30000 PHASE_SECS=10 OP_DELAY=3 ROUNDS=1 scripts/bench-stall.sh   # smoke test
#   DB_GB=3 ROUNDS=1 scripts/bench-stall.sh # plus 3 GiB of live data, for defrag of a few-GB store
#   scripts/bench-stall.sh -h               # this help
#
# For every round, Kvorum and etcd alternately (etcd first in even rounds), on a fresh 3-member cluster:
#   1. if DB_GB > 0: writes DB_GB GiB of live data (distinct 16-byte keys, BIG_VAL-byte values);
#   2. preloads PRELOAD_REVS revisions: puts cycling over PRELOAD_KEYS 8-byte keys (VAL_SIZE-byte
#      values), so almost all of them are superseded versions that a compaction removes;
#   3. runs a steady put load three times (phases), each PHASE_SECS long:
#        benchmark --endpoints=<all 3> --clients LOAD_CLIENTS --conns LOAD_CONNS --sample
#                  put --rate RATE --total RATE*PHASE_SECS --key-space-size PRELOAD_KEYS
#      - baseline: nothing else;
#      - compact:  OP_DELAY s into the load, `etcdctl compact <current revision> --physical`;
#      - defrag:   OP_DELAY s into the load, `etcdctl defrag --cluster` (one member after the other);
#   4. reports for each phase p99 and max latency of the whole load, the slowest request started
#      while the operation ran and the fewest puts started in one second of it (from --sample), the
#      operation's duration, and the data size before/after (etcd's db size as `endpoint status`
#      reports it; the leader's data dir).
# The operation may outlast the load: then the summary says so (make PHASE_SECS longer).
# Writes summary.md, results.csv, raw benchmark output and member logs to OUTDIR.
#
# Knobs (environment):
#   ROUNDS=2  PRELOAD_REVS=1000000  PRELOAD_KEYS=1000  VAL_SIZE=256  PRELOAD_CLIENTS=200 PRELOAD_CONNS=20
#   RATE=1000  PHASE_SECS=30  OP_DELAY=5  LOAD_CLIENTS=50 LOAD_CONNS=10  PHASES="baseline compact defrag"
#   PHASE_GAP=5               seconds idle before each phase (after all members answer `endpoint health`)
#   SERVERS="kvorum etcd"     measure only one side with SERVERS=kvorum or SERVERS=etcd
#   DB_GB=0  BIG_VAL=8192     extra live data for a store of a few GB (0: none)
#   QUOTA_BYTES=              --quota-backend-bytes for both (default 8 GiB, or DB_GB + 4 GiB if larger)
#   OP_TIMEOUT=1800           seconds etcdctl waits for compact or defrag
#   OUTDIR=${TMPDIR:-/tmp}/kvorum-bench-stall-<utc time>   CACHE_DIR=~/.cache/kvorum-bench/bin
#   ETCD_VERSION=v3.7.3 BENCH_VERSION=v3.6.8  KVORUM= ETCD= ETCDCTL= BENCHMARK= (use these binaries)
#   EXTRA_FLAGS="" (both servers)  KVORUM_FLAGS="" ETCD_FLAGS=""  HEALTH_TIMEOUT=60  BENCH_TIMEOUT=1800
#   WAIT_LOAD= WAIT_MAX=600   wait for a 1-min load average below WAIT_LOAD before starting
#   KEEP_DATA=0               1 = keep the data dirs
#
# Every process the script starts is killed on exit, error or Ctrl-C.
set -uo pipefail
{ # one compound command: bash parses it whole, so editing the file during a run changes nothing

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
(( $# == 0 )) || { echo "bench-stall.sh: takes no arguments (configure with environment variables; -h for help)" >&2; exit 2; }

SCRIPT=bench-stall.sh BENCH_OUTDIR_PREFIX=kvorum-bench-stall
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
CMDLINE=$(cmdline ROUNDS PRELOAD_REVS PRELOAD_KEYS VAL_SIZE PRELOAD_CLIENTS PRELOAD_CONNS RATE PHASE_SECS OP_DELAY LOAD_CLIENTS \
  LOAD_CONNS PHASES PHASE_GAP SERVERS DB_GB BIG_VAL QUOTA_BYTES EXTRA_FLAGS KVORUM_FLAGS ETCD_FLAGS)

ROUNDS=${ROUNDS:-2} PRELOAD_REVS=${PRELOAD_REVS:-1000000} PRELOAD_KEYS=${PRELOAD_KEYS:-1000} VAL_SIZE=${VAL_SIZE:-256}
PRELOAD_CLIENTS=${PRELOAD_CLIENTS:-200} PRELOAD_CONNS=${PRELOAD_CONNS:-20}
RATE=${RATE:-1000} PHASE_SECS=${PHASE_SECS:-30} OP_DELAY=${OP_DELAY:-5} LOAD_CLIENTS=${LOAD_CLIENTS:-50} LOAD_CONNS=${LOAD_CONNS:-10}
PHASES=${PHASES:-baseline compact defrag} PHASE_GAP=${PHASE_GAP:-5} DB_GB=${DB_GB:-0} BIG_VAL=${BIG_VAL:-8192} OP_TIMEOUT=${OP_TIMEOUT:-1800} KEEP_DATA=${KEEP_DATA:-0}
if [[ -z "${QUOTA_BYTES:-}" ]]; then
  QUOTA_BYTES=$(awk -v g="$DB_GB" 'BEGIN{q = (g + 4) * 1073741824; if (q < 8589934592) q = 8589934592; printf "%.0f", q}')
fi
EXTRA_FLAGS="--quota-backend-bytes=$QUOTA_BYTES ${EXTRA_FLAGS:-}"

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$DB_GB" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "DB_GB must be a number of GiB"
for p in $PHASES; do case $p in baseline|compact|defrag) ;; *) die "unknown phase '$p' (known: baseline compact defrag)" ;; esac; done

build_all
mkdir -p "$OUTDIR/raw" "$OUTDIR/clusters"
BIG_KEYS=$(awk -v g="$DB_GB" -v v="$BIG_VAL" 'BEGIN{printf "%.0f", g * 1073741824 / v}')
write_meta "$OUTDIR/meta.txt" "$CMDLINE" \
  "rounds: $ROUNDS  preload: $PRELOAD_REVS puts over $PRELOAD_KEYS keys ($VAL_SIZE-byte values)  live data: $DB_GB GiB ($BIG_KEYS keys of $BIG_VAL bytes)  load: $RATE put/s for ${PHASE_SECS}s, $LOAD_CLIENTS clients / $LOAD_CONNS conns, all members  operation ${OP_DELAY}s into the load  flags: $EXTRA_FLAGS | kvorum: ${KVORUM_FLAGS:-} | etcd: ${ETCD_FLAGS:-}"
cat "$OUTDIR/meta.txt" >&2
log "output: $OUTDIR"
wait_quiet

CSV=$OUTDIR/results.csv
echo "round,server,phase,op_s,op_rc,rps,p50_ms,p99_ms,max_ms,win_max_ms,win_min_puts,errors,db_mb_before,db_mb_after,data_mb_before,data_mb_after,op_end_after_load,load1,longest_gap_s" >"$CSV"

# db_mb EPS -> largest db size (MB) any member reports in `endpoint status`
db_mb() {
  "$ETCDCTL" --endpoints="$1" --command-timeout=10s endpoint status -w fields 2>/dev/null </dev/null |
    awk -F' : ' '/^"DBSize"/{if ($2 + 0 > m) m = $2 + 0} END{printf "%.0f", m / 1048576}'
}
current_rev() {
  "$ETCDCTL" --endpoints="$1" --command-timeout=10s get stall-probe -w fields 2>/dev/null </dev/null | awk -F' : ' '/^"Revision"/{print $2; exit}'
}

# preload DIR SERVER ROUND NAME KEYS TOTAL KEY_SIZE VAL_SIZE
preload() {
  local raw="$OUTDIR/raw/r$3-$2-preload-$4.txt" t0 rc
  log "  $2: preload $4: $6 puts over $5 keys of $7 bytes, values of $8 bytes ..."
  echo "# $(date -u -Is) $2: benchmark --endpoints=$EPS --target-leader --clients=$PRELOAD_CLIENTS --conns=$PRELOAD_CONNS put --sequential-keys --key-space-size=$5 --total=$6 --key-size=$7 --val-size=$8" >"$raw"
  t0=$(now)
  bg_wait "$raw.full" timeout "$BENCH_TIMEOUT" "$BENCHMARK" --endpoints="$EPS" --target-leader --clients="$PRELOAD_CLIENTS" --conns="$PRELOAD_CONNS" \
    put --sequential-keys --key-space-size="$5" --total="$6" --key-size="$7" --val-size="$8"
  rc=$?
  filter_bench_output <"$raw.full" >>"$raw"; rm -f "$raw.full"
  log "    took $(since "$t0")s ($(bench_field "$raw" rps) put/s, $(bench_field "$raw" errors) errors, rc $rc)"
}

# phase DIR SERVER ROUND PHASE: the steady load, with the phase's operation OP_DELAY s into it
phase() {
  local dir=$1 srv=$2 r=$3 ph=$4 raw="$OUTDIR/raw/r$3-$2-$4.txt" l0 lead bpid op_t0="" op_t1="" op_s="" op_rc="" rev
  local db0 db1 d0 d1
  # the previous phase's operation may still be running on a member (a request can time out while
  # the work goes on): start from a cluster that answers, after a short pause
  wait_healthy "$dir" || log "  !! $srv: not all members healthy before the $ph phase"
  sleep "$PHASE_GAP"
  l0=$(load1)
  lead=$(leader_of "$dir")
  db0=$(db_mb "$EPS") d0=$(dir_mb "$dir/${lead:-m1}.data")
  echo "# $(date -u -Is) $srv: benchmark --endpoints=$EPS --clients=$LOAD_CLIENTS --conns=$LOAD_CONNS --sample put --rate=$RATE --total=$((RATE * PHASE_SECS)) --key-space-size=$PRELOAD_KEYS --val-size=$VAL_SIZE" >"$raw"
  "$BENCHMARK" --endpoints="$EPS" --clients="$LOAD_CLIENTS" --conns="$LOAD_CONNS" --precise --sample \
    put --rate="$RATE" --total=$((RATE * PHASE_SECS)) --key-space-size="$PRELOAD_KEYS" --val-size="$VAL_SIZE" </dev/null >"$raw.full" 2>&1 &
  bpid=$! CUR_BG=$bpid
  if [[ $ph != baseline ]]; then
    sleep "$OP_DELAY"
    op_t0=$(now)
    case $ph in
      compact)
        rev=$(current_rev "$EPS")
        echo "# $(date -u -Is) etcdctl compact $rev --physical" >>"$raw"
        "$ETCDCTL" --endpoints="$EPS" --command-timeout="${OP_TIMEOUT}s" compact "$rev" --physical </dev/null >>"$raw" 2>&1 ;;
      defrag)
        echo "# $(date -u -Is) etcdctl defrag --cluster" >>"$raw"
        "$ETCDCTL" --endpoints="$EPS" --command-timeout="${OP_TIMEOUT}s" defrag --cluster </dev/null >>"$raw" 2>&1 ;;
    esac
    op_rc=$? op_t1=$(now) op_s=$(awk -v a="$op_t0" -v b="$op_t1" 'BEGIN{printf "%.2f", b - a}')
    echo "# operation took ${op_s}s, rc $op_rc" >>"$raw"
  fi
  wait "$bpid"; CUR_BG=""
  local bend; bend=$(now)
  filter_bench_output <"$raw.full" >>"$raw"; rm -f "$raw.full"
  db1=$(db_mb "$EPS") d1=$(dir_mb "$dir/${lead:-m1}.data")
  local rps p50 p99 mx errs win="" after=""
  rps=$(bench_field "$raw" rps) p50=$(bench_field "$raw" p50) p99=$(bench_field "$raw" p99) mx=$(bench_field "$raw" max) errs=$(bench_field "$raw" errors)
  if [[ -n "$op_t0" ]]; then
    # per-second samples: UNIX-SECOND,MIN,AVG,MAX,COUNT (latencies as Go durations), keyed by request start
    win=$(awk -F, -v a="$op_t0" -v b="$op_t1" '
      function ms(d,   v, u) { if (d ~ /ms$/) return d + 0; if (d ~ /(µs|us)$/) return d / 1000; if (d ~ /ns$/) return d / 1e6
                               if (d ~ /m[0-9.]+s$/) { split(d, u, "m"); return (u[1] * 60 + u[2]) * 1000 } if (d ~ /s$/) return d * 1000; return d + 0 }
      /^UNIX-SECOND/ { on = 1; next }
      on && /^[0-9]+,/ { if ($1 + 1 > a && $1 <= b) { m = ms($4); if (m > mx) mx = m; if (mn == "" || $5 + 0 < mn) mn = $5 + 0 } }
      END { printf "%.3f %s", mx, (mn == "" ? "" : mn) }' "$raw")
    awk -v a="$op_t1" -v b="$bend" 'BEGIN{exit !(a > b - 0.5)}' && after=1 || after=0
  fi
  local wmax wmin gap; read -r wmax wmin <<<"$win"
  # the longest run of whole seconds in which no put that succeeded was started (the benchmark's latency
  # figures leave failed puts out, so a stall that ends in errors shows here, not in p99)
  gap=$(awk -F, '/^UNIX-SECOND/ { on = 1; next } on && /^[0-9]+,/ { if ($5 + 0 == 0) { g++; if (g > m) m = g } else g = 0 } END { print m + 0 }' "$raw")
  echo "$r,$srv,$ph,$op_s,$op_rc,$rps,$p50,$p99,$mx,$wmax,$wmin,$errs,$db0,$db1,$d0,$d1,$after,$l0,$gap" >>"$CSV"
  printf '  r%s %-6s %-8s p99 %8s ms  max %8s ms  %8s put/s  errors %s  no success for %ss | op %6ss rc %s: slowest started during it %8s ms, fewest puts/s %5s%s | db %s -> %s MB, data %s -> %s MB  load %s\n' \
    "$r" "$srv" "$ph" "${p99:-?}" "${mx:-?}" "${rps:-?}" "$errs" "$gap" "${op_s:--}" "${op_rc:--}" "${wmax:--}" "${wmin:--}" \
    "$( [[ $after == 1 ]] && echo ' (OUTLASTED THE LOAD)')" "$db0" "$db1" "$d0" "$d1" "$l0" >&2
}

echo "measurements started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)" >>"$OUTDIR/meta.txt"
T0=$SECONDS
for (( r = 1; r <= ROUNDS; r++ )); do
  log "== round $r/$ROUNDS (elapsed $((SECONDS - T0))s, load $(loadavg))"
  for srv in $(order "$r"); do
    dir=$OUTDIR/clusters/r$r-$srv
    if ! start_cluster "$srv" "$dir" 3; then
      for ph in $PHASES; do echo "$r,$srv,$ph,,,,,,,,,,,,,,,$(load1)" >>"$CSV"; done; continue
    fi
    (( BIG_KEYS > 0 )) && preload "$dir" "$srv" "$r" big "$BIG_KEYS" "$BIG_KEYS" 16 "$BIG_VAL"
    preload "$dir" "$srv" "$r" revs "$PRELOAD_KEYS" "$PRELOAD_REVS" 8 "$VAL_SIZE"
    for ph in $PHASES; do phase "$dir" "$srv" "$r" "$ph"; done
    kill_servers "$dir"; (( KEEP_DATA )) || rm -rf "$dir"/m*.data
  done
done
echo "measurements ended: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg); took $((SECONDS - T0))s" >>"$OUTDIR/meta.txt"

summarize() {
  sed 's/^/    /' "$OUTDIR/meta.txt"
  echo
  awk -F, -v R="$ROUNDS" -v PH="$PHASES" "$AWK_LIB"'
    NR == 1 { next }
    { k = $2 SUBSEP $3
      for (c = 4; c <= 16; c++) if ($c != "") { v[k, c] = v[k, c] " " $c; per[k, c, $1] = $c }
      errs[k] += $12; if ($17 == 1) outlast[k]++; if ($19 + 0 > gap[k]) gap[k] = $19 + 0; seen[k]++; if ($5 != "" && $5 != 0) opfail[k]++
      if ($18 != "") loads = loads " " $18 }
    END {
      np = split(PH, P, " ")
      print "| phase | server | p99 ms | max ms | p99 / baseline p99 | per round | slowest put started during the operation, ms | fewest puts started in 1 s of it | operation, s | db size before -> after, MB | failed puts | longest time without a successful put, s |"
      print "|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|"
      for (i = 1; i <= np; i++) for (s = 1; s <= 2; s++) {
        ph = P[i]; sv = (s == 1 ? "kvorum" : "etcd"); k = sv SUBSEP ph; b = sv SUBSEP "baseline"
        if (!seen[k]) continue
        p99 = med(v[k, 8]); base = med(v[b, 8]); pr = ""
        for (r = 1; r <= R; r++) pr = pr ((((k, 8, r) in per) && ((b, 8, r) in per)) ? ratio(per[k, 8, r], per[b, 8, r]) " " : "- ")
        Q[ph, sv] = p99; RB[ph, sv] = ratio(p99, base)
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s%s | %s -> %s | %d | %d |\n", ph, sv, f(p99, "%.2f"), f(med(v[k, 9]), "%.1f"), ratio(p99, base), pr,
          (ph == "baseline" ? "-" : f(med(v[k, 10]), "%.1f")), (ph == "baseline" ? "-" : f(med(v[k, 11]), "%.0f")),
          (ph == "baseline" ? "-" : f(med(v[k, 4]), "%.1f")), (outlast[k] ? " (outlasted the load " outlast[k] "x)" : "") (opfail[k] ? " (failed " opfail[k] "x)" : ""),
          f(med(v[k, 13]), "%.0f"), f(med(v[k, 14]), "%.0f"), errs[k], gap[k]
      }
      print ""
      print "Medians over " R " round(s). Max ms = slowest request of the whole load; the two operation columns come from the"
      print "benchmark tool'"'"'s per-second samples (requests grouped by the second they started in) overlapping the operation."
      print "The tool leaves failed puts out of its latencies: a phase with failed puts or seconds without a successful put"
      print "stalled, whatever its p99 says."
      print ""
      print "Kvorum/etcd p99 ratio per phase: " 
      for (i = 1; i <= np; i++) printf "- %s: %s\n", P[i], ratio(Q[P[i], "kvorum"], Q[P[i], "etcd"])
      print ""
      print "Target (issue 12): p99 during compaction and during defrag <= 1.5x the baseline p99:"
      for (i = 1; i <= np; i++) if (P[i] != "baseline") for (s = 1; s <= 2; s++) {
        sv = (s == 1 ? "kvorum" : "etcd"); x = RB[P[i], sv]; k = sv SUBSEP P[i]
        if (!seen[k]) continue
        ok = (x != "n/a" && x + 0 <= 1.5 && errs[k] == 0 && gap[k] < 2)
        printf "- %s %s: p99 ratio %s, %d failed puts, longest time without a successful put %d s%s\n", sv, P[i], x, errs[k], gap[k],
          (sv == "kvorum" && x != "n/a" ? (ok ? " (met)" : " (NOT met)") : "")
      }
      nl = split(loads, L, " "); lmin = lmax = ""
      for (i = 1; i <= nl; i++) { if (lmin == "" || L[i] + 0 < lmin) lmin = L[i] + 0; if (lmax == "" || L[i] + 0 > lmax) lmax = L[i] + 0 }
      printf "\n1-min load average before each phase: min %s, median %s, max %s (%d phases)\n", lmin, med(loads), lmax, nl
    }' "$CSV"
  echo
  echo "Per-phase CSV: $CSV  raw: $OUTDIR/raw/  member logs: $OUTDIR/clusters/"
}
summarize | tee "$OUTDIR/summary.md"
exit
}
