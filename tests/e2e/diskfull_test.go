package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
	"github.com/kvorum/kvorum/internal/storage"
)

// A member whose data dir is on a small file system never finds it full:
// it refuses growth (NOSPACE) while the engine still has the room it needs,
// serves reads and deletes, and takes writes again once space is back —
// both when its own data fills the disk and when another program does.
func TestFullDiskRefusesWritesWithoutStoppingAndRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the disk-full test mounts a small tmpfs as the data dir, which needs root")
	}
	const reserve = 16 << 20
	c := newStoppedCluster(t, rcluster.Config{Bin: kvorumBin, Members: 1, DiskMB: 1024, Flags: []string{
		fmt.Sprintf("--disk-reserve-bytes=%d", reserve),
		// Compact the raft log often, so that deleting the data frees
		// the disk (the log holds every put until it is compacted).
		"--snapshot-count=50", "--snapshot-catchup-entries=10",
	}})
	m := c.members[0]
	m.start()
	c.waitHealthy(m)
	cli := m.client()

	// 1. The member's own writes fill the disk.
	value := make([]byte, 1<<20)
	written := 0
	var refused error
	for i := 0; i < 1500 && refused == nil; i++ {
		rand.Read(value) // incompressible, so the disk really fills
		_, err := cli.Put(ctxFor(t, 10*time.Second), fmt.Sprintf("fill/%04d", i), string(value))
		switch {
		case err == nil:
			written++
		case errors.Is(err, rpctypes.ErrNoSpace):
			refused = err
		default:
			t.Fatalf("put %d (after %d MiB): %v", i, written, err)
		}
	}
	if refused == nil {
		t.Fatalf("wrote %d MiB to a 1 GiB disk without a refusal", written)
	}
	t.Logf("own writes: refused with %q after %d MiB", refused, written)
	checkRefusingButServing(t, m, cli, "fill/0000")

	// Deleting, compacting and defragmenting frees the disk; the member
	// clears the alarm it raised for its disk by itself.
	resp, err := cli.Delete(ctxFor(t, 10*time.Second), "fill/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	if _, err := cli.Compact(ctxFor(t, 10*time.Second), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact under NOSPACE: %v", err)
	}
	if _, err := cli.Defragment(ctxFor(t, time.Minute), m.ClientURL); err != nil {
		t.Fatalf("defragment under NOSPACE: %v", err)
	}
	waitWritable(t, m, cli, "after delete, compact and defragment")

	// 2. Another program fills the disk to the last byte.
	n, err := m.FillDisk()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("another program filled the disk with %d MiB", n>>20)
	waitNoSpace(t, cli, "the disk filled up")
	// The member keeps serving (and writing its raft log) for a while on
	// the full disk.
	time.Sleep(2 * time.Second)
	checkRefusingButServing(t, m, cli, "small")
	if err := m.FreeDisk(); err != nil {
		t.Fatal(err)
	}
	waitWritable(t, m, cli, "after the other program's file was removed")
	if !strings.Contains(m.LogText(), "released the disk reserve") {
		t.Errorf("the log does not say that the disk reserve was released")
	}
	c.checkLogs()
}

