package e2e

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// localCluster is a running `kvorum local-cluster`.
type localCluster struct {
	cmd       *exec.Cmd
	endpoints []string
	pids      []int
	out       *syncBuffer
	exited    chan error
}

// syncBuffer collects local-cluster's stdout and stderr, which are written
// from two goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) WriteString(s string) { b.Write([]byte(s)) }

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	localEndpoints = regexp.MustCompile(`^endpoints: (\S+)$`)
	localPID       = regexp.MustCompile(`^  m\d+  client \S+  peer \S+  pid (\d+)  log `)
	localCtl       = regexp.MustCompile(`^kvorumctl --endpoints=(\S+) `)
)

// startLocalCluster runs `kvorum local-cluster` with args and waits until it
// reports the cluster running.
func startLocalCluster(t *testing.T, args ...string) *localCluster {
	t.Helper()
	cmd := exec.Command(kvorumBin, append([]string{"local-cluster"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lc := &localCluster{cmd: cmd, out: out, exited: make(chan error, 1)}
	// Killing local-cluster also ends its members (their parent-death
	// signal); after a clean stop this does nothing.
	t.Cleanup(func() { cmd.Process.Kill() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var ctl string
		var endpoints []string
		var pids []int
		for sc.Scan() {
			l := sc.Text()
			out.WriteString(l + "\n")
			if m := localPID.FindStringSubmatch(l); m != nil {
				pid, _ := strconv.Atoi(m[1])
				pids = append(pids, pid)
			}
			if m := localEndpoints.FindStringSubmatch(l); m != nil {
				endpoints = strings.Split(m[1], ",")
			}
			if m := localCtl.FindStringSubmatch(l); m != nil {
				ctl = m[1]
			}
			if strings.HasPrefix(l, "Press Ctrl-C") {
				if ctl != strings.Join(endpoints, ",") {
					endpoints = nil // fails the check below
				}
				lc.endpoints, lc.pids = endpoints, pids
				close(ready)
			}
		}
		lc.exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-lc.exited:
		t.Fatalf("kvorum local-cluster %v exited (%v) before the cluster ran:\n%s", args, err, out)
	case <-time.After(time.Minute):
		t.Fatalf("kvorum local-cluster %v did not report a running cluster within a minute:\n%s", args, out)
	}
	if len(lc.endpoints) == 0 || len(lc.pids) != len(lc.endpoints) {
		t.Fatalf("kvorum local-cluster printed no usable endpoints, kvorumctl line and member pids:\n%s", out)
	}
	return lc
}

// stop sends SIGTERM, waits for a clean exit, and checks that no member
// process is left.
func (lc *localCluster) stop(t *testing.T) {
	t.Helper()
	lc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-lc.exited:
		if err != nil {
			t.Fatalf("kvorum local-cluster exited with %v after SIGTERM, want 0:\n%s", err, lc.out)
		}
	case <-time.After(time.Minute):
		t.Fatalf("kvorum local-cluster still runs a minute after SIGTERM:\n%s", lc.out)
	}
	for _, pid := range lc.pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("member process %d still exists after local-cluster exited (kill -0: %v)", pid, err)
		}
	}
}

// TestLocalCluster runs `kvorum local-cluster --members 3`, uses it with
// the etcd client, stops it with SIGTERM, starts it again from its kept
// data, and finally stops it with --wipe.
func TestLocalCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lc")
	lc := startLocalCluster(t, "--members", "3", "--dir", dir, "--", "--heartbeat-interval=50", "--election-timeout=500")
	if len(lc.endpoints) != 3 {
		t.Fatalf("%d endpoints, want 3:\n%s", len(lc.endpoints), lc.out)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: lc.endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "greeting", "hello"); err != nil {
		t.Fatal(err)
	}
	ms, err := cli.MemberList(ctx)
	if err != nil || len(ms.Members) != 3 {
		t.Fatalf("member list: %v, %v; want 3 members", ms, err)
	}
	cli.Close()
	lc.stop(t)
	for _, m := range []string{"m1", "m2", "m3"} {
		if _, err := os.Stat(filepath.Join(dir, m)); err != nil {
			t.Errorf("data of %s not kept: %v", m, err)
		}
	}

	lc2 := startLocalCluster(t, "--members", "3", "--dir", dir, "--wipe", "--", "--heartbeat-interval=50", "--election-timeout=500")
	if strings.Join(lc2.endpoints, ",") != strings.Join(lc.endpoints, ",") {
		t.Errorf("restarted cluster has endpoints %v, want the first run's %v", lc2.endpoints, lc.endpoints)
	}
	cli, err = clientv3.New(clientv3.Config{Endpoints: lc2.endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "greeting")
	cli.Close()
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "hello" {
		t.Fatalf("get greeting after restart: %v, %v; want hello", resp, err)
	}
	lc2.stop(t)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--wipe: %s still exists after stop (%v)", dir, err)
	}
}

// TestLocalClusterRefusesOtherSize checks that a kept cluster is not
// restarted with another member count.
func TestLocalClusterRefusesOtherSize(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "local-cluster.json"), []byte(`{"token":"t","members":[{"name":"m1","client-port":1,"peer-port":2}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kvorumBin, "local-cluster", "--members", "3", "--dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pass --members 1") {
		t.Errorf("local-cluster --members 3 on a 1-member cluster's dir: %v, %q; want a refusal naming --members 1", err, out)
	}
}
