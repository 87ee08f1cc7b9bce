package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
)

func TestRestartAllMembersKeepsEveryWrite(t *testing.T) {
	c := newCluster(t, kvorumBin, 3)
	want := putMany(t, c.client(), "a/", 200, 8)
	rev := c.waitConverged()

	for _, tc := range []struct {
		how    string
		signal syscall.Signal
		prefix string
	}{
		{"SIGTERM to all (clean stop)", syscall.SIGTERM, "b/"},
		{"SIGKILL to all at once", syscall.SIGKILL, "c/"},
	} {
		c.stopAll(tc.signal)
		for _, m := range c.members {
			m.start()
		}
		c.waitHealthy(c.members...)
		if got := c.waitConverged(); got != rev {
			t.Errorf("after %s and a restart the cluster is at revision %d, was %d", tc.how, got, rev)
		}
		c.checkAllMembersHold(want, "after "+tc.how)
		c.checkSameHashKV(rev)
		if t.Failed() {
			return
		}
		for k, v := range putMany(t, c.client(), tc.prefix, 100, 8) {
			want[k] = v
		}
		rev = c.waitConverged()
	}
	c.checkLogs()
}

// stopAll stops every running member at once with sig, SIGKILL or
// SIGTERM, and waits until all have exited. After SIGTERM each must exit
// cleanly within 15s (it is killed if it does not).
func (c *cluster) stopAll(sig syscall.Signal) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range c.running() {
		wg.Go(func() {
			if sig == syscall.SIGKILL {
				m.Kill()
			} else if err := m.Stop(ctx); err != nil {
				c.t.Error(err)
			}
		})
	}
	wg.Wait()
}

// checkAllMembersHold reads every key on every member serializably and
// checks that want is exactly what each holds.
func (c *cluster) checkAllMembersHold(want map[string]string, when string) {
	c.t.Helper()
	for _, m := range c.running() {
		got, _, err := m.readAll(m.client(), "")
		if err != nil {
			c.t.Fatalf("%s: serializable range on %s: %v", when, m.Name, err)
		}
		var missing, wrong, extra []string
		for k, v := range want {
			switch g := got[k]; {
			case g == nil:
				missing = append(missing, k)
			case g.value != v:
				wrong = append(wrong, k)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				extra = append(extra, k)
			}
		}
		if len(missing)+len(wrong)+len(extra) > 0 {
			c.t.Errorf("%s, %s holds %d keys, want %d: %d missing %s, %d with a wrong value %s, %d unexpected %s",
				when, m.Name, len(got), len(want), len(missing), head(missing), len(wrong), head(wrong), len(extra), head(extra))
		}
	}
}

func head(s []string) string {
	if len(s) > 5 {
		return "[" + strings.Join(s[:5], " ") + " ...]"
	}
	return "[" + strings.Join(s, " ") + "]"
}

func TestRestartedMemberCatchesUpBySnapshot(t *testing.T) {
	// The leader compacts its log every 100 entries and keeps only 100 for
	// slow followers, so a member that missed 3000 writes cannot catch up
	// from the log and must be sent a snapshot.
	c := newCluster(t, kvorumBin, 3, "--snapshot-count=100", "--snapshot-catchup-entries=100")
	leader, _ := c.leader()
	var lagging *member
	for _, m := range c.members {
		if m != leader {
			lagging = m
			break
		}
	}
	lagging.stop()
	want := putMany(t, c.client(c.running()...), "k/", 3000, 16)
	lagging.start()
	c.waitHealthy(lagging)
	rev := c.waitConverged()
	c.checkAllMembersHold(want, "after the restarted member caught up")
	c.checkSameHashKV(rev)
	if log := lagging.LastRunLog(); !strings.Contains(log, "snapshot installed") {
		t.Errorf("%s caught up without installing a snapshot (the leader kept the log it missed; is --snapshot-catchup-entries honoured?)", lagging.Name)
	}
	c.checkLogs()
}

// The state machine's engine keeps no write-ahead log of its own: what it
// applied since its last flush lives only in memory, and a member killed
// with SIGKILL applies those entries again from its raft log. With a
// compaction every 37 entries (each waiting for an engine flush before it
// cuts the log) the raft log is cut again and again under the writes; a
// kill at any point must still find every acknowledged write, the same on
// every member, and a second kill right after the restart (while the
// members are still replaying) too.
func TestKilledMembersReplayTheStateFromTheirRaftLog(t *testing.T) {
	c := newCluster(t, kvorumBin, 3, "--snapshot-count=37", "--snapshot-catchup-entries=10")
	want := putMany(t, c.client(), "a/", 600, 8)
	rev := c.waitConverged()
	for round := range 2 {
		c.stopAll(syscall.SIGKILL)
		for _, m := range c.members {
			m.start()
		}
		c.waitHealthy(c.members...)
		if got := c.waitConverged(); got != rev {
			t.Fatalf("round %d: after SIGKILL to all the cluster is at revision %d, was %d", round, got, rev)
		}
		c.checkAllMembersHold(want, "after SIGKILL to all")
		c.checkSameHashKV(rev)
		if t.Failed() {
			return
		}
		for k, v := range putMany(t, c.client(), fmt.Sprintf("b%d/", round), 300, 8) {
			want[k] = v
		}
		rev = c.waitConverged()
	}
	c.checkLogs()
}

// With --wal-dir the raft log lives in that directory, as etcd's does, and
// a member killed with SIGKILL replays its state from there.
func TestDedicatedWALDirHoldsTheRaftLog(t *testing.T) {
	walDir := filepath.Join(t.TempDir(), "wal")
	c := newStoppedCluster(t, rcluster.Config{Bin: kvorumBin, Members: 1, Flags: []string{"--wal-dir=" + walDir}})
	m := c.members[0]
	m.start()
	c.waitHealthy(m)
	want := putMany(t, m.client(), "w/", 100, 4)
	m.kill()
	m.start()
	c.waitHealthy(m)
	c.checkAllMembersHold(want, "after SIGKILL with --wal-dir")
	if files, _ := filepath.Glob(filepath.Join(walDir, "*.wal")); len(files) == 0 {
		t.Errorf("no raft log files in --wal-dir %s", walDir)
	}
	if _, err := os.Stat(filepath.Join(m.DataDir, "member", "wal")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("member/wal in the data dir although --wal-dir is set (stat: %v)", err)
	}
	c.checkLogs()
}
