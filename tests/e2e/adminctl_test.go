package e2e

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// adminStep is one step of an administration session: a CLI invocation,
// or (with do set) a change made through the API on every server alike.
type adminStep struct {
	stdin string
	// args may hold {unstarted}, the hex ID of the member that has no name
	// yet (a learner that was added and never started), and {self}, the ID
	// of the first member.
	args []string
	// pb, for -w protobuf steps, is the type of the answer: the outputs are
	// decoded and compared as JSON, with IDs normalized like text.
	pb func() proto.Message
	// spaces: runs of spaces (and of the table's horizontal lines) are
	// compared as one: for protobuf's text form, whose spacing the protobuf
	// library varies per binary on purpose, and for tables whose widths
	// follow IDs of different lengths.
	spaces bool
	// unordered: the lines of the output are compared as a set (member
	// tables and lists come in the order of the members' IDs).
	unordered bool
	do        func(ctx context.Context, cli *clientv3.Client) error
}

func cmd(args ...string) adminStep { return adminStep{args: args} }

func pbCmd(m func() proto.Message, args ...string) adminStep {
	return adminStep{args: append([]string{"-w", "protobuf"}, args...), pb: m}
}

func withStdin(stdin string, args ...string) adminStep { return adminStep{stdin: stdin, args: args} }

// Learners are added with peer URLs nobody listens on (never started),
// the same on every server, so outputs can be compared. Each add uses URLs
// of its own: etcd derives a new member's ID from its URLs and the current
// second, and refuses the ID of a member removed before.
const (
	learnerURL = "http://127.0.0.1:1"
	movedURL   = "http://127.0.0.1:2"
)

// memberSession exercises member add/update/promote/remove on a
// single-member cluster, where a learner can come and go without costing
// the quorum (etcd allows one learner at a time).
var memberSession = []adminStep{
	cmd("member", "add", "l1", "--learner", "--peer-urls=http://127.0.0.1:11"),
	cmd("member", "list", "-w", "json"),
	{args: []string{"member", "list", "-w", "table"}, unordered: true, spaces: true},
	{args: []string{"member", "list", "-w", "fields"}, unordered: true},
	cmd("member", "add", "l2", "--learner", "--peer-urls=http://127.0.0.1:3"),
	cmd("member", "update", "{unstarted}", "--peer-urls="+movedURL),
	cmd("member", "update", "{unstarted}", "--peer-urls="+learnerURL, "-w", "json"),
	cmd("member", "update", "{unstarted}", "--peer-urls="+movedURL, "--hex", "-w", "json"),
	pbCmd(func() proto.Message { return &pb.MemberUpdateResponse{} }, "member", "update", "{unstarted}", "--peer-urls="+learnerURL),
	cmd("member", "update", "{unstarted}", "--peer-urls="+movedURL, "-w", "fields"),
	cmd("member", "update", "{unstarted}", "-w", "table", "--peer-urls="+learnerURL),
	cmd("member", "promote", "{unstarted}"),
	cmd("member", "promote", "{unstarted}", "-w", "json"),
	{args: []string{"member", "list"}, unordered: true},
	cmd("member", "remove", "{unstarted}"),
	cmd("member", "remove", "1234abcd"),
	cmd("member", "add", "l3", "--learner", "--peer-urls=http://127.0.0.1:12,http://127.0.0.1:4", "-w", "json"),
	cmd("member", "remove", "{unstarted}", "-w", "json"),
	cmd("member", "add", "l4", "--learner", "--peer-urls=http://127.0.0.1:13", "--hex", "-w", "json"),
	cmd("member", "remove", "{unstarted}", "--hex", "-w", "json"),
	pbCmd(func() proto.Message { return &pb.MemberAddResponse{} }, "member", "add", "l5", "--learner", "--peer-urls=http://127.0.0.1:14"),
	pbCmd(func() proto.Message { return &pb.MemberRemoveResponse{} }, "member", "remove", "{unstarted}"),
	cmd("member", "add", "l6", "--learner", "--peer-urls=http://127.0.0.1:15", "-w", "fields"),
	cmd("member", "remove", "{unstarted}", "-w", "fields"),
	cmd("member", "add", "l7", "--learner", "--peer-urls=http://127.0.0.1:16", "-w", "table"),
	cmd("member", "remove", "{unstarted}", "-w", "table"),
	{args: []string{"member", "list", "-w", "table"}, spaces: true},
	// Argument errors.
	cmd("member", "add"),
	cmd("member", "add", "x", "http://127.0.0.1:5", "HTTPS://h:1"),
	cmd("member", "add", "x"),
	cmd("member", "add", "x", "--peer-urls=not a url"),
	cmd("member", "remove"),
	cmd("member", "remove", "zz"),
	cmd("member", "update", "1"),
	cmd("member", "update", "zz", "--peer-urls=http://127.0.0.1:1"),
	cmd("member", "promote", "1", "2"),
	cmd("member", "promote", "{self}"),
}

