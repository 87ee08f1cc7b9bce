package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// ctlLane is one CLI driving one server through a sequence of commands:
// the lease and lock tests run the same commands in four lanes (etcdctl
// and kvorumctl, each against its own fresh etcd and Kvorum) and compare
// what the lanes print.
type ctlLane struct {
	name string
	bin  string // the CLI
	cli  string // "etcdctl" or "kvorumctl", for normalize
	c    *cluster

	// Leases the lane granted, by the name the test gave them. Each lane
	// gets its own IDs; outputs show the name instead.
	leases map[string]int64
	byHex  map[string]string
	byDec  map[string]string
	// renewed is when the lane last granted or renewed each lease (just
	// before it sent the request).
	renewed map[string]time.Time
}

// newLanes starts one cluster per lane. The comparisons the tests make:
// kvorumctl with etcdctl against etcd (the CLI alone), the same against
// Kvorum, and etcdctl against Kvorum with etcdctl against etcd (the
// server).
func newLanes(t *testing.T) (etcdCtl, etcdKvorumctl, kvorumCtl, kvorumKvorumctl *ctlLane) {
	etcd := officialEtcd(t)
	lane := func(name, server, bin, cli string) *ctlLane {
		return &ctlLane{name: name, bin: bin, cli: cli, c: newCluster(t, server, 1),
			leases: map[string]int64{}, byHex: map[string]string{}, byDec: map[string]string{}, renewed: map[string]time.Time{}}
	}
	return lane("etcdctl on etcd", etcd.Server, etcd.Ctl, "etcdctl"),
		lane("kvorumctl on etcd", etcd.Server, kvorumctlBin, "kvorumctl"),
		lane("etcdctl on kvorum", kvorumBin, etcd.Ctl, "etcdctl"),
		lane("kvorumctl on kvorum", kvorumBin, kvorumctlBin, "kvorumctl")
}

// lanePair is two lanes whose outputs must agree.
type lanePair struct {
	what      string
	want, got *ctlLane
}

func lanePairs(etcdCtl, etcdKvorumctl, kvorumCtl, kvorumKvorumctl *ctlLane) []lanePair {
	return []lanePair{
		{"kvorumctl vs etcdctl on etcd", etcdCtl, etcdKvorumctl},
		{"kvorumctl vs etcdctl on kvorum", kvorumCtl, kvorumKvorumctl},
		{"kvorum vs etcd with etcdctl", etcdCtl, kvorumCtl},
	}
}

// remember records the lease a grant sent at start printed as name.
func (l *ctlLane) remember(t *testing.T, name string, args []string, r ctlResult, start time.Time) {
	t.Helper()
	id, ok := grantedLease(r.stdout, slices.Contains(args, "--hex"))
	if !ok {
		t.Errorf("%s: %s printed no lease ID: %s", l.name, strings.Join(args, " "), r)
		return
	}
	l.leases[name] = id
	l.renewed[name] = start
	l.byHex[fmt.Sprintf("%016x", id)] = name
	l.byDec[strconv.FormatInt(id, 10)] = name
}

// grantedLease reads the ID of a granted lease from lease grant's output
// in the simple, json or fields format.
func grantedLease(out string, hexFields bool) (int64, bool) {
	if m := regexp.MustCompile(`^lease ([0-9a-f]{16}) granted`).FindStringSubmatch(out); m != nil {
		id, err := strconv.ParseInt(m[1], 16, 64)
		return id, err == nil
	}
	if m := regexp.MustCompile(`"ID":(\d+)`).FindStringSubmatch(out); m != nil {
		id, err := strconv.ParseInt(m[1], 10, 64)
		return id, err == nil
	}
	if m := regexp.MustCompile(`"ID" : (\S+)\n`).FindStringSubmatch(out); m != nil {
		base := 10
		if hexFields {
			base = 16
		}
		id, err := strconv.ParseInt(m[1], base, 64)
		return id, err == nil
	}
	return 0, false
}

