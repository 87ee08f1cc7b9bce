package integration

// One test per guarantee internal/watch/doc.go makes, each checked against
// the history read back from the store. Guarantees tested elsewhere:
//
//   - resumable: TestWatchThroughClient/RecreatedOnAnotherMemberAtLastPlusOneContinuesExactly
//   - compacted start revision: TestWatchThroughClient/CompactedStartRevisionFailsWithCompactRevision
//     (and tests/e2e TestWatchOutputMatchesEtcdctl/compacted_start_revision)
//   - a stream that stops reading does not slow writes:
//     TestWatchThroughClient/StreamThatStopsReadingDoesNotStopWritesAndCatchesUpLater

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/kvorum/kvorum/internal/testcluster"
	"github.com/kvorum/kvorum/internal/watch"
)

func TestWatchEventsAreOrderedByRevisionAcrossConcurrentWriters(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	const prefix, sentinel = "ord/", "ord/~end"
	clis := clients(c.Members)
	first := put(t, clis[0], "ord-base", "").Header.Revision + 1
	past := writeMix(t, clis, prefix, 100, 6)
	ctx := ctxFor(t, 60*time.Second)
	// On every member: one watcher replaying the past before going live,
	// one following the present.
	var runs []*watchRun
	for _, m := range c.Members {
		runs = append(runs,
			readWatch(ctx, m.Name+" from the past", first, m.Client().Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(first)), sentinel),
			readWatch(ctx, m.Name+" from now", 0, m.Client().Watch(ctx, prefix, clientv3.WithPrefix()), sentinel))
	}
	txns := writeMix(t, clis, prefix, 400, 8)
	for rev, keys := range past {
		txns[rev] = keys
	}
	put(t, clis[0], sentinel, "")
	for _, r := range runs {
		evs := r.wait(t)
		if len(evs) < 100 {
			t.Errorf("%s: only %d events", r.name, len(evs))
		}
		if err := checkOrder(evs, txns); err != nil {
			t.Errorf("%s: %v", r.name, err)
		}
	}
}

func TestWatchFromPastRevisionDeliversExactlyTheStoredHistory(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	const prefix, sentinel = "rel/", "rel/~end"
	clis := clients(c.Members)
	writeMix(t, clis, prefix, 100, 6)
	beforeFiller := put(t, clis[0], "rel-mark", "").Header.Revision
	writeMix(t, clis, prefix, 100, 6)
	// More than the hub's buffer of recent changes holds: a watch from
	// before this point replays its history from storage.
	filler := strings.Repeat("f", 256<<10)
	var fill sync.WaitGroup
	for w := range 4 {
		fill.Go(func() {
			for i := w; i < watch.DefaultRecentBytes/len(filler)+16; i += 4 {
				put(t, clis[i%3], keyN("filler/", i), filler)
			}
		})
	}
	fill.Wait()
	afterFiller := put(t, clis[0], "rel-mark", "").Header.Revision

	ctx := ctxFor(t, 60*time.Second)
	var wg sync.WaitGroup
	wg.Go(func() { writeMix(t, clis, prefix, 300, 6) })
	// Created while writes go on: each one hands over from replay to live
	// delivery under load.
	var runs []*watchRun
	for _, from := range []int64{1, beforeFiller, afterFiller} {
		for _, m := range c.Members {
			name := fmt.Sprintf("%s from revision %d", m.Name, from)
			runs = append(runs, readWatch(ctx, name, from, m.Client().Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from)), sentinel))
		}
	}
	wg.Wait()
	end := put(t, clis[1], sentinel, "").Header.Revision
	want := storeHistory(t, clis[2], prefix, 1, end)
	for _, r := range runs {
		if err := sameChanges(inRevOrder(r.wait(t)), since(want, r.from), r.name); err != nil {
			t.Error(err)
		}
	}
}

