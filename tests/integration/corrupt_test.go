package integration

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
	"github.com/kvorum/kvorum/internal/testcluster"
)

// damage changes, in the data dir of a stopped member, the value that the
// change at revision rev wrote: the kind of silent corruption a bad disk or
// a bug causes, which raft cannot see.
func damage(t *testing.T, dataDir string, rev int64) {
	t.Helper()
	e, err := storage.Open(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	key := storage.EventKey(storage.Revision{Main: rev})
	v, err := storage.Get(e.DB, key)
	if err != nil || v == nil {
		t.Fatalf("event at revision %d: %v (found %v)", rev, err, v != nil)
	}
	ev := &mvccpb.Event{}
	if err := proto.Unmarshal(v, ev); err != nil {
		t.Fatal(err)
	}
	ev.Kv.Value = append(ev.Kv.Value, " (damaged)"...)
	v, err = proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.DB.Set(key, v, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
}

// writeKeys puts n keys and returns the revision of the last put.
func writeKeys(t *testing.T, cli *clientv3.Client, n int) int64 {
	t.Helper()
	var rev int64
	for i := range n {
		resp, err := cli.Put(ctxFor(t, 5*time.Second), fmt.Sprintf("k%d", i), "v")
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	return rev
}

// waitCorruptAlarm waits until the CORRUPT alarm names member id, then
// checks that writes are refused on every member and reads served.
func waitCorruptAlarm(t *testing.T, c *testcluster.Cluster, cli *clientv3.Client, id uint64) {
	t.Helper()
	waitFor(t, 2*waitTimeout, "the CORRUPT alarm for the damaged member", func() error {
		resp, err := cli.AlarmList(ctxFor(t, time.Second))
		if err != nil {
			return err
		}
		for _, a := range resp.Alarms {
			if a.Alarm == pb.AlarmType_CORRUPT && a.MemberID == id {
				return nil
			}
		}
		return fmt.Errorf("alarms %v", resp.Alarms)
	})
	for _, m := range c.Members {
		mc := m.Client()
		if _, err := mc.Put(ctxFor(t, 5*time.Second), "k0", "after"); !errors.Is(err, rpctypes.ErrCorrupt) {
			t.Errorf("%s: put under the CORRUPT alarm: err %v, want %v", m.Name, err, rpctypes.ErrCorrupt)
		}
		if _, err := mc.Get(ctxFor(t, 5*time.Second), "k0"); err != nil {
			t.Errorf("%s: read under the CORRUPT alarm: %v", m.Name, err)
		}
	}
}

func TestCorruptMemberFoundAtStart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	rev := writeKeys(t, lead.Client(), 10)
	c.WaitApplied(waitTimeout)
	victim := c.Followers(lead)[0]
	victim.Stop()
	damage(t, victim.DataDir(), rev-3)
	victim.Restart()
	waitCorruptAlarm(t, c, lead.Client(), victim.ID())
}

func TestCorruptMemberFoundAtCompaction(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{
		"--experimental-initial-corrupt-check=false", "--experimental-compact-hash-check-time=200ms",
	}})
	lead, _ := c.WaitLeader(waitTimeout)
	rev := writeKeys(t, lead.Client(), 10)
	c.WaitApplied(waitTimeout)
	victim := c.Followers(lead)[0]
	victim.Stop()
	damage(t, victim.DataDir(), rev)
	victim.Restart()
	// Nothing noticed it at start (the check is off); the hashes at the
	// next compaction revision differ.
	c.WaitLeader(waitTimeout)
	if resp, err := lead.Client().AlarmList(ctxFor(t, 5*time.Second)); err != nil || len(resp.Alarms) != 0 {
		t.Fatalf("alarms before the compaction: %v (err %v), want none", resp, err)
	}
	if _, err := lead.Client().Compact(ctxFor(t, 5*time.Second), rev); err != nil {
		t.Fatal(err)
	}
	waitCorruptAlarm(t, c, lead.Client(), victim.ID())
}