// leaseNames lists the leases args name as {name}.
func leaseNames(args []string) []string {
	var names []string
	for _, a := range args {
		for _, m := range regexp.MustCompile(`\{(\w+)\}`).FindAllStringSubmatch(a, -1) {
			names = append(names, m[1])
		}
	}
	return names
}

// expand replaces {name} in args by the hex ID of the lane's lease name.
func (l *ctlLane) expand(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		for name, id := range l.leases {
			a = strings.ReplaceAll(a, "{"+name+"}", strconv.FormatInt(id, 16))
		}
		out[i] = a
	}
	return out
}

// Where lease IDs appear in outputs: hex padded to 16 digits (simple
// format, --hex fields), or decimal as a JSON or fields value.
var (
	hexLeaseRe = regexp.MustCompile(`\b[0-9a-f]{16}\b`)
	decLeaseRe = regexp.MustCompile(`("(?:ID|id|lease|Lease)" ?: ?)(\d+)`)
)

// nameLeases replaces the IDs of the lane's leases by {name}. Other IDs
// (a made-up one, or one the lane does not know) are left as they are.
func (l *ctlLane) nameLeases(s string) string {
	s = hexLeaseRe.ReplaceAllStringFunc(s, func(h string) string {
		if name, ok := l.byHex[h]; ok {
			return "{" + name + "}"
		}
		return h
	})
	return decLeaseRe.ReplaceAllStringFunc(s, func(m string) string {
		sm := decLeaseRe.FindStringSubmatch(m)
		if name, ok := l.byDec[sm[2]]; ok {
			return sm[1] + "{" + name + "}"
		}
		return m
	})
}

// Remaining TTLs next to the granted TTL, in the simple, json and fields
// formats of lease timetolive, with the text that replaces a remaining TTL
// near the granted one.
var remainingRes = []struct {
	re             *regexp.Regexp
	remainingFirst bool
	blanked        string // formats the granted TTL
}{
	{regexp.MustCompile(`granted with TTL\((\d+)s\), remaining\((\d+)s\)`), false, "granted with TTL(%ds), remaining(<remaining>s)"},
	{regexp.MustCompile(`"ttl":(\d+),"granted-ttl":(\d+)`), true, `"ttl":<remaining>,"granted-ttl":%d`},
	{regexp.MustCompile(`"TTL" : (\d+)\n"GrantedTTL" : (\d+)`), true, "\"TTL\" : <remaining>\n\"GrantedTTL\" : %d"},
}

// normalizeRemaining blanks a remaining TTL that is at least 1 second and
// at most elapsed+1 seconds below the granted TTL, where elapsed is the time
// since the lease was granted or renewed: a server truncates the remaining
// time to whole seconds, so right after a renewal it reads granted-1. Any
// other value (the granted TTL itself, a value far off) is left for the
// comparison to see.
func normalizeRemaining(s string, elapsed time.Duration) string {
	slack := int((elapsed+time.Second-1)/time.Second) + 1
	for _, r := range remainingRes {
		s = r.re.ReplaceAllStringFunc(s, func(m string) string {
			sm := r.re.FindStringSubmatch(m)
			granted, _ := strconv.Atoi(sm[1])
			remaining, _ := strconv.Atoi(sm[2])
			if r.remainingFirst {
				granted, remaining = remaining, granted
			}
			if remaining < granted-slack || remaining >= granted {
				return m
			}
			return fmt.Sprintf(r.blanked, granted)
		})
	}
	return s
}