func TestWatchDeliversAllEventsOfATxnRevisionInOneResponse(t *testing.T) {
	const (
		keys = 50
		// A txn writing 50 such values fits in one request (1.5 MiB by
		// default), but a response carrying them with their previous
		// values exceeds the 2 MiB (max request plus gRPC overhead) above
		// which a watch created with fragment set is sent in pieces.
		valueSize = 26 << 10
	)
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	for _, fragment := range []bool{false, true} {
		t.Run(fmt.Sprintf("fragment=%v", fragment), func(t *testing.T) {
			prefix := fmt.Sprintf("atomic-%v/", fragment)
			sentinel := prefix + "~end"
			writer := c.Members[0].Client()
			from := put(t, writer, "atomic-base", "").Header.Revision + 1
			opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(from)}
			if fragment {
				opts = append(opts, clientv3.WithFragment())
			}
			ctx := ctxFor(t, 30*time.Second)
			live := readWatch(ctx, "live watcher", from, c.Members[1].Client().Watch(ctx, prefix, opts...), sentinel)

			var creates, updates, deletes []clientv3.Op
			for i := range keys {
				k := fmt.Sprintf("%sk%02d", prefix, i)
				creates = append(creates, clientv3.OpPut(k, strings.Repeat("a", valueSize)))
				updates = append(updates, clientv3.OpPut(k, strings.Repeat("b", valueSize)))
				deletes = append(deletes, clientv3.OpDelete(k))
			}
			var txnRevs []int64
			for i, ops := range [][]clientv3.Op{creates, updates, deletes} {
				resp, err := writer.Txn(ctxFor(t, 10*time.Second)).Then(ops...).Commit()
				if err != nil {
					t.Fatalf("txn %d: %v", i, err)
				}
				txnRevs = append(txnRevs, resp.Header.Revision)
				put(t, writer, keyN(prefix+"single/", i), "s")
			}
			put(t, writer, sentinel, "")
			replay := readWatch(ctx, "replaying watcher", from, c.Members[2].Client().Watch(ctx, prefix, opts...), sentinel)

			for _, r := range []*watchRun{live, replay} {
				checkTxnsWhole(t, r, txnRevs, keys)
			}
			if fragment {
				if n := fragmentsOnTheWire(t, c.Members[1].ClientURL, prefix, from, sentinel); n == 0 {
					t.Fatalf("no response was fragmented: the test does not test fragmentation")
				}
			}
		})
	}
}

// checkTxnsWhole checks that each of the txn revisions r read has all its
// n events in a single response, and that the update txn's events carry
// their previous values (which makes its response large).
func checkTxnsWhole(t *testing.T, r *watchRun, txnRevs []int64, n int) {
	t.Helper()
	r.wait(t)
	inResp := map[int64]int{}
	count := map[int64]int{}
	for i, wr := range r.resps {
		for _, ev := range wr.Events {
			rev := ev.Kv.ModRevision
			if j, ok := inResp[rev]; ok && j != i {
				t.Errorf("%s: events of revision %d are split between responses %d and %d", r.name, rev, j, i)
			}
			inResp[rev] = i
			count[rev]++
			if rev == txnRevs[1] && ev.PrevKv == nil {
				t.Errorf("%s: update of %s at %d without its previous value", r.name, ev.Kv.Key, rev)
			}
		}
	}
	for _, rev := range txnRevs {
		if count[rev] != n {
			t.Errorf("%s: %d events of the txn at revision %d, want %d", r.name, count[rev], rev, n)
		}
	}
}

// fragmentsOnTheWire replays prefix from revision from with prev_kv and
// fragment set on a raw stream, up to the event of key last, and counts
// the messages the server marked as fragments.
func fragmentsOnTheWire(t *testing.T, url, prefix string, from int64, last string) int {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	stream, err := pb.NewWatchClient(newClient(t, url).ActiveConnection()).Watch(ctx, grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte(prefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(prefix)), StartRevision: from, PrevKv: true, Fragment: true}}}); err != nil {
		t.Fatal(err)
	}
	fragments := 0
	for {
		wr, err := stream.Recv()
		if err != nil {
			t.Fatalf("raw fragmented watch: %v", err)
		}
		if wr.Fragment {
			fragments++
		}
		for _, ev := range wr.Events {
			if string(ev.Kv.Key) == last {
				return fragments
			}
		}
	}
}

