package integration

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/testcluster"
)

// A compaction over many revisions (whose history each member deletes in
// background steps) answers as one: history below it is gone, everything at
// or above it reads as before, and every member holds the same history
// afterwards. With --physical the answer comes once the member that served
// it has deleted that history. One to a future revision compacts nothing.
func TestLargeCompactionAnswersAsOne(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	cli := lead.Client()
	const revs = 12000 // more than ten steps
	var last int64
	for i := 0; i < revs; i += 100 {
		txn := cli.Txn(ctxFor(t, 10*time.Second))
		var ops []clientv3.Op
		for j := range 100 {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("k%d", (i+j)%7), fmt.Sprint(i+j)))
		}
		// One txn changes a key once only: split the ops by key.
		resp, err := txn.Then(ops[:7]...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
		for j := 7; j < len(ops); j++ {
			r, err := cli.Do(ctxFor(t, 10*time.Second), ops[j])
			if err != nil {
				t.Fatal(err)
			}
			last = r.Put().Header.Revision
		}
	}
	mid := last - 10
	before, err := cli.Get(ctxFor(t, 5*time.Second), "k", clientv3.WithPrefix(), clientv3.WithRev(mid))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctxFor(t, 5*time.Second), last+1000); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("compaction to a future revision: %v, want %v", err, rpctypes.ErrFutureRev)
	}
	if _, err := cli.Get(ctxFor(t, 5*time.Second), "k0", clientv3.WithRev(2)); err != nil {
		t.Fatalf("the refused compaction compacted: %v", err)
	}
	if _, err := cli.Compact(ctxFor(t, 30*time.Second), mid, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact %d revisions: %v", mid, err)
	}
	if got := scrapeValue(t, lead.ClientURL, "kvorum_mvcc_compacted_revision"); got < float64(mid) {
		t.Fatalf("physical compaction to %d answered with the history deleted up to %v only", mid, got)
	}
	if _, err := cli.Get(ctxFor(t, 5*time.Second), "k0", clientv3.WithRev(mid-1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("read below the compaction: %v, want %v", err, rpctypes.ErrCompacted)
	}
	after, err := cli.Get(ctxFor(t, 5*time.Second), "k", clientv3.WithPrefix(), clientv3.WithRev(mid))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after.Kvs) != fmt.Sprint(before.Kvs) {
		t.Fatalf("at the compaction revision: %v, before compacting %v", after.Kvs, before.Kvs)
	}
	waitFor(t, waitTimeout, "every member has the same history", func() error {
		var first uint32
		for i, m := range c.Members {
			h, err := m.Client().HashKV(ctxFor(t, 5*time.Second), m.ClientURL, last)
			if err != nil {
				return err
			}
			if h.CompactRevision != mid {
				return fmt.Errorf("%s compacted at %d, want %d", m.Name, h.CompactRevision, mid)
			}
			if i == 0 {
				first = h.Hash
			} else if h.Hash != first {
				return fmt.Errorf("%s hash %d, %s hash %d", m.Name, h.Hash, c.Members[0].Name, first)
			}
		}
		return nil
	})
}