// maintenanceSession: alarms, defrag and move-leader on a single member.
var maintenanceSession = []adminStep{
	cmd("alarm", "list"),
	cmd("alarm", "list", "-w", "json"),
	cmd("alarm", "list", "-w", "fields"),
	cmd("alarm", "disarm"),
	cmd("alarm", "disarm", "-w", "json"),
	{do: activateNoSpace},
	{args: []string{"alarm", "list"}, spaces: true},
	cmd("alarm", "list", "-w", "json"),
	cmd("alarm", "list", "-w", "fields"),
	cmd("alarm", "list", "-w", "fields", "--hex"),
	cmd("alarm", "list", "-w", "table"),
	pbCmd(func() proto.Message { return &pb.AlarmResponse{} }, "alarm", "list"),
	cmd("put", "k", "v"),
	{args: []string{"alarm", "disarm"}, spaces: true},
	cmd("alarm", "list"),
	cmd("put", "k", "v"),
	{do: activateNoSpace},
	cmd("alarm", "disarm", "-w", "json"),
	{do: activateNoSpace},
	pbCmd(func() proto.Message { return &pb.AlarmResponse{} }, "alarm", "disarm"),
	cmd("alarm", "list", "x"),
	cmd("alarm", "disarm", "x"),
	cmd("defrag"),
	cmd("defrag", "--cluster"),
	cmd("defrag", "-w", "json"),
	cmd("move-leader", "{self}"),
	cmd("move-leader", "{self}", "-w", "json"),
	cmd("move-leader", "{self}", "-w", "fields"),
	cmd("move-leader", "1234"),
	cmd("move-leader"),
	cmd("move-leader", "zz"),
}

// activateNoSpace raises the NOSPACE alarm for the member the client talks
// to, as a member that ran out of quota does.
func activateNoSpace(ctx context.Context, cli *clientv3.Client) error {
	st, err := cli.Status(ctx, cli.Endpoints()[0])
	if err != nil {
		return err
	}
	_, err = pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: st.Header.GetMemberId(), Alarm: pb.AlarmType_NOSPACE,
	})
	return err
}

