#!/usr/bin/env bash
# capture.sh — regenerates testdata/printer/* from the official etcdctl v3.7.
# Not run by the tests; run by hand when the goldens need refreshing:
#
#   ANCHORS=/root/.cache/kvorum-anchors/bin [CLUSTER3=http://127.0.0.1:NNNN] \
#     [ONLY='lease-*'] internal/ctl/testdata/capture.sh
#
# ONLY, a shell pattern, limits the run to the cases it matches.
#
# Each case directory holds:
#   cmd            the etcdctl command lines that produced the files
#   kind           which printer method renders it (put get del txn members status hashkv health
#                  grant revoke keepalive timetolive timetolive-keys leases member-remove
#                  member-update move-leader alarm auth-status role-add role-get role-list
#                  role-grant role-revoke user-add user-get user-list user-passwd user-grant
#                  user-revoke user-delete role-delete)
#   hex            present if the case was captured with --hex
#   id             the lease ID (hex) a revoke case revoked; the member ID
#                  (hex) of a member remove/update case; "LEADER TARGET"
#                  of move-leader
#   args           what else the printer is told: the user or role name,
#                  and for role-revoke the key and range end (<open> for
#                  "\x00")
#   formats        if present, the only formats captured
#   response.json  etcdctl's -w json output: the response the test renders
#   simple fields table protobuf json
#                  etcdctl's stdout for that -w format
#   <format>.err   "exit <code>\n<stderr>" where etcdctl failed (exit 4: it
#                  refused the format; other codes: the command failed
#                  after printing the stdout file, if any)
#
# Commands that write are run against a copy of the same pristine data dir
# for every format, so that revisions and IDs agree across the files.
#
# Lease cases cannot have one lease ID in every run (each grant makes a new
# one): the hooks PRE and POST, evaluated around each run, set RUNLEASE to
# the lease the run granted or used, and its ID is then replaced by the one
# of the response.json run in that run's stdout (noted in cmd).
set -euo pipefail
B=${ANCHORS:?set ANCHORS to the directory holding etcd and etcdctl}
OUT=$(cd "$(dirname "$0")" && pwd)/printer
WORK=$(mktemp -d)
PORT=23790
EP=127.0.0.1:$PORT
ETCDPID=

start() { # datadir
  "$B/etcd" --name default --data-dir "$1" --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster default=http://127.0.0.1:23800 --initial-cluster-token capture >"$WORK/etcd.log" 2>&1 &
  ETCDPID=$!
  for _ in $(seq 100); do "$B/etcdctl" --endpoints $EP endpoint health >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "etcd did not start" >&2; exit 1
}
stop() { kill "$ETCDPID"; wait "$ETCDPID" 2>/dev/null || true; }
trap 'stop 2>/dev/null; rm -rf "$WORK"' EXIT

# The pristine state: a few keys, one with a lease, one with non-ASCII bytes.
start "$WORK/pristine"
C="$B/etcdctl --endpoints $EP"
$C put foo bar >/dev/null
$C put foo bar2 >/dev/null
$C put key1 v1 >/dev/null
$C put key2 'two words' >/dev/null
$C put 'k"q' $'tab\there\x01' >/dev/null
LEASE=$($C lease grant 3600 | awk '{print $2}')
$C put leased x --lease "$LEASE" >/dev/null
stop

