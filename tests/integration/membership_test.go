package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/kvorum/kvorum/internal/membership"
	"github.com/kvorum/kvorum/internal/testcluster"
)

// waitFor retries cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// servesKeys waits until m serves n keys under prefix from its own state
// (a serializable read, so nothing is forwarded).
func servesKeys(t *testing.T, m *testcluster.Member, prefix string, n int) {
	t.Helper()
	waitFor(t, 3*waitTimeout, m.Name+" serves the keys written before it joined", func() error {
		resp, err := m.Client().Get(ctxFor(t, time.Second), prefix, clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != int64(n) {
			return fmt.Errorf("%d keys, want %d", resp.Count, n)
		}
		return nil
	})
}

func memberByID(members []*pb.Member, id uint64) (name string, learner, ok bool) {
	for _, m := range members {
		if m.ID == id {
			return m.Name, m.IsLearner, true
		}
	}
	return "", false, false
}

func TestMemberAddJoinsRunningCluster(t *testing.T) {
	// A short log: the new member must catch up from a snapshot.
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--snapshot-count", "40", "--snapshot-catchup-entries", "5"}})
	lead, _ := c.WaitLeader(waitTimeout)
	putKeys(t, []*clientv3.Client{lead.Client()}, "before/", 50, 4)

	m4 := c.NewMember("m4")
	// Started before member add, it finds no member with its URLs.
	if err := m4.StartErr(); err == nil || !strings.Contains(err.Error(), "add this member first") {
		t.Fatalf("start of a member that was not added: err %v, want a refusal telling to add it first", err)
	}
	m4.Stop()
	add, err := lead.Client().MemberAdd(ctxFor(t, 5*time.Second), []string{m4.PeerURL})
	if err != nil {
		t.Fatalf("member add: %v", err)
	}
	if add.Member.ID == 0 || add.Member.IsLearner || len(add.Members) != 4 {
		t.Fatalf("member add answered member %+v and %d members, want a voter and 4 members", add.Member, len(add.Members))
	}
	if err := m4.Start(); err != nil {
		t.Fatalf("start the added member: %v", err)
	}
	if m4.ID() != add.Member.ID {
		t.Fatalf("joined member has ID %x, member add gave %x", m4.ID(), add.Member.ID)
	}
	servesKeys(t, m4, "before/", 50)
	// The new member is a voter that publishes itself, as every member.
	waitFor(t, waitTimeout, "m4 listed as started", func() error {
		resp, err := lead.Client().MemberList(ctxFor(t, time.Second))
		if err != nil {
			return err
		}
		if name, learner, ok := memberByID(resp.Members, m4.ID()); !ok || name != "m4" || learner {
			return fmt.Errorf("member list %v", resp.Members)
		}
		return nil
	})
	// Writes through the new member commit with four voters, also after
	// it restarted from its data dir.
	putKeys(t, []*clientv3.Client{m4.Client()}, "after/", 5, 4)
	m4.Stop()
	m4.Restart()
	putKeys(t, []*clientv3.Client{m4.Client()}, "after/", 10, 4)
	c.WaitApplied(waitTimeout)
	for _, m := range c.Members {
		servesKeys(t, m, "after/", 10)
	}
}

func TestLearnerPromotedOnlyOnceCaughtUp(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	putKeys(t, []*clientv3.Client{lead.Client()}, "k/", 20, 4)
	cli := c.Members[1].Client() // a promotion asked of any member runs on the leader

	m4 := c.NewMember("m4")
	add, err := cli.MemberAddAsLearner(ctxFor(t, 5*time.Second), []string{m4.PeerURL})
	if err != nil {
		t.Fatalf("member add --learner: %v", err)
	}
	if !add.Member.IsLearner {
		t.Fatalf("added member is not a learner: %+v", add.Member)
	}
	// One learner at a time (--max-learners 1).
	if _, err := cli.MemberAddAsLearner(ctxFor(t, 5*time.Second), []string{"http://127.0.0.1:1"}); !errors.Is(err, rpctypes.ErrTooManyLearners) {
		t.Fatalf("second learner: err %v, want %v", err, rpctypes.ErrTooManyLearners)
	}
	// Not started: nothing replicated to it, so it is not ready.
	if _, err := cli.MemberPromote(ctxFor(t, 5*time.Second), add.Member.ID); !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
		t.Fatalf("promote a learner that has not caught up: err %v, want %v", err, rpctypes.ErrMemberLearnerNotReady)
	}
	if err := m4.Start(); err != nil {
		t.Fatal(err)
	}
	servesKeys(t, m4, "k/", 20)
	var resp *clientv3.MemberPromoteResponse
	waitFor(t, waitTimeout, "promote the caught-up learner", func() error {
		resp, err = cli.MemberPromote(ctxFor(t, 5*time.Second), add.Member.ID)
		return err
	})
	if _, learner, ok := memberByID(resp.Members, add.Member.ID); !ok || learner {
		t.Fatalf("after promotion the member list says learner=%v present=%v", learner, ok)
	}
	// Promoting a voter is refused.
	if _, err := cli.MemberPromote(ctxFor(t, 5*time.Second), lead.ID()); !errors.Is(err, rpctypes.ErrMemberNotLearner) {
		t.Fatalf("promote a voter: err %v, want %v", err, rpctypes.ErrMemberNotLearner)
	}
}

