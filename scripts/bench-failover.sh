#!/usr/bin/env bash
# bench-failover.sh — puts in flight while the leader is killed: Kvorum vs etcd, side by side.
#
#   scripts/bench-failover.sh               # 20 leader kills of each server
#   KILLS=3 scripts/bench-failover.sh       # smoke test
#   scripts/bench-failover.sh -h            # this help
#
# What it does:
#   1. starts a 3-member Kvorum and a 3-member etcd (both stay up for the whole run);
#   2. KILLS times, Kvorum and etcd alternately (etcd first in even rounds), runs tools/failover
#      against the cluster: two writers, each with one put in flight at a time, write for WARMUP
#      seconds, then the tool kills the leader with SIGKILL and watches
#        - series "follower": a client that knows only one follower (the server must carry the put);
#        - series "leader": a client that knows the leader first, then the followers, and sends its
#          next put to the next endpoint after an error (a client that fails over);
#      for each: did the put in flight at the kill fail, how many puts failed until a put sent after
#      the kill was committed, and the time from the kill to that first commit. Each put has a client
#      timeout of PUT_TIMEOUT; after a failure the writer waits RETRY_WAIT before the next put;
#   3. restarts the killed member on its data dir and waits until all 3 members are healthy, PAUSE s;
#   4. prints per server and series: in-flight puts that failed, failed puts in all, median and max of
#      kill -> first commit, Kvorum/etcd ratios; writes summary.md, results.csv, the tool's output and
#      member logs to OUTDIR.
#
# Knobs (environment):
#   KILLS=20  PUT_TIMEOUT=5s  RETRY_WAIT=20ms  WARMUP=1s  DEADLINE=30s (give up on a round)  PAUSE=2
#   OUTDIR=${TMPDIR:-/tmp}/kvorum-bench-failover-<utc time>   CACHE_DIR=~/.cache/kvorum-bench/bin
#   ETCD_VERSION=v3.7.3 BENCH_VERSION=v3.6.8  KVORUM= ETCD= ETCDCTL= BENCHMARK= (use these binaries)
#   SERVERS="kvorum etcd"   measure one side only with SERVERS=kvorum or SERVERS=etcd
#   EXTRA_FLAGS="" (both servers)  KVORUM_FLAGS="" ETCD_FLAGS=""  HEALTH_TIMEOUT=60
#   WAIT_LOAD= WAIT_MAX=600   wait for a 1-min load average below WAIT_LOAD before starting
#   KEEP_DATA=0               1 = keep the data dirs
#
# Every process the script starts is killed on exit, error or Ctrl-C.
set -uo pipefail
{ # one compound command: bash parses it whole, so editing the file during a run changes nothing

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
(( $# == 0 )) || { echo "bench-failover.sh: takes no arguments (configure with environment variables; -h for help)" >&2; exit 2; }

SCRIPT=bench-failover.sh BENCH_OUTDIR_PREFIX=kvorum-bench-failover
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
CMDLINE=$(cmdline SERVERS KILLS PUT_TIMEOUT RETRY_WAIT WARMUP DEADLINE PAUSE EXTRA_FLAGS KVORUM_FLAGS ETCD_FLAGS)

KILLS=${KILLS:-20} PUT_TIMEOUT=${PUT_TIMEOUT:-5s} RETRY_WAIT=${RETRY_WAIT:-20ms} WARMUP=${WARMUP:-1s}
DEADLINE=${DEADLINE:-30s} PAUSE=${PAUSE:-2} KEEP_DATA=${KEEP_DATA:-0}
[[ "$KILLS" =~ ^[1-9][0-9]*$ ]] || die "KILLS must be a positive integer"

build_all failover
FAILOVER=$OUTDIR/bin/failover
mkdir -p "$OUTDIR/raw" "$OUTDIR/clusters"
write_meta "$OUTDIR/meta.txt" "$CMDLINE" \
  "kills: $KILLS  put timeout: $PUT_TIMEOUT  retry wait: $RETRY_WAIT  warm-up: $WARMUP  flags: ${EXTRA_FLAGS:-} | kvorum: ${KVORUM_FLAGS:-} | etcd: ${ETCD_FLAGS:-}"
cat "$OUTDIR/meta.txt" >&2
log "output: $OUTDIR"
wait_quiet

for srv in $(order 1); do
  start_cluster "$srv" "$OUTDIR/clusters/$srv" 3 || die "could not start a 3-member $srv cluster (logs in $OUTDIR/clusters/$srv)"
  log "$srv: 3 members healthy after ${START_S}s: $EPS"
done

CSV=$OUTDIR/results.csv
echo "round,server,series,inflight,inflight_ms,failed,first_commit_ms,killed,rejoin_s,load1" >"$CSV"
echo "kills started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)" >>"$OUTDIR/meta.txt"

kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }  # KEY LINE -> value of KEY=value

T0=$SECONDS
for (( r = 1; r <= KILLS; r++ )); do
  log "== kill $r/$KILLS (elapsed $((SECONDS - T0))s, load $(loadavg))"
  for srv in $(order "$r"); do
    dir=$OUTDIR/clusters/$srv l0=$(load1)
    wait_healthy "$dir" || { log "  !! $srv cluster not healthy, skipping"; echo "$r,$srv,,,,,,,,$l0" >>"$CSV"; continue; }
    spec=""
    for n in $(member_names "$dir"); do spec+="${spec:+,}$(member_ep "$dir" "$n")=$(member_pid "$dir" "$n")"; done
    out=$OUTDIR/raw/r$r-$srv.txt
    bg_wait "$out" "$FAILOVER" --members="$spec" --timeout="$PUT_TIMEOUT" --retry-wait="$RETRY_WAIT" --warmup="$WARMUP" --deadline="$DEADLINE" ||
      { log "  !! failover tool failed: $(tail -3 "$out")"; echo "$r,$srv,,,,,,,,$l0" >>"$CSV"; sleep "$PAUSE"; continue; }
    killed_ep=$(kv killed "$(head -1 "$out")") killed=""
    for n in $(member_names "$dir"); do [[ "$(member_ep "$dir" "$n")" == "$killed_ep" ]] && killed=$n; done
    pid=$(member_pid "$dir" "$killed"); wait_gone "$pid"; forget_server "$pid"
    echo "--- $(date -u -Is) bench-failover.sh: killed with SIGKILL as the leader, restarting" >>"$dir/$killed.log"
    t0=$(now)
    start_member "$dir" "$killed"
    rejoin=""
    wait_healthy "$dir" && rejoin=$(since "$t0")
    for series in follower leader; do
      line=$(grep "^series=$series " "$out")
      echo "$r,$srv,$series,$(kv inflight "$line"),$(kv inflight_ms "$line"),$(kv failed "$line"),$(kv first_commit_ms "$line"),$killed,$rejoin,$l0" >>"$CSV"
      printf '  %s %-6s %-8s in flight: %-10s (%7s ms after the kill)  failed puts %2s  kill -> first commit %8s ms%s\n' \
        "r$r" "$srv" "$series" "$(kv inflight "$line")" "$(kv inflight_ms "$line")" "$(kv failed "$line")" "$(kv first_commit_ms "$line")" \
        "$( [[ -n "$(kv inflight_err "$line")" ]] && echo "  ($(kv inflight_err "$line"))")" >&2
    done
    log "  $srv: killed $killed, back and all healthy after ${rejoin:-?}s"
    sleep "$PAUSE"
  done
done
echo "kills ended: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg); took $((SECONDS - T0))s" >>"$OUTDIR/meta.txt"
kill_servers
(( KEEP_DATA )) || rm -rf "$OUTDIR"/clusters/*/m*.data

summarize() {
  sed 's/^/    /' "$OUTDIR/meta.txt"
  echo
  awk -F, -v K="$KILLS" "$AWK_LIB"'
    NR == 1 { next }
    $3 == "" { broken[$2]++; next }
    { k = $2 SUBSEP $3; n[k]++
      if ($4 == "failed") inf[k]++
      if ($4 == "unanswered") unans[k]++
      failed[k] += $6
      if ($7 != "" && $7 != "none") { fc[k] = fc[k] " " $7; per[$3, $2, $1] = $7 } else nocommit[k]++
      if ($4 != "ok" && $4 != "") bad[k] = bad[k] $1 ":" $4 " "
      if ($10 != "") loads = loads " " $10 }
    END {
      print "| series | server | kills | in-flight put failed | in flight, never answered | failed puts in all | kill -> first commit, median ms | max ms | no commit within the deadline |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
      for (s = 1; s <= 2; s++) for (v = 1; v <= 2; v++) {
        se = (s == 1 ? "follower" : "leader"); sv = (v == 1 ? "kvorum" : "etcd"); k = sv SUBSEP se
        M[se, sv] = med(fc[k])
        printf "| %s | %s | %d | %d | %d | %d | %s | %s | %d |\n", se, sv, n[k], inf[k], unans[k], failed[k], f(M[se, sv], "%.0f"), f(maxof(fc[k]), "%.0f"), nocommit[k]
      }
      print ""
      print "Series follower: the client knows one follower only. Series leader: the client knows the leader first and"
      print "moves to the next endpoint after an error. First commit = first successful put sent after the kill."
      print ""
      for (s = 1; s <= 2; s++) {
        se = (s == 1 ? "follower" : "leader"); q = ""; l = ""
        for (r = 1; r <= K; r++) if ((se, "kvorum", r) in per && (se, "etcd", r) in per && per[se, "etcd", r] > 0) {
          q = q " " per[se, "kvorum", r] / per[se, "etcd", r]; l = l sprintf("%.2f ", per[se, "kvorum", r] / per[se, "etcd", r]) }
        printf "- %s: kill -> first commit, Kvorum/etcd: ratio of medians %s, per kill %s(median %s)\n", se, ratio(M[se, "kvorum"], M[se, "etcd"]), l, f(med(q), "%.2f")
      }
      print ""
      a = inf["kvorum" SUBSEP "follower"] + inf["kvorum" SUBSEP "leader"]; b = failed["kvorum" SUBSEP "follower"] + failed["kvorum" SUBSEP "leader"]
      printf "Target (issue 12): 0 failed writes: Kvorum %d failed puts (%d of them in flight at the kill): %s\n", b, a, (b == 0 ? "met" : "NOT met")
      print ""
      for (k in bad) { split(k, p, SUBSEP); printf "- %s %s: rounds whose in-flight put did not succeed: %s\n", p[1], p[2], bad[k] }
      for (sv in broken) printf "- %s: %d round(s) not measured (cluster unhealthy or tool failed)\n", sv, broken[sv]
      nl = split(loads, L, " "); lmin = lmax = ""
      for (i = 1; i <= nl; i++) { if (lmin == "" || L[i] + 0 < lmin) lmin = L[i] + 0; if (lmax == "" || L[i] + 0 > lmax) lmax = L[i] + 0 }
      printf "- 1-min load average before each kill: min %s, median %s, max %s\n", lmin, med(loads), lmax
    }' "$CSV"
  echo
  echo "Per-kill CSV: $CSV  tool output: $OUTDIR/raw/  member logs: $OUTDIR/clusters/"
}
summarize | tee "$OUTDIR/summary.md"
exit
}