func TestWatchProgressRevisionIsASafeResumePoint(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--watch-progress-notify-interval", "100ms"}})
	c.WaitLeader(waitTimeout)
	for _, tc := range []struct {
		name    string
		opts    []clientv3.OpOption
		request bool // ask for progress with RequestProgress
	}{
		{"PeriodicProgressNotify", []clientv3.OpOption{clientv3.WithProgressNotify()}, false},
		{"RequestProgress", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "bm-" + tc.name + "/"
			sentinel := prefix + "~end"
			served, writer, resumer := c.Members[1], c.Members[2].Client(), c.Members[0]
			// A client of its own: a progress request is answered for
			// all watchers of a stream, here only this one.
			cli := newClient(t, served.ClientURL)
			ctx := ctxFor(t, 60*time.Second)
			from := put(t, writer, "noise/start", "").Header.Revision + 1
			wch := cli.Watch(ctx, prefix, append(tc.opts, clientv3.WithPrefix(), clientv3.WithRev(from))...)

			// Changes of other keys move the revision on continuously;
			// changes of the watched keys come in irregular bursts, so
			// that the watcher is idle now and then (periodic
			// notifications go only to idle watchers) and notifications
			// race with its events.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					put(t, c.Members[0].Client(), keyN("noise/", i%50), "n")
				}
			})
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(1, 2))
				gaps := []time.Duration{0, 0, 20 * time.Millisecond, 80 * time.Millisecond, 150 * time.Millisecond, 250 * time.Millisecond}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(gaps[rng.IntN(len(gaps))]):
					}
					k := fmt.Sprintf("%sk%02d", prefix, rng.IntN(20))
					if rng.IntN(4) == 0 {
						if _, err := writer.Delete(ctxFor(t, 10*time.Second), k); err != nil {
							t.Errorf("delete %s: %v", k, err)
						}
					} else {
						put(t, writer, k, fmt.Sprint(i))
					}
				}
			})
			if tc.request {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(30 * time.Millisecond):
						}
						if err := cli.RequestProgress(ctx); err != nil {
							t.Errorf("request progress: %v", err)
							return
						}
					}
				})
			}

			type bookmark struct {
				events int // events received before it
				rev    int64
			}
			var evs []change
			var marks []bookmark
			began := time.Now()
			stopped := false
			for done := false; !done; {
				if !stopped && len(marks) >= 8 && time.Since(began) > 2*time.Second {
					close(stop)
					wg.Wait()
					put(t, writer, sentinel, "")
					stopped = true
				}
				select {
				case wr, ok := <-wch:
					if !ok || wr.Err() != nil {
						t.Fatalf("watch ended after %d events: %v", len(evs), wr.Err())
					}
					if wr.IsProgressNotify() {
						marks = append(marks, bookmark{len(evs), wr.Header.Revision})
					}
					for _, ev := range wr.Events {
						evs = append(evs, changeOf(ev))
						done = done || string(ev.Kv.Key) == sentinel
					}
				case <-ctx.Done():
					t.Fatalf("%d events and %d progress notifications in %v, want 8 notifications and the end", len(evs), len(marks), time.Since(began))
				}
			}
			want := storeHistory(t, writer, prefix, from, evs[len(evs)-1].rev)
			if err := sameChanges(inRevOrder(evs), want, "the watcher itself"); err != nil {
				t.Fatal(err)
			}
			// Resume from a spread of the bookmarks (each resume
			// replays from there to the end).
			step := max(1, len(marks)/6)
			for i := 0; i < len(marks); i += step {
				b := marks[i]
				name := fmt.Sprintf("first %d events, then resumed on %s from progress revision %d + 1", b.events, resumer.Name, b.rev)
				rest := readWatch(ctx, name, b.rev+1, resumer.Client().Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(b.rev+1)), sentinel).wait(t)
				got := append(slices.Clone(evs[:b.events]), rest...)
				if err := sameChanges(inRevOrder(got), want, name); err != nil {
					t.Error(err)
				}
			}
			t.Logf("%d progress notifications; resumed from %d of them", len(marks), (len(marks)+step-1)/step)
		})
	}
}

