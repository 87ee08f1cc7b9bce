#!/usr/bin/env bash
# bench-memory.sh — memory of Kvorum vs etcd with many keys, side by side, several rounds.
#
#   scripts/bench-memory.sh                 # 2 rounds: 1M keys, then 4M, then the standard put run
#   KEYS=20000 LOAD2=50000 SETTLE=3 READ_SECONDS=3 PUT_TOTAL=5000 ROUNDS=1 scripts/bench-memory.sh   # smoke test
#   scripts/bench-memory.sh -h              # this help
#
# For every round, Kvorum and etcd alternately (etcd first in even rounds):
#   1. a fresh MEMBERS-member cluster (1 by default) is loaded with KEYS distinct keys (KEY_SIZE-byte
#      keys, VAL_SIZE-byte random values) by the official benchmark tool:
#        benchmark --target-leader --clients LOAD_CLIENTS --conns LOAD_CONNS put --sequential-keys
#                  --key-space-size KEYS --total KEYS --key-size KEY_SIZE --val-size VAL_SIZE
#      then the leader's RSS (VmRSS) and peak RSS (VmHWM) from /proc/PID/status are read right after
#      the load and again after SETTLE seconds idle, with the size of its data dir;
#   1b. if READ_SECONDS > 0, tools/readload reads from it for READ_SECONDS with READ_CLIENTS clients
#      (serializable gets of random keys, and every 20th request a range from a random key to the end,
#      limit 100, which counts every key after it), then its RSS and peak RSS are read again, and
#      after SETTLE seconds idle: do reads, which go through the engine's block cache, grow it?
#   1c. if LIST_SECONDS > 0, three runs of LIST_SECONDS each of tools/readload with LIST_CLIENTS clients,
#      every request a range from a random key to the end of the key space, as a Kubernetes list
#      reads its pages: limit LIST_LIMIT at the current revision (a list's first page), the same
#      with count_only, and limit LIST_LIMIT at a past revision (the later pages, which are read at
#      the first page's revision); each counts every key after its start. Ranges/s of each.
#   2. if LOAD2 > 0, the same member is loaded up to LOAD2 keys (keys 0..LOAD2-1, so the first KEYS
#      keys get a second revision) and measured the same way: does RSS grow with the key count?
#   3. if PUTRUN=1, the standard put run of bench.sh on a fresh 3-member cluster (CLIENTS clients over
#      CONNS connections, --target-leader, PUT_TOTAL puts of VAL_SIZE-byte values to KEY_SPACE 8-byte
#      keys), and the leader's peak RSS (VmHWM) at its end.
# Prints medians over the rounds, Kvorum/etcd ratios (of the medians and per round) and the targets
# of issue 12, and writes summary.md, results.csv, raw benchmark output and member logs to OUTDIR.
#
# Knobs (environment):
#   ROUNDS=2  MEMBERS=1 (1 or 3)  KEYS=1000000  LOAD2=4000000 (0: skip)  KEY_SIZE=12  VAL_SIZE=256
#   LOAD_CLIENTS=200 LOAD_CONNS=20  SETTLE=30 (seconds idle before the second reading)
#   READ_SECONDS=30 (0: skip)  READ_CLIENTS=50
#   LIST_SECONDS=20 (0: skip)  LIST_CLIENTS=2  LIST_LIMIT=500
#   PUTRUN=1  PUT_TOTAL=60000 CLIENTS=100 CONNS=10 KEY_SPACE=100000
#   QUOTA_BYTES=8589934592   --quota-backend-bytes for both servers (etcd's default of 2 GiB is below
#                            what etcd needs for 4M keys of 256 bytes)
#   OUTDIR=${TMPDIR:-/tmp}/kvorum-bench-memory-<utc time>   CACHE_DIR=~/.cache/kvorum-bench/bin
#   ETCD_VERSION=v3.7.3 BENCH_VERSION=v3.6.8  KVORUM= ETCD= ETCDCTL= BENCHMARK= (use these binaries)
#   SERVERS="kvorum etcd"   measure one side only with SERVERS=kvorum or SERVERS=etcd
#   EXTRA_FLAGS="" (both servers)  KVORUM_FLAGS="" ETCD_FLAGS=""  HEALTH_TIMEOUT=60  BENCH_TIMEOUT=1800
#   WAIT_LOAD= WAIT_MAX=600   wait for a 1-min load average below WAIT_LOAD before starting
#   KEEP_DATA=0               1 = keep the data dirs
#
# Every process the script starts is killed on exit, error or Ctrl-C.
set -uo pipefail
{ # one compound command: bash parses it whole, so editing the file during a run changes nothing

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
(( $# == 0 )) || { echo "bench-memory.sh: takes no arguments (configure with environment variables; -h for help)" >&2; exit 2; }

SCRIPT=bench-memory.sh BENCH_OUTDIR_PREFIX=kvorum-bench-memory
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
CMDLINE=$(cmdline SERVERS ROUNDS MEMBERS KEYS LOAD2 KEY_SIZE VAL_SIZE LOAD_CLIENTS LOAD_CONNS SETTLE READ_SECONDS READ_CLIENTS LIST_SECONDS LIST_CLIENTS LIST_LIMIT PUTRUN PUT_TOTAL CLIENTS \
  CONNS KEY_SPACE QUOTA_BYTES EXTRA_FLAGS KVORUM_FLAGS ETCD_FLAGS)

ROUNDS=${ROUNDS:-2} MEMBERS=${MEMBERS:-1} KEYS=${KEYS:-1000000} LOAD2=${LOAD2:-4000000}
KEY_SIZE=${KEY_SIZE:-12} VAL_SIZE=${VAL_SIZE:-256} LOAD_CLIENTS=${LOAD_CLIENTS:-200} LOAD_CONNS=${LOAD_CONNS:-20}
SETTLE=${SETTLE:-30} READ_SECONDS=${READ_SECONDS:-30} READ_CLIENTS=${READ_CLIENTS:-50} PUTRUN=${PUTRUN:-1} PUT_TOTAL=${PUT_TOTAL:-60000} CLIENTS=${CLIENTS:-100} CONNS=${CONNS:-10}
LIST_SECONDS=${LIST_SECONDS:-20} LIST_CLIENTS=${LIST_CLIENTS:-2} LIST_LIMIT=${LIST_LIMIT:-500}
KEY_SPACE=${KEY_SPACE:-100000} QUOTA_BYTES=${QUOTA_BYTES:-8589934592} KEEP_DATA=${KEEP_DATA:-0}
EXTRA_FLAGS="--quota-backend-bytes=$QUOTA_BYTES ${EXTRA_FLAGS:-}"

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$MEMBERS" == 1 || "$MEMBERS" == 3 ]] || die "MEMBERS must be 1 or 3"
[[ "$KEYS" =~ ^[1-9][0-9]*$ ]] || die "KEYS must be a positive integer"
[[ "$READ_SECONDS" =~ ^[0-9]+$ ]] || die "READ_SECONDS must be a number of seconds"
[[ "$READ_CLIENTS" =~ ^[1-9][0-9]*$ ]] || die "READ_CLIENTS must be a positive integer"
[[ "$LIST_SECONDS" =~ ^[0-9]+$ ]] || die "LIST_SECONDS must be a number of seconds"
[[ "$LIST_CLIENTS" =~ ^[1-9][0-9]*$ && "$LIST_LIMIT" =~ ^[1-9][0-9]*$ ]] || die "LIST_CLIENTS and LIST_LIMIT must be positive integers"
[[ "$LOAD2" =~ ^[0-9]+$ ]] && { (( LOAD2 == 0 || LOAD2 > KEYS )) || die "LOAD2 must be 0 or more than KEYS"; } || die "LOAD2 must be a number"

build_all readload
mkdir -p "$OUTDIR/raw" "$OUTDIR/clusters"
write_meta "$OUTDIR/meta.txt" "$CMDLINE" \
  "rounds: $ROUNDS  members: $MEMBERS  keys: $KEYS then $LOAD2  reads: ${READ_SECONDS}s, $READ_CLIENTS clients  key/value: $KEY_SIZE/$VAL_SIZE bytes  load clients/conns: $LOAD_CLIENTS/$LOAD_CONNS  settle: ${SETTLE}s  put run: $PUTRUN ($CLIENTS clients, $PUT_TOTAL puts)  flags: $EXTRA_FLAGS | kvorum: ${KVORUM_FLAGS:-} | etcd: ${ETCD_FLAGS:-}"
cat "$OUTDIR/meta.txt" >&2
log "output: $OUTDIR"
wait_quiet

CSV=$OUTDIR/results.csv
echo "round,server,phase,keys,load_s,load_rps,errors,rss_mb,hwm_mb,rss_settled_mb,hwm_settled_mb,data_mb,load1" >"$CSV"

# load DIR SERVER ROUND PHASE NKEYS: load keys 0..NKEYS-1 through the leader, then measure it
load_and_measure() {
  local dir=$1 srv=$2 r=$3 phase=$4 n=$5 raw="$OUTDIR/raw/r$3-$2-$4.txt" l0 t0 rc lead pid
  l0=$(load1)
  lead=$(leader_of "$dir") || { log "  no leader in $dir"; echo "$r,$srv,$phase,$n,,,,,,,,,$l0" >>"$CSV"; return 1; }
  pid=$(member_pid "$dir" "$lead")
  echo "# $(date -u -Is) $srv: benchmark --endpoints=$EPS --target-leader --clients=$LOAD_CLIENTS --conns=$LOAD_CONNS put --sequential-keys --key-space-size=$n --total=$n --key-size=$KEY_SIZE --val-size=$VAL_SIZE" >"$raw"
  t0=$(now)
  bg_wait "$raw.full" timeout "$BENCH_TIMEOUT" "$BENCHMARK" --endpoints="$EPS" --target-leader --clients="$LOAD_CLIENTS" \
    --conns="$LOAD_CONNS" --precise put --sequential-keys --key-space-size="$n" --total="$n" --key-size="$KEY_SIZE" --val-size="$VAL_SIZE"
  rc=$?
  local took; took=$(since "$t0")
  filter_bench_output <"$raw.full" >>"$raw"; rm -f "$raw.full"
  local rps errs rss hwm rss2 hwm2 data
  rps=$(bench_field "$raw" rps) errs=$(bench_field "$raw" errors)
  (( rc == 0 )) || log "  !! benchmark exited $rc ($raw)"
  alive "$pid" || { log "  !! $srv member $lead died during the load (log: $dir/$lead.log)"; echo "$r,$srv,$phase,$n,$took,$rps,$errs,,,,,,$l0" >>"$CSV"; return 1; }
  rss=$(mb "$(vm_kb "$pid" VmRSS)") hwm=$(mb "$(vm_kb "$pid" VmHWM)")
  sleep "$SETTLE"
  rss2=$(mb "$(vm_kb "$pid" VmRSS)") hwm2=$(mb "$(vm_kb "$pid" VmHWM)") data=$(dir_mb "$dir/$lead.data")
  echo "$r,$srv,$phase,$n,$took,$rps,$errs,$rss,$hwm,$rss2,$hwm2,$data,$l0" >>"$CSV"
  printf '  r%s %-6s %-6s %8s keys  load %7ss (%8s put/s, %s errors)  RSS %5s MB (peak %5s)  after %ss: %5s MB (peak %5s)  data %5s MB  load %s\n' \
    "$r" "$srv" "$phase" "$n" "$took" "${rps:-?}" "$errs" "$rss" "$hwm" "$SETTLE" "$rss2" "$hwm2" "$data" "$l0" >&2
}

# read_and_measure DIR SERVER ROUND NKEYS: READ_SECONDS of tools/readload against the leader, then
# measure it as load_and_measure does (the load columns hold the seconds and reads/s)
read_and_measure() {
  local dir=$1 srv=$2 r=$3 n=$4 raw="$OUTDIR/raw/r$3-$2-reads.txt" l0 lead pid ep rc
  l0=$(load1)
  lead=$(leader_of "$dir") || { log "  no leader in $dir"; echo "$r,$srv,reads,$n,,,,,,,,,$l0" >>"$CSV"; return 1; }
  pid=$(member_pid "$dir" "$lead") ep=$(member_ep "$dir" "$lead")
  echo "# $(date -u -Is) $srv: readload --endpoints=$ep --keys=$n --key-size=$KEY_SIZE --clients=$READ_CLIENTS --duration=${READ_SECONDS}s" >"$raw"
  bg_wait "$raw.out" timeout $((READ_SECONDS + 300)) "$OUTDIR/bin/readload" --endpoints="$ep" --keys="$n" --key-size="$KEY_SIZE" \
    --clients="$READ_CLIENTS" --duration="${READ_SECONDS}s"
  rc=$?
  cat "$raw.out" >>"$raw"; rm -f "$raw.out"
  (( rc == 0 )) || log "  !! readload exited $rc ($raw)"
  alive "$pid" || { log "  !! $srv member $lead died during the reads (log: $dir/$lead.log)"; echo "$r,$srv,reads,$n,,,,,,,,,$l0" >>"$CSV"; return 1; }
  local rps rss hwm rss2 hwm2
  rps=$(sed -n 's/.*reads_per_s=\([0-9.]*\).*/\1/p' "$raw")
  rss=$(mb "$(vm_kb "$pid" VmRSS)") hwm=$(mb "$(vm_kb "$pid" VmHWM)")
  sleep "$SETTLE"
  rss2=$(mb "$(vm_kb "$pid" VmRSS)") hwm2=$(mb "$(vm_kb "$pid" VmHWM)")
  echo "$r,$srv,reads,$n,$READ_SECONDS,$rps,0,$rss,$hwm,$rss2,$hwm2,,$l0" >>"$CSV"
  printf '  r%s %-6s reads  %8s keys  %ss of reads (%8s reads/s)  RSS %5s MB (peak %5s)  after %ss: %5s MB (peak %5s)  load %s\n' \
    "$r" "$srv" "$n" "$READ_SECONDS" "${rps:-?}" "$rss" "$hwm" "$SETTLE" "$rss2" "$hwm2" "$l0" >&2
}

# lists DIR SERVER ROUND NKEYS: the three kinds of counted ranges (see 1c above) against the leader,
# LIST_SECONDS each; the load columns hold the seconds and ranges/s
lists() {
  local dir=$1 srv=$2 r=$3 n=$4 l0 lead ep kind flags raw rc rps
  lead=$(leader_of "$dir") || { log "  no leader in $dir"; return 1; }
  ep=$(member_ep "$dir" "$lead")
  for kind in first count past; do
    case $kind in
      first) flags=() ;;
      count) flags=(--count-only) ;;
      past) flags=(--past-revision) ;;
    esac
    l0=$(load1) raw="$OUTDIR/raw/r$r-$srv-list-$kind.txt"
    echo "# $(date -u -Is) $srv: readload --endpoints=$ep --keys=$n --key-size=$KEY_SIZE --clients=$LIST_CLIENTS --range-every=1 --limit=$LIST_LIMIT ${flags[*]} --duration=${LIST_SECONDS}s" >"$raw"
    bg_wait "$raw.out" timeout $((LIST_SECONDS + 300)) "$OUTDIR/bin/readload" --endpoints="$ep" --keys="$n" --key-size="$KEY_SIZE" \
      --clients="$LIST_CLIENTS" --range-every=1 --limit="$LIST_LIMIT" "${flags[@]}" --duration="${LIST_SECONDS}s"
    rc=$?
    cat "$raw.out" >>"$raw"; rm -f "$raw.out"
    (( rc == 0 )) || { log "  !! readload exited $rc ($raw)"; continue; }
    rps=$(sed -n 's/.*reads_per_s=\([0-9.]*\).*/\1/p' "$raw")
    echo "$r,$srv,list-$kind,$n,$LIST_SECONDS,$rps,0,,,,,,$l0" >>"$CSV"
    printf '  r%s %-6s list-%-5s %8s keys  %ss (%8s ranges/s, %s)  load %s\n' "$r" "$srv" "$kind" "$n" "$LIST_SECONDS" "${rps:-?}" \
      "$(sed -n 's/.*\(p50_ms=[0-9.]* p99_ms=[0-9.]*\).*/\1/p' "$raw")" "$l0" >&2
  done
}

