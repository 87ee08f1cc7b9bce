package e2e

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
)

// notifySocket is a stand-in for systemd's notification socket: a unixgram
// socket a member is pointed at with NOTIFY_SOCKET.
type notifySocket struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func newNotifySocket(t *testing.T, name string) *notifySocket {
	t.Helper()
	// A unix socket path must be short; t.TempDir's can be too long.
	dir, err := os.MkdirTemp("", "kvorum-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, name)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{t: t, path: path, conn: conn}
}

// next returns the next notification, or "" if none arrives within wait.
func (s *notifySocket) next(wait time.Duration) string {
	s.t.Helper()
	buf := make([]byte, 4096)
	s.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := s.conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ""
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return string(buf[:n])
}

// waitFor reads notifications until each of want has been seen and
// returns all it read.
func (s *notifySocket) waitFor(who string, want ...string) []string {
	s.t.Helper()
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return slices.Contains(got, w) })
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: no %v on NOTIFY_SOCKET within 30s; got %q", who, missing, got)
		}
		if m := s.next(time.Second); m != "" {
			got = append(got, strings.TrimSpace(m))
		}
	}
}

// TestSystemdNotifyReadyOnlyWithQuorum runs members as systemd would with
// Type=notify and WatchdogSec: a member alone of three does not report
// READY=1, however long it campaigns; once a second member makes a quorum,
// both do; the watchdog is pinged; and a stopping member reports
// STOPPING=1.
func TestSystemdNotifyReadyOnlyWithQuorum(t *testing.T) {
	c := newStoppedCluster(t, rcluster.Config{Bin: kvorumBin, Members: 3, Flags: []string{"--log-level=debug"}})
	m1, m2 := c.members[0], c.members[1]
	s1, s2 := newNotifySocket(t, "m1"), newNotifySocket(t, "m2")

	t.Setenv("NOTIFY_SOCKET", s1.path)
	m1.start()
	// Raft logs (at debug level) each election a member starts; m1 starts
	// them one after another, and none can win without a second member.
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(m1.LastRunLog(), "is starting a new election") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("m1 did not campaign 3 times within 30s; log:\n%s", m1.LastRunLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := s1.next(0); m != "" {
		t.Fatalf("m1 alone of 3 members (no quorum) notified systemd %q, want nothing yet", m)
	}

	t.Setenv("NOTIFY_SOCKET", s2.path)
	t.Setenv("WATCHDOG_USEC", "200000")
	m2.start()
	got1 := s1.waitFor("m1", "READY=1")
	if got1[0] != "READY=1" {
		t.Errorf("m1's first notification %q, want READY=1", got1[0])
	}
	s2.waitFor("m2", "READY=1", "WATCHDOG=1")
	c.waitHealthy(m1, m2)

	m1.stop()
	s1.waitFor("m1", "STOPPING=1")
	m2.stop()
	got2 := s2.waitFor("m2", "STOPPING=1")
	// STOPPING=1 is the last word: the watchdog pings end before it.
	for m := s2.next(100 * time.Millisecond); m != ""; m = s2.next(100 * time.Millisecond) {
		got2 = append(got2, m)
	}
	if last := got2[len(got2)-1]; last != "STOPPING=1" {
		t.Errorf("m2 notified %q after STOPPING=1: %q", last, got2)
	}
}
