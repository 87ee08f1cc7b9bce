package robustness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/robustness/cluster"
)

// The deposed-leader scenario's timing. The leader stays stopped longer
// than the short leases' TTL, so that on its own clock they are overdue
// when it wakes; the calls through it are sent a little before it
// resumes, so that they wait in its sockets and are the first thing it
// reads, together with the news that it no longer leads.
const (
	deposedRounds   = 5
	deposedTTL      = 10 // seconds: the leases renewed through the deposed leader
	deposedShortTTL = 3  // seconds: the leases the deposed leader's clock finds overdue
	// deposedShort is how many short leases there are: the deposed leader
	// proposes their revocations at once, and the more there are, the
	// likelier one lands after it stepped down, when raft forwards it to
	// the real leader, which would commit it.
	deposedShort    = 8
	deposedPause    = deposedShortTTL*time.Second + 800*time.Millisecond
	deposedInFlight = 800 * time.Millisecond // calls are sent this long before the leader resumes
	deposedWatch    = 3 * time.Second        // and watched this long after it resumed
)

// TestDeposedLeaderAnswersLeaseCallsAsTheRealLeader pauses the leader with
// SIGSTOP until the other two members elect a new one and grant a lease,
// then sends that lease's KeepAlive, KeepAliveOnce and TimeToLive to the
// old leader alone and resumes it. Waking up, the old leader still
// believes it leads, but its lease table and clock are stale: it must not
// answer from them. In each of a few rounds:
//
//  1. the KeepAlive through the old leader is answered within 3 s of the
//     resume and never told that the lease is gone; KeepAliveOnce answers
//     the granted TTL or an error other than "lease not found";
//     TimeToLive through the old leader never answers that the lease is
//     gone;
//  2. the lease is alive at the real leader;
//  3. short leases that the old leader last saw before it stopped, and
//     that the new leader kept renewing, are not revoked by the old
//     leader's clock: they are alive 3 s after the resume.
func TestDeposedLeaderAnswersLeaseCallsAsTheRealLeader(t *testing.T) {
	c := startCluster(t, cluster.Config{Members: 3})
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for round := 1; round <= deposedRounds; round++ {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) { deposeLeader(t, c, cli) })
	}
	if probs := c.LogProblems(); len(probs) > 0 {
		t.Errorf("server logs report a panic, fatal error, race or corruption:\n%s", strings.Join(probs, "\n"))
	}
}