// authSession: users, roles, permissions, and auth enable/disable with
// --user and --password.
var authSession = []adminStep{
	cmd("auth", "status"),
	cmd("auth", "status", "-w", "json"),
	cmd("auth", "status", "-w", "fields"),
	pbCmd(func() proto.Message { return &pb.AuthStatusResponse{} }, "auth", "status"),
	cmd("auth", "enable"),
	cmd("user", "add", "root", "--new-user-password=rootpw"),
	cmd("user", "add", "alice:pw1", "-w", "json"),
	withStdin("pw2 rest\n", "user", "add", "bob", "--interactive=false"),
	withStdin("pw3\npw3\n", "user", "add", "dave"),
	withStdin("pw3\nother\n", "user", "add", "erin"),
	withStdin("\n", "user", "add", "erin"),
	cmd("user", "add", "carol", "--no-password", "-w", "fields"),
	pbCmd(func() proto.Message { return &pb.AuthUserAddResponse{} }, "user", "add", "frank:x"),
	cmd("user", "add", ":x"),
	cmd("user", "add", "alice:again"),
	cmd("user", "add"),
	cmd("user", "list"),
	cmd("user", "list", "-w", "json"),
	cmd("user", "list", "-w", "fields"),
	cmd("user", "list", "-w", "table"),
	pbCmd(func() proto.Message { return &pb.AuthUserListResponse{} }, "user", "list"),
	cmd("role", "get", "root"),
	cmd("role", "add", "r1"),
	cmd("role", "add", "r1"),
	cmd("role", "add", "r2", "-w", "fields"),
	cmd("role", "add", "r3", "-w", "json"),
	cmd("role", "grant-permission", "r1", "read", "foo"),
	cmd("role", "grant-permission", "r1", "readwrite", "pre", "--prefix"),
	cmd("role", "grant-permission", "r1", "WRITE", "z", "--from-key"),
	cmd("role", "grant-permission", "r1", "read", "a", "b", "-w", "json"),
	cmd("role", "grant-permission", "r2", "read", "", "--prefix", "-w", "fields"),
	cmd("role", "grant-permission", "r3", "write", "", "--from-key"),
	cmd("role", "grant-permission", "r3", "readwrite", ""),
	cmd("role", "grant-permission", "r1", "bogus", "foo"),
	cmd("role", "grant-permission", "r1", "read", "a", "b", "--prefix"),
	cmd("role", "grant-permission", "r1", "read", "a", "b", "--from-key"),
	cmd("role", "grant-permission", "r1", "read", "a", "--from-key", "--prefix"),
	cmd("role", "grant-permission", "r1", "read", "", "--from-key", "--prefix"),
	cmd("role", "grant-permission", "r1", "read"),
	cmd("role", "grant-permission", "nosuch", "read", "x"),
	cmd("role", "get", "r1"),
	cmd("role", "get", "r1", "-w", "json"),
	cmd("role", "get", "r1", "-w", "fields"),
	cmd("role", "get", "r1", "-w", "table"),
	pbCmd(func() proto.Message { return &pb.AuthRoleGetResponse{} }, "role", "get", "r1"),
	cmd("role", "get", "r2"),
	cmd("role", "get", "r3"),
	cmd("role", "get", "nosuch"),
	cmd("role", "list"),
	cmd("role", "list", "-w", "json"),
	cmd("role", "list", "-w", "fields"),
	pbCmd(func() proto.Message { return &pb.AuthRoleListResponse{} }, "role", "list"),
	cmd("user", "grant-role", "alice", "r1"),
	cmd("user", "grant-role", "alice", "r2", "-w", "json"),
	cmd("user", "grant-role", "alice", "nosuch"),
	cmd("user", "grant-role", "alice"),
	cmd("user", "get", "alice"),
	cmd("user", "get", "alice", "-w", "json"),
	cmd("user", "get", "alice", "-w", "fields"),
	pbCmd(func() proto.Message { return &pb.AuthUserGetResponse{} }, "user", "get", "alice"),
	cmd("user", "get", "alice", "--detail"),
	cmd("user", "get", "alice", "--detail", "-w", "fields"),
	cmd("user", "get", "nosuch"),
	cmd("user", "revoke-role", "alice", "r2", "-w", "fields"),
	cmd("user", "revoke-role", "alice", "r2"),
	cmd("role", "revoke-permission", "r1", "foo"),
	cmd("role", "revoke-permission", "r1", "pre", "--prefix"),
	cmd("role", "revoke-permission", "r1", "z", "--from-key", "-w", "json"),
	cmd("role", "revoke-permission", "r1", "a", "b"),
	cmd("role", "revoke-permission", "r3", "", "--from-key"),
	cmd("role", "revoke-permission", "r3", ""),
	cmd("role", "revoke-permission", "r1", "foo"),
	cmd("role", "revoke-permission", "r1"),
	cmd("role", "get", "r1"),
	withStdin("newpw\n", "user", "passwd", "bob", "--interactive=false"),
	withStdin("pw4\npw4\n", "user", "passwd", "bob", "-w", "fields"),
	cmd("user", "passwd"),
	cmd("put", "foo", "bar"),
	cmd("auth", "enable"),
	cmd("auth", "status"),
	cmd("get", "foo"),
	cmd("--user", "root:rootpw", "auth", "status"),
	cmd("--user", "root:rootpw", "auth", "status", "-w", "json"),
	cmd("--user", "root", "--password", "rootpw", "role", "get", "root"),
	cmd("--user", "alice:pw1", "get", "foo"),
	cmd("--user", "alice:wrong", "get", "foo"),
	cmd("--user", "root:rootpw", "user", "grant-role", "alice", "r1"),
	cmd("--user", "root:rootpw", "role", "grant-permission", "r1", "read", "foo"),
	cmd("--user", "alice:pw1", "get", "foo"),
	cmd("--user", "alice:pw1", "put", "foo", "x"),
	cmd("--user", "alice:pw1", "user", "list"),
	withStdin("rootpw\n", "--user", "root", "user", "list"),
	cmd("--user", "root:rootpw", "auth", "disable"),
	cmd("auth", "disable"),
	cmd("user", "delete", "carol"),
	cmd("user", "delete", "carol", "-w", "json"),
	cmd("user", "delete", "frank", "-w", "fields"),
	cmd("user", "delete"),
	cmd("role", "delete", "r3"),
	cmd("role", "delete", "r2", "-w", "json"),
	cmd("role", "delete", "r3"),
	cmd("role", "delete"),
	cmd("user", "list"),
	cmd("role", "list"),
	cmd("auth", "status", "x"),
	cmd("auth", "enable", "x"),
	cmd("auth", "disable", "x"),
}