putrun() { # SERVER ROUND: the standard put run on a fresh 3-member cluster, leader's peak RSS
  local srv=$1 r=$2 dir="$OUTDIR/clusters/r$2-$1-putrun" raw="$OUTDIR/raw/r$2-$1-putrun.txt" l0 lead pid t0 rc
  l0=$(load1)
  start_cluster "$srv" "$dir" 3 || { echo "$r,$srv,putrun,$PUT_TOTAL,,,,,,,,,$l0" >>"$CSV"; return; }
  lead=$(leader_of "$dir"); pid=$(member_pid "$dir" "$lead")
  echo "# $(date -u -Is) $srv: benchmark --endpoints=$EPS --target-leader --conns=$CONNS --clients=$CLIENTS put --key-size=8 --key-space-size=$KEY_SPACE --val-size=$VAL_SIZE --total=$PUT_TOTAL" >"$raw"
  t0=$(now)
  bg_wait "$raw.full" timeout "$BENCH_TIMEOUT" "$BENCHMARK" --endpoints="$EPS" --target-leader --conns="$CONNS" --clients="$CLIENTS" \
    --precise put --key-size=8 --key-space-size="$KEY_SPACE" --val-size="$VAL_SIZE" --total="$PUT_TOTAL"
  rc=$?
  local took; took=$(since "$t0")
  filter_bench_output <"$raw.full" >>"$raw"; rm -f "$raw.full"
  local rps errs rss hwm lead2
  rps=$(bench_field "$raw" rps) errs=$(bench_field "$raw" errors)
  rss=$(mb "$(vm_kb "$pid" VmRSS)") hwm=$(mb "$(vm_kb "$pid" VmHWM)")
  lead2=$(leader_of "$dir")
  [[ "$lead2" == "$lead" ]] || log "  !! leader changed during the put run ($lead -> ${lead2:-none}); peak RSS is of $lead"
  echo "$r,$srv,putrun,$PUT_TOTAL,$took,$rps,$errs,$rss,$hwm,,,,$l0" >>"$CSV"
  printf '  r%s %-6s putrun %s puts  %7ss (%8s put/s, %s errors)  leader %s RSS %5s MB (peak %5s)  load %s\n' \
    "$r" "$srv" "$PUT_TOTAL" "$took" "${rps:-?}" "$errs" "$lead" "$rss" "$hwm" "$l0" >&2
  kill_servers "$dir"; (( KEEP_DATA )) || rm -rf "$dir"/m*.data
}