// A program that fills the disk slowly, past the point where the member
// gives up its disk reserve, does not get the reserve too: the member
// keeps it while someone else is still writing and releases it once the
// disk stops filling. A member killed while the NOSPACE alarm it raised
// for its disk is active clears that alarm itself after a restart.
func TestFullDiskReserveIsNotLostToAnotherWriter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the disk-full test mounts a small tmpfs as the data dir, which needs root")
	}
	const reserve = 16 << 20
	c := newStoppedCluster(t, rcluster.Config{Bin: kvorumBin, Members: 1, DiskMB: 512, Flags: []string{
		fmt.Sprintf("--disk-reserve-bytes=%d", reserve),
	}})
	m := c.members[0]
	m.start()
	c.waitHealthy(m)
	cli := m.client()
	if _, err := cli.Put(ctxFor(t, 10*time.Second), "before", "x"); err != nil {
		t.Fatal(err)
	}

	// 20 MiB a second once less than 64 MiB are left: the member sees the
	// disk nearly full several times before the writer is done.
	n, err := m.FillDiskPaced(64<<20, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("another program filled the disk with %d MiB", n>>20)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(m.LastRunLog(), "released the disk reserve") {
		if time.Now().After(deadline) {
			t.Fatalf("the disk reserve was not released 10s after the disk filled up\n%s", rcluster.Tail(m.LastRunLog(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(m.LastRunLog(), "another program is still filling it") {
		t.Errorf("the log does not say that the reserve was kept while the disk was filling")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.DataDir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < reserve/2 {
		t.Errorf("%d KiB free after the reserve was released, want most of its %d KiB: the other program took it", free>>10, reserve>>10)
	}
	checkRefusingButServing(t, m, cli, "before")

	m.kill()
	if err := m.FreeDisk(); err != nil {
		t.Fatal(err)
	}
	m.start()
	c.waitHealthy(m)
	waitWritable(t, m, cli, "after a restart with the disk freed")
	c.checkLogs()
}

// A follower whose disk is full to the last byte, with no reserve to give
// back, while the cluster goes on writing 48 MiB of raft entries to it,
// waits instead of stopping (its storage engine would stop the process at
// the first write-ahead log write that finds no free block), and catches
// up once the disk has room again.
func TestFollowerOnAFullDiskWaitsInsteadOfStopping(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the disk-full test mounts a small tmpfs as the data dir, which needs root")
	}
	c := newStoppedCluster(t, rcluster.Config{Bin: kvorumBin, Members: 3, DiskMB: 1024, Flags: []string{"--disk-reserve-bytes=-1"}})
	for _, m := range c.members {
		m.start()
	}
	c.waitHealthy(c.members...)
	lead, _ := c.leader()
	var follower *member
	for _, m := range c.members {
		if m != lead {
			follower = m
			break
		}
	}
	cli := lead.client()
	value := make([]byte, 100<<10)
	put := func(i int) {
		t.Helper()
		rand.Read(value)
		if _, err := cli.Put(ctxFor(t, 10*time.Second), fmt.Sprintf("v/%05d", i), string(value)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	for i := range 50 {
		put(i)
	}
	n, err := follower.FillDisk()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %s's disk with %d MiB", follower.Name, n>>20)
	// 48 MiB of values: more than the engine's preallocated write-ahead
	// log holds, and new memtables with new logs.
	for i := 50; i < 50+480; i++ {
		put(i)
	}
	if err := follower.ExitedOnItsOwn(); err != nil {
		t.Fatalf("the follower stopped on its full disk: %v\n%s", err, rcluster.Tail(follower.LastRunLog(), 20))
	}
	if !strings.Contains(follower.LastRunLog(), "writes wait until there is space") {
		t.Errorf("the follower's log does not say its writes waited")
	}
	if err := follower.FreeDisk(); err != nil {
		t.Fatal(err)
	}
	rev := c.waitConverged()
	c.checkSameHashKV(rev)
	if !strings.Contains(follower.LastRunLog(), "disk space is back") {
		t.Errorf("the follower's log does not say it wrote again")
	}
	c.checkLogs()
}

// checkRefusingButServing checks that m is running, lists a NOSPACE alarm
// for itself, refuses a put and a lease grant, and serves a read of key.
func checkRefusingButServing(t *testing.T, m *member, cli *clientv3.Client, key string) {
	t.Helper()
	if err := m.ExitedOnItsOwn(); err != nil {
		t.Fatalf("the member stopped on a full disk: %v\n%s", err, rcluster.Tail(m.LastRunLog(), 30))
	}
	alarms, err := cli.AlarmList(ctxFor(t, 5*time.Second))
	if err != nil || len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Errorf("alarm list %v (err %v), want NOSPACE", alarms, err)
	}
	if _, err := cli.Put(ctxFor(t, 5*time.Second), "refused", "x"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Errorf("put: err %v, want %v", err, rpctypes.ErrNoSpace)
	}
	if _, err := cli.Grant(ctxFor(t, 5*time.Second), 60); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Errorf("lease grant: err %v, want %v", err, rpctypes.ErrNoSpace)
	}
	if _, err := cli.Get(ctxFor(t, 5*time.Second), key); err != nil {
		t.Errorf("linearizable read: %v", err)
	}
}

// waitNoSpace waits until puts are refused with NOSPACE, at most 10 s after
// what happened; a put may time out meanwhile (a member waiting for disk
// space), any other error fails the test.
func waitNoSpace(t *testing.T, cli *clientv3.Client, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cli.Put(ctxFor(t, 10*time.Second), "small", "x")
		if errors.Is(err, rpctypes.ErrNoSpace) {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("put after %s: %v, want %v", what, err, rpctypes.ErrNoSpace)
		}
		if time.Now().After(deadline) {
			t.Fatalf("puts still accepted 10s after %s (last err %v)", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitWritable waits until m has cleared its NOSPACE alarm and takes a put.
func waitWritable(t *testing.T, m *member, cli *clientv3.Client, when string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		alarms, err := cli.AlarmList(ctxFor(t, 5*time.Second))
		if err == nil && len(alarms.Alarms) == 0 {
			if _, err = cli.Put(ctxFor(t, 5*time.Second), "writable", when); err == nil {
				return
			}
		}
		if err := m.ExitedOnItsOwn(); err != nil {
			t.Fatalf("%s: the member stopped: %v\n%s", when, err, rcluster.Tail(m.LastRunLog(), 30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not writable after 30s: alarms %v, err %v", when, alarms, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ctxFor is a context that ends after d or with the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// A raft log on a file system of its own (--wal-dir) is watched as the data
// dir is: when another program leaves it without room for the log's next
// file, the member refuses growth (NOSPACE), names the log's path in its
// warning and serves reads; it takes writes again once the space is back.
// Without the watch, the log's next write would find the disk full and the
// member would wait there, unable to answer anyone.
func TestFullRaftLogDiskRefusesWritesAndRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the test mounts a small tmpfs for the raft log, which needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for the raft log: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	c := newStoppedCluster(t, rcluster.Config{Bin: kvorumBin, Members: 1, Flags: []string{"--wal-dir=" + filepath.Join(mnt, "wal")}})
	m := c.members[0]
	m.start()
	c.waitHealthy(m)
	cli := m.client()
	if _, err := cli.Put(ctxFor(t, 10*time.Second), "k", "v"); err != nil {
		t.Fatal(err)
	}

	// Another program leaves the log's file system less than 32 MiB.
	ballast, err := os.Create(filepath.Join(mnt, "ballast"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		free, err := storage.FreeBytes(mnt)
		if err != nil {
			t.Fatal(err)
		}
		if free < 32<<20 {
			break
		}
		if _, err := ballast.Write(chunk); err != nil {
			t.Fatalf("fill the raft log's file system: %v", err)
		}
	}
	ballast.Close()
	waitNoSpace(t, cli, "the raft log's file system ran short")
	checkRefusingButServing(t, m, cli, "k")
	if !strings.Contains(m.LogText(), `"raft-log-path":"`+filepath.Join(mnt, "wal")+`"`) {
		t.Errorf("the member's warning does not name the raft log's path:\n%s", rcluster.Tail(m.LogText(), 10))
	}

	if err := os.Remove(ballast.Name()); err != nil {
		t.Fatal(err)
	}
	waitWritable(t, m, cli, "after the raft log's file system has room again")
	c.checkLogs()
}
