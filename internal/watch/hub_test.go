package watch

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/kvorum/kvorum/internal/mvcc"
)

// env is a real mvcc store on an in-memory engine with a hub fed the way
// the apply loop feeds it: Notify after each commit.
type env struct {
	t   *testing.T
	db  *pebble.DB
	s   *mvcc.Store
	h   *Hub
	mu  sync.Mutex // serializes writers, as the apply loop is one goroutine
	all []*mvccpb.Event
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := mvcc.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Source = s
	cfg.Rev = s.Rev()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &env{t: t, db: db, s: s, h: New(cfg)}
}

// batch applies the requests in one commit and notifies the hub, as one
// Ready of the apply loop does.
func (e *env) batch(reqs ...func(w *mvcc.Writer) error) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.db.NewIndexedBatch()
	defer b.Close()
	w := e.s.NewWriter(b)
	for _, r := range reqs {
		if err := r(w); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.s.Commit(w, pebble.NoSync); err != nil {
		e.t.Fatal(err)
	}
	e.all = append(e.all, w.Events()...)
	e.h.Notify(w.Rev(), w.Events())
}

func put(k, v string) func(*mvcc.Writer) error {
	return func(w *mvcc.Writer) error {
		_, err := w.Put(&pb.PutRequest{Key: []byte(k), Value: []byte(v)})
		return err
	}
}

func del(k, end string) func(*mvcc.Writer) error {
	return func(w *mvcc.Writer) error {
		_, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)})
		return err
	}
}

func txnPuts(kvs ...string) func(*mvcc.Writer) error {
	return func(w *mvcc.Writer) error {
		var ops []*pb.RequestOp
		for i := 0; i < len(kvs); i += 2 {
			ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{
				RequestPut: &pb.PutRequest{Key: []byte(kvs[i]), Value: []byte(kvs[i+1])}}})
		}
		_, err := w.Txn(&pb.TxnRequest{Success: ops})
		return err
	}
}

func compact(rev int64) func(*mvcc.Writer) error {
	return func(w *mvcc.Writer) error {
		_, err := w.Compact(&pb.CompactionRequest{Revision: rev})
		return err
	}
}

// client collects what a stream sends, per watch ID, checking the order of
// every response against the previous ones.
type client struct {
	t    *testing.T
	st   *Stream
	resp []*pb.WatchResponse
	evs  map[int64][]*mvccpb.Event
}

func newClient(t *testing.T, h *Hub) *client {
	return &client{t: t, st: h.NewStream(), evs: map[int64][]*mvccpb.Event{}}
}

func (c *client) drain() []*pb.WatchResponse {
	c.t.Helper()
	rs, err := c.st.TryNext()
	if err != nil {
		c.t.Fatal(err)
	}
	var out []*pb.WatchResponse
	for _, r := range rs {
		m := r.Message()
		out = append(out, m)
		c.resp = append(c.resp, m)
		if len(m.Events) > 0 {
			// A response's header never claims more than it delivers.
			if last := m.Events[len(m.Events)-1].Kv.ModRevision; m.Header.Revision < last {
				c.t.Fatalf("watch %d: header revision %d below its last event %d", m.WatchId, m.Header.Revision, last)
			}
		}
		c.evs[m.WatchId] = append(c.evs[m.WatchId], m.Events...)
	}
	return out
}

func (c *client) create(req *pb.WatchCreateRequest) *pb.WatchResponse {
	c.t.Helper()
	c.st.Watch(req)
	for _, r := range c.drain() {
		if r.Created {
			return r
		}
	}
	c.t.Fatalf("no created response to %v", req)
	return nil
}

// syncAll reads and catches up until no watcher is unsynced.
func (c *client) syncAll(h *Hub) {
	c.t.Helper()
	for i := 0; ; i++ {
		c.drain()
		if !h.SyncOnce() && h.Unsynced() == 0 {
			c.drain()
			return
		}
		if i > 100000 {
			c.t.Fatal("catch-up makes no progress")
		}
	}
}

// want lists the changes of the env's history a watcher of [key, end)
// from rev on must see, in order.
func (e *env) want(key, end string, from int64) []string {
	var out []string
	for _, ev := range e.all {
		k := string(ev.Kv.Key)
		in := k == key
		if end == "\x00" {
			in = k >= key
		} else if end != "" {
			in = k >= key && k < end
		}
		if in && ev.Kv.ModRevision >= from {
			out = append(out, evString(ev))
		}
	}
	return out
}

