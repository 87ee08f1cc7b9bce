package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// watchCase is one watch invocation. A watch runs until the server ends it;
// the case says when its output is complete: after lines lines of stdout,
// once the stdin lines (if any) were written. Then stdin is closed (with -i
// the CLI exits on that) or the CLI is killed; an invocation that exits by
// itself is compared in full.
type watchCase struct {
	args   []string
	env    []string
	stdin  []string // written one by one; each waits for the lines given after "\x00", if any
	lines  int
	during []string // etcdctl commands run once the watch started
}

// runWatch runs one watchCase with CLI bin against endpoints.
func runWatch(t *testing.T, bin, etcdctl string, endpoints []string, wc watchCase) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--dial-timeout=2s", "--command-timeout=5s"}, wc.args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}, wc.env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	linec := make(chan string)
	go func() {
		r := bufio.NewReader(stdout)
		for {
			l, err := r.ReadString('\n')
			if l != "" {
				linec <- l
			}
			if err != nil {
				close(linec)
				return
			}
		}
	}()
	var out strings.Builder
	n := 0
	exited := false
	waitLines := func(want int) {
		deadline := time.After(10 * time.Second)
		for n < want && !exited {
			select {
			case l, ok := <-linec:
				if !ok {
					exited = true
					return
				}
				out.WriteString(l)
				n++
			case <-deadline:
				t.Errorf("%s %v: %d of %d lines after 10s:\n%s", bin, wc.args, n, want, out.String())
				return
			}
		}
	}
	for _, c := range wc.during {
		if r := runCtl(t, etcdctl, endpoints, "", strings.Fields(c)...); r.code != 0 {
			t.Fatalf("etcdctl %s: %s", c, r)
		}
	}
	for _, s := range wc.stdin {
		line, after, _ := strings.Cut(s, "\x00")
		if _, err := io.WriteString(stdin, line+"\n"); err != nil {
			break // exited already
		}
		var want int
		fmt.Sscan(after, &want)
		waitLines(want)
	}
	waitLines(wc.lines)
	code := 0
	if wc.stdin != nil || exited {
		stdin.Close()
	} else {
		_ = cmd.Process.Kill()
		code = -1
	}
	for l := range linec {
		out.WriteString(l)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if code == 0 && errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	return ctlResult{stdout: out.String(), stderr: errb.String(), code: code}
}

// The servers hold the same history: a=1 (2), b=2 (3), a=3 (4), del a
// (5), txn a=5 c=6 (6). Events of "a" from 2 print 12 lines.
var watchCases = []watchCase{
	{args: []string{"watch", "--rev", "2", "--prefix", ""}, lines: 18},
	{args: []string{"watch", "--rev", "2", "a", "--prev-kv"}, lines: 16},
	{args: []string{"watch", "--rev", "2", "a", "c", "-w", "json"}, lines: 1},
	{args: []string{"watch", "--rev", "2", "a", "--prev-kv", "-w", "fields"}, lines: 44},
	{args: []string{"--hex", "watch", "--rev", "2", "a", "-w", "fields"}, lines: 32},
	{args: []string{"watch", "--rev", "2", "a", "--", "sh", "-c", "echo $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_REVISION"}, lines: 16},
	{args: []string{"watch", "--rev", "2"}, env: []string{"ETCDCTL_WATCH_KEY=a", "ETCDCTL_WATCH_RANGE_END=c"}, lines: 15},
	{args: []string{"watch", "--rev", "7", "live"}, during: []string{"put live x", "del live"}, lines: 6},
	{args: []string{"watch", "-i"}, stdin: []string{"watch --rev 2 a\x0012", "foo", "", "watch", "watch --rev 2 a b --prefix"}},
	{args: []string{"watch", "-i"}, stdin: []string{"watch --rev 2 c\x003", "progress\x004"}},
	{args: []string{"watch", "--rev", "2", "a", "--", "false"}},
	{args: []string{"watch", "a", "-w", "table", "--rev", "2"}},
	{args: []string{"watch"}},
	{args: []string{"watch", "a", "b", "--prefix"}},
	{args: []string{"watch", "a", "--"}},
	{args: []string{"watch", "--rev", "-1", "a"}},
	{args: []string{"watch", "a"}, env: []string{"ETCDCTL_WATCH_RANGE_END=b"}},
	{args: []string{"watch", "x"}, env: []string{"ETCDCTL_WATCH_KEY=a"}},
}

func TestWatchOutputMatchesEtcdctl(t *testing.T) {
	etcd := officialEtcd(t)
	ref := newCluster(t, etcd.Server, 1)
	kv := newCluster(t, kvorumBin, 1)
	history := [][]string{{"put", "a", "1"}, {"put", "b", "2"}, {"put", "a", "3"}, {"del", "a"}}
	txn := "mod(\"a\") = \"0\"\n\nput a 5\nput c 6\n\n\n"
	for _, c := range []*cluster{ref, kv} {
		for _, h := range history {
			runCtl(t, etcd.Ctl, c.endpoints(), "", h...)
		}
		runCtl(t, etcd.Ctl, c.endpoints(), txn, "txn")
	}
	// With --hex, IDs are hex; the shared normalizers know decimal ones.
	hexIDs := regexp.MustCompile(`"(ClusterID|MemberID)" : [0-9a-f]+`)
	check := func(t *testing.T, wc watchCase) {
		want := runWatch(t, etcd.Ctl, etcd.Ctl, ref.endpoints(), wc)
		got := runWatch(t, kvorumctlBin, etcd.Ctl, kv.endpoints(), wc)
		want.stdout, got.stdout = hexIDs.ReplaceAllString(want.stdout, `"$1" : <id>`), hexIDs.ReplaceAllString(got.stdout, `"$1" : <id>`)
		want, got = want.normalized(ref.endpoints(), "etcdctl"), got.normalized(kv.endpoints(), "kvorumctl")
		if want != got {
			t.Errorf("%v: output differs\n===== etcdctl against etcd:\n%s===== kvorumctl against kvorum:\n%s", wc.args, want, got)
		}
	}
	for i, wc := range watchCases {
		t.Run(fmt.Sprintf("%02d %s", i, strings.Join(wc.args, " ")), func(t *testing.T) { check(t, wc) })
	}
	// A watch from a compacted revision is ended by the server.
	for _, c := range []*cluster{ref, kv} {
		runCtl(t, etcd.Ctl, c.endpoints(), "", "compaction", "4")
	}
	t.Run("compacted start revision", func(t *testing.T) {
		check(t, watchCase{args: []string{"watch", "--rev", "2", "a"}})
	})
}
