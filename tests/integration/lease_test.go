package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/testcluster"
)

// The lease cases share one cluster; each uses keys under its own prefix.
func TestLeases(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	cases := []struct {
		name string
		run  func(t *testing.T, c *testcluster.Cluster)
	}{
		{"GrantPutTimeToLiveListAndRevokeInOneRevision", leaseLifecycle},
		{"RequestErrorsAreEtcds", leaseErrors},
		{"IgnoreLeaseKeepsAndPlainPutDetaches", leaseAttachment},
		{"ExpiryDeletesKeysOnEveryMember", leaseExpiry},
		{"KeepAliveThroughAFollowerKeepsTheLease", leaseKeepAliveFollower},
		{"KeepAliveOnceOfAnExpiredLeaseAnswersNotFound", leaseKeepAliveExpired},
	}
	for _, tc := range cases {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, c) }) {
			return
		}
	}
}

func leaseLifecycle(t *testing.T, c *testcluster.Cluster) {
	lead, _ := c.WaitLeader(waitTimeout)
	cli := c.Followers(lead)[0].Client()
	ctx := ctxFor(t, 30*time.Second)

	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if g.TTL != 60 || g.ID == 0 {
		t.Fatalf("grant = ID %x TTL %d, want a new ID with TTL 60", g.ID, g.TTL)
	}
	for _, k := range []string{"life/b", "life/a", "life/c"} {
		if _, err := cli.Put(ctx, k, "v", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "life/free", "v"); err != nil {
		t.Fatal(err)
	}
	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, len(ttl.Keys))
	for i, k := range ttl.Keys {
		keys[i] = string(k)
	}
	if ttl.GrantedTTL != 60 || ttl.TTL < 55 || ttl.TTL > 60 || !slices.Equal(keys, []string{"life/a", "life/b", "life/c"}) {
		t.Fatalf("timetolive = granted %d, remaining %d, keys %q; want 60, 55..60, [life/a life/b life/c]", ttl.GrantedTTL, ttl.TTL, keys)
	}
	c.WaitApplied(waitTimeout)
	for _, m := range c.Running() {
		ls, err := m.Client().Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(ls.Leases, func(s clientv3.LeaseStatus) bool { return s.ID == g.ID }) {
			t.Errorf("%s lists leases %v, without %x", m.Name, ls.Leases, g.ID)
		}
	}

	before, err := cli.Get(ctx, "life/")
	if err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(ctx, "life/", clientv3.WithPrefix(), clientv3.WithRev(before.Header.Revision+1))
	rv, err := cli.Revoke(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Header.Revision != before.Header.Revision+1 {
		t.Errorf("revoke answered revision %d, want %d (one revision for all deletions)", rv.Header.Revision, before.Header.Revision+1)
	}
	select {
	case wr := <-wch:
		var got []string
		for _, ev := range wr.Events {
			if ev.Type != mvccpb.DELETE || ev.Kv.ModRevision != rv.Header.Revision {
				t.Errorf("event %v %q at %d, want DELETE at %d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, rv.Header.Revision)
			}
			got = append(got, string(ev.Kv.Key))
		}
		if !slices.Equal(got, []string{"life/a", "life/b", "life/c"}) {
			t.Errorf("first watch response deletes %q, want [life/a life/b life/c] in one response", got)
		}
	case <-ctx.Done():
		t.Fatal("no watch response for the revocation")
	}
	after, err := cli.Get(ctx, "life/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Kvs) != 1 || string(after.Kvs[0].Key) != "life/free" {
		t.Errorf("after revoke: %v, want only life/free", after.Kvs)
	}
	gone, err := cli.TimeToLive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gone.TTL != -1 {
		t.Errorf("timetolive of a revoked lease: TTL %d, want -1", gone.TTL)
	}
}

func leaseErrors(t *testing.T, c *testcluster.Cluster) {
	cli := c.Members[0].Client()
	ctx := ctxFor(t, 30*time.Second)
	const id = 0x1234
	g, err := cli.Grant(ctx, 0) // below the minimum
	if err != nil {
		t.Fatal(err)
	}
	if g.TTL < 1 {
		t.Errorf("grant with TTL 0 got TTL %d, want the minimum (>= 1)", g.TTL)
	}
	if _, err := cli.Grant(ctx, 9000000001); !errors.Is(err, rpctypes.ErrLeaseTTLTooLarge) {
		t.Errorf("grant with too large TTL: %v, want %v", err, rpctypes.ErrLeaseTTLTooLarge)
	}
	if _, err := cli.Put(ctx, "errs/x", "v", clientv3.WithLease(id)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("put with an unknown lease: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
	if _, err := cli.Revoke(ctx, id); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("revoke of an unknown lease: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
	// client/v3 has no grant with a chosen ID; use the raw API.
	if _, err := grantID(ctx, cli, id, 30); err != nil {
		t.Fatalf("grant with a chosen ID: %v", err)
	}
	if _, err := grantID(ctx, cli, id, 30); !errors.Is(err, rpctypes.ErrLeaseExist) {
		t.Errorf("second grant of the same ID: %v, want %v", err, rpctypes.ErrLeaseExist)
	}
	txn, err := cli.Txn(ctx).Then(clientv3.OpPut("errs/t", "v", clientv3.WithLease(id+1))).Commit()
	if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("txn put with an unknown lease: %v %v, want %v", txn, err, rpctypes.ErrLeaseNotFound)
	}
	if _, err := cli.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
}

// grantID grants a lease with a client-chosen ID through the raw gRPC API.
func grantID(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	resp, err := clientv3.RetryLeaseClient(cli).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: int64(id), TTL: ttl})
	if err != nil {
		return nil, rpctypes.Error(err)
	}
	return &clientv3.LeaseGrantResponse{ID: clientv3.LeaseID(resp.ID), TTL: resp.TTL}, nil
}

func leaseAttachment(t *testing.T, c *testcluster.Cluster) {
	cli := c.Members[1].Client()
	ctx := ctxFor(t, 30*time.Second)
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"att/keep", "att/detach"} {
		if _, err := cli.Put(ctx, k, "v1", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "att/keep", "v2", clientv3.WithIgnoreLease()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "att/detach", "v2"); err != nil {
		t.Fatal(err)
	}
	got, err := cli.Get(ctx, "att/keep")
	if err != nil {
		t.Fatal(err)
	}
	if got.Kvs[0].Lease != int64(g.ID) || string(got.Kvs[0].Value) != "v2" {
		t.Errorf("after ignore_lease put: %v, want value v2 with lease %x", got.Kvs[0], g.ID)
	}
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	rest, err := cli.Get(ctx, "att/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(rest.Kvs) != 1 || string(rest.Kvs[0].Key) != "att/detach" || rest.Kvs[0].Lease != 0 {
		t.Errorf("after revoke: %v, want only att/detach without lease", rest.Kvs)
	}
}

func leaseExpiry(t *testing.T, c *testcluster.Cluster) {
	cli := c.Members[2].Client()
	ctx := ctxFor(t, 30*time.Second)
	g, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := cli.Put(ctx, fmt.Sprintf("exp/%d", i), "v", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range c.Running() {
		for {
			resp, err := m.Client().Get(ctx, "exp/", clientv3.WithPrefix(), clientv3.WithSerializable())
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Kvs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still holds %d keys of lease %x 10 s after its 2 s TTL", m.Name, len(resp.Kvs), g.ID)
			}
			time.Sleep(100 * time.Millisecond)
		}
		ls, err := m.Client().Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(ls.Leases, func(s clientv3.LeaseStatus) bool { return s.ID == g.ID }) {
			t.Errorf("%s still lists expired lease %x", m.Name, g.ID)
		}
	}
}

func leaseKeepAliveFollower(t *testing.T, c *testcluster.Cluster) {
	lead, _ := c.WaitLeader(waitTimeout)
	cli := c.Followers(lead)[0].Client()
	ctx := ctxFor(t, 30*time.Second)
	g, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "ka/k", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	kch, err := cli.KeepAlive(kctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	var renewals int
	until := time.After(5 * time.Second)
loop:
	for {
		select {
		case r, ok := <-kch:
			if !ok {
				t.Fatalf("keep-alive channel closed after %d renewals", renewals)
			}
			if r.TTL != 2 {
				t.Errorf("keep-alive answered TTL %d, want 2", r.TTL)
			}
			renewals++
		case <-until:
			break loop
		}
	}
	if renewals < 3 {
		t.Errorf("%d renewals in 5 s of a 2 s lease, want at least 3", renewals)
	}
	got, err := cli.Get(ctx, "ka/k")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 {
		t.Fatal("key of a lease kept alive is gone")
	}
	stop()
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
}

func leaseKeepAliveExpired(t *testing.T, c *testcluster.Cluster) {
	cli := c.Members[0].Client()
	ctx := ctxFor(t, 30*time.Second)
	g, err := cli.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ttl, err := cli.TimeToLive(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ttl.TTL == -1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease with TTL 1 still alive after 10 s: %+v", ttl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := cli.KeepAliveOnce(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("keep-alive of an expired lease: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
}

// TestLeaseKeepAliveSurvivesLeaderStop keeps a lease alive from a client of
// a follower while the leader stops: the new leader gives the lease its TTL
// again and the renewals continue.
func TestLeaseKeepAliveSurvivesLeaderStop(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, term := c.WaitLeader(waitTimeout)
	cli := c.Followers(lead)[0].Client()
	ctx := ctxFor(t, 60*time.Second)
	g, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "survive", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.KeepAlive(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	lead.Stop()
	_, newTerm := c.WaitLeader(waitTimeout)
	if newTerm <= term {
		t.Fatalf("term %d after the leader stopped, want > %d", newTerm, term)
	}
	time.Sleep(6 * time.Second) // three TTLs
	ttl, err := cli.TimeToLive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cli.Get(ctx, "survive")
	if err != nil {
		t.Fatal(err)
	}
	// TTL is whole seconds rounded down: 0 is alive with under a second
	// until the next renewal is due; -1 is gone.
	if ttl.TTL < 0 || len(got.Kvs) != 1 {
		t.Fatalf("after a leader change the kept-alive lease has TTL %d and %d keys; want it alive with its key", ttl.TTL, len(got.Kvs))
	}
}

// TestLeaseCheckpointLimitsTTLAfterLeaderChange: a leader change gives a
// lease its checkpointed remainder, not its full TTL again.
func TestLeaseCheckpointLimitsTTLAfterLeaderChange(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(cfg *config.Config) {
		cfg.LeaseCheckpointInterval = time.Second
	}})
	lead, _ := c.WaitLeader(waitTimeout)
	cli := c.Followers(lead)[0].Client()
	ctx := ctxFor(t, 60*time.Second)
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // several checkpoints
	lead.Stop()
	c.WaitLeader(waitTimeout)
	ttl, err := cli.TimeToLive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Without checkpoints the new leader would give 60 s (+ an election
	// timeout); with them at most what was left at the last checkpoint.
	if ttl.TTL >= 58 || ttl.TTL < 40 {
		t.Fatalf("remaining TTL after the leader change: %d s; want the checkpointed remainder (< 58 s)", ttl.TTL)
	}
	// A keep-alive gives the full TTL again, and a checkpoint of zero makes
	// the next leader give the full TTL too.
	if _, err := cli.KeepAliveOnce(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	lead2, _ := c.WaitLeader(waitTimeout)
	lead.Restart()
	lead2.Stop()
	c.WaitLeader(waitTimeout)
	ttl, err = c.Running()[0].Client().TimeToLive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL < 55 {
		t.Fatalf("remaining TTL after keep-alive and another leader change: %d s; want about the full 60 s", ttl.TTL)
	}
}

// TestLeaseAttachmentsSurviveRestart: leases and their keys are durable; a
// revocation after a restart of every member still deletes the keys.
func TestLeaseAttachmentsSurviveRestart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	cli := c.Members[0].Client()
	ctx := ctxFor(t, 60*time.Second)
	g, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"dur/1", "dur/2"} {
		if _, err := cli.Put(ctx, k, "v", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitApplied(waitTimeout)
	for _, m := range c.Members {
		m.Stop()
	}
	for _, m := range c.Members {
		m.Restart()
	}
	c.WaitLeader(waitTimeout)
	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 600 || len(ttl.Keys) != 2 {
		t.Fatalf("after restart: granted %d, keys %q; want 600 and both keys", ttl.GrantedTTL, ttl.Keys)
	}
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	rest, err := cli.Get(ctx, "dur/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(rest.Kvs) != 0 {
		t.Fatalf("keys left after revoke: %v", rest.Kvs)
	}
}