func evString(ev *mvccpb.Event) string {
	return fmt.Sprintf("%s %s@%d=%s", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, ev.Kv.Value)
}

func evStrings(evs []*mvccpb.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, evString(ev))
	}
	return out
}

func sameList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got  %d events %q\n want %d events %q", what, len(got), got, len(want), want)
	}
}

func TestWatchersFromPastRevisionsSeeEveryChangeOnceInOrderWhileWritesContinue(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 7))
			// Tiny bounds force every path: queue overflow, storage
			// replay in small rounds, recent-buffer hand-over and its
			// exhaustion.
			e := newEnv(t, Config{MaxQueuedEvents: 3, CatchUpEvents: 2, RecentBytes: 400})
			keys := []string{"a", "b", "b1", "c"}
			c := newClient(t, e.h)
			type watch struct {
				id       int64
				key, end string
				from     int64
			}
			var watches []watch
			for step := 0; step < 400; step++ {
				switch x := rnd.IntN(10); {
				case x < 6:
					var reqs []func(*mvcc.Writer) error
					for n := 1 + rnd.IntN(3); n > 0; n-- {
						k := keys[rnd.IntN(len(keys))]
						if rnd.IntN(5) == 0 {
							reqs = append(reqs, del(k, ""))
						} else if rnd.IntN(4) == 0 {
							reqs = append(reqs, txnPuts("b", fmt.Sprint(step), "b1", fmt.Sprint(step)))
						} else {
							reqs = append(reqs, put(k, fmt.Sprint(step)))
						}
					}
					e.batch(reqs...)
				case x < 7 && len(watches) < 12:
					w := watch{key: keys[rnd.IntN(len(keys))], from: 1 + rnd.Int64N(e.s.Rev()+2)}
					switch rnd.IntN(3) {
					case 0:
						w.end = "\x00"
					case 1:
						w.end = "c"
					}
					r := c.create(&pb.WatchCreateRequest{Key: []byte(w.key), RangeEnd: []byte(w.end), StartRevision: w.from})
					if w.from > e.s.Rev() {
						w.from = max(w.from, e.s.Rev()+1)
					}
					w.id = r.WatchId
					watches = append(watches, w)
				case x < 9:
					e.h.SyncOnce()
				default:
					c.drain()
				}
			}
			c.syncAll(e.h)
			for _, w := range watches {
				sameList(t, fmt.Sprintf("watch %d of [%q, %q) from %d", w.id, w.key, w.end, w.from),
					evStrings(c.evs[w.id]), e.want(w.key, w.end, w.from))
			}
		})
	}
}

// The same, with the apply loop, the catch-up worker and the client each in
// a goroutine of their own (run with -race).
func TestConcurrentWritesCatchUpAndReadsLoseNothing(t *testing.T) {
	e := newEnv(t, Config{MaxQueuedEvents: 8, CatchUpEvents: 16, RecentBytes: 2000})
	ctx := t.Context()
	go e.h.Run(ctx)
	for i := 0; i < 50; i++ {
		e.batch(put(fmt.Sprintf("k%d", i%5), fmt.Sprint(i)))
	}
	st := e.h.NewStream()
	st.Watch(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 2})
	const writes = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 50; i < writes; i++ {
			e.batch(put(fmt.Sprintf("k%d", i%5), fmt.Sprint(i)))
		}
	}()
	var got []*mvccpb.Event
	deadline := time.After(20 * time.Second)
	for len(got) < writes {
		rs, err := st.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			got = append(got, r.Message().Events...)
		}
		if rs == nil {
			select {
			case <-st.ready:
			case <-time.After(time.Millisecond):
			case <-deadline:
				t.Fatalf("got %d of %d events", len(got), writes)
			}
		}
	}
	<-done
	sameList(t, "events", evStrings(got), e.want("k", "l", 2))
}