echo "measurements started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)" >>"$OUTDIR/meta.txt"
T0=$SECONDS
for (( r = 1; r <= ROUNDS; r++ )); do
  log "== round $r/$ROUNDS (elapsed $((SECONDS - T0))s, load $(loadavg))"
  for srv in $(order "$r"); do
    dir=$OUTDIR/clusters/r$r-$srv-load
    if start_cluster "$srv" "$dir" "$MEMBERS"; then
      load_and_measure "$dir" "$srv" "$r" load1 "$KEYS" &&
        { (( READ_SECONDS == 0 )) || read_and_measure "$dir" "$srv" "$r" "$KEYS"; } &&
        { (( LIST_SECONDS == 0 )) || lists "$dir" "$srv" "$r" "$KEYS"; } &&
        (( LOAD2 > 0 )) && load_and_measure "$dir" "$srv" "$r" load2 "$LOAD2"
      kill_servers "$dir"; (( KEEP_DATA )) || rm -rf "$dir"/m*.data
    else
      echo "$r,$srv,load1,$KEYS,,,,,,,,,$(load1)" >>"$CSV"
    fi
  done
  if (( PUTRUN )); then for srv in $(order "$r"); do putrun "$srv" "$r"; done; fi
done
echo "measurements ended: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg); took $((SECONDS - T0))s" >>"$OUTDIR/meta.txt"

