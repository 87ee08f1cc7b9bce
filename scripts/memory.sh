#!/usr/bin/env bash
# memory.sh — resident memory (VmRSS, and VmHWM = peak) of a server under the official
# benchmark tool, for Kvorum or etcd alike (both take the same flags).
#
#   scripts/memory.sh put  BIN [server flags...]   3 members on 127.0.0.1, benchmark put
#                                                  (--target-leader, 100 clients / 10 conns,
#                                                  TOTAL=60000 puts of 256-byte values, 8-byte keys
#                                                  in a space of 100000): RSS and peak of each member
#   scripts/memory.sh load BIN [server flags...]   1 member, loads TOTAL (default 1000000) keys of
#                                                  12 bytes with 256-byte values, then waits SETTLE
#                                                  (20) seconds: RSS and peak after the load
#
# Knobs (environment): TOTAL, SETTLE, LOADER=put|txn (load mode: put = one key per request,
# sequential keys, 100 clients, as in the performance issue; txn = txn-put of 100 random keys per
# request, 20 clients, which loads millions of keys in minutes and makes raft entries of ~28 KB),
# BASE_PORT (23100), BENCHMARK (default ~/.cache/kvorum-bench/bin/benchmark, built by
# scripts/bench.sh), ETCDCTL (same directory), PROF=path-prefix: save the heap profile and the
# go_memstats/kvorum_memory series of each member at the end (the server needs --enable-pprof).
# Every process it starts is stopped on exit; the data dirs (under TMPDIR) are removed.
set -uo pipefail
mode=${1:-}; bin=${2:-}
if [[ $mode != put && $mode != load ]] || [[ -z $bin ]]; then sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; fi
shift 2
B=${BENCHMARK:-$HOME/.cache/kvorum-bench/bin/benchmark}
ETCDCTL=${ETCDCTL:-$(dirname "$B")/etcdctl}
for x in "$bin" "$B" "$ETCDCTL"; do [[ -x $x ]] || { echo "memory.sh: $x is not executable (scripts/bench.sh builds the benchmark tool and etcdctl)" >&2; exit 2; }; done
base=${BASE_PORT:-23100}
dir=$(mktemp -d "${TMPDIR:-/tmp}/kvorum-memory.XXXXXX")
n=3; [[ $mode == load ]] && n=1
initial="" eps="" pids=() tok=mem$RANDOM$RANDOM
for (( i = 1; i <= n; i++ )); do
  initial+="${initial:+,}m$i=http://127.0.0.1:$((base + 2*i + 1))"; eps+="${eps:+,}http://127.0.0.1:$((base + 2*i))"
done
for (( i = 1; i <= n; i++ )); do
  c=$((base + 2*i)) p=$((base + 2*i + 1))
  "$bin" --name "m$i" --data-dir "$dir/m$i" --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" --initial-cluster "$initial" \
    --initial-cluster-state new --initial-cluster-token "$tok" "$@" >"$dir/m$i.log" 2>&1 </dev/null &
  pids+=($!)
done
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait; rm -rf "$dir"' EXIT
ok=0
for _ in $(seq 200); do "$ETCDCTL" --endpoints="$eps" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1 && { ok=1; break; }; sleep 0.3; done
(( ok )) || { echo "memory.sh: cluster not healthy; log of m1:" >&2; tail -5 "$dir/m1.log" >&2; exit 1; }
mem() { awk '/VmRSS|VmHWM/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$1/status"; }
bench() { "$B" --endpoints="$eps" "$@" 2>&1 | tr '\r' '\n' | grep -aE '^ *(Requests/sec|99% in|Total:)'; }
if [[ $mode == put ]]; then
  bench --target-leader --conns=10 --clients=100 put --key-size=8 --key-space-size=100000 --val-size=256 --total="${TOTAL:-60000}"
else
  T=${TOTAL:-1000000}
  if [[ ${LOADER:-put} == txn ]]; then
    bench --conns=10 --clients=20 txn-put --txn-ops=100 --key-size=12 --key-space-size=1000000000000 --val-size=256 --total=$((T / 100))
  else
    bench --conns=10 --clients=100 put --key-size=12 --sequential-keys --key-space-size="$T" --val-size=256 --total="$T"
  fi
  echo "right after the load: $(mem "${pids[0]}")"
  sleep "${SETTLE:-20}"
  echo "data dir: $(du -sh "$dir/m1" | cut -f1)"
fi
leader=$("$ETCDCTL" --endpoints="$eps" endpoint status -w fields 2>/dev/null | awk -F': ' '/"Endpoint"/ {ep=$2} /"Leader"/ {l=$2} /"MemberID"/ {m=$2} /"IsLearner"/ { if (m == l) print ep }' | tr -d '"')
for (( i = 1; i <= n; i++ )); do
  ep=http://127.0.0.1:$((base + 2*i))
  echo "m$i$([[ $ep == "$leader" ]] && echo ' (leader)'): $(mem "${pids[i-1]}")"
  if [[ -n ${PROF:-} ]]; then
    curl -s "$ep/debug/pprof/heap" >"$PROF.m$i.heap"
    curl -s "$ep/metrics" | grep -E '^(go_memstats_(heap_inuse|heap_alloc|sys)_bytes|go_gc_gomemlimit_bytes|kvorum_memory)' >"$PROF.m$i.metrics"
  fi
done
