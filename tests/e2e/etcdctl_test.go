package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ctlResult is what one CLI invocation printed and how it exited.
type ctlResult struct {
	stdout, stderr string
	code           int
}

func (r ctlResult) String() string {
	return fmt.Sprintf("exit code %d\n--- stdout ---\n%s--- stderr ---\n%s", r.code, r.stdout, r.stderr)
}

// runCtl runs an etcdctl-compatible CLI against endpoints with stdin.
func runCtl(t *testing.T, bin string, endpoints []string, stdin string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--dial-timeout=2s", "--command-timeout=5s"}, args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()} // no ETCDCTL_* from the caller
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := ctlResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %s: %v", bin, strings.Join(all, " "), err)
	}
	return r
}

// normalizers replace what legitimately differs between two servers given
// the same commands: cluster and member IDs, raft terms, and the timestamps,
// pointers and local ports in the client's log lines.
var normalizers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`"(cluster_id|member_id|raft_term)":[1-9]\d*`), `"$1":<n>`},
	{regexp.MustCompile(`"(ClusterID|MemberID|RaftTerm)" : [1-9]\d*`), `"$1" : <n>`},
	{regexp.MustCompile(`"ts":"[^"]*"`), `"ts":"<ts>"`},
	{regexp.MustCompile(`0x[0-9a-f]{6,}`), `0x<ptr>`},
	{regexp.MustCompile(`took = [0-9.]+[µnm]?s`), `took = <d>`},
	{regexp.MustCompile(`LocalAddr: '127\.0\.0\.1:\d+'`), `LocalAddr: '<addr>'`},
}

func normalize(s string, endpoints []string, cli string) string {
	for _, ep := range endpoints {
		s = strings.ReplaceAll(s, ep, "<endpoint>")
		s = strings.ReplaceAll(s, strings.TrimPrefix(ep, "http://"), "<endpoint>")
	}
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.repl)
	}
	if cli == "kvorumctl" {
		s = strings.ReplaceAll(s, "kvorumctl", "etcdctl")
	}
	return s
}

func (r ctlResult) normalized(endpoints []string, cli string) ctlResult {
	return ctlResult{stdout: normalize(r.stdout, endpoints, cli), stderr: normalize(r.stderr, endpoints, cli), code: r.code}
}

// unsupported reports whether a CLI rejected a command or flag it does not
// know (where etcdctl accepted it).
func unsupported(r ctlResult) bool {
	for _, s := range []string{"unknown command", "unknown flag", "unknown shorthand flag"} {
		if strings.Contains(r.stderr, s) {
			return true
		}
	}
	return false
}

