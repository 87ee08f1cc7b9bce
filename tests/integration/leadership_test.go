package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/testcluster"
)

// TestMoveLeaderFailsNoWrite moves leadership around while every member
// takes puts from a client of its own. Raft drops the proposals a leader
// receives while it hands off leadership; Kvorum holds or proposes them
// again (they were appended nowhere), so no put may fail, and every
// acknowledged one must be there afterwards.
func TestMoveLeaderFailsNoWrite(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]string{}
	var failures []string
	for i, m := range c.Members {
		cli := m.Client()
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("ml/%d/%05d", i, n), fmt.Sprintf("v%d", n)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := cli.Put(ctx, key, val)
				cancel()
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("put %s on %s: %v", key, m.Name, err))
				} else {
					acked[key] = val
				}
				mu.Unlock()
			}
		})
	}
	for round := range 6 {
		cur, _ := c.WaitLeader(waitTimeout)
		target := c.Followers(cur)[round%2]
		if _, err := cur.Client().MoveLeader(ctxFor(t, 10*time.Second), target.ID()); err != nil {
			t.Fatalf("move leader from %s to %s: %v", cur.Name, target.Name, err)
		}
		time.Sleep(100 * time.Millisecond) // let the writers run under the new leader
	}
	close(stop)
	wg.Wait()

	if len(failures) > 0 {
		t.Errorf("%d puts failed while leadership moved (of %d acknowledged), the first: %v",
			len(failures), len(acked), failures[:min(5, len(failures))])
	}
	resp, err := c.Members[0].Client().Get(ctxFor(t, 10*time.Second), "ml/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	for k, v := range acked {
		if got[k] != v {
			t.Errorf("acknowledged put %s=%s reads back as %q", k, v, got[k])
		}
	}
	t.Logf("%d puts acknowledged over 6 leadership moves", len(acked))
}
