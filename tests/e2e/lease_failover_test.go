package e2e

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLeaseKeepAliveSurvivesLeaderKill keeps a short lease alive through a
// client of every member while the leader is killed with SIGKILL: the new
// leader gives the lease its TTL again, the client's keep-alive stream
// moves on, and neither the lease nor its key is lost. A second lease that
// nobody keeps alive still expires on every member afterwards: expiry is
// decided by whichever member leads.
func TestLeaseKeepAliveSurvivesLeaderKill(t *testing.T) {
	c := newCluster(t, kvorumBin, 3)
	cli := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	kept, err := cli.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := cli.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "lease/kept", "v", clientv3.WithLease(kept.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "lease/dropped", "v", clientv3.WithLease(dropped.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.KeepAlive(ctx, kept.ID); err != nil {
		t.Fatal(err)
	}

	leader, term := c.leader()
	leader.kill()
	t.Logf("killed leader %s (term %d)", leader.Name, term)
	time.Sleep(8 * time.Second) // well over two TTLs and an election
	if _, newTerm := c.leader(); newTerm <= term {
		t.Fatalf("term %d after killing the leader, want > %d", newTerm, term)
	}
	leader.start()
	c.waitHealthy(leader)

	for _, m := range c.members {
		mc := m.client()
		got, err := mc.Get(ctx, "lease/", clientv3.WithPrefix())
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if len(got.Kvs) != 1 || string(got.Kvs[0].Key) != "lease/kept" {
			t.Errorf("%s holds %d keys %v; want only lease/kept (its lease kept alive, the other expired)", m.Name, len(got.Kvs), got.Kvs)
		}
	}
	ttl, err := cli.TimeToLive(ctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL < 0 { // whole seconds rounded down: 0 is alive, -1 is gone
		t.Fatalf("kept-alive lease has TTL %d after the leader kill", ttl.TTL)
	}
	gone, err := cli.TimeToLive(ctx, dropped.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gone.TTL != -1 {
		t.Fatalf("lease nobody kept alive has TTL %d, want -1 (expired)", gone.TTL)
	}
	c.checkLogs()
}