# capture NAME KIND WRITES "ARGS" [STDIN]
capture() {
  local name=$1 kind=$2 writes=$3 args=$4 input=${5:-}
  # shellcheck disable=SC2053 # ONLY is a pattern
  [[ $name == ${ONLY:-*} ]] || return 0
  local dir=$OUT/$name
  local resplease=""
  rm -rf "$dir"; mkdir -p "$dir"
  echo "$kind" >"$dir/kind"
  [[ $args == *--hex* ]] && touch "$dir/hex"
  : >"$dir/cmd"
  [[ -n $input ]] && printf '%s' "$input" >"$dir/stdin"
  local base=${args//--hex/}
  local f
  for f in response simple fields table protobuf json; do
    local w=$f a=$args
    [[ $f == response ]] && { w=json; a=$base; }
    if [[ $writes == yes ]]; then rm -rf "$WORK/d"; cp -a "${PRISTINE:-$WORK/pristine}" "$WORK/d"; start "$WORK/d"; fi
    echo "printf %s '$input' | etcdctl ${CTL_ARGS:---endpoints $EP} -w $w $a" >>"$dir/cmd"
    local out=$dir/$f rc
    [[ $f == response ]] && out=$dir/response.json
    RUNLEASE=""
    eval "${PRE:-}"
    set +e # (with -e, eval in a "|| rc=$?" list reports 1 whatever the exit code)
    printf "%s" "$input" | eval "$B/etcdctl ${CTL_ARGS:---endpoints $EP} -w $w $a" >"$out" 2>"$WORK/err"
    rc=$?
    set -e
    eval "${POST:-}"
    if [[ -n $RUNLEASE ]]; then
      if [[ $f == response ]]; then
        resplease=$RUNLEASE
        [[ $kind == revoke ]] && echo "$resplease" >"$dir/id"
      elif [[ $f != protobuf && -s $out ]]; then
        sed -i -e "s/$RUNLEASE/$resplease/g" -e "s/\b$((16#$RUNLEASE))\b/$((16#$resplease))/g" "$out"
        echo "# lease $RUNLEASE replaced by $resplease in $f" >>"$dir/cmd"
      fi
    fi
    if [[ $rc != 0 ]]; then
      { echo "exit $rc"; grep -v '^{"level"' "$WORK/err" || true; } >"$dir/$f.err"
    fi
    [[ -s $out ]] || rm -f "$out"
    if [[ $writes == yes ]]; then stop; fi
  done
}

start "$WORK/pristine"
capture get-prefix get no "get --prefix ''"
capture get-prefix-hex get no "get --prefix '' --hex"
capture get-none get no "get nothing-here"
capture get-keys-desc get no "get --prefix k --keys-only --sort-by VALUE --order DESCEND --limit 2"
capture members members no "member list"
capture members-hex members no "member list --hex"
capture status status no "endpoint status"
capture status-hex status no "endpoint status --hex"
capture hashkv hashkv no "endpoint hashkv"
CTL_ARGS="--endpoints 127.0.0.1:1 --dial-timeout 200ms --command-timeout 400ms" capture status-down status no "endpoint status"
if [[ -n ${CLUSTER3:-} ]]; then # client URL of one member of a 3-member cluster (cluster.sh)
  CTL_ARGS="--endpoints $CLUSTER3" capture members3 members no "member list"
  CTL_ARGS="--endpoints $CLUSTER3" capture status3 status no "endpoint status --cluster"
fi
capture txn-read txn no "txn" $'mod("key1") > "0"\n\nget key1\nget k --prefix --keys-only\n\nget foo\n\n'
capture txn-read-fail txn no "txn" $'val("key1") = "nope"\n\nget key1\n\nget foo\nget nothing\n\n'

# Leases. The list comes first, while LEASE is the only lease. Before each
# run of timetolive the lease is renewed, so that its remaining TTL reads
# the same in every format.
leases() { $C -w fields --hex lease list | sed -n 's/^"ID" : //p' | sort; }
capture lease-list leases no "lease list"
capture lease-list-hex leases no "lease list --hex"
RENEW='$C lease keep-alive --once $LEASE >/dev/null'
PRE=$RENEW capture lease-timetolive timetolive no "lease timetolive $LEASE"
PRE=$RENEW capture lease-timetolive-keys timetolive-keys no "lease timetolive $LEASE --keys"
PRE=$RENEW capture lease-timetolive-keys-hex timetolive-keys no "lease timetolive $LEASE --keys --hex"
capture lease-timetolive-expired timetolive no "lease timetolive 1234"
capture lease-keepalive keepalive no "lease keep-alive --once $LEASE"
capture lease-keepalive-hex keepalive no "lease keep-alive --once $LEASE --hex"
GRANTED='BEFORE=$(leases)' NEWLEASE='RUNLEASE=$(comm -13 <(echo "$BEFORE") <(leases))'
PRE=$GRANTED POST=$NEWLEASE capture lease-grant grant no "lease grant 600"
PRE=$GRANTED POST=$NEWLEASE capture lease-grant-hex grant no "lease grant 600 --hex"
GRANT='RUNLEASE=$($C lease grant 600 | awk "{print \$2}")'
PRE=$GRANT capture lease-revoke revoke no 'lease revoke $RUNLEASE'
PRE=$GRANT capture lease-revoke-hex revoke no 'lease revoke $RUNLEASE --hex'
stop
capture put-prev put yes "put foo bar3 --prev-kv"
capture put-new put yes "put newkey v"
capture put-prev-hex put yes "put foo bar3 --prev-kv --hex"
capture del-prefix del yes "del k --prefix --prev-kv"
capture del-none del yes "del nothing-here"
capture txn-write txn yes "txn" $'mod("key1") > "0"\n\nput key1 new --prev-kv\ndel key2\nget key1\n\nput key1 created\n\n'

# note NAME FILE WORDS... writes WORDS to FILE of case NAME if it was captured.
note() {
  local name=$1 file=$2; shift 2
  # shellcheck disable=SC2053
  [[ $name == ${ONLY:-*} && -d $OUT/$name ]] || return 0
  echo "$@" >"$OUT/$name/$file"
}

# Administration: a copy of the pristine state with users, roles and a
# learner that never starts (so every run sees the same member IDs).
# shellcheck disable=SC2053
if [[ admin-x == ${ONLY:-*} || ${ONLY:-*} == admin-* ]]; then
  rm -rf "$WORK/admin"; cp -a "$WORK/pristine" "$WORK/admin"; start "$WORK/admin"
  $C user add root --new-user-password rootpw >/dev/null
  $C user add alice:pw1 >/dev/null
  $C user add bob --no-password >/dev/null
  $C role add root >/dev/null
  $C role add r1 >/dev/null
  $C role add r2 >/dev/null
  $C role grant-permission r1 read foo >/dev/null
  $C role grant-permission r1 readwrite pre --prefix >/dev/null
  $C role grant-permission r1 write z --from-key >/dev/null
  $C role grant-permission r1 read a b >/dev/null
  $C role grant-permission r2 read '' --prefix >/dev/null
  $C user grant-role alice r1 >/dev/null
  $C user grant-role alice r2 >/dev/null
  $C member add l1 --learner --peer-urls http://127.0.0.1:1 >/dev/null
  SELF=$($C member list | awk -F', ' '$3 == "default" {print $1}')
  LEARNER=$($C member list | awk -F', ' '$3 == "" {print $1}')
  stop
  PRISTINE=$WORK/admin
  start "$WORK/admin"
  capture admin-auth-status auth-status no "auth status"
  capture admin-role-get role-get no "role get r1"
  note admin-role-get args r1
  capture admin-role-get-prefix role-get no "role get r2"
  note admin-role-get-prefix args r2
  capture admin-role-get-root role-get no "role get root"
  note admin-role-get-root args root
  capture admin-role-list role-list no "role list"
  capture admin-user-get user-get no "user get alice"
  note admin-user-get args alice
  capture admin-user-list user-list no "user list"
  capture admin-alarm-none alarm no "alarm list"
  stop
  capture admin-user-add user-add yes "user add zed:pw"
  note admin-user-add args zed
  capture admin-user-delete user-delete yes "user delete bob"
  note admin-user-delete args bob
  capture admin-user-passwd user-passwd yes "user passwd alice --interactive=false" "newpw"
  capture admin-user-grant user-grant yes "user grant-role bob r1"
  note admin-user-grant args bob r1
  capture admin-user-revoke user-revoke yes "user revoke-role alice r2"
  note admin-user-revoke args alice r2
  capture admin-role-add role-add yes "role add r9"
  note admin-role-add args r9
  capture admin-role-delete role-delete yes "role delete r2"
  note admin-role-delete args r2
  capture admin-role-grant role-grant yes "role grant-permission r2 write k"
  note admin-role-grant args r2
  capture admin-role-revoke-key role-revoke yes "role revoke-permission r1 foo"
  note admin-role-revoke-key args r1 foo
  capture admin-role-revoke-range role-revoke yes "role revoke-permission r1 a b"
  note admin-role-revoke-range args r1 a b
  capture admin-role-revoke-from role-revoke yes "role revoke-permission r1 z --from-key"
  note admin-role-revoke-from args r1 z "<open>"
  capture admin-member-update member-update yes "member update $LEARNER --peer-urls=http://127.0.0.1:2"
  note admin-member-update id "$LEARNER"
  capture admin-member-update-hex member-update yes "member update $LEARNER --peer-urls=http://127.0.0.1:2 --hex"
  note admin-member-update-hex id "$LEARNER"
  capture admin-member-remove member-remove yes "member remove $LEARNER"
  note admin-member-remove id "$LEARNER"
  capture admin-move-leader move-leader yes "move-leader $SELF"
  note admin-move-leader id "$SELF $SELF"
  unset PRISTINE
fi

# Health: the duration column differs run to run. The unhealthy endpoint
# takes the whole --command-timeout; runs are repeated until every format
# printed a duration of the same length, and then that duration is
# replaced by the one in response.json (noted in cmd).
H="--endpoints 127.0.0.1:1 --dial-timeout 200ms --command-timeout 400ms endpoint health"
# shellcheck disable=SC2053
[[ health-down == ${ONLY:-*} ]] || { echo "captured into $OUT"; exit 0; }
dir=$OUT/health-down
rm -rf "$dir"; mkdir -p "$dir"; echo health >"$dir/kind"; echo "fields table" >"$dir/formats"
for _ in $(seq 20); do
  : >"$dir/cmd"
  for f in response fields table; do
    w=$f; out=$dir/$f; [[ $f == response ]] && { w=json; out=$dir/response.json; }
    echo "etcdctl -w $w $H" >>"$dir/cmd"
    $B/etcdctl -w $w $H >"$out" 2>/dev/null || true
  done
  took=$(sed -E 's/.*"took":"([^"]*)".*/\1/' "$dir/response.json")
  t2=$(grep -o '[0-9.]*ms' "$dir/table")
  t3=$(grep -o '[0-9.]*ms' "$dir/fields")
  if [[ ${#took} == "${#t2}" && ${#took} == "${#t3}" ]]; then
    sed -i "s/$t2/$took/" "$dir/table"; sed -i "s/$t3/$took/" "$dir/fields"
    echo "# took values in table and fields replaced by the one of response.json ($took)" >>"$dir/cmd"
    break
  fi
done
echo "captured into $OUT"