// deposeLeader runs one round of TestDeposedLeaderAnswersLeaseCallsAsTheRealLeader.
func deposeLeader(t *testing.T, c *cluster.Cluster, cli *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx, c.Members...); err != nil {
		t.Fatalf("before the round: %v", err)
	}
	old := c.Leader(ctx, cli)
	if old == nil {
		t.Fatalf("no leader on a healthy cluster:\n%s", c.Describe(ctx))
	}
	oldCli, err := c.Client(old)
	if err != nil {
		t.Fatal(err)
	}
	defer oldCli.Close()
	w := &leaseWorkload{}
	w.keepCtx, w.stopKeep = context.WithCancel(context.Background())
	defer w.close()
	grant := func(gcli *clientv3.Client, ttl int64) *leaseRecord {
		t.Helper()
		asked := time.Now()
		gctx, gcancel := context.WithTimeout(ctx, leaseOpTimeout)
		resp, err := gcli.Grant(gctx, ttl)
		gcancel()
		if err != nil {
			t.Fatalf("grant a lease of %ds: %v", ttl, err)
		}
		return &leaseRecord{id: resp.ID, ttl: resp.TTL, fate: keptAlive, asked: asked, keys: map[string]string{}}
	}

	// The keep-alive stream of the old leader's client, open and answered
	// before the pause: the later KeepAlive goes down the same stream.
	start := time.Now()
	opener := grant(oldCli, deposedTTL)
	w.keepAlive(oldCli, opener)
	if problems := waitRenewed([]*leaseRecord{opener}, start, 5*time.Second); len(problems) > 0 {
		t.Fatalf("before the pause, on a healthy cluster: %s", problems[0])
	}
	var short []*leaseRecord
	for range deposedShort {
		short = append(short, grant(oldCli, deposedShortTTL))
	}

	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	defer func() {
		if old.Paused() {
			old.Resume()
		}
	}()
	var leader *cluster.Member
	for leader == nil || leader == old {
		select {
		case <-ctx.Done():
			t.Fatalf("no new leader after %s, the leader, was paused:\n%s", old.Name, c.Describe(context.Background()))
		case <-time.After(50 * time.Millisecond):
		}
		leader = c.Leader(ctx, cli)
	}
	elected := time.Now()
	newCli, err := c.Client(leader)
	if err != nil {
		t.Fatal(err)
	}
	defer newCli.Close()
	// Renewed at the new leader itself: a follower might still forward
	// the first renewals to the paused member and wait for it longer than
	// the short TTL.
	for _, r := range short {
		w.keepAlive(newCli, r)
	}
	live := grant(newCli, deposedTTL)

	time.Sleep(time.Until(paused.Add(deposedPause - deposedInFlight)))
	w.keepAlive(oldCli, live)
	callCtx, callCancel := context.WithTimeout(ctx, deposedInFlight+deposedWatch)
	defer callCancel()
	var calls sync.WaitGroup
	var once *clientv3.LeaseKeepAliveResponse
	var onceErr error
	calls.Go(func() { once, onceErr = oldCli.KeepAliveOnce(callCtx, live.id) })
	var ttl *clientv3.LeaseTimeToLiveResponse
	var ttlErr error
	calls.Go(func() { ttl, ttlErr = oldCli.TimeToLive(callCtx, live.id) })
	time.Sleep(deposedInFlight)
	if err := old.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	time.Sleep(time.Until(resumed.Add(deposedWatch)))
	calls.Wait()

	var problems []string
	at := func(tm time.Time) string { return fmt.Sprintf("+%.3fs", tm.Sub(start).Seconds()) }
	timeline := fmt.Sprintf("%s, the leader, paused at %s; %s seen leading at %s; %s resumed at %s",
		old.Name, at(paused), leader.Name, at(elected), old.Name, at(resumed))
	closedAt, _, responses := live.keepAlive()
	switch {
	case live.closedByServer():
		problems = append(problems, fmt.Sprintf("the keep-alive of lease %x through the deposed leader %s was told at %s that the lease is gone", int64(live.id), old.Name, at(closedAt)))
	case !closedAt.IsZero():
		problems = append(problems, fmt.Sprintf("the keep-alive of lease %x through the deposed leader %s ended at %s, unanswered", int64(live.id), old.Name, at(closedAt)))
	case responses == 0:
		problems = append(problems, fmt.Sprintf("the keep-alive of lease %x through the deposed leader %s had no answer %v after it resumed", int64(live.id), old.Name, deposedWatch))
	}
	switch {
	case errors.Is(onceErr, rpctypes.ErrLeaseNotFound):
		problems = append(problems, fmt.Sprintf("KeepAliveOnce of lease %x through the deposed leader %s: %v", int64(live.id), old.Name, onceErr))
	case onceErr != nil:
		t.Logf("KeepAliveOnce of lease %x through the deposed leader %s: %v", int64(live.id), old.Name, onceErr)
	case once.TTL != deposedTTL:
		problems = append(problems, fmt.Sprintf("KeepAliveOnce of lease %x through the deposed leader %s answered TTL %d, want %d", int64(live.id), old.Name, once.TTL, deposedTTL))
	}
	switch {
	case ttlErr != nil:
		t.Logf("TimeToLive of lease %x through the deposed leader %s: %v", int64(live.id), old.Name, ttlErr)
	case ttl.TTL <= 0:
		problems = append(problems, fmt.Sprintf("TimeToLive of lease %x through the deposed leader %s answered TTL %d, want it alive", int64(live.id), old.Name, ttl.TTL))
	}
	// The real leader, reached through the member that took over.
	var gone []string
	for _, r := range append([]*leaseRecord{live}, short...) {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := newCli.TimeToLive(tctx, r.id)
		tcancel()
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("TimeToLive of lease %x through %s at %s: %v", int64(r.id), leader.Name, at(time.Now()), err))
		case resp.TTL < 0 && r == live:
			problems = append(problems, fmt.Sprintf("lease %x, kept alive through the deposed leader %s, is gone at %s", int64(r.id), old.Name, at(time.Now())))
		case resp.TTL < 0:
			gone = append(gone, fmt.Sprintf("%x", int64(r.id)))
		}
	}
	if len(gone) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d leases of %ds, overdue on the deposed leader's clock but kept alive through %s, are gone at %s: %s",
			len(gone), len(short), deposedShortTTL, leader.Name, at(time.Now()), strings.Join(gone, " ")))
	}
	if len(problems) > 0 {
		var leases []string
		for _, r := range append([]*leaseRecord{opener, live}, short...) {
			leases = append(leases, r.String(start))
		}
		t.Errorf("%s\n%s\nleases:\n%s", timeline, strings.Join(problems, "\n"), strings.Join(leases, "\n"))
	}
}