// TestAdminCommandsMatchEtcdctl runs the member, maintenance and auth
// sessions with etcdctl and with kvorumctl, each against a fresh server of
// its own, and demands the same output, error and exit code at every step.
//
// Every session runs against the official etcd; those whose server side
// Kvorum has (alarms, defrag, move-leader) against Kvorum too. When Kvorum
// serves membership changes and auth, set kvorum on those sessions.
func TestAdminCommandsMatchEtcdctl(t *testing.T) {
	etcd := officialEtcd(t)
	sessions := []struct {
		name   string
		steps  []adminStep
		kvorum bool
	}{{"member", memberSession, true}, {"maintenance", maintenanceSession, true}, {"auth", authSession, true}}
	for _, srv := range []struct{ name, bin string }{{"etcd", etcd.Server}, {"kvorum", kvorumBin}} {
		for _, s := range sessions {
			if srv.name == "kvorum" && !s.kvorum {
				continue
			}
			t.Run(srv.name+"/"+s.name, func(t *testing.T) {
				compareSession(t, s.steps,
					&ctlRun{name: "etcdctl", bin: etcd.Ctl, c: newCluster(t, srv.bin, 1)},
					&ctlRun{name: "kvorumctl", bin: kvorumctlBin, c: newCluster(t, srv.bin, 1)})
			})
		}
	}
}

// ctlRun is one CLI working through a session against its own cluster,
// with the IDs it has seen, for substitution and normalization.
type ctlRun struct {
	name, bin string
	c         *cluster
	ids       map[uint64]string // member and cluster IDs -> placeholder
	unstarted string            // hex ID of the member without a name
	self      string            // hex ID of the first member
	byName    map[string]string // hex IDs of the named members
	urls      map[string]string // more URLs to replace -> placeholder
}

// unstartedOr returns the hex ID of the member named name, or of the
// member without a name if there is none.
func (r *ctlRun) unstartedOr(name string) string {
	if id, ok := r.byName[name]; ok {
		return id
	}
	return r.unstarted
}