func TestWatchFromFutureRevisionWaitsUntilItIsReached(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	writer := c.Members[0].Client()
	base := put(t, writer, "fut-base", "").Header.Revision
	// Writes base+1.. alternate between a watched key (even offsets) and
	// another key (odd ones).
	const writes, last = 30, "fut/00030"
	write := func(i int) {
		k := keyN("other/", i)
		if i%2 == 0 {
			k = keyN("fut/", i)
		}
		if rev := put(t, writer, k, "v").Header.Revision; rev != base+int64(i) {
			t.Fatalf("write %d got revision %d, want %d: someone else writes", i, rev, base+int64(i))
		}
	}
	ctx := ctxFor(t, 30*time.Second)
	cases := []struct {
		name       string
		from       int64
		firstEvent int64
	}{
		{"StartsAtAWatchedChange", base + 10, base + 10},
		{"StartsAtAnotherChange", base + 15, base + 16},
	}
	chans := make([]clientv3.WatchChan, len(cases))
	for i, tc := range cases {
		chans[i] = c.Members[1].Client().Watch(ctx, "fut/", clientv3.WithPrefix(), clientv3.WithRev(tc.from), clientv3.WithCreatedNotify())
		if wr := <-chans[i]; !wr.Created || wr.Canceled || wr.Err() != nil {
			t.Fatalf("%s: first response %+v, want created", tc.name, wr)
		}
	}
	for i := 1; i < 10; i++ {
		write(i)
	}
	c.WaitApplied(waitTimeout)
	for i, tc := range cases {
		select {
		case wr := <-chans[i]:
			t.Fatalf("%s: watch from %d got %+v at revision %d", tc.name, tc.from, wr, base+9)
		case <-time.After(300 * time.Millisecond):
		}
	}
	for i := 10; i <= writes; i++ {
		write(i)
	}
	history := storeHistory(t, writer, "fut/", base+1, base+writes)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs := readWatch(ctx, tc.name, tc.from, chans[i], last).wait(t)
			if evs[0].rev != tc.firstEvent {
				t.Errorf("watch from %d: first event at %d, want %d", tc.from, evs[0].rev, tc.firstEvent)
			}
			if err := sameChanges(evs, since(history, tc.from), tc.name); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestWatchTenThousandWatchersOnOneMemberEachSeeEveryEventOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 watchers: skipped with -short")
	}
	const (
		streams, perStream = 10, 1000
		// 200 writes, every 20th a txn of 5 puts.
		writes, txnEvery, txnSize = 200, 20, 5
		sentinel                  = "storm/~end"
	)
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	// A follower serves the watchers, so that what is measured is their
	// delivery rather than a leader's apply loop (which also feeds the
	// hub) slowing every write down.
	served := c.Followers(lead)[0]
	writers := clients(c.Followers(served))
	from := put(t, writers[0], "storm-base", "").Header.Revision + 1
	ctx := ctxFor(t, 3*time.Minute)

	began := time.Now()
	chans := make([]clientv3.WatchChan, streams*perStream)
	var wg sync.WaitGroup
	for s := range streams {
		// One client, one gRPC stream, perStream watchers.
		cli := newClient(t, served.ClientURL)
		wg.Go(func() {
			for i := range perStream {
				chans[s*perStream+i] = cli.Watch(ctx, "storm/", clientv3.WithPrefix(), clientv3.WithRev(from))
			}
		})
	}
	wg.Wait()
	created := time.Since(began)

	results := make([]streamDigest, len(chans))
	for i, ch := range chans {
		wg.Go(func() { results[i] = digestWatch(ctx, ch, sentinel) })
	}
	burst := time.Now()
	var retries atomic.Int64
	var ww sync.WaitGroup
	next := make(chan int)
	for w := range 8 {
		cli := writers[w%len(writers)]
		ww.Go(func() {
			for i := range next {
				var ops []clientv3.Op
				if i%txnEvery == txnEvery-1 {
					for j := range txnSize {
						ops = append(ops, clientv3.OpPut(keyN("storm/", 10*i+j), fmt.Sprint(i, j)))
					}
				} else {
					ops = append(ops, clientv3.OpPut(keyN("storm/", 10*i), fmt.Sprint(i)))
				}
				retries.Add(int64(writeRetrying(t, cli, ops)))
			}
		})
	}
	for i := range writes {
		next <- i
	}
	close(next)
	ww.Wait()
	written := time.Since(burst)
	end := put(t, writers[0], sentinel, "").Header.Revision
	wg.Wait()
	delivered := time.Since(burst)

	want := storeHistory(t, writers[0], "storm/", from, end)
	t.Logf("%d watchers on %s (a follower of %s), %d streams, created in %v; %d writes (%d events, %d retried writes) took %v, delivered to every watcher after %v; total %v",
		len(chans), served.Name, lead.Name, streams, created.Round(time.Millisecond), writes, len(want), retries.Load(), written.Round(time.Millisecond),
		delivered.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	var wantDigest digester
	for _, c := range want {
		if err := wantDigest.add(c); err != nil {
			t.Fatalf("the store's history: %v", err)
		}
	}
	var bad []string
	for i, r := range results {
		switch {
		case r.err != nil:
			bad = append(bad, fmt.Sprintf("watcher %d: %v", i, r.err))
		case r.n != len(want) || r.sum != wantDigest.h.Sum64():
			bad = append(bad, fmt.Sprintf("watcher %d: %d events, not the store's %d (digest %x, want %x)", i, r.n, len(want), r.sum, wantDigest.h.Sum64()))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d watchers did not see exactly the %d events of the store in order, e.g.:\n%s",
			len(bad), len(results), len(want), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
}

// writeRetrying commits a txn of ops and returns how often it had to retry.
// It retries a txn that failed for want of a leader or of time: the test
// is about watchers, not about writes on a starved machine, and a retried
// txn that had committed after all only adds events, which the test reads
// back from the store.
func writeRetrying(t *testing.T, cli *clientv3.Client, ops []clientv3.Op) int {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err == nil {
			return attempt
		}
		if !isUnavailable(err) || attempt == 3 {
			t.Errorf("write %v: %v", ops, err)
			return attempt
		}
	}
}

// streamDigest sums up what one watcher received: n events whose digest
// is sum, or the first reason they cannot be right.
type streamDigest struct {
	n   int
	sum uint64
	err error
}

// digestWatch reads wch until the event of key last and digests the events.
func digestWatch(ctx context.Context, wch clientv3.WatchChan, last string) streamDigest {
	var d digester
	for {
		select {
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				return streamDigest{n: d.n, err: fmt.Errorf("watch ended after %d events: %v", d.n, wr.Err())}
			}
			for _, ev := range wr.Events {
				if err := d.add(changeOf(ev)); err != nil {
					return streamDigest{n: d.n, err: err}
				}
				if string(ev.Kv.Key) == last {
					return streamDigest{n: d.n, sum: d.h.Sum64()}
				}
			}
		case <-ctx.Done():
			return streamDigest{n: d.n, err: fmt.Errorf("%d events and not %s before the deadline", d.n, last)}
		}
	}
}