// sortAttachedKeys sorts the keys lease timetolive --keys lists: etcd
// lists them in no particular order.
func sortAttachedKeys(s string) string {
	s = regexp.MustCompile(`attached keys\(\[([^\]]*)\]\)`).ReplaceAllStringFunc(s, func(m string) string {
		inner := strings.TrimSuffix(strings.TrimPrefix(m, "attached keys(["), "])")
		ks := strings.Fields(inner)
		slices.Sort(ks)
		return "attached keys([" + strings.Join(ks, " ") + "])"
	})
	s = regexp.MustCompile(`"keys":\[([^\]]*)\]`).ReplaceAllStringFunc(s, func(m string) string {
		ks := strings.Split(strings.TrimSuffix(strings.TrimPrefix(m, `"keys":[`), "]"), ",")
		slices.Sort(ks)
		return `"keys":[` + strings.Join(ks, ",") + "]"
	})
	lines := strings.SplitAfter(s, "\n")
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && strings.HasPrefix(lines[j], `"Key" : `) && strings.HasSuffix(lines[j], "\n") {
			j++
		}
		slices.Sort(lines[i:j])
		i = max(j, i+1)
	}
	return strings.Join(lines, "")
}

// Normalizers of outputs that name the cluster: --hex fields headers, and
// the protobuf text of the header that lease revoke -w protobuf prints in
// its error (whose spacing protobuf varies from build to build on purpose).
var (
	hexHeaderRe   = regexp.MustCompile(`"(ClusterID|MemberID)" : [0-9a-f]+`)
	textHeaderRe  = regexp.MustCompile(`(cluster_id|member_id|raft_term):\d+`)
	marshalLineRe = regexp.MustCompile(`(?m)^Error: marshal unsupported.*$`)
)

// normalizeLease is normalize plus what differs between lanes in lease
// commands: lease IDs, remaining TTLs (of the leases args names), the order
// of attached keys, and cluster IDs in hex and protobuf forms. protobuf
// says stdout is a lease answer in -w protobuf (which is its response
// header alone).
func (l *ctlLane) normalizeLease(r ctlResult, args []string, protobuf bool) ctlResult {
	var elapsed time.Duration
	for _, name := range leaseNames(args) {
		if at, ok := l.renewed[name]; ok {
			elapsed = max(elapsed, time.Since(at))
		}
	}
	if protobuf && r.code == 0 {
		var h pb.ResponseHeader
		if err := proto.Unmarshal([]byte(r.stdout), &h); err == nil {
			h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&h)
			r.stdout = fmt.Sprintf("<protobuf header, cluster and member IDs and term zeroed: %x>\n", b)
		}
	}
	for _, s := range []*string{&r.stdout, &r.stderr} {
		*s = hexHeaderRe.ReplaceAllString(*s, `"$1" : <id>`)
		*s = textHeaderRe.ReplaceAllString(*s, `$1:<n>`)
		*s = marshalLineRe.ReplaceAllStringFunc(*s, func(m string) string { return strings.Join(strings.Fields(m), " ") })
		*s = l.nameLeases(*s)
		*s = normalizeRemaining(*s, elapsed)
		*s = sortAttachedKeys(*s)
	}
	return r.normalized(l.c.endpoints(), l.cli)
}

// leaseStep is one command of leaseSession. args may name a lease granted
// before as {name}; grant names the lease the step grants. sleep pauses
// after the step (once, for all lanes).
type leaseStep struct {
	args  []string
	grant string
	sleep time.Duration
}