# ---------------------------------------------------------------- summary ----
summarize() {
  sed 's/^/    /' "$OUTDIR/meta.txt"
  echo
  awk -F, -v R="$ROUNDS" -v KEYS="$KEYS" -v LOAD2="$LOAD2" -v SETTLE="$SETTLE" -v READ_S="$READ_SECONDS" -v LIMIT="$LIST_LIMIT" -v M="$MEMBERS" "$AWK_LIB"'
    NR == 1 { next }
    { for (c = 5; c <= 12; c++) if ($c != "") { v[$3, $2, c] = v[$3, $2, c] " " $c; per[$3, $2, c, $1] = $c }
      if ($7 + 0 > 0) errs[$3, $2] += $7
      if ($13 != "") loads = loads " " $13 }
    function row(label, ph, c,   a, b, s, r) {
      a = med(v[ph, "kvorum", c]); b = med(v[ph, "etcd", c]); s = ""
      if (a == "" && b == "") return
      for (r = 1; r <= R; r++) s = s (((ph, "kvorum", c, r) in per && (ph, "etcd", c, r) in per) ? ratio(per[ph, "kvorum", c, r], per[ph, "etcd", c, r]) " " : "- ")
      printf "| %s | %s | %s | %s | %s |\n", label, f(a, "%.0f"), f(b, "%.0f"), ratio(a, b), s
      K[ph, c] = a; E[ph, c] = b
    }
    END {
      who = (M == 1 ? "1 member" : "leader of 3")
      print "| " who " | Kvorum | etcd | ratio | ratio per round |"
      print "|---|---:|---:|---:|---|"
      row(KEYS " keys: RSS after load, MB", "load1", 8)
      row(KEYS " keys: peak RSS (VmHWM) after load, MB", "load1", 9)
      row(KEYS " keys: RSS after " SETTLE " s idle, MB", "load1", 10)
      row(KEYS " keys: data dir, MB", "load1", 12)
      row(KEYS " keys: load time, s", "load1", 5)
      row(KEYS " keys: load rate, put/s", "load1", 6)
      row(KEYS " keys, after " READ_S " s of reads: RSS, MB", "reads", 8)
      row(KEYS " keys, after " READ_S " s of reads: peak RSS (VmHWM), MB", "reads", 9)
      row(KEYS " keys, after " READ_S " s of reads and " SETTLE " s idle: RSS, MB", "reads", 10)
      row(KEYS " keys: reads/s", "reads", 6)
      row(KEYS " keys: list first pages (limit " LIMIT ", counted), ranges/s", "list-first", 6)
      row(KEYS " keys: list counts (count_only), ranges/s", "list-count", 6)
      row(KEYS " keys: list later pages (past revision, limit " LIMIT ", counted), ranges/s", "list-past", 6)
      if (LOAD2 > 0) {
        row(LOAD2 " keys: RSS after load, MB", "load2", 8)
        row(LOAD2 " keys: peak RSS (VmHWM), MB", "load2", 9)
        row(LOAD2 " keys: RSS after " SETTLE " s idle, MB", "load2", 10)
        row(LOAD2 " keys: data dir, MB", "load2", 12)
        row(LOAD2 " keys: load time, s", "load2", 5)
      }
      row("standard put run: leader RSS at end, MB", "putrun", 8)
      row("standard put run: leader peak RSS (VmHWM), MB", "putrun", 9)
      row("standard put run: put/s", "putrun", 6)
      print ""
      print "Medians over " R " round(s); ratio = Kvorum/etcd (below 1 favours Kvorum, except for put/s, reads/s and ranges/s)."
      print ""
      print "Targets (issue 12), from the medians:"
      print ""
      a = K["load1", 8]; b = E["load1", 8]
      if (a != "" && b != "") printf "- RSS after loading %d keys <= 0.5x etcd: %.2f (%s)\n", KEYS, a / b, (a <= 0.5 * b ? "met" : "NOT met")
      if (LOAD2 > 0) for (s = 1; s <= 2; s++) {
        srv = (s == 1 ? "kvorum" : "etcd"); a = med(v["load1", srv, 10]); b = med(v["load2", srv, 10])
        if (a != "" && b != "") printf "- %s: RSS (after settling) at %d keys / at %d keys: %.2f%s\n", srv, LOAD2, KEYS, b / a,
          (srv == "kvorum" ? ((b <= 1.25 * a) ? " (target <= 1.25: met)" : " (target <= 1.25: NOT met)") : "")
      }
      a = K["putrun", 9]; b = E["putrun", 9]
      if (a != "" && b != "") printf "- leader peak RSS in the standard put run <= etcd: %.2f (%s)\n", a / b, (a <= b ? "met" : "NOT met")
      print ""
      any = 0
      for (k in errs) { split(k, p, SUBSEP); printf "- benchmark errors: %s %s: %d\n", p[2], p[1], errs[k]; any = 1 }
      if (!any) print "- no benchmark errors"
      nl = split(loads, L, " "); lmin = lmax = ""
      for (i = 1; i <= nl; i++) { if (lmin == "" || L[i] + 0 < lmin) lmin = L[i] + 0; if (lmax == "" || L[i] + 0 > lmax) lmax = L[i] + 0 }
      printf "- 1-min load average before each step: min %s, median %s, max %s (%d steps)\n", lmin, med(loads), lmax, nl
    }' "$CSV"
  echo
  echo "Raw outputs: $OUTDIR/raw/  per-step CSV: $CSV  member logs: $OUTDIR/clusters/"
}
summarize | tee "$OUTDIR/summary.md"
exit
}