func TestRemovedMemberStopsAndCannotRejoin(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	victim := c.Followers(lead)[0]
	done := victim.Done()
	// A removal needs a quorum of started members left (as in etcd): wait
	// until every member has published its name, which a slow machine
	// may not have applied when the leader is first known.
	waitFor(t, waitTimeout, "every member started", func() error {
		list, err := lead.Client().MemberList(ctxFor(t, 5*time.Second))
		if err != nil {
			return err
		}
		for _, m := range list.Members {
			if m.Name == "" {
				return fmt.Errorf("member %x has not published its name", m.ID)
			}
		}
		return nil
	})
	resp, err := lead.Client().MemberRemove(ctxFor(t, 5*time.Second), victim.ID())
	if err != nil {
		t.Fatalf("member remove: %v", err)
	}
	if len(resp.Members) != 2 {
		t.Fatalf("member remove answered %d members, want 2", len(resp.Members))
	}
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not stop after its removal", victim.Name)
	}
	victim.Stop()
	err = victim.StartErr()
	if err == nil || !strings.Contains(err.Error(), "was removed") {
		t.Fatalf("restart of the removed member from its data dir: err %v, want a refusal saying it was removed", err)
	}
	// The two remaining members still commit.
	putKeys(t, []*clientv3.Client{lead.Client()}, "after-remove/", 5, 4)
	if _, err := lead.Client().MemberRemove(ctxFor(t, 5*time.Second), victim.ID()); !errors.Is(err, rpctypes.ErrMemberNotFound) {
		t.Fatalf("remove the removed member again: err %v, want %v", err, rpctypes.ErrMemberNotFound)
	}
}

func TestMembershipChangesRefusedAsEtcdRefusesThem(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	cli := lead.Client()
	// The client library checks URLs itself; the server's own checks are
	// reached through the bare gRPC API, as any other client would.
	raw := pb.NewClusterClient(cli.ActiveConnection())
	ctx := func() context.Context { return ctxFor(t, 5*time.Second) }
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"URL without port", func() error { return addRaw(ctx(), raw, "http://127.0.0.1") }, rpctypes.ErrGRPCMemberBadURLs},
		{"URL of another scheme", func() error { return addRaw(ctx(), raw, "ftp://127.0.0.1:5") }, rpctypes.ErrGRPCMemberBadURLs},
		{"no URL", func() error { return addRaw(ctx(), raw) }, rpctypes.ErrGRPCMemberBadURLs},
		{"the same URL twice", func() error { return addRaw(ctx(), raw, "http://127.0.0.1:5", "http://127.0.0.1:5") }, rpctypes.ErrGRPCMemberBadURLs},
		{"URL of a member", func() error { _, err := cli.MemberAdd(ctx(), []string{c.Members[1].PeerURL}); return err }, rpctypes.ErrPeerURLExist},
		{"update to a URL of another member", func() error {
			_, err := cli.MemberUpdate(ctx(), c.Members[0].ID(), []string{c.Members[1].PeerURL})
			return err
		}, rpctypes.ErrPeerURLExist},
		{"update of an unknown member", func() error { _, err := cli.MemberUpdate(ctx(), 42, []string{"http://127.0.0.1:9"}); return err }, rpctypes.ErrMemberNotFound},
		{"remove an unknown member", func() error { _, err := cli.MemberRemove(ctx(), 42); return err }, rpctypes.ErrMemberNotFound},
		{"promote an unknown member", func() error { _, err := cli.MemberPromote(ctx(), 42); return err }, rpctypes.ErrMemberNotFound},
	} {
		if err := tc.call(); !errors.Is(err, tc.want) && err.Error() != tc.want.Error() {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}

	// --strict-reconfig-check: with one of three members down, adding a
	// voter would need three of four connected, and removing the other
	// follower would leave one of two: both refused; the member list is
	// unchanged.
	down, up := c.Followers(lead)[0], c.Followers(lead)[1]
	down.Stop()
	waitFor(t, waitTimeout, "the leader sees the stopped member disconnected", func() error {
		_, err := cli.MemberAdd(ctx(), []string{"http://127.0.0.1:7"})
		if errors.Is(err, rpctypes.ErrUnhealthy) {
			return nil
		}
		return fmt.Errorf("add a voter with a member down: err %v, want %v", err, rpctypes.ErrUnhealthy)
	})
	if _, err := cli.MemberRemove(ctx(), up.ID()); !errors.Is(err, rpctypes.ErrUnhealthy) {
		t.Errorf("remove the last other live member: err %v, want %v", err, rpctypes.ErrUnhealthy)
	}
	list, err := cli.MemberList(ctx())
	if err != nil || len(list.Members) != 3 {
		t.Fatalf("member list after refused changes: %v members, err %v; want 3", len(list.Members), err)
	}
	// A learner does not vote, so adding one is allowed even now.
	if _, err := cli.MemberAddAsLearner(ctx(), []string{"http://127.0.0.1:8"}); err != nil {
		t.Errorf("add a learner with a member down: %v", err)
	}
}