// leaseSession runs in every lane in order. Leases are granted with
// distinct TTLs so that lease list (ordered by expiry) orders them the
// same everywhere.
var leaseSession = []leaseStep{
	{args: []string{"lease", "grant", "600"}, grant: "L1"},
	{args: []string{"-w", "json", "lease", "grant", "900"}, grant: "L2"},
	{args: []string{"-w", "fields", "lease", "grant", "1200"}, grant: "L3"},
	{args: []string{"--hex", "-w", "fields", "lease", "grant", "1500"}, grant: "L4"},
	{args: []string{"put", "k1", "v1", "--lease={L1}"}},
	{args: []string{"put", "k2", "v2", "--lease", "{L1}"}},
	{args: []string{"put", "k3", "v3", "--lease={L2}"}},
	{args: []string{"put", "k4", "v4"}},
	{args: []string{"put", "k3", "v3b", "--ignore-lease", "--prev-kv", "-w", "json"}},
	{args: []string{"put", "k4", "v4b", "--lease={L3}", "--prev-kv", "-w", "fields"}},
	{args: []string{"get", "k", "--prefix", "-w", "json"}},
	{args: []string{"get", "k1", "-w", "fields"}},
	{args: []string{"--hex", "get", "k1", "-w", "fields"}},
	{args: []string{"put", "k5", "v", "--lease=1234"}},
	{args: []string{"put", "k5", "v", "--lease=zz"}},

	{args: []string{"lease", "timetolive", "{L1}"}},
	{args: []string{"lease", "timetolive", "{L1}", "--keys"}},
	{args: []string{"lease", "timetolive", "{L1}", "--keys", "-w", "json"}},
	{args: []string{"lease", "timetolive", "{L1}", "--keys", "-w", "fields"}},
	{args: []string{"lease", "timetolive", "{L3}", "--keys", "-w", "fields", "--hex"}},
	{args: []string{"lease", "timetolive", "{L4}", "--keys"}},
	{args: []string{"lease", "timetolive", "{L1}", "-w", "protobuf"}},
	{args: []string{"lease", "timetolive", "{L1}", "-w", "table"}},
	{args: []string{"lease", "timetolive", "1234"}},
	{args: []string{"lease", "timetolive", "1234", "-w", "json"}},
	{args: []string{"lease", "timetolive", "zz"}},

	{args: []string{"lease", "list"}},
	{args: []string{"lease", "list", "-w", "json"}},
	{args: []string{"lease", "list", "-w", "fields"}},
	{args: []string{"--hex", "lease", "list", "-w", "fields"}},
	{args: []string{"lease", "list", "-w", "protobuf"}},
	{args: []string{"lease", "list", "-w", "table"}},

	{args: []string{"lease", "keep-alive", "--once", "{L2}"}},
	{args: []string{"lease", "keep-alive", "--once", "{L2}", "-w", "json"}},
	{args: []string{"lease", "keep-alive", "--once", "{L2}", "-w", "fields"}},
	{args: []string{"--hex", "lease", "keep-alive", "--once", "{L2}", "-w", "fields"}},
	{args: []string{"lease", "keep-alive", "--once", "{L2}", "-w", "protobuf"}},
	{args: []string{"lease", "keep-alive", "--once", "{L2}", "-w", "table"}},
	{args: []string{"lease", "keep-alive", "{L2}", "-w", "table"}},
	{args: []string{"lease", "keep-alive", "--once", "1234"}},
	{args: []string{"lease", "keep-alive", "1234"}},
	{args: []string{"lease", "keep-alive", "1234", "-w", "json"}},
	{args: []string{"lease", "timetolive", "{L2}"}}, // renewed: remaining is back near granted

	// Revoking a lease without keys leaves the revision; with keys, it
	// deletes them in one revision.
	{args: []string{"lease", "revoke", "{L4}"}},
	{args: []string{"lease", "revoke", "{L1}", "-w", "json"}},
	{args: []string{"get", "k", "--prefix"}},
	{args: []string{"lease", "timetolive", "{L1}"}},
	{args: []string{"lease", "revoke", "{L1}"}},
	{args: []string{"lease", "keep-alive", "--once", "{L1}"}},
	{args: []string{"lease", "keep-alive", "{L1}"}},
	{args: []string{"lease", "grant", "1000"}, grant: "L5"},
	{args: []string{"lease", "grant", "1100"}, grant: "L6"},
	{args: []string{"lease", "grant", "1300"}, grant: "L7"},
	{args: []string{"lease", "revoke", "{L5}", "-w", "fields"}},
	{args: []string{"--hex", "lease", "revoke", "{L6}", "-w", "fields"}},
	{args: []string{"lease", "revoke", "{L7}", "-w", "protobuf"}},
	{args: []string{"lease", "list"}},

	// Expiry: the key goes with the lease.
	{args: []string{"lease", "grant", "4"}, grant: "L8"},
	{args: []string{"put", "k8", "v", "--lease={L8}"}, sleep: 6 * time.Second},
	{args: []string{"get", "k8", "-w", "json"}},
	{args: []string{"lease", "timetolive", "{L8}", "--keys"}},
	{args: []string{"lease", "list"}},

	{args: []string{"lease", "grant", "9000000001"}},
	{args: []string{"lease", "grant", "x"}},
	{args: []string{"lease", "revoke", "zz"}},
	// Last: these grant leases whose IDs they do not print.
	{args: []string{"lease", "grant", "60", "-w", "protobuf"}},
	{args: []string{"lease", "grant", "1800", "-w", "table"}},
}

