package integration

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/testcluster"
)

// compactedBelow waits until a read at rev is refused as compacted, and
// checks that a read at keep is still served.
func compactedBelow(t *testing.T, cli *clientv3.Client, rev, keep int64) {
	t.Helper()
	waitFor(t, 2*waitTimeout, fmt.Sprintf("revision %d compacted", rev), func() error {
		_, err := cli.Get(ctxFor(t, time.Second), "k", clientv3.WithRev(rev))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil
		}
		return fmt.Errorf("read at revision %d: err %v", rev, err)
	})
	if _, err := cli.Get(ctxFor(t, time.Second), "k", clientv3.WithRev(keep)); err != nil {
		t.Errorf("read at revision %d, within the retention: %v", keep, err)
	}
}

func TestAutoCompactionRevisionModeKeepsTheLastRevisions(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{
		Args: []string{"--auto-compaction-mode", "revision", "--auto-compaction-retention", "5"},
		// etcd compacts every 5 minutes in revision mode; a test cannot wait
		// that long.
		Configure: func(cfg *config.Config) { cfg.AutoCompactionInterval = 100 * time.Millisecond },
	})
	lead, _ := c.WaitLeader(waitTimeout)
	cli := lead.Client()
	var rev int64
	for i := range 20 {
		resp, err := cli.Put(ctxFor(t, 5*time.Second), "k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	compactedBelow(t, cli, rev-6, rev-5)
}

func TestAutoCompactionPeriodicModeKeepsTheRetention(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{
		Args: []string{"--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"},
	})
	lead, _ := c.WaitLeader(waitTimeout)
	cli := lead.Client()
	first, err := cli.Put(ctxFor(t, 5*time.Second), "k", "old")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // older than the retention now
	last, err := cli.Put(ctxFor(t, 5*time.Second), "k", "new")
	if err != nil {
		t.Fatal(err)
	}
	compactedBelow(t, cli, first.Header.Revision-1, last.Header.Revision)
}
