package integration

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/kvorum/kvorum/internal/testcluster"
)

// watchEnv is what a watch case works with: a three-member cluster whose
// members send progress notifications every 200ms.
type watchEnv struct {
	c *testcluster.Cluster
}

func TestWatchThroughClient(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--experimental-watch-progress-notify-interval", "200ms"}})
	c.WaitLeader(waitTimeout)
	env := &watchEnv{c: c}
	cases := []struct {
		name string
		run  func(t *testing.T, e *watchEnv)
	}{
		{"PastStartRevisionReplaysHistoryThenLiveEvents", watchReplaysHistory},
		{"TxnEventsArriveInOneResponseWithPrevKV", watchTxnAtomic},
		{"RecreatedOnAnotherMemberAtLastPlusOneContinuesExactly", watchResumeOnAnotherMember},
		{"RequestProgressCarriesAResumableRevision", watchRequestProgress},
		{"ProgressNotifyIntervalFlagTakesEffect", watchProgressNotify},
		{"ThousandWatchersOnOneMemberAllReceiveABurst", watchManyWatchers},
		{"StreamThatStopsReadingDoesNotStopWritesAndCatchesUpLater", watchStalledStream},
		{"WatchSurvivesLeaderChanges", watchAcrossLeaderChange},
		{"ClientResumesOnAnotherMemberWhenItsMemberStops", watchMemberStops},
		{"CompactedStartRevisionFailsWithCompactRevision", watchCompacted},
	}
	for _, tc := range cases {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, env) }) {
			return
		}
	}
}

// collect reads events from wch until it has n of them.
func collect(t *testing.T, wch clientv3.WatchChan, n int, d time.Duration) []*clientv3.Event {
	t.Helper()
	var evs []*clientv3.Event
	deadline := time.After(d)
	for len(evs) < n {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events", len(evs), n)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch failed after %d of %d events: %v", len(evs), n, err)
			}
			evs = append(evs, wr.Events...)
		case <-deadline:
			t.Fatalf("got %d of %d events in %v", len(evs), n, d)
		}
	}
	return evs
}

// checkSequence fails unless evs are puts of prefix0..prefixN-1 (values
// v<i>) at consecutive revisions from first.
func checkSequence(t *testing.T, evs []*clientv3.Event, first int64) {
	t.Helper()
	for i, ev := range evs {
		if ev.Kv.ModRevision != first+int64(i) {
			t.Fatalf("event %d has revision %d, want %d (gap or duplicate)", i, ev.Kv.ModRevision, first+int64(i))
		}
	}
}

// put writes k=v; safe to call from any goroutine of the test.
func put(t *testing.T, cli *clientv3.Client, k, v string) *clientv3.PutResponse {
	t.Helper()
	resp, err := cli.Put(ctxFor(t, 10*time.Second), k, v)
	if err != nil {
		t.Errorf("put %s: %v", k, err)
		return &clientv3.PutResponse{Header: &pb.ResponseHeader{}}
	}
	return resp
}

func watchReplaysHistory(t *testing.T, e *watchEnv) {
	cli := e.c.Members[0].Client()
	first := put(t, cli, "hist/0", "v0").Header.Revision
	for i := 1; i < 20; i++ {
		put(t, cli, fmt.Sprintf("hist/%d", i), fmt.Sprintf("v%d", i))
	}
	put(t, cli, "other", "x")
	// Served by a follower: watches are served where the client is.
	wch := e.c.Members[1].Client().Watch(ctxFor(t, 30*time.Second), "hist/", clientv3.WithPrefix(), clientv3.WithRev(first))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 20; i < 30; i++ {
			put(t, cli, fmt.Sprintf("hist/%d", i), fmt.Sprintf("v%d", i))
		}
	})
	evs := collect(t, wch, 30, 10*time.Second)
	wg.Wait()
	for i, ev := range evs {
		if string(ev.Kv.Key) != fmt.Sprintf("hist/%d", i) || string(ev.Kv.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("event %d is %s=%s, want hist/%d=v%d", i, ev.Kv.Key, ev.Kv.Value, i, i)
		}
	}
}

func watchTxnAtomic(t *testing.T, e *watchEnv) {
	cli := e.c.Members[0].Client()
	rev := put(t, cli, "txn/a", "old").Header.Revision
	wch := e.c.Members[2].Client().Watch(ctxFor(t, 20*time.Second), "txn/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(rev+1))
	ctx := ctxFor(t, 10*time.Second)
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("txn/a", "new"), clientv3.OpPut("txn/b", "1"), clientv3.OpDelete("txn/c")).Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-wch:
		if len(wr.Events) != 2 || wr.Events[0].Kv.ModRevision != wr.Events[1].Kv.ModRevision {
			t.Fatalf("first response %v, want both changes of the txn", wr.Events)
		}
		if p := wr.Events[0].PrevKv; p == nil || string(p.Value) != "old" || wr.Events[1].PrevKv != nil {
			t.Fatalf("prev kvs %v / %v, want old / none (a creation)", wr.Events[0].PrevKv, wr.Events[1].PrevKv)
		}
	case <-ctx.Done():
		t.Fatal("no watch response for the txn")
	}
}