// etcdctlSession is the sequence of commands TestEtcdctlOutputMatchesRealEtcd
// runs, in order, against fresh single-member servers; every step must print
// the same on each. Revisions are compared as they are: both servers start
// at revision 1 and every step changes them the same way.
var etcdctlSession = []struct {
	stdin string
	args  []string
}{
	{"", []string{"put", "name", "john"}},
	{"", []string{"get", "name"}},
	{"", []string{"get", "name", "-w", "json"}},
	{"", []string{"put", "name2", "paul"}},
	{"", []string{"put", "name3", "george"}},
	{"", []string{"put", "other", "ringo"}},
	{"", []string{"get", "name", "--prefix"}},
	{"", []string{"get", "name", "--prefix", "--keys-only"}},
	{"", []string{"get", "name", "--prefix", "--limit=2"}},
	{"", []string{"get", "name", "--prefix", "--limit=2", "-w", "json"}},
	{"", []string{"get", "name", "--rev=2"}},
	{"", []string{"get", "name", "--prefix", "--rev=3", "-w", "json"}},
	{"", []string{"get", "name", "--print-value-only"}},
	{"", []string{"get", "name", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"}},
	{"", []string{"get", "name", "--prefix", "--sort-by=VALUE", "--order=ASCEND"}},
	{"", []string{"get", "name", "--prefix", "--count-only"}},
	{"", []string{"get", "name", "--prefix", "--count-only", "-w", "json"}},
	{"", []string{"get", "name", "--prefix", "--count-only", "-w", "fields"}},
	{"", []string{"get", "name", "--prefix", "-w", "fields"}},
	{"", []string{"get", "name", "--from-key", "--keys-only"}},
	{"", []string{"get", "name", "name3"}},
	{"", []string{"get", "nosuchkey"}},
	{"", []string{"get", "nosuchkey", "-w", "json"}},
	{"", []string{"get", "name", "--consistency=s"}},
	{"", []string{"get", "name", "-w", "table"}},
	{"", []string{"--hex", "get", "name"}},
	{"", []string{"put", "name", "jane", "--prev-kv"}},
	{"", []string{"put", "name", "jim", "--prev-kv", "-w", "json"}},
	{"", []string{"put", "name", "--ignore-value"}},
	{"", []string{"put", "newkey", "--ignore-value"}},
	{"", []string{"del", "name3"}},
	{"", []string{"del", "nosuchkey"}},
	{"", []string{"del", "name", "--prefix", "--prev-kv"}},
	{"", []string{"del", "other", "-w", "json"}},
	{"", []string{"put", "k", "v0"}},
	{"mod(\"t\") = \"0\"\n\nput t v1\n\nget t\n\n", []string{"txn", "-i"}},
	{"mod(\"t\") = \"0\"\n\nput t v1\n\nget t\n\n", []string{"txn", "-i"}},
	{"mod(\"k\") > \"0\"\n\nput k v2\nput k2 w\n\nget k\n\n", []string{"txn", "-i"}},
	{"value(\"k\") = \"v2\"\n\ndel k2\n\nget k\n\n", []string{"txn"}},
	{"version(\"k\") = \"9\"\n\n\nget k --prefix\n\n", []string{"txn", "-w", "json"}},
	{"create(\"k\") != \"0\"\n\nput k v3 --prev-kv\n\n\n", []string{"txn", "-w", "fields"}},
	{"this is not a compare\n\n\n\n", []string{"txn"}},
	{"", []string{"get", "k", "-w", "json"}},
	{"", []string{"compaction", "5"}},
	{"", []string{"compaction", "5"}},
	{"", []string{"compaction", "3"}},
	{"", []string{"compaction", "7", "--physical"}},
	{"", []string{"compaction", "1000"}},
	{"", []string{"get", "name", "--rev=2"}},
	{"", []string{"get", "k", "--rev=1000"}},
	{"", []string{"get", ""}},
	{"", []string{"put", "", "v"}},
	{"", []string{"put", "onlykey"}},
	{"", []string{"get"}},
	{"", []string{"del"}},
	{"", []string{"get", "k", "--sort-by=NOPE"}},
	{"", []string{"get", "k", "-w", "nope"}},
	{"", []string{"nosuchcommand"}},
	{"", []string{"get", "", "--from-key", "-w", "json"}},
}

func TestEtcdctlOutputMatchesRealEtcd(t *testing.T) {
	etcd := officialEtcd(t)
	ref := newCluster(t, etcd.Server, 1) // real etcd, driven by etcdctl
	kvA := newCluster(t, kvorumBin, 1)   // Kvorum, driven by etcdctl
	kvB := newCluster(t, kvorumBin, 1)   // Kvorum, driven by kvorumctl
	for i, step := range etcdctlSession {
		t.Run(fmt.Sprintf("%02d %s", i, strings.Join(step.args, " ")), func(t *testing.T) {
			want := runCtl(t, etcd.Ctl, ref.endpoints(), step.stdin, step.args...)
			got := runCtl(t, etcd.Ctl, kvA.endpoints(), step.stdin, step.args...)
			gotCtl := runCtl(t, kvorumctlBin, kvB.endpoints(), step.stdin, step.args...)

			t.Run("etcd vs kvorum", func(t *testing.T) {
				w, g := want.normalized(ref.endpoints(), "etcdctl"), got.normalized(kvA.endpoints(), "etcdctl")
				if w != g {
					t.Errorf("etcdctl %s: output differs\n===== real etcd:\n%s===== kvorum:\n%s", strings.Join(step.args, " "), w, g)
				}
			})
			t.Run("etcdctl vs kvorumctl", func(t *testing.T) {
				w, g := got.normalized(kvA.endpoints(), "etcdctl"), gotCtl.normalized(kvB.endpoints(), "kvorumctl")
				if w != g {
					t.Errorf("%s: output differs\n===== etcdctl:\n%s===== kvorumctl:\n%s", strings.Join(step.args, " "), w, g)
				}
			})
		})
	}
}