func addRaw(ctx context.Context, cli pb.ClusterClient, urls ...string) error {
	_, err := cli.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: urls})
	return err
}

// A learner added with the Kvorum extension "auto-promote" becomes a voter
// by itself once it has caught up; one added without it stays a learner.
func TestLearnerAddedWithAutoPromoteIsPromotedOnceCaughtUp(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--max-learners", "2"}})
	lead, _ := c.WaitLeader(waitTimeout)
	putKeys(t, []*clientv3.Client{lead.Client()}, "k/", 20, 4)

	auto, manual := c.NewMember("m4"), c.NewMember("m5")
	ctx := metadata.AppendToOutgoingContext(ctxFor(t, 5*time.Second), membership.AutoPromoteMetadata, "true")
	addAuto, err := lead.Client().MemberAddAsLearner(ctx, []string{auto.PeerURL})
	if err != nil {
		t.Fatalf("add learner with auto-promote: %v", err)
	}
	addManual, err := lead.Client().MemberAddAsLearner(ctxFor(t, 5*time.Second), []string{manual.PeerURL})
	if err != nil {
		t.Fatalf("add learner: %v", err)
	}
	for _, m := range []*testcluster.Member{auto, manual} {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		servesKeys(t, m, "k/", 20)
	}
	waitFor(t, 3*waitTimeout, "the auto-promote learner becomes a voter", func() error {
		resp, err := lead.Client().MemberList(ctxFor(t, time.Second))
		if err != nil {
			return err
		}
		if _, learner, ok := memberByID(resp.Members, addAuto.Member.ID); !ok || learner {
			return fmt.Errorf("member %x: present %v, learner %v", addAuto.Member.ID, ok, learner)
		}
		return nil
	})
	resp, err := lead.Client().MemberList(ctxFor(t, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, learner, ok := memberByID(resp.Members, addManual.Member.ID); !ok || !learner {
		t.Errorf("the learner added without auto-promote: present %v, learner %v; want still a learner", ok, learner)
	}
	// The member record a client sees carries nothing of the request.
	for _, m := range resp.Members {
		if len(m.ProtoReflect().GetUnknown()) != 0 {
			t.Errorf("member %x carries unknown fields in the member list", m.ID)
		}
	}
}

// Two membership changes in a row, each sent as soon as the previous one
// was answered (how a script replaces a member: remove, then add): raft
// drops a conf change proposed while it still counts the previous one as
// unapplied, so the second must not be proposed before raft caught up.
// (Found with the automatic promotion test: the second add timed out.)
func TestConsecutiveMembershipChangesAreNotDropped(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--max-learners", "3"}})
	lead, _ := c.WaitLeader(waitTimeout)
	for i := range 3 {
		m := c.NewMember(fmt.Sprintf("l%d", i))
		if _, err := lead.Client().MemberAddAsLearner(ctxFor(t, 5*time.Second), []string{m.PeerURL}); err != nil {
			t.Fatalf("learner add %d right after the previous one: %v", i+1, err)
		}
	}
}
