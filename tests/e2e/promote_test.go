package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
)

// startServer starts bin with args and extra environment variables; its
// output goes to a log file that is shown if the test fails, and it is
// killed when the test ends.
func startServer(t *testing.T, name, bin string, args, env []string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = rcluster.ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("----- %s log, last 30 lines -----\n%s", name, rcluster.Tail(string(b), 30))
		}
	})
}

var etcdEnvLine = regexp.MustCompile(`(?m)^(ETCD_[A-Z_]+)="(.*)"$`)

// TestMemberAddStartPromoteMoveLeaderMatchesEtcdctl grows a cluster the way
// an operator does, once with etcdctl and once with kvorumctl: add a
// learner, start it with the ETCD_* settings the add printed, promote it
// once it has caught up, and make it the leader. Both CLIs must print the
// same at every step.
//
// Each CLI grows an official etcd and a Kvorum cluster; all four runs must
// print the same (after IDs and URLs are normalized).
func TestMemberAddStartPromoteMoveLeaderMatchesEtcdctl(t *testing.T) {
	etcd := officialEtcd(t)
	grow := func(cli, bin, server string) []ctlResult {
		r := &ctlRun{name: cli, bin: bin, c: newCluster(t, server, 1)}
		r.learnIDs(t)
		ports := freePorts(t, 2)
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		r.urls = map[string]string{client: "<new client>", peer: "<new peer>"}
		var outs []ctlResult
		step := func(args ...string) ctlResult {
			t.Helper()
			res := runCtl(t, bin, r.c.endpoints(), "", args...)
			r.learnIDs(t)
			outs = append(outs, r.normalize(t, adminStep{args: args}, res))
			return res
		}

		add := step("member", "add", "m2", "--learner", "--peer-urls="+peer)
		if add.code != 0 {
			t.Fatalf("%s member add: %v", cli, add)
		}
		env := []string{}
		for _, m := range etcdEnvLine.FindAllStringSubmatch(add.stdout, -1) {
			env = append(env, m[1]+"="+m[2])
		}
		if len(env) != 4 {
			t.Fatalf("%s member add printed %d ETCD_* settings, want 4: %v", cli, len(env), add)
		}
		startServer(t, cli+"-"+filepath.Base(server)+"-m2", server, append([]string{
			"--data-dir", filepath.Join(t.TempDir(), "m2"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer,
		}, fastRaft...), env)

		// The learner can be promoted once it has caught up with the
		// leader; until then etcd refuses.
		id := r.unstartedOr("m2")
		deadline := time.Now().Add(30 * time.Second)
		for {
			res := runCtl(t, bin, r.c.endpoints(), "", "member", "promote", id)
			if res.code == 0 {
				r.learnIDs(t)
				outs = append(outs, r.normalize(t, adminStep{}, res))
				break
			}
			if !strings.Contains(res.stderr, "in sync with leader") || time.Now().After(deadline) {
				t.Fatalf("%s member promote %s: %v", cli, id, res)
			}
			time.Sleep(200 * time.Millisecond)
		}
		step("member", "list", "-w", "json")
		step("move-leader", id)
		st, err := r.c.client().Status(context.Background(), r.c.endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		if got := strconv.FormatUint(st.Leader, 16); got != id {
			t.Errorf("%s: after move-leader %s, m1 reports leader %s", cli, id, got)
		}
		step("move-leader", r.self)
		return outs
	}
	want := grow("etcdctl", etcd.Ctl, etcd.Server)
	for _, run := range []struct{ cli, bin, server string }{
		{"kvorumctl", kvorumctlBin, etcd.Server},
		{"etcdctl", etcd.Ctl, kvorumBin},
		{"kvorumctl", kvorumctlBin, kvorumBin},
	} {
		got := grow(run.cli, run.bin, run.server)
		name := run.cli + " on " + filepath.Base(run.server)
		if len(want) != len(got) {
			t.Fatalf("etcdctl on etcd ran %d steps, %s %d", len(want), name, len(got))
		}
		for i := range want {
			if want[i] != got[i] {
				t.Errorf("step %d: output differs\n===== etcdctl on etcd:\n%s===== %s:\n%s", i, want[i], name, got[i])
			}
		}
	}
}