// TestLeaseCommandsMatchEtcdctl runs leaseSession with etcdctl and
// kvorumctl against etcd and Kvorum and demands the same output. The lanes
// run each step at the same time, so that the time between steps (which
// leases measure) is about the same in all.
func TestLeaseCommandsMatchEtcdctl(t *testing.T) {
	a, b, c, d := newLanes(t)
	lanes := []*ctlLane{a, b, c, d}
	pairs := lanePairs(a, b, c, d)
	for i, step := range leaseSession {
		t.Run(fmt.Sprintf("%02d %s", i, strings.Join(step.args, " ")), func(t *testing.T) {
			protobuf := slices.Contains(step.args, "protobuf") && slices.Contains(step.args, "lease")
			keepAlive := slices.Contains(step.args, "keep-alive")
			results := make([]ctlResult, len(lanes))
			t.Run("run", func(t *testing.T) {
				for i, l := range lanes {
					t.Run(l.name, func(t *testing.T) {
						t.Parallel()
						start := time.Now()
						r := runCtl(t, l.bin, l.c.endpoints(), "", l.expand(step.args)...)
						if step.grant != "" {
							l.remember(t, step.grant, step.args, r, start)
						}
						if keepAlive && r.code == 0 {
							for _, name := range leaseNames(step.args) {
								l.renewed[name] = start
							}
						}
						results[i] = l.normalizeLease(r, step.args, protobuf)
					})
				}
			})
			byLane := map[*ctlLane]ctlResult{}
			for i, l := range lanes {
				byLane[l] = results[i]
			}
			compareLanes(t, strings.Join(step.args, " "), byLane, pairs)
			time.Sleep(step.sleep)
		})
	}
}

// TestLeaseKeepAliveRenewsUntilRevoked: keep-alive prints each renewal and
// ends when the lease is revoked (saying so in the simple format only).
func TestLeaseKeepAliveRenewsUntilRevoked(t *testing.T) {
	a, b, c, d := newLanes(t)
	etcd := officialEtcd(t)
	for _, format := range []string{"simple", "json", "fields", "protobuf"} {
		t.Run(format, func(t *testing.T) {
			results := map[*ctlLane]ctlResult{}
			for _, l := range []*ctlLane{a, b, c, d} {
				// TTL 6: renewals every 2s, so that none comes between
				// the first and the revoke.
				start := time.Now()
				g := runCtl(t, etcd.Ctl, l.c.endpoints(), "", "lease", "grant", "6")
				l.remember(t, "K"+format, []string{"lease", "grant"}, g, start)
				id := l.expand([]string{"{K" + format + "}"})[0]
				p := startCtl(t, l.bin, l.c.endpoints(), "-w", format, "lease", "keep-alive", id)
				if format != "protobuf" {
					p.waitLines(1, 10*time.Second)
				} else {
					time.Sleep(time.Second) // protobuf prints no newline
				}
				if r := runCtl(t, etcd.Ctl, l.c.endpoints(), "", "lease", "revoke", id); r.code != 0 {
					t.Fatalf("%s: revoke: %s", l.name, r)
				}
				results[l] = l.normalizeLease(p.wait(10*time.Second), nil, format == "protobuf")
			}
			compareLanes(t, "keep-alive -w "+format, results, lanePairs(a, b, c, d))
		})
	}
}