func TestAllEventsOfARevisionArriveInOneResponse(t *testing.T) {
	e := newEnv(t, Config{CatchUpEvents: 1})
	c := newClient(t, e.h)
	live := c.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}}).WatchId
	e.batch(txnPuts("a", "1", "b", "1", "c", "1"), put("x", "2"), del("a", "\x00"))
	replay := c.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, StartRevision: 1}).WatchId
	// Force the storage path for the replaying watcher.
	e.h.mu.Lock()
	e.h.recent.reset(e.h.rev)
	e.h.mu.Unlock()
	c.syncAll(e.h)
	for _, id := range []int64{live, replay} {
		byRev := map[int64]int{} // revision -> response index
		for i, r := range c.resp {
			if r.WatchId != id {
				continue
			}
			for _, ev := range r.Events {
				if j, ok := byRev[ev.Kv.ModRevision]; ok && j != i {
					t.Errorf("watch %d: revision %d split over responses %d and %d", id, ev.Kv.ModRevision, j, i)
				}
				byRev[ev.Kv.ModRevision] = i
			}
		}
		if len(c.evs[id]) != 8 {
			t.Errorf("watch %d got %d events, want 8: %v", id, len(c.evs[id]), c.evs[id])
		}
	}
}

func TestStreamThatStopsReadingNeitherBlocksNotifyNorGrowsAndThenCatchesUp(t *testing.T) {
	e := newEnv(t, Config{MaxQueuedEvents: 10, RecentBytes: 1000})
	slow := newClient(t, e.h)
	fast := newClient(t, e.h)
	slowID := slow.create(&pb.WatchCreateRequest{Key: []byte("k")}).WatchId
	fastID := fast.create(&pb.WatchCreateRequest{Key: []byte("k")}).WatchId
	for i := range 1000 {
		e.batch(put("k", fmt.Sprint(i))) // returns although nobody reads slow
		fast.drain()
		slow.st.qmu.Lock()
		queued := slow.st.events
		slow.st.qmu.Unlock()
		if queued > 10 {
			t.Fatalf("after %d writes the stream that does not read holds %d events, bound is 10", i+1, queued)
		}
	}
	if e.h.Unsynced() != 1 {
		t.Errorf("unsynced watchers = %d, want the slow one", e.h.Unsynced())
	}
	sameList(t, "fast watcher", evStrings(fast.evs[fastID]), e.want("k", "", 2))
	slow.syncAll(e.h)
	sameList(t, "slow watcher after catching up", evStrings(slow.evs[slowID]), e.want("k", "", 2))
}

func TestCanceledWatcherGetsCancelResponseAndNoMoreEvents(t *testing.T) {
	e := newEnv(t, Config{})
	c := newClient(t, e.h)
	id := c.create(&pb.WatchCreateRequest{Key: []byte("k")}).WatchId
	e.batch(put("k", "1"))
	c.st.Cancel(id)
	c.st.Cancel(99) // unknown: no response, as in etcd
	e.batch(put("k", "2"))
	rs := c.drain()
	if len(rs) != 2 || len(rs[0].Events) != 1 || !rs[1].Canceled || rs[1].WatchId != id || rs[1].Header.Revision != 2 {
		t.Fatalf("responses = %v, want the event at 2 then the cancellation at revision 2", rs)
	}
}

func TestFiltersAndPrevKVOnLiveAndReplayedEvents(t *testing.T) {
	e := newEnv(t, Config{})
	e.batch(put("k", "1"))
	c := newClient(t, e.h)
	noPut := c.create(&pb.WatchCreateRequest{Key: []byte("k"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}, PrevKv: true}).WatchId
	noDel := c.create(&pb.WatchCreateRequest{Key: []byte("k"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}}).WatchId
	e.batch(put("k", "2"))
	e.batch(del("k", ""))
	e.batch(put("k", "3"))
	e.h.mu.Lock()
	e.h.recent.reset(e.h.rev) // replay from storage
	e.h.mu.Unlock()
	replay := c.create(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 2, PrevKv: true}).WatchId
	c.syncAll(e.h)
	check := func(id int64, want string) {
		t.Helper()
		var got []string
		for _, ev := range c.evs[id] {
			s := evString(ev)
			if ev.PrevKv != nil {
				s += fmt.Sprintf(" (prev %s@%d)", ev.PrevKv.Value, ev.PrevKv.ModRevision)
			}
			got = append(got, s)
		}
		if g := strings.Join(got, "; "); g != want {
			t.Errorf("watch %d:\n got  %s\n want %s", id, g, want)
		}
	}
	check(noPut, "DELETE k@4= (prev 2@3)")
	check(noDel, "PUT k@3=2; PUT k@5=3")
	check(replay, "PUT k@2=1; PUT k@3=2 (prev 1@2); DELETE k@4= (prev 2@3); PUT k@5=3")
}

