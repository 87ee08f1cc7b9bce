#!/usr/bin/env bash
# bench-restart.sh — restart after kill -9 of a member holding many keys: Kvorum vs etcd, side by side.
#
#   scripts/bench-restart.sh               # 1M keys, 5 restarts of each server
#   KEYS=20000 ROUNDS=2 SETTLE=2 scripts/bench-restart.sh   # smoke test
#   scripts/bench-restart.sh -h            # this help
#
# What it does:
#   1. starts one single-member Kvorum and one single-member etcd, each loaded with KEYS distinct keys
#      (KEY_SIZE-byte keys, VAL_SIZE-byte random values) by the official benchmark tool
#      (put --sequential-keys --key-space-size KEYS --total KEYS, LOAD_CLIENTS clients), then idle
#      SETTLE seconds;
#   2. ROUNDS times, Kvorum and etcd alternately (etcd first in even rounds): kill -9 the member,
#      start it again on the same data dir and flags, and poll it (tools/readwait, a client/v3
#      program retrying every few ms) until it serves a serializable Get, then a linearizable Get.
#      The times are from launching the process; the RSS is read when the linearizable read is served;
#      After each restart (not timed) it counts the keys with `etcdctl get "" --from-key --count-only`;
#   3. prints medians, Kvorum/etcd ratios (of the medians and per round), the target of issue 12
#      (Kvorum <= 0.25x etcd), and writes summary.md, results.csv and member logs to OUTDIR.
#
# Knobs (environment):
#   ROUNDS=5  KEYS=1000000  KEY_SIZE=12  VAL_SIZE=256  LOAD_CLIENTS=200 LOAD_CONNS=20  SETTLE=10
#   DATA_FROM=            OUTDIR of an earlier run (killed or KEEP_DATA=1): copy its loaded members' data
#                         dirs instead of loading again (KEYS must be what they hold)
#   RESTART_TIMEOUT=300   seconds a restarted member gets to serve a read
#   PAUSE=2               seconds between a member serving reads and the next kill
#   QUOTA_BYTES=8589934592   --quota-backend-bytes for both servers
#   OUTDIR=${TMPDIR:-/tmp}/kvorum-bench-restart-<utc time>   CACHE_DIR=~/.cache/kvorum-bench/bin
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
(( $# == 0 )) || { echo "bench-restart.sh: takes no arguments (configure with environment variables; -h for help)" >&2; exit 2; }

SCRIPT=bench-restart.sh BENCH_OUTDIR_PREFIX=kvorum-bench-restart
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
CMDLINE=$(cmdline SERVERS DATA_FROM ROUNDS KEYS KEY_SIZE VAL_SIZE LOAD_CLIENTS LOAD_CONNS SETTLE RESTART_TIMEOUT PAUSE QUOTA_BYTES EXTRA_FLAGS KVORUM_FLAGS ETCD_FLAGS)

ROUNDS=${ROUNDS:-5} KEYS=${KEYS:-1000000} KEY_SIZE=${KEY_SIZE:-12} VAL_SIZE=${VAL_SIZE:-256}
LOAD_CLIENTS=${LOAD_CLIENTS:-200} LOAD_CONNS=${LOAD_CONNS:-20} SETTLE=${SETTLE:-10}
RESTART_TIMEOUT=${RESTART_TIMEOUT:-300} PAUSE=${PAUSE:-2} QUOTA_BYTES=${QUOTA_BYTES:-8589934592} KEEP_DATA=${KEEP_DATA:-0}
EXTRA_FLAGS="--quota-backend-bytes=$QUOTA_BYTES ${EXTRA_FLAGS:-}"

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$KEYS" =~ ^[1-9][0-9]*$ ]] || die "KEYS must be a positive integer"

build_all readwait
READWAIT=$OUTDIR/bin/readwait
mkdir -p "$OUTDIR/raw" "$OUTDIR/clusters"
write_meta "$OUTDIR/meta.txt" "$CMDLINE" \
  "rounds: $ROUNDS  keys: $KEYS  key/value: $KEY_SIZE/$VAL_SIZE bytes  load clients/conns: $LOAD_CLIENTS/$LOAD_CONNS  flags: $EXTRA_FLAGS | kvorum: ${KVORUM_FLAGS:-} | etcd: ${ETCD_FLAGS:-}"
cat "$OUTDIR/meta.txt" >&2
log "output: $OUTDIR"
wait_quiet

CSV=$OUTDIR/results.csv
echo "round,server,keys,serializable_s,linearizable_s,rss_mb,data_mb,load1,keys_counted" >"$CSV"
echo "loading started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)" >>"$OUTDIR/meta.txt"

for srv in $(order 1); do
  dir=$OUTDIR/clusters/$srv
  if [[ -n "${DATA_FROM:-}" ]]; then
    # the members loaded by an earlier run: copy their data dirs and start them again as they were
    src=$DATA_FROM/clusters/$srv
    [[ -f "$src/cluster.env" && -d "$src/m1.data" ]] || die "DATA_FROM: no $srv member in $src"
    log "copying $src/m1.data ($(dir_mb "$src/m1.data") MB) ..."
    mkdir -p "$dir" && cp -a "$src/m1.data" "$dir/" || die "cannot copy $src/m1.data"
    # same ports and cluster token as before (a member's own peer URL is part of its data); this build
    server_bin "$srv"
    ( source "$src/cluster.env"; port_in_use "$C_BASE" || port_in_use $((C_BASE + 1)) ) && die "DATA_FROM: the ports of $src are in use"
    sed "s|^C_BIN=.*|C_BIN=$(printf %q "$SRV_BIN")|" "$src/cluster.env" >"$dir/cluster.env"
    : >"$dir/pids"
    start_member "$dir" m1
    wait_healthy "$dir" || die "the copied $srv member did not become healthy (log: $dir/m1.log)"
    log "  $srv: restarted on the copied data, RSS $(mb "$(vm_kb "$(member_pid "$dir" m1)" VmRSS)") MB, data $(dir_mb "$dir/m1.data") MB"
    continue
  fi
  start_cluster "$srv" "$dir" 1 || die "could not start a $srv member (logs in $dir)"
  raw=$OUTDIR/raw/$srv-load.txt
  log "loading $KEYS keys into $srv ..."
  t0=$(now)
  echo "# $(date -u -Is) $srv: benchmark --endpoints=$EPS --clients=$LOAD_CLIENTS --conns=$LOAD_CONNS put --sequential-keys --key-space-size=$KEYS --total=$KEYS --key-size=$KEY_SIZE --val-size=$VAL_SIZE" >"$raw"
  bg_wait "$raw.full" timeout "$BENCH_TIMEOUT" "$BENCHMARK" --endpoints="$EPS" --clients="$LOAD_CLIENTS" --conns="$LOAD_CONNS" --precise \
    put --sequential-keys --key-space-size="$KEYS" --total="$KEYS" --key-size="$KEY_SIZE" --val-size="$VAL_SIZE" ||
    log "  !! benchmark exited $? ($raw)"
  filter_bench_output <"$raw.full" >>"$raw"; rm -f "$raw.full"
  log "  $srv: loaded in $(since "$t0")s ($(bench_field "$raw" rps) put/s, $(bench_field "$raw" errors) errors), RSS $(mb "$(vm_kb "$(member_pid "$dir" m1)" VmRSS)") MB, data $(dir_mb "$dir/m1.data") MB"
done
log "idle ${SETTLE}s before the first kill"
sleep "$SETTLE"
echo "restarts started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)" >>"$OUTDIR/meta.txt"

T0=$SECONDS
for (( r = 1; r <= ROUNDS; r++ )); do
  log "== round $r/$ROUNDS (elapsed $((SECONDS - T0))s, load $(loadavg))"
  for srv in $(order "$r"); do
    dir=$OUTDIR/clusters/$srv pid=$(member_pid "$OUTDIR/clusters/$srv" m1) ep=$(member_ep "$OUTDIR/clusters/$srv" m1) l0=$(load1)
    if ! alive "$pid"; then log "  !! $srv member is not running (log: $dir/m1.log)"; echo "$r,$srv,$KEYS,,,,,$l0" >>"$CSV"; continue; fi
    kill -KILL "$pid"; wait_gone "$pid"; forget_server "$pid"
    echo "--- $(date -u -Is) bench-restart.sh: killed with SIGKILL, restarting" >>"$dir/m1.log"
    t0=$(date +%s%N)
    start_member "$dir" m1
    "$READWAIT" --endpoint="$ep" --since="$t0" --timeout="${RESTART_TIMEOUT}s" </dev/null >"$OUTDIR/raw/r$r-$srv-readwait.txt" 2>&1 &
    CUR_BG=$!
    while alive "$CUR_BG"; do   # stop waiting if the member exits (e.g. it cannot open its data)
      alive "$(member_pid "$dir" m1)" || { log "  !! $srv member exited during the restart; log tail:"; tail -5 "$dir/m1.log" >&2; stop_bg "$CUR_BG"; break; }
      sleep 0.1
    done
    wait "$CUR_BG" 2>/dev/null; CUR_BG=""
    out=$(cat "$OUTDIR/raw/r$r-$srv-readwait.txt")
    ser=$(sed -n 's/.*serializable_s=\([0-9.]*\).*/\1/p' <<<"$out") lin=$(sed -n 's/.*linearizable_s=\([0-9.]*\).*/\1/p' <<<"$out")
    pid=$(member_pid "$dir" m1)
    rss=$(mb "$(vm_kb "$pid" VmRSS)") data=$(dir_mb "$dir/m1.data")
    [[ -n "$lin" ]] || log "  !! $srv: no read served: $out"
    # sanity check, not timed: every key is still there
    count=$("$ETCDCTL" --endpoints="$ep" --command-timeout=300s get "" --from-key --count-only -w fields </dev/null 2>/dev/null | awk -F' : ' '/^"Count"/{print $2}')
    [[ "$count" == "$KEYS" ]] || log "  !! $srv: $KEYS keys loaded, ${count:-?} counted after the restart"
    echo "$r,$srv,$KEYS,$ser,$lin,$rss,$data,$l0,$count" >>"$CSV"
    printf '  r%s %-6s serializable read after %6ss, linearizable after %6ss  RSS %5s MB  data %5s MB  keys %s  load %s\n' \
      "$r" "$srv" "${ser:-?}" "${lin:-?}" "$rss" "$data" "${count:-?}" "$l0" >&2
    sleep "$PAUSE"
  done
done
echo "restarts ended: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg); took $((SECONDS - T0))s" >>"$OUTDIR/meta.txt"
kill_servers
(( KEEP_DATA )) || rm -rf "$OUTDIR"/clusters/*/m*.data

summarize() {
  sed 's/^/    /' "$OUTDIR/meta.txt"
  echo
  awk -F, -v R="$ROUNDS" -v KEYS="$KEYS" "$AWK_LIB"'
    NR == 1 { next }
    { for (c = 4; c <= 7; c++) if ($c != "") { v[$2, c] = v[$2, c] " " $c; per[$2, c, $1] = $c }
      if ($5 == "") miss[$2]++
      if ($9 != $3) lost[$2] = lost[$2] " r" $1 ":" ($9 == "" ? "?" : $9)
      if ($8 != "") loads = loads " " $8 }
    function row(label, c, fmt,   a, b, s, r) {
      a = med(v["kvorum", c]); b = med(v["etcd", c]); s = ""
      for (r = 1; r <= R; r++) s = s (((("kvorum", c, r) in per) && (("etcd", c, r) in per)) ? ratio(per["kvorum", c, r], per["etcd", c, r]) " " : "- ")
      printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, f(a, fmt), f(b, fmt), ratio(a, b), s, f(maxof(v["kvorum", c]), fmt), f(maxof(v["etcd", c]), fmt)
      A[c] = a; B[c] = b
    }
    END {
      print "| 1 member, " KEYS " keys, kill -9 then restart | Kvorum | etcd | ratio | ratio per round | Kvorum max | etcd max |"
      print "|---|---:|---:|---:|---|---:|---:|"
      row("until a serializable read is served, s", 4, "%.2f")
      row("until a linearizable read is served, s", 5, "%.2f")
      row("RSS when serving again, MB", 6, "%.0f")
      row("data dir, MB", 7, "%.0f")
      print ""
      print "Medians over " R " restart(s) of each server; ratio = Kvorum/etcd (below 1 favours Kvorum)."
      print ""
      if (A[5] != "" && B[5] != "") printf "Target (issue 12): restart until reads are served <= 0.25x etcd: %.2f (%s)\n", A[5] / B[5], (A[5] <= 0.25 * B[5] ? "met" : "NOT met")
      for (s in lost) printf "\n- %s: key count after a restart differs from the %d loaded:%s\n", s, KEYS, lost[s]
      for (s in miss) printf "\n- %s: %d restart(s) without a read served in time\n", s, miss[s]
      nl = split(loads, L, " "); lmin = lmax = ""
      for (i = 1; i <= nl; i++) { if (lmin == "" || L[i] + 0 < lmin) lmin = L[i] + 0; if (lmax == "" || L[i] + 0 > lmax) lmax = L[i] + 0 }
      printf "\n1-min load average before each restart: min %s, median %s, max %s (%d restarts)\n", lmin, med(loads), lmax, nl
    }' "$CSV"
  echo
  echo "Per-restart CSV: $CSV  raw: $OUTDIR/raw/  member logs: $OUTDIR/clusters/"
}
summarize | tee "$OUTDIR/summary.md"
exit
}