// digester hashes a sequence of changes that must come in (revision, key)
// order: with txns whose keys are in ascending order, that is the only
// right order, and any duplicate breaks it.
type digester struct {
	h    hash.Hash64
	n    int
	last change
}

func (d *digester) add(c change) error {
	if d.h == nil {
		d.h = fnv.New64a()
	} else if cmpChange(d.last, c) >= 0 {
		return fmt.Errorf("%v after %v: out of order or a duplicate", c, d.last)
	}
	var b []byte
	for _, n := range []int64{c.rev, int64(c.typ), c.create, c.version, c.lease, int64(len(c.key)), int64(len(c.value))} {
		b = binary.AppendVarint(b, n)
	}
	d.h.Write(b)
	d.h.Write([]byte(c.key))
	d.h.Write([]byte(c.value))
	d.n++
	d.last = c
	return nil
}

func TestWatchReplaysExactHistoryAfterRestart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	writeMix(t, clients(c.Members), "replay/", 150, 6)
	old := put(t, c.Members[0].Client(), "replay-mark", "").Header.Revision

	// checkReplay watches every key on each member in ms from revision 1
	// and from old, writes one more change once the watches exist, and
	// checks that each watcher saw exactly the store's history up to it.
	checkReplay := func(t *testing.T, ms []*testcluster.Member, writer *clientv3.Client) {
		ctx := ctxFor(t, 60*time.Second)
		last := fmt.Sprintf("live-after-%s", t.Name())
		var runs []*watchRun
		for _, m := range ms {
			for _, from := range []int64{1, old} {
				name := fmt.Sprintf("%s from revision %d", m.Name, from)
				runs = append(runs, readWatch(ctx, name, from, m.Client().Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(from)), last))
			}
		}
		end := put(t, writer, last, "").Header.Revision
		want := storeHistory(t, writer, "", 1, end)
		for _, r := range runs {
			if err := sameChanges(inRevOrder(r.wait(t)), since(want, r.from), r.name); err != nil {
				t.Error(err)
			}
		}
	}

	t.Run("AllMembersRestarted", func(t *testing.T) {
		c.StopAll()
		for _, m := range c.Members {
			m.Restart()
		}
		c.WaitLeader(waitTimeout)
		checkReplay(t, c.Members, c.Members[0].Client())
	})
	t.Run("MemberRestartedAfterMissingWrites", func(t *testing.T) {
		behind := c.Members[2]
		behind.Stop()
		c.WaitLeader(waitTimeout)
		writeMix(t, clients(c.Running()), "replay/", 150, 6)
		behind.Restart()
		// Watched at once: the member may still be catching up.
		checkReplay(t, []*testcluster.Member{behind}, c.Members[0].Client())
	})
}