func TestCompactedStartRevisionCancelsWithCompactRevision(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 5 {
		e.batch(put("k", fmt.Sprint(i)))
	}
	e.batch(compact(4))
	c := newClient(t, e.h)
	c.st.Watch(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 3})
	rs := c.drain()
	if len(rs) != 2 || !rs[0].Created || rs[1].CompactRevision != 4 || !rs[1].Canceled || rs[1].WatchId != rs[0].WatchId {
		t.Fatalf("responses = %v, want created then canceled with compact revision 4", rs)
	}
	id := c.create(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 4}).WatchId
	c.syncAll(e.h)
	sameList(t, "watch from the compact revision", evStrings(c.evs[id]), e.want("k", "", 4))
}

func TestWatcherThatFallsBehindCompactionIsCanceledWithCompactRevision(t *testing.T) {
	e := newEnv(t, Config{MaxQueuedEvents: 1, RecentBytes: 1})
	c := newClient(t, e.h)
	id := c.create(&pb.WatchCreateRequest{Key: []byte("k")}).WatchId
	for i := range 5 {
		e.batch(put("k", fmt.Sprint(i)))
	}
	e.batch(compact(5))
	c.syncAll(e.h)
	last := c.resp[len(c.resp)-1]
	if last.WatchId != id || !last.Canceled || last.CompactRevision != 5 {
		t.Fatalf("last response %v, want watch %d canceled with compact revision 5", last, id)
	}
	if got := evStrings(c.evs[id]); len(got) != 1 || got[0] != "PUT k@2=0" {
		t.Fatalf("events before the cancellation = %q, want only the first one it had room for", got)
	}
}

func TestCreateRefusalsMatchEtcd(t *testing.T) {
	e := newEnv(t, Config{})
	e.batch(put("a", "1"))
	c := newClient(t, e.h)
	for _, tc := range []struct {
		req    *pb.WatchCreateRequest
		reason string
	}{
		{&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1}, "etcdserver: mvcc: required revision has been compacted"},
		{&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}, "mvcc: watcher range is empty"},
		{&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7}, ""},
		{&pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7}, "mvcc: duplicate watch ID provided on the WatchStream"},
	} {
		r := c.create(tc.req)
		if tc.reason == "" {
			if r.Canceled || r.WatchId != tc.req.WatchId || r.Header.Revision != 2 {
				t.Errorf("%v: %v, want created at revision 2", tc.req, r)
			}
			continue
		}
		if !r.Canceled || r.WatchId != -1 || r.CancelReason != tc.reason {
			t.Errorf("%v: %v, want created+canceled, watch -1, reason %q", tc.req, r, tc.reason)
		}
	}
	// Automatic IDs skip the ones clients chose.
	ids := []int64{}
	for range 3 {
		ids = append(ids, c.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 0}).WatchId)
	}
	c.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 3})
	ids = append(ids, c.create(&pb.WatchCreateRequest{Key: []byte("a")}).WatchId)
	if fmt.Sprint(ids) != "[0 1 2 4]" {
		t.Errorf("automatic IDs = %v, want [0 1 2 4]", ids)
	}
}

func TestProgressRequestAnsweredOnlyWhenEveryWatcherIsSynced(t *testing.T) {
	e := newEnv(t, Config{RecentBytes: 1})
	c := newClient(t, e.h)
	c.st.RequestProgress()
	if rs := c.drain(); len(rs) != 0 {
		t.Fatalf("progress on a stream without watchers: %v, want nothing (etcd)", rs)
	}
	c.create(&pb.WatchCreateRequest{Key: []byte("k")})
	e.batch(put("k", "1"), put("x", "1"))
	c.st.RequestProgress()
	rs := c.drain()
	if len(rs) != 2 || len(rs[0].Events) != 1 || rs[1].WatchId != -1 || rs[1].Header.Revision != 3 || len(rs[1].Events) != 0 {
		t.Fatalf("responses = %v, want the event, then progress -1 at revision 3", rs)
	}
	c.create(&pb.WatchCreateRequest{Key: []byte("x"), StartRevision: 2}) // replays: unsynced
	c.st.RequestProgress()
	if rs := c.drain(); len(rs) != 0 {
		t.Fatalf("progress while a watcher is unsynced: %v, want nothing (etcd)", rs)
	}
	c.syncAll(e.h)
	c.create(&pb.WatchCreateRequest{Key: []byte("y"), StartRevision: 10}) // future
	c.st.RequestProgress()
	if rs := c.drain(); len(rs) != 0 {
		t.Fatalf("progress while a watcher waits for a future revision: %v, want nothing (etcd)", rs)
	}
}

