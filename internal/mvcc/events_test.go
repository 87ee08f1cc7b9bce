package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// wantEvents is what Events must return for [from, to] after the model's
// history: the model's changes in the window, without those a compaction
// at c removed (at revision c, all but the last put of each key), PrevKv
// being the version at rev-1 for non-creations when that is still readable.
func (m *model) wantEvents(from, to int64, match func([]byte) bool, prev bool) []*mvccpb.Event {
	c := m.compactRev
	var out []*mvccpb.Event
	for i, ev := range m.events {
		rev := ev.Kv.ModRevision
		if rev < from || rev > to || !match(ev.Kv.Key) {
			continue
		}
		if rev <= c {
			if ev.Type == mvccpb.Event_DELETE {
				continue
			}
			superseded := false
			for _, later := range m.events[i+1:] {
				if later.Kv.ModRevision == rev && bytes.Equal(later.Kv.Key, ev.Kv.Key) {
					superseded = true
				}
			}
			if superseded {
				continue
			}
		}
		e := &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		if prev && !isCreate(ev) && rev-1 >= c {
			if kvs := m.liveAt(rev-1, ev.Kv.Key, nil); len(kvs) == 1 {
				e.PrevKv = kvs[0]
			}
		}
		out = append(out, e)
	}
	return out
}

// TestEventsMatchModelOnRandomHistories replays random windows of random
// histories (with compactions) from the event log and compares them with
// the model: every change in order, nothing compacted served, PrevKv equal
// to a read at the previous revision, and Limit never splitting a revision.
func TestEventsMatchModelOnRandomHistories(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 5, 7, 42} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			db := openMemDB(t)
			s, err := Open(db)
			if err != nil {
				t.Fatal(err)
			}
			tuneCompaction(s, seed)
			h := &harness{t: t, db: db, s: s, m: newModel()}
			g := &gen{rnd: rand.New(rand.NewPCG(seed, seed+1)), m: h.m}
			for step := 0; step < 300; step++ {
				b := db.NewIndexedBatch()
				w := s.NewWriter(b)
				h.applyRandom(g, w)
				if err := s.Commit(w, pebble.NoSync); err != nil {
					t.Fatal(err)
				}
				// The event log is the same whatever compaction steps
				// are still due.
				if g.rnd.IntN(2) == 0 {
					if _, err := s.CompactStep(1 + g.rnd.IntN(3)); err != nil {
						t.Fatal(err)
					}
				}
				if step%10 == 0 {
					checkRandomWindow(t, s, h.m, g.rnd)
				}
			}
		})
	}
}

func checkRandomWindow(t *testing.T, s *Store, m *model, rnd *rand.Rand) {
	t.Helper()
	lo := max(m.compactRev, 1)
	from := lo + rnd.Int64N(m.rev-lo+1)
	to := from + rnd.Int64N(m.rev-from+1)
	k := []byte(genKeys[rnd.IntN(len(genKeys))])
	match := func(key []byte) bool { return bytes.Compare(key, k) >= 0 }
	prev := rnd.IntN(2) == 0
	req := EventsRequest{From: from, To: to, Match: match}
	if prev {
		req.PrevKV = func([]byte) bool { return true }
	}
	got, err := s.Events(req)
	if err != nil {
		t.Fatalf("Events(%d, %d): %v", from, to, err)
	}
	want := m.wantEvents(from, to, match, prev)
	if got.Through != to || !eventsEqual(got.Events, want) {
		t.Fatalf("Events(%d, %d, from key %q, prev %v), compacted at %d:\n got   %v (through %d)\n model %v",
			from, to, k, prev, m.compactRev, got.Events, got.Through, want)
	}

	// Read the same window in small pieces: same events, whole revisions.
	limit := 1 + rnd.IntN(3)
	var pieces []*mvccpb.Event
	for next := from; next <= to; {
		req.From, req.Limit, req.LimitBytes = next, limit, 0
		if limit == 3 {
			req.Limit, req.LimitBytes = 0, 20
		}
		r, err := s.Events(req)
		if err != nil {
			t.Fatal(err)
		}
		if r.Through < next {
			t.Fatalf("Events(%d, %d, limit %d) made no progress", next, to, limit)
		}
		if n := len(r.Events); n > 0 && r.Events[n-1].Kv.ModRevision != r.Through && r.Through != to {
			// The last revision read must be complete; the next piece
			// starts after Through.
			for _, ev := range want {
				if ev.Kv.ModRevision == r.Events[n-1].Kv.ModRevision && !containsEvent(r.Events, ev) {
					t.Fatalf("limit split revision %d", ev.Kv.ModRevision)
				}
			}
		}
		pieces = append(pieces, r.Events...)
		next = r.Through + 1
	}
	if !eventsEqual(pieces, want) {
		t.Fatalf("Events in pieces of %d:\n got   %v\n model %v", limit, pieces, want)
	}
}

func containsEvent(evs []*mvccpb.Event, ev *mvccpb.Event) bool {
	for _, e := range evs {
		if proto.Equal(e, ev) {
			return true
		}
	}
	return false
}

func TestEventsBelowCompactionAndAboveCurrentRevisionFail(t *testing.T) {
	db, s := newTestStore(t)
	for i := range 5 {
		apply(t, db, s, func(w *Writer) { mustPut(t, w, put("k", fmt.Sprint(i))) })
	}
	apply(t, db, s, func(w *Writer) {
		if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: 4}); err != nil {
			t.Fatal(err)
		}
	})
	r, err := s.Events(EventsRequest{From: 3, To: 6})
	if !errors.Is(err, ErrCompacted) || r.CompactRev != 4 {
		t.Errorf("Events from 3 after compaction at 4 = %v, compact rev %d; want ErrCompacted, 4", err, r.CompactRev)
	}
	if _, err := s.Events(EventsRequest{From: 4, To: 7}); !errors.Is(err, ErrFutureRev) {
		t.Errorf("Events up to 7 at revision 6 = %v, want ErrFutureRev", err)
	}
	r, err = s.Events(EventsRequest{From: 4, To: 6})
	if err != nil || len(r.Events) != 3 || r.Events[0].Kv.ModRevision != 4 {
		t.Errorf("Events(4, 6) = %v, %v; want the puts at 4, 5 and 6", r.Events, err)
	}
}
