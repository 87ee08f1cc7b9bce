package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
)

// TestBadInputRefusesToStart checks that the server exits with an error, and
// that what it prints for people (the lines that are not structured JSON
// log records) is one line naming the input at fault.
func TestBadInputRefusesToStart(t *testing.T) {
	ports := freePorts(t, 3)
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	peer2 := "http://127.0.0.1:" + strconv.Itoa(ports[2])
	base := func(dataDir string, extra ...string) []string {
		return append([]string{
			"--name=m1",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=m1=" + peer,
			"--initial-cluster-state=new",
			"--initial-cluster-token=token-a",
		}, extra...)
	}
	// usedDataDir returns the data dir of a member of cluster token-a that
	// ran and stopped cleanly.
	usedDataDir := func(t *testing.T) string {
		c := newStoppedCluster(t, rcluster.Config{Bin: kvorumBin, Members: 1, Token: "token-a"})
		m := c.members[0]
		m.start()
		c.waitHealthy(m)
		putMany(t, m.client(), "k/", 10, 1)
		m.stop()
		return m.DataDir
	}

	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
		// The line must contain all of these.
		want []string
	}{
		{
			name: "unknown flag",
			args: func(t *testing.T) []string { return base(t.TempDir(), "--no-such-flag=1") },
			want: []string{"--no-such-flag"},
		},
		{
			name: "certificate file missing",
			args: func(t *testing.T) []string {
				return base(t.TempDir(), "--cert-file=/nonexistent/server.pem", "--key-file=/nonexistent/server-key.pem")
			},
			want: []string{"--cert-file", "/nonexistent/server.pem"},
		},
		{
			name: "peer client certificate auth with auto TLS and no CA",
			args: func(t *testing.T) []string { return base(t.TempDir(), "--peer-auto-tls", "--peer-client-cert-auth") },
			want: []string{"--peer-client-cert-auth", "--peer-trusted-ca-file"},
		},
		{
			name: "name missing from initial cluster",
			args: func(t *testing.T) []string { return base(t.TempDir(), "--name=m9") },
			want: []string{"m9", "--initial-cluster"},
		},
		{
			name: "two members with the same peer URL",
			args: func(t *testing.T) []string { return base(t.TempDir(), "--initial-cluster=m1="+peer+",m2="+peer) },
			want: []string{peer},
		},
		{
			name: "client and peer URLs are the same",
			args: func(t *testing.T) []string {
				return base(t.TempDir(), "--listen-client-urls="+peer, "--advertise-client-urls="+peer)
			},
			want: []string{peer},
		},
		{
			name: "data dir of another cluster",
			args: func(t *testing.T) []string {
				return base(usedDataDir(t), "--initial-cluster-token=token-b")
			},
			want: []string{"token-a", "token-b"},
		},
		{
			name: "data dir of another member",
			args: func(t *testing.T) []string {
				return base(usedDataDir(t), "--name=m2", "--initial-cluster=m2="+peer2, "--initial-advertise-peer-urls="+peer2, "--listen-peer-urls="+peer2)
			},
			want: []string{`"m1"`, `"m2"`},
		},
		{
			name: "truncated MANIFEST",
			args: func(t *testing.T) []string {
				dir := usedDataDir(t)
				for _, m := range filesIn(t, dir, "member/db/MANIFEST-*") {
					if err := os.Truncate(m, 3); err != nil {
						t.Fatal(err)
					}
				}
				return base(dir)
			},
			want: []string{"member/db"},
		},
		{
			name: "raft log deleted",
			args: func(t *testing.T) []string {
				dir := usedDataDir(t)
				if err := os.RemoveAll(filepath.Join(dir, "member", "wal")); err != nil {
					t.Fatal(err)
				}
				return base(dir)
			},
			want: []string{"no raft log in", "member/wal"},
		},
		{
			name: "--wal-dir pointing away from the raft log",
			args: func(t *testing.T) []string { return base(usedDataDir(t), "--wal-dir="+t.TempDir()) },
			want: []string{"no raft log in", "--wal-dir"},
		},
		{
			name: "garbage in the raft log",
			args: func(t *testing.T) []string {
				dir := usedDataDir(t)
				for _, f := range filesIn(t, dir, "member/wal/*.wal") {
					if err := os.WriteFile(f, bytes.Repeat([]byte("garbage!"), 512), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return base(dir)
			},
			want: []string{"raft log", "member/wal"},
		},
		{
			name: "CURRENT names a missing MANIFEST",
			args: func(t *testing.T) []string {
				dir := usedDataDir(t)
				markers, _ := filepath.Glob(filepath.Join(dir, "member", "db", "marker.manifest.*"))
				current := filepath.Join(dir, "member", "db", "CURRENT")
				if _, err := os.Stat(current); err == nil {
					markers = append(markers, current)
				}
				if len(markers) == 0 {
					t.Fatalf("no Pebble CURRENT file or manifest marker in %s", dir)
				}
				for _, m := range markers {
					if err := os.WriteFile(m, []byte("MANIFEST-999999\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					// Pebble's marker file names the MANIFEST in its own name.
					if strings.Contains(m, "marker.manifest.") {
						if err := os.Rename(m, filepath.Join(filepath.Dir(m), "marker.manifest.000009.MANIFEST-999999")); err != nil {
							t.Fatal(err)
						}
					}
				}
				return base(dir)
			},
			want: []string{"member/db"},
		},
		{
			name: "garbage in every Pebble file",
			args: func(t *testing.T) []string {
				dir := usedDataDir(t)
				files, _ := filepath.Glob(filepath.Join(dir, "member", "db", "*"))
				for _, f := range files {
					if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && !strings.HasSuffix(f, "LOCK") {
						if err := os.WriteFile(f, bytes.Repeat([]byte("garbage!"), 512), 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}
				return base(dir)
			},
			want: []string{"member/db"},
		},
		{
			name: "non-empty foreign directory",
			args: func(t *testing.T) []string {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a data dir"), 0o644); err != nil {
					t.Fatal(err)
				}
				return base(dir)
			},
			want: []string{"not empty"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args(t)
			stdout, stderr, err := runFor(t, 10*time.Second, kvorumBin, args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("kvorum %s: got %v, want a non-zero exit\nstderr:\n%s", strings.Join(args, " "), err, stderr)
			}
			human := humanLines(stdout + stderr)
			if len(human) != 1 {
				t.Fatalf("want one line for people naming the problem, got %d:\n%s", len(human), strings.Join(human, "\n"))
			}
			for _, w := range tc.want {
				if !strings.Contains(human[0], w) {
					t.Errorf("the error line does not name %q: %s", w, human[0])
				}
			}
			t.Logf("%s", human[0])
		})
	}
}

// filesIn lists the files of dataDir matching pattern, failing the test
// if there are none (the case would test nothing).
func filesIn(t *testing.T, dataDir, pattern string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, pattern))
	if len(files) == 0 {
		t.Fatalf("no %s in %s", pattern, dataDir)
	}
	return files
}

// runFor runs bin and returns its output; a process still running after d is
// killed and fails the test (it started although it should not have).
func runFor(t *testing.T, d time.Duration, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = rcluster.ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s still running after %v, want a refusal to start\nstderr:\n%s", bin, strings.Join(args, " "), d, rcluster.Tail(errb.String(), 20))
	}
	return out.String(), errb.String(), err
}

// humanLines are the non-empty output lines that are not JSON log records.
func humanLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "{") {
			out = append(out, l)
		}
	}
	return out
}