// change is one event as a watcher of its key must see it. For a delete,
// only the key and revision count.
type change struct {
	rev                    int64
	typ                    mvccpb.Event_EventType
	key, value             string
	create, version, lease int64
}

func changeOf(ev *clientv3.Event) change {
	c := change{rev: ev.Kv.ModRevision, typ: ev.Type, key: string(ev.Kv.Key)}
	if ev.Type == mvccpb.PUT {
		c.value, c.create, c.version, c.lease = string(ev.Kv.Value), ev.Kv.CreateRevision, ev.Kv.Version, ev.Kv.Lease
	}
	return c
}

func (c change) String() string {
	if c.typ != mvccpb.PUT {
		return fmt.Sprintf("%s %s at %d", c.typ, c.key, c.rev)
	}
	v := c.value
	if len(v) > 16 {
		v = fmt.Sprintf("%s...(%d bytes)", v[:16], len(v))
	}
	return fmt.Sprintf("PUT %s=%q at %d (created %d, version %d, lease %d)", c.key, v, c.rev, c.create, c.version, c.lease)
}

func cmpChange(a, b change) int {
	return cmp.Or(cmp.Compare(a.rev, b.rev), strings.Compare(a.key, b.key))
}

// inRevOrder sorts the changes of each revision by key, the order
// storeHistory gives them in (a watcher gets them in the order the
// request made them).
func inRevOrder(cs []change) []change {
	out := slices.Clone(cs)
	slices.SortStableFunc(out, cmpChange)
	return out
}

// since is the changes at revision from and later.
func since(cs []change, from int64) []change {
	i, _ := slices.BinarySearchFunc(cs, from, func(c change, rev int64) int { return cmp.Compare(c.rev, rev) })
	return cs[i:]
}

// sameChanges says where got first differs from want.
func sameChanges(got, want []change, who string) error {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Errorf("%s: change %d is %v, want %v (%d changes, want %d)", who, i, got[i], want[i], len(got), len(want))
		}
	}
	switch n := min(len(got), len(want)); {
	case len(got) > n:
		return fmt.Errorf("%s: %d changes, want %d; the first extra one is %v", who, len(got), len(want), got[n])
	case len(want) > n:
		return fmt.Errorf("%s: %d changes, want %d; the first missing one is %v", who, len(got), len(want), want[n])
	}
	return nil
}

// storeHistory reads back from the store the changes of the keys under
// prefix ("" for every key) at revisions from..to, in revision then key
// order: the puts at revision r are the keys whose mod revision is r when
// read at r, the deletes the keys that exist at r-1 and not at r.
func storeHistory(t *testing.T, cli *clientv3.Client, prefix string, from, to int64) []change {
	t.Helper()
	state := func(rev int64) map[string]*mvccpb.KeyValue {
		kvs := map[string]*mvccpb.KeyValue{}
		if rev < 1 {
			return kvs
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
		if err != nil {
			t.Fatalf("read %q at revision %d: %v", prefix, rev, err)
		}
		for _, kv := range resp.Kvs {
			kvs[string(kv.Key)] = kv
		}
		return kvs
	}
	var out []change
	prev := state(from - 1)
	for rev := from; rev <= to; rev++ {
		cur := state(rev)
		n := len(out)
		for _, kv := range cur {
			if kv.ModRevision == rev {
				out = append(out, changeOf(&clientv3.Event{Type: mvccpb.PUT, Kv: kv}))
			}
		}
		for k := range prev {
			if cur[k] == nil {
				out = append(out, change{rev: rev, typ: mvccpb.DELETE, key: k})
			}
		}
		slices.SortFunc(out[n:], cmpChange)
		prev = cur
	}
	return out
}

// watchRun is one watcher read in the background until the event of a
// given key.
type watchRun struct {
	name  string
	from  int64 // start revision; 0 for "now"
	done  chan struct{}
	resps []clientv3.WatchResponse
	err   error
}

// readWatch reads wch, a watch from revision from, in the background until
// it delivers an event of key last (which must be written after the watch
// is created).
func readWatch(ctx context.Context, name string, from int64, wch clientv3.WatchChan, last string) *watchRun {
	r := &watchRun{name: name, from: from, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		events := 0
		for {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					r.err = fmt.Errorf("watch ended after %d events, before %s: %v", events, last, wr.Err())
					return
				}
				r.resps = append(r.resps, wr)
				for _, ev := range wr.Events {
					events++
					if string(ev.Kv.Key) == last {
						return
					}
				}
			case <-ctx.Done():
				r.err = fmt.Errorf("%d events and none of %s: %w", events, last, ctx.Err())
				return
			}
		}
	}()
	return r
}

