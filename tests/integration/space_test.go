package integration

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/testcluster"
)

// With --quota-backend-bytes, writes past the quota raise the NOSPACE
// alarm; then what grows the store is refused cluster-wide while reads,
// deletes and compaction work; compaction, defragment and disarm recover.
func TestSpaceQuotaRaisesNoSpaceAndRecovers(t *testing.T) {
	const quota = 16 << 20
	c := testcluster.Start(t, testcluster.Options{Args: []string{
		"--quota-backend-bytes", fmt.Sprint(quota), "--snapshot-count", "50", "--snapshot-catchup-entries", "10",
	}})
	lead, _ := c.WaitLeader(waitTimeout)
	cli := lead.Client()
	// Incompressible: the engine compresses its tables, so a repetitive
	// value would take a fraction of the quota.
	buf := make([]byte, 256<<10)
	var refused error
	written := 0
	for i := 0; i < 400 && refused == nil; i++ {
		rand.Read(buf)
		_, err := cli.Put(ctxFor(t, 5*time.Second), fmt.Sprintf("big/%03d", i), string(buf))
		switch {
		case err == nil:
			written++
		case errors.Is(err, rpctypes.ErrNoSpace):
			refused = err
		default:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if refused == nil {
		t.Fatalf("wrote %d MiB against a quota of %d MiB without a refusal", written/4, quota>>20)
	}
	t.Logf("refused after %d puts of 256 KiB (quota %d MiB)", written, quota>>20)

	// The alarm is replicated: every member refuses growth and lists it.
	waitFor(t, waitTimeout, "the NOSPACE alarm is listed", func() error {
		resp, err := cli.AlarmList(ctxFor(t, time.Second))
		if err != nil {
			return err
		}
		if len(resp.Alarms) != 1 || resp.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
			return fmt.Errorf("alarms %v", resp.Alarms)
		}
		return nil
	})
	// Every member has applied the alarm before it is asked: one that had
	// not yet (the leader lists its alarm as soon as it applied it) checks
	// the quota itself, finds the store over it too and raises an alarm of
	// its own, a second entry in the list.
	c.WaitApplied(waitTimeout)
	for _, m := range c.Members {
		mc := m.Client()
		if _, err := mc.Put(ctxFor(t, 5*time.Second), "small", "x"); !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Errorf("%s: small put under the alarm: err %v, want %v", m.Name, err, rpctypes.ErrNoSpace)
		}
		if _, err := mc.Grant(ctxFor(t, 5*time.Second), 60); !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Errorf("%s: lease grant under the alarm: err %v, want %v", m.Name, err, rpctypes.ErrNoSpace)
		}
		if _, err := mc.Txn(ctxFor(t, 5*time.Second)).Then(clientv3.OpPut("small", "x")).Commit(); !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Errorf("%s: txn with a put under the alarm: err %v, want %v", m.Name, err, rpctypes.ErrNoSpace)
		}
		if _, err := mc.Get(ctxFor(t, 5*time.Second), "big/000"); err != nil {
			t.Errorf("%s: read under the alarm: %v", m.Name, err)
		}
		st, err := mc.Status(ctxFor(t, 5*time.Second), m.ClientURL)
		if err != nil || len(st.Errors) == 0 || !strings.Contains(st.Errors[0], "NOSPACE") || st.DbSizeQuota != quota {
			t.Errorf("%s: status errors %q quota %d (err %v), want the NOSPACE alarm and quota %d", m.Name, st.Errors, st.DbSizeQuota, err, quota)
		}
	}

	// Free space: delete, compact, defragment every member, disarm.
	del, err := cli.Delete(ctxFor(t, 5*time.Second), "big/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete under the alarm: %v", err)
	}
	if _, err := cli.Compact(ctxFor(t, 5*time.Second), del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact under the alarm: %v", err)
	}
	c.WaitApplied(waitTimeout)
	for _, m := range c.Members {
		if _, err := cli.Defragment(ctxFor(t, 30*time.Second), m.ClientURL); err != nil {
			t.Fatalf("defragment %s: %v", m.Name, err)
		}
		st, err := cli.Status(ctxFor(t, 5*time.Second), m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		if st.DbSize >= quota {
			t.Errorf("%s: %d bytes after compaction and defragment, still over the quota of %d", m.Name, st.DbSize, quota)
		}
	}
	// The quota's alarm stays until disarmed, as in etcd, even across a
	// restart with the store back under its quota (only an alarm a member
	// raised for its disk is cleared by the member itself).
	c.StopAll()
	for _, m := range c.Members {
		m.Restart()
	}
	lead, _ = c.WaitLeader(waitTimeout)
	cli = lead.Client()
	time.Sleep(time.Second) // several disk checks
	alarms, err := cli.AlarmList(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("after a restart under the quota: alarms %v, want the NOSPACE alarm until disarmed", alarms.Alarms)
	}

	// Pebble deletes the files a compaction made obsolete in the
	// background: until it has, a member may still measure itself over the
	// quota and raise the alarm again at the next write. Disarming again
	// then is what an operator does too.
	waitFor(t, 3*waitTimeout, "writes accepted on every member after disarm", func() error {
		if _, err := cli.AlarmDisarm(ctxFor(t, 5*time.Second), &clientv3.AlarmMember{}); err != nil {
			return err
		}
		for _, m := range c.Members {
			if _, err := m.Client().Put(ctxFor(t, 5*time.Second), "after", m.Name); err != nil {
				return fmt.Errorf("%s: put after disarm: %w", m.Name, err)
			}
		}
		return nil
	})
}