// learnIDs reads the member list and remembers every ID in it (and the
// cluster's), keeping those of members removed since.
func (r *ctlRun) learnIDs(t *testing.T) {
	t.Helper()
	first := r.ids == nil
	if first {
		r.ids = map[uint64]string{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.c.client().MemberList(ctx)
	if err != nil {
		// With auth enabled the list needs a user; the members do not
		// change while it is.
		if first {
			t.Fatalf("%s: member list: %v", r.name, err)
		}
		return
	}
	r.ids[resp.Header.GetClusterId()] = "<cluster>"
	r.unstarted = ""
	r.byName = map[string]string{}
	for i, m := range resp.Members {
		if m.Name != "" {
			r.byName[m.Name] = strconv.FormatUint(m.ID, 16)
		}
		name := m.Name
		if name == "" {
			name = "unstarted:" + r.replaceURLs(strings.Join(m.PeerURLs, ","))
			r.unstarted = strconv.FormatUint(m.ID, 16)
		}
		if _, ok := r.ids[m.ID]; !ok {
			r.ids[m.ID] = "<member " + name + ">"
		}
		if i == 0 {
			r.self = strconv.FormatUint(m.ID, 16)
		}
	}
}

var (
	spaceRuns = regexp.MustCompile(` {2,}`)
	ruleRuns  = regexp.MustCompile(`─{2,}`)
)

// normalize makes r's output comparable with another CLI's run against
// another server: endpoints, peer URLs, IDs (hex, padded hex and decimal)
// and the usual varying bits are replaced by placeholders. Members come in
// the order of their IDs, which differ from server to server: JSON member
// arrays are sorted after their IDs are replaced, and so are the lines of
// steps marked unordered.
func (r *ctlRun) normalize(t *testing.T, step adminStep, res ctlResult) ctlResult {
	t.Helper()
	if step.pb != nil && res.code == 0 {
		m := step.pb()
		if err := proto.Unmarshal([]byte(res.stdout), m); err != nil {
			t.Fatalf("%s: decode -w protobuf output as %T: %v", r.name, m, err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		res.stdout = "protobuf " + string(b) + "\n"
	}
	lines := strings.SplitAfter(res.stdout, "\n")
	for i, l := range lines {
		lines[i] = r.sortMembers(l)
	}
	res.stdout = r.replaceIDs(strings.Join(lines, ""))
	res.stderr = r.replaceIDs(res.stderr)
	if step.unordered {
		lines = strings.SplitAfter(res.stdout, "\n")
		slices.Sort(lines)
		res.stdout = strings.Join(lines, "")
	}
	// etcdctl turns the terminal's echo off with stty, which complains on
	// stderr when stdin is not a terminal; kvorumctl does not run stty.
	res.stderr = sttyRE.ReplaceAllString(res.stderr, "")
	res.stdout = initialClusterRE.ReplaceAllStringFunc(res.stdout, func(l string) string {
		v := strings.Split(strings.TrimSuffix(strings.TrimPrefix(l, `ETCD_INITIAL_CLUSTER="`), `"`), ",")
		slices.Sort(v)
		return `ETCD_INITIAL_CLUSTER="` + strings.Join(v, ",") + `"`
	})
	if step.spaces {
		res.stdout = spaceRuns.ReplaceAllString(res.stdout, " ")
		res.stdout = ruleRuns.ReplaceAllString(res.stdout, "─")
	}
	return res.normalized(r.c.endpoints(), r.name)
}

var initialClusterRE = regexp.MustCompile(`ETCD_INITIAL_CLUSTER="[^"]*"`)

var sttyRE = regexp.MustCompile(`(?m)^stty: .*\n`)

var tookRE = regexp.MustCompile(`took [0-9.]+[µnm]?s`)

// replaceIDs replaces peer URLs, the IDs r has seen and durations in s.
func (r *ctlRun) replaceIDs(s string) string {
	s = r.replaceURLs(s)
	// Hex IDs are printed padded to 16 characters in places ("Member %16x
	// added"); the IDs of two servers need not have the same length, so the
	// padding goes with the ID (the printer goldens check it).
	for id, ph := range r.ids {
		s = regexp.MustCompile(` *\b`+strconv.FormatUint(id, 16)+`\b`).ReplaceAllString(s, " "+ph)
		s = regexp.MustCompile(`\b`+strconv.FormatUint(id, 10)+`\b`).ReplaceAllString(s, ph)
	}
	return tookRE.ReplaceAllString(s, "took <d>")
}

// replaceURLs replaces the cluster's peer URLs and r.urls in s.
func (r *ctlRun) replaceURLs(s string) string {
	for _, m := range r.c.members {
		s = strings.ReplaceAll(s, m.PeerURL, "<peer>")
	}
	for u, ph := range r.urls {
		s = strings.ReplaceAll(s, u, ph)
		s = strings.ReplaceAll(s, strings.TrimPrefix(u, "http://"), ph)
	}
	return s
}

// sortMembers sorts the "members" array of a line of JSON by the members'
// normalized text; other lines are returned as they are.
func (r *ctlRun) sortMembers(line string) string {
	var obj map[string]json.RawMessage
	if !strings.HasPrefix(strings.TrimPrefix(line, "protobuf "), "{") || json.Unmarshal([]byte(strings.TrimPrefix(line, "protobuf ")), &obj) != nil {
		return line
	}
	var members []json.RawMessage
	if json.Unmarshal(obj["members"], &members) != nil || len(members) < 2 {
		return line
	}
	slices.SortFunc(members, func(a, b json.RawMessage) int {
		return strings.Compare(r.replaceIDs(string(a)), r.replaceIDs(string(b)))
	})
	obj["members"], _ = json.Marshal(members)
	out, _ := json.Marshal(obj)
	return "sorted " + string(out) + "\n"
}

// compareSession runs the steps with both CLIs and compares every step.
func compareSession(t *testing.T, steps []adminStep, want, got *ctlRun) {
	runs := []*ctlRun{want, got}
	for _, r := range runs {
		r.learnIDs(t)
	}
	for i, step := range steps {
		if step.do != nil {
			for _, r := range runs {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := step.do(ctx, r.c.client())
				cancel()
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			continue
		}
		var outs []ctlResult
		for _, r := range runs {
			args := slices.Clone(step.args)
			for j, a := range args {
				a = strings.ReplaceAll(a, "{unstarted}", r.unstarted)
				args[j] = strings.ReplaceAll(a, "{self}", r.self)
			}
			res := runCtl(t, r.bin, r.c.endpoints(), step.stdin, args...)
			if unsupported(res) {
				t.Fatalf("step %d: %s does not know %q: %v", i, r.name, step.args, res)
			}
			r.learnIDs(t)
			outs = append(outs, r.normalize(t, step, res))
		}
		if outs[0] != outs[1] {
			t.Errorf("step %d, %s: output differs\n===== %s:\n%s===== %s:\n%s", i, strings.Join(step.args, " "), want.name, outs[0], got.name, outs[1])
		}
	}
}
