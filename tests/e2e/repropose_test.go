package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A put sent to a follower while the leader stops answering completes once
// a new leader is elected (the follower proposes it again), and applies
// exactly once — also when the old leader comes back holding the original
// proposal and relays it to the new leader.
func TestPutThroughFollowerCompletesAcrossLeaderLoss(t *testing.T) {
	c := newCluster(t, kvorumBin, 3)
	for round, fault := range []string{"pause", "kill", "pause", "kill"} {
		old, term := c.leader()
		var via *member
		for _, m := range c.members {
			if m != old {
				via = m
				break
			}
		}
		key := fmt.Sprintf("repropose/%d", round)
		done := make(chan error, 1)
		switch fault {
		case "pause":
			if err := old.Pause(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- put(via.client(), key) }()
		case "kill":
			go func() { done <- put(via.client(), key) }()
			time.Sleep(time.Millisecond) // the put is on its way
			old.kill()
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d (%s the leader %s, put through %s): %v", round, fault, old.Name, via.Name, err)
		}
		switch fault {
		case "pause":
			if err := old.Resume(); err != nil {
				t.Fatal(err)
			}
		case "kill":
			old.start()
		}
		c.waitHealthy(c.members...)
		if _, newTerm := c.leader(); newTerm <= term {
			t.Fatalf("round %d: term %d after the %s, want above %d", round, newTerm, fault, term)
		}
		c.waitConverged()
		for _, m := range c.members {
			resp, err := m.client().Get(ctxFor(t, 5*time.Second), key, clientv3.WithSerializable())
			if err != nil {
				t.Fatalf("round %d: read %s on %s: %v", round, key, m.Name, err)
			}
			if len(resp.Kvs) != 1 || resp.Kvs[0].Version != 1 || string(resp.Kvs[0].Value) != key {
				t.Fatalf("round %d: %s on %s is %v, want it written once (version 1)", round, key, m.Name, resp.Kvs)
			}
		}
	}
	c.checkLogs()
}

// put writes key=key with a generous client timeout: the member, not the
// client, has to recover the write.
func put(cli *clientv3.Client, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, key, key)
	return err
}