func TestProgressTickNotifiesOnlyIdleProgressWatchers(t *testing.T) {
	e := newEnv(t, Config{})
	c := newClient(t, e.h)
	busy := c.create(&pb.WatchCreateRequest{Key: []byte("k"), ProgressNotify: true}).WatchId
	idle := c.create(&pb.WatchCreateRequest{Key: []byte("j"), ProgressNotify: true}).WatchId
	c.create(&pb.WatchCreateRequest{Key: []byte("i")}) // no progress_notify
	e.batch(put("k", "1"))
	c.drain()
	c.st.ProgressTick()
	rs := c.drain()
	if len(rs) != 1 || rs[0].WatchId != idle || rs[0].Header.Revision != 2 || len(rs[0].Events) != 0 {
		t.Fatalf("first tick: %v, want one progress for the idle watcher %d at revision 2", rs, idle)
	}
	c.st.ProgressTick()
	rs = c.drain()
	if len(rs) != 2 {
		t.Fatalf("second tick: %v, want progress for both (%d had no events since)", rs, busy)
	}
}

type manualClock struct{ c chan time.Time }

func (m manualClock) After(time.Duration) <-chan time.Time { return m.c }

func TestRunProgressTicksOnTheInjectedClock(t *testing.T) {
	clock := manualClock{make(chan time.Time)}
	e := newEnv(t, Config{Clock: clock})
	c := newClient(t, e.h)
	id := c.create(&pb.WatchCreateRequest{Key: []byte("k"), ProgressNotify: true}).WatchId
	go c.st.RunProgress(t.Context())
	if rs, _ := c.st.TryNext(); rs != nil {
		t.Fatalf("progress before the clock ticked: %v", rs)
	}
	clock.c <- time.Time{}
	rs, err := c.st.Next(t.Context())
	if err != nil || len(rs) != 1 || rs[0].WatchID() != id {
		t.Fatalf("after a tick: %v, %v; want one progress notification", rs, err)
	}
}

func TestFutureStartRevisionWaitsForIt(t *testing.T) {
	e := newEnv(t, Config{})
	c := newClient(t, e.h)
	id := c.create(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 4}).WatchId
	for i := range 4 {
		e.batch(put("k", fmt.Sprint(i)))
	}
	c.drain()
	sameList(t, "events", evStrings(c.evs[id]), e.want("k", "", 4))
}

func TestRestoredSnapshotMakesSyncedWatchersReplay(t *testing.T) {
	e := newEnv(t, Config{})
	c := newClient(t, e.h)
	id := c.create(&pb.WatchCreateRequest{Key: []byte("k")}).WatchId
	e.batch(put("k", "1"))
	// Changes the hub never hears of, as when a snapshot is installed.
	b := e.db.NewIndexedBatch()
	w := e.s.NewWriter(b)
	for i := range 3 {
		if err := put("k", fmt.Sprint(10+i))(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.Commit(w, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	e.all = append(e.all, w.Events()...)
	e.h.Restored(e.s.Rev())
	e.batch(put("k", "2"))
	c.syncAll(e.h)
	sameList(t, "events across the restore", evStrings(c.evs[id]), e.want("k", "", 2))
}

func TestClosedStreamDropsItsWatchers(t *testing.T) {
	e := newEnv(t, Config{})
	c := newClient(t, e.h)
	c.create(&pb.WatchCreateRequest{Key: []byte("k")})
	c.create(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	c.st.Close()
	if e.h.synced.size() != 0 || e.h.Unsynced() != 0 {
		t.Fatalf("after close: %d synced, %d unsynced watchers", e.h.synced.size(), e.h.Unsynced())
	}
	if _, err := c.st.Next(t.Context()); err != ErrClosed {
		t.Fatalf("Next after close = %v, want ErrClosed", err)
	}
}

func TestClosedHubEndsItsStreams(t *testing.T) {
	e := newEnv(t, Config{})
	c := newClient(t, e.h)
	c.create(&pb.WatchCreateRequest{Key: []byte("k")})
	e.h.Close()
	if _, err := c.st.Next(t.Context()); err != ErrClosed {
		t.Fatalf("Next on a stream of a closed hub = %v, want ErrClosed", err)
	}
	if _, err := e.h.NewStream().TryNext(); err != ErrClosed {
		t.Fatalf("new stream of a closed hub: %v, want ErrClosed", err)
	}
}