// wait waits until the watcher saw the last key and returns its events.
func (r *watchRun) wait(t *testing.T) []change {
	t.Helper()
	<-r.done
	if r.err != nil {
		t.Fatalf("%s: %v", r.name, r.err)
	}
	var out []change
	for _, wr := range r.resps {
		for _, ev := range wr.Events {
			out = append(out, changeOf(ev))
		}
	}
	return out
}

// writeMix makes ops changes of every kind under prefix from workers
// goroutines spread over clis: puts of values of varied size, deletes,
// range deletes and txns of 2 to 6 puts and deletes of distinct keys in
// descending key order. It returns the keys of each txn in request order,
// by revision.
func writeMix(t *testing.T, clis []*clientv3.Client, prefix string, ops, workers int) map[int64][]string {
	t.Helper()
	var mu sync.Mutex
	txns := map[int64][]string{}
	key := func(i int) string { return fmt.Sprintf("%sk%02d", prefix, i) }
	var wg sync.WaitGroup
	for w := range workers {
		cli := clis[w%len(clis)]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(ops)))
			for i := w; i < ops && !t.Failed(); i += workers {
				value := fmt.Sprintf("w%d-%d-%s", w, i, strings.Repeat("x", rng.IntN(300)))
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				var err error
				switch r := rng.IntN(100); {
				case r < 55:
					_, err = cli.Put(ctx, key(rng.IntN(32)), value)
				case r < 65:
					_, err = cli.Delete(ctx, key(rng.IntN(32)))
				case r < 70:
					_, err = cli.Delete(ctx, prefix+"k1", clientv3.WithPrefix())
				default:
					keys := rng.Perm(32)[:2+rng.IntN(5)]
					slices.SortFunc(keys, func(a, b int) int { return b - a })
					var tops []clientv3.Op
					var names []string
					for j, k := range keys {
						// The first op is a put, so the txn always makes
						// a revision of its own.
						if j == 0 || rng.IntN(10) < 7 {
							tops = append(tops, clientv3.OpPut(key(k), value))
						} else {
							tops = append(tops, clientv3.OpDelete(key(k)))
						}
						names = append(names, key(k))
					}
					var resp *clientv3.TxnResponse
					if resp, err = cli.Txn(ctx).Then(tops...).Commit(); err == nil {
						mu.Lock()
						txns[resp.Header.Revision] = names
						mu.Unlock()
					}
				}
				cancel()
				if err != nil {
					t.Errorf("write %d under %s: %v", i, prefix, err)
				}
			}
		})
	}
	wg.Wait()
	return txns
}

// checkOrder checks that evs go by revision and, inside a revision, in the
// order of the request that made it: a txn's op order (txns), else key
// order (a range delete).
func checkOrder(evs []change, txns map[int64][]string) error {
	for i := 1; i < len(evs); i++ {
		a, b := evs[i-1], evs[i]
		switch {
		case b.rev < a.rev:
			return fmt.Errorf("event %d (%v) after event %d (%v): the revision goes backwards", i, b, i-1, a)
		case b.rev > a.rev:
		case txns[b.rev] != nil:
			ops := txns[b.rev]
			if slices.Index(ops, b.key) <= slices.Index(ops, a.key) {
				return fmt.Errorf("event %d (%v) after event %d (%v): not in the order of the txn's ops %v", i, b, i-1, a, ops)
			}
		case b.key <= a.key:
			return fmt.Errorf("event %d (%v) after event %d (%v): a range delete's events out of key order", i, b, i-1, a)
		}
	}
	return nil
}