func watchResumeOnAnotherMember(t *testing.T, e *watchEnv) {
	writer := e.c.Members[0].Client()
	ctx1, cancel1 := context.WithCancel(t.Context())
	start := put(t, writer, "resume/0", "v0").Header.Revision
	wch := e.c.Members[1].Client().Watch(ctx1, "resume/", clientv3.WithPrefix(), clientv3.WithRev(start))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i < 200; i++ {
			put(t, writer, fmt.Sprintf("resume/%d", i), fmt.Sprintf("v%d", i))
		}
	})
	seen := collect(t, wch, 50, 10*time.Second)
	cancel1()
	last := seen[len(seen)-1].Kv.ModRevision
	wch2 := e.c.Members[2].Client().Watch(ctxFor(t, 20*time.Second), "resume/", clientv3.WithPrefix(), clientv3.WithRev(last+1))
	wg.Wait()
	rest := collect(t, wch2, 200-len(seen), 10*time.Second)
	all := append(seen, rest...)
	checkSequence(t, all, start)
	for i, ev := range all {
		if string(ev.Kv.Key) != fmt.Sprintf("resume/%d", i) {
			t.Fatalf("event %d is %s, want resume/%d", i, ev.Kv.Key, i)
		}
	}
}

func watchRequestProgress(t *testing.T, e *watchEnv) {
	cli := e.c.Members[1].Client()
	ctx := ctxFor(t, 20*time.Second)
	wch := cli.Watch(ctx, "prog/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch
	put(t, cli, "prog/1", "a")
	collect(t, wch, 1, 5*time.Second)
	rev := put(t, e.c.Members[0].Client(), "unrelated", "x").Header.Revision
	e.c.WaitApplied(waitTimeout)
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	var bookmark int64
	for bookmark == 0 {
		select {
		case wr := <-wch:
			if len(wr.Events) > 0 {
				t.Fatalf("unexpected events %v", wr.Events)
			}
			if wr.IsProgressNotify() {
				bookmark = wr.Header.Revision
			}
		case <-ctx.Done():
			t.Fatal("no progress notification after RequestProgress")
		}
	}
	if bookmark < rev {
		t.Fatalf("progress revision %d, want at least %d (the member had applied it)", bookmark, rev)
	}
	put(t, cli, "prog/2", "b")
	// Resuming from the bookmark (on another member) misses nothing and
	// repeats nothing.
	evs := collect(t, e.c.Members[2].Client().Watch(ctx, "prog/", clientv3.WithPrefix(), clientv3.WithRev(bookmark+1)), 1, 5*time.Second)
	if len(evs) != 1 || string(evs[0].Kv.Key) != "prog/2" {
		t.Fatalf("resumed from progress revision %d: %v, want exactly prog/2", bookmark, evs)
	}
}

func watchProgressNotify(t *testing.T, e *watchEnv) {
	cli := e.c.Members[0].Client()
	ctx := ctxFor(t, 10*time.Second)
	rev := put(t, cli, "pn/x", "1").Header.Revision
	wch := cli.Watch(ctx, "pn/idle", clientv3.WithProgressNotify())
	select {
	case wr := <-wch:
		if !wr.IsProgressNotify() || wr.Header.Revision < rev {
			t.Fatalf("first response %+v, want a progress notification at revision >= %d", wr, rev)
		}
	case <-ctx.Done():
		t.Fatal("no progress notification with --experimental-watch-progress-notify-interval=200ms")
	}
}

func watchManyWatchers(t *testing.T, e *watchEnv) {
	const watchers, writes = 1200, 50
	m := e.c.Members[1]
	ctx := ctxFor(t, 60*time.Second)
	// Two clients of the member: many watchers share each gRPC stream.
	clis := []*clientv3.Client{m.Client(), newClient(t, m.ClientURL)}
	chans := make([]clientv3.WatchChan, watchers)
	for i := range chans {
		chans[i] = clis[i%2].Watch(ctx, "burst/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	}
	for _, ch := range chans {
		if wr := <-ch; !wr.Created {
			t.Fatalf("first response %+v, want created", wr)
		}
	}
	putKeys(t, []*clientv3.Client{e.c.Members[0].Client(), e.c.Members[2].Client()}, "burst/", writes, 8)
	var wg sync.WaitGroup
	errs := make(chan error, watchers)
	for i, ch := range chans {
		wg.Go(func() {
			seen := map[string]bool{}
			var last int64
			for len(seen) < writes {
				select {
				case wr := <-ch:
					if err := wr.Err(); err != nil {
						errs <- fmt.Errorf("watcher %d: %w", i, err)
						return
					}
					for _, ev := range wr.Events {
						if ev.Kv.ModRevision <= last || seen[string(ev.Kv.Key)] {
							errs <- fmt.Errorf("watcher %d: %s at %d after %d (duplicate or out of order)", i, ev.Kv.Key, ev.Kv.ModRevision, last)
							return
						}
						last = ev.Kv.ModRevision
						seen[string(ev.Kv.Key)] = true
					}
				case <-ctx.Done():
					errs <- fmt.Errorf("watcher %d saw %d of %d writes", i, len(seen), writes)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func newClient(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func watchStalledStream(t *testing.T, e *watchEnv) {
	const writes, size = 400, 64 << 10 // 25 MiB: more than gRPC's windows and the stream's queue hold
	m := e.c.Members[0]
	ctx := ctxFor(t, 60*time.Second)
	// A raw stream whose client reads nothing for now.
	stalled, err := pb.NewWatchClient(newClient(t, m.ClientURL).ActiveConnection()).Watch(ctx, grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err != nil {
		t.Fatal(err)
	}
	start := put(t, m.Client(), "stall/start", "x").Header.Revision + 1
	if err := stalled.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("stall/"), RangeEnd: []byte("stall0"), StartRevision: start}}}); err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("x", size)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < writes; i += 4 {
				// Each write must succeed within the usual request timeout
				// although a watcher of its key is stuck.
				if _, err := m.Client().Put(ctxFor(t, 10*time.Second), keyN("stall/", i), value); err != nil {
					t.Errorf("put %d while a watcher is stalled: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Now read: everything arrives, in order, once.
	var got int
	next := start
	for got < writes {
		wr, err := stalled.Recv()
		if err != nil {
			t.Fatalf("after %d events: %v", got, err)
		}
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision != next {
				t.Fatalf("event at %d, want %d: gap or duplicate after catching up", ev.Kv.ModRevision, next)
			}
			next++
			got++
		}
	}
}

func watchAcrossLeaderChange(t *testing.T, e *watchEnv) {
	lead, term0 := e.c.WaitLeader(waitTimeout)
	ctx := ctxFor(t, 30*time.Second)
	// The watch is served by the leader, which stops leading twice.
	wch := lead.Client().Watch(ctx, "lc/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch
	writer := e.c.Followers(lead)[0].Client()
	first := put(t, writer, "lc/0", "v").Header.Revision
	n := 1
	for round := range 2 {
		cur, _ := e.c.WaitLeader(waitTimeout)
		target := e.c.Followers(cur)[round%2]
		if _, err := cur.Client().MoveLeader(ctxFor(t, 10*time.Second), target.ID()); err != nil {
			t.Fatalf("move leader from %s to %s: %v", cur.Name, target.Name, err)
		}
		for range 10 {
			for {
				_, err := writer.Put(ctxFor(t, 10*time.Second), keyN("lc/", n), "v")
				if err == nil {
					break
				}
				if !errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) && !errors.Is(err, rpctypes.ErrNoLeader) {
					t.Fatalf("put during leader change: %v", err)
				}
			}
			n++
		}
	}
	checkSequence(t, collect(t, wch, n, 10*time.Second), first)
	if _, term := e.c.WaitLeader(waitTimeout); term < term0+2 {
		t.Fatalf("term went from %d to %d, want two leader changes", term0, term)
	}
}

func watchMemberStops(t *testing.T, e *watchEnv) {
	served, other := e.c.Members[1], e.c.Members[2]
	cli := newClient(t, served.ClientURL)
	ctx := ctxFor(t, 30*time.Second)
	writer := e.c.Members[0].Client()
	first := put(t, writer, "stop/0", "v").Header.Revision
	wch := cli.Watch(ctx, "stop/", clientv3.WithPrefix(), clientv3.WithRev(first))
	collect(t, wch, 1, 5*time.Second)
	// The stream is on served; once it stops, the client may only go on
	// with other.
	cli.SetEndpoints(served.ClientURL, other.ClientURL)
	served.Stop()
	defer served.Restart()
	const n = 30
	for i := 1; i < n; i++ {
		put(t, writer, keyN("stop/", i), "v")
	}
	checkSequence(t, collect(t, wch, n-1, 20*time.Second), first+1)
}

func watchCompacted(t *testing.T, e *watchEnv) {
	cli := e.c.Members[0].Client()
	old := put(t, cli, "cmp/a", "1").Header.Revision
	rev := put(t, cli, "cmp/a", "2").Header.Revision
	if _, err := cli.Compact(ctxFor(t, 10*time.Second), rev); err != nil {
		t.Fatal(err)
	}
	e.c.WaitApplied(waitTimeout)
	wch := e.c.Members[2].Client().Watch(ctxFor(t, 10*time.Second), "cmp/a", clientv3.WithRev(old))
	wr := <-wch
	if !errors.Is(wr.Err(), rpctypes.ErrCompacted) || wr.CompactRevision != rev || !wr.Canceled {
		t.Fatalf("watch from compacted revision %d: err %v, compact revision %d, canceled %v; want ErrCompacted, %d, true",
			old, wr.Err(), wr.CompactRevision, wr.Canceled, rev)
	}
	// From the compact revision on, the history is there.
	evs := collect(t, e.c.Members[2].Client().Watch(ctxFor(t, 10*time.Second), "cmp/a", clientv3.WithRev(rev)), 1, 5*time.Second)
	if evs[0].Kv.ModRevision != rev || evs[0].Type != mvccpb.PUT {
		t.Fatalf("watch from the compact revision: %v", evs)
	}
}
