package mvcc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// TestStoreMatchesModelOnRandomHistories runs random request sequences
// against the Pebble store and the in-memory model and demands identical
// responses, errors, events and revisions, including ranges at random past
// revisions around random compactions.
func TestStoreMatchesModelOnRandomHistories(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 42, 1234, 99991}
	seeds = append(seeds, uint64(time.Now().UnixNano()))
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (rerun with this seed in the list to reproduce)", seed)
			runRandomHistory(t, seed, 400)
		})
	}
}

var (
	genKeys = []string{"a", "a\x00", "aa", "ab", "b", "ba", "c", "d", "\x00x", "\xff"}
	// The two large values are kept out of the latest records
	// (latestByRevisionFrom), which then refer to their events.
	genValues = []string{"", "v1", "v2", "v3", strings.Repeat("L", latestByRevisionFrom), strings.Repeat("M", latestByRevisionFrom+1000)}
)

type gen struct {
	rnd *rand.Rand
	m   *model
}

func (g *gen) key() []byte { return []byte(genKeys[g.rnd.IntN(len(genKeys))]) }

func (g *gen) rangeEnd(key []byte) []byte {
	switch g.rnd.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{0}
	case 2:
		return append(append([]byte(nil), key...), 0xff)
	default:
		return g.key()
	}
}

// rev picks a revision around the interesting ones: compacted, current,
// future, zero and negative.
func (g *gen) rev() int64 {
	switch g.rnd.IntN(6) {
	case 0:
		return 0
	case 1:
		return -int64(g.rnd.IntN(3)) - 1
	default:
		lo := max(g.m.compactRev-2, 0)
		return lo + g.rnd.Int64N(g.m.rev+3-lo)
	}
}

func (g *gen) smallRev() int64 {
	if g.rnd.IntN(3) == 0 {
		return 0
	}
	return g.rnd.Int64N(g.m.rev + 2)
}

func (g *gen) rangeReq() *etcdserverpb.RangeRequest {
	k := g.key()
	r := &etcdserverpb.RangeRequest{Key: k, RangeEnd: g.rangeEnd(k)}
	if g.rnd.IntN(2) == 0 {
		r.Revision = g.rev()
	}
	if g.rnd.IntN(2) == 0 {
		r.Limit = g.rnd.Int64N(4) - 1
	}
	if g.rnd.IntN(2) == 0 {
		r.SortOrder = etcdserverpb.RangeRequest_SortOrder(g.rnd.IntN(3))
		r.SortTarget = etcdserverpb.RangeRequest_SortTarget(g.rnd.IntN(5))
		if g.rnd.IntN(40) == 0 {
			r.SortTarget = 9
		}
	}
	r.KeysOnly = g.rnd.IntN(4) == 0
	r.CountOnly = g.rnd.IntN(6) == 0
	r.Serializable = g.rnd.IntN(2) == 0
	if g.rnd.IntN(3) == 0 {
		r.MinModRevision = g.smallRev()
		r.MaxModRevision = g.smallRev()
		r.MinCreateRevision = g.smallRev()
		r.MaxCreateRevision = g.smallRev()
	}
	return r
}

func (g *gen) putReq() *etcdserverpb.PutRequest {
	r := &etcdserverpb.PutRequest{
		Key:    g.key(),
		Value:  []byte(genValues[g.rnd.IntN(len(genValues))]),
		Lease:  int64(g.rnd.IntN(3)),
		PrevKv: g.rnd.IntN(2) == 0,
	}
	if g.rnd.IntN(6) == 0 {
		r.IgnoreValue, r.Value = true, nil
	}
	if g.rnd.IntN(6) == 0 {
		r.IgnoreLease, r.Lease = true, 0
	}
	return r
}

func (g *gen) deleteReq() *etcdserverpb.DeleteRangeRequest {
	k := g.key()
	return &etcdserverpb.DeleteRangeRequest{Key: k, RangeEnd: g.rangeEnd(k), PrevKv: g.rnd.IntN(2) == 0}
}

func (g *gen) compare() *etcdserverpb.Compare {
	k := g.key()
	c := &etcdserverpb.Compare{Key: k, Result: etcdserverpb.Compare_CompareResult(g.rnd.IntN(4))}
	if g.rnd.IntN(4) == 0 {
		c.RangeEnd = g.rangeEnd(k)
	}
	switch g.rnd.IntN(5) {
	case 0:
		c.Target = etcdserverpb.Compare_VERSION
		c.TargetUnion = &etcdserverpb.Compare_Version{Version: g.rnd.Int64N(3)}
	case 1:
		c.Target = etcdserverpb.Compare_CREATE
		c.TargetUnion = &etcdserverpb.Compare_CreateRevision{CreateRevision: g.smallRev()}
	case 2:
		c.Target = etcdserverpb.Compare_MOD
		c.TargetUnion = &etcdserverpb.Compare_ModRevision{ModRevision: g.smallRev()}
	case 3:
		c.Target = etcdserverpb.Compare_VALUE
		c.TargetUnion = &etcdserverpb.Compare_Value{Value: []byte(genValues[g.rnd.IntN(len(genValues))])}
	default:
		c.Target = etcdserverpb.Compare_LEASE
		c.TargetUnion = &etcdserverpb.Compare_Lease{Lease: int64(g.rnd.IntN(3))}
	}
	return c
}

func (g *gen) ops(depth int) []*etcdserverpb.RequestOp {
	ops := make([]*etcdserverpb.RequestOp, g.rnd.IntN(4))
	for i := range ops {
		n := 3
		if depth < 2 {
			n = 4
		}
		switch g.rnd.IntN(n) {
		case 0:
			ops[i] = &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: g.rangeReq()}}
		case 1:
			ops[i] = &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: g.putReq()}}
		case 2:
			ops[i] = &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.deleteReq()}}
		default:
			ops[i] = &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestTxn{RequestTxn: g.txnReq(depth + 1)}}
		}
	}
	return ops
}

func (g *gen) txnReq(depth int) *etcdserverpb.TxnRequest {
	t := &etcdserverpb.TxnRequest{}
	for range g.rnd.IntN(3) {
		t.Compare = append(t.Compare, g.compare())
	}
	t.Success = g.ops(depth)
	t.Failure = g.ops(depth)
	return t
}

// readOnlyTxn is a txn whose branches only range, at any depth.
func (g *gen) readOnlyTxn(depth int) *etcdserverpb.TxnRequest {
	t := &etcdserverpb.TxnRequest{}
	for range g.rnd.IntN(3) {
		t.Compare = append(t.Compare, g.compare())
	}
	branch := func() []*etcdserverpb.RequestOp {
		ops := make([]*etcdserverpb.RequestOp, g.rnd.IntN(3))
		for i := range ops {
			if depth < 2 && g.rnd.IntN(4) == 0 {
				ops[i] = &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestTxn{RequestTxn: g.readOnlyTxn(depth + 1)}}
				continue
			}
			ops[i] = &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: g.rangeReq()}}
		}
		return ops
	}
	t.Success, t.Failure = branch(), branch()
	return t
}

// errClass reduces an error to the sentinel it wraps, so the store's
// detailed errors compare equal to the model's bare ones.
func errClass(err error) error {
	for _, s := range []error{ErrCompacted, ErrFutureRev, ErrKeyNotFound, ErrInvalidSortOption} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

type harness struct {
	t     *testing.T
	db    *pebble.DB
	s     *Store
	m     *model
	trace []string
}

func (h *harness) fatalf(format string, args ...any) {
	h.t.Helper()
	tail := h.trace
	if len(tail) > 15 {
		tail = tail[len(tail)-15:]
	}
	h.t.Fatalf("%s\nlast requests:\n  %s", fmt.Sprintf(format, args...), strings.Join(tail, "\n  "))
}

func (h *harness) same(what string, req, got, want proto.Message, gotErr, wantErr error) {
	h.t.Helper()
	h.trace = append(h.trace, fmt.Sprintf("%s %v", what, req))
	if errClass(gotErr) != errClass(wantErr) {
		h.fatalf("%s %v: error %v, model says %v", what, req, gotErr, wantErr)
	}
	if gotErr == nil && !proto.Equal(got, want) {
		h.fatalf("%s %v:\n got   %v\n model %v", what, req, got, want)
	}
}

func runRandomHistory(t *testing.T, seed uint64, steps int) {
	db := openMemDB(t)
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: db, s: s, m: newModel()}
	g := &gen{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), m: h.m}
	// Odd seeds run with a latest-version cache that holds only a few keys,
	// so eviction and refilling are exercised too.
	// Seeds divisible by 3 build the key filter 3 keys a commit, sized
	// for at least 4 keys, so writes go on during builds, the filter goes
	// stale and is rebuilt.
	smallCache := func(s *Store) {
		if seed%2 == 1 {
			s.cache = newLatestCache(600)
		}
		if seed%3 == 0 {
			s.keys = nil
			s.filterMinKeys, s.filterChunk = 4, 3
			s.build = s.newFilterBuild(0)
		}
		tuneCompaction(s, seed)
	}
	smallCache(s)

	for step := 0; step < steps; {
		b := db.NewIndexedBatch()
		w := s.NewWriter(b)
		var wantEvents []*mvccpb.Event
		for n := 1 + g.rnd.IntN(4); n > 0; n-- {
			step++
			before := len(h.m.events)
			h.applyRandom(g, w)
			wantEvents = append(wantEvents, h.m.events[before:]...)
		}
		if got := w.Events(); !eventsEqual(got, wantEvents) {
			h.fatalf("writer events\n got   %v\n model %v", got, wantEvents)
		}
		if err := s.Commit(w, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if s.Rev() != h.m.rev || s.CompactRev() != h.m.compactRev {
			h.fatalf("published revisions %d/%d, model %d/%d", s.Rev(), s.CompactRev(), h.m.rev, h.m.compactRev)
		}
		// Compaction steps run behind the writer: some, of a few
		// changes each, or none; reads must not tell.
		for n := g.rnd.IntN(3); n > 0; n-- {
			if _, err := s.CompactStep(1 + g.rnd.IntN(3)); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			req := g.rangeReq()
			got, gotErr := s.Range(req)
			want, wantErr := h.m.Range(req)
			h.same("store range", req, got, want, gotErr, wantErr)
		}
		for range 2 {
			req := g.readOnlyTxn(0)
			if !IsReadOnlyTxn(req) {
				h.fatalf("generated read-only txn judged writing: %v", req)
			}
			got, gotErr := s.ReadTxn(req)
			want, wantErr := h.m.clone().Txn(req)
			h.same("read-only txn", req, got, want, gotErr, wantErr)
		}
		if g.rnd.IntN(20) == 0 {
			if s, err = Open(db); err != nil {
				t.Fatal(err)
			}
			h.s = s
			smallCache(s)
		}
		if g.rnd.IntN(3) == 0 {
			h.checkEveryRevision()
			if err := s.FinishCompaction(); err != nil {
				t.Fatal(err)
			}
			checkLayout(t, db, h.m)
		}
	}
	h.checkEveryRevision()
	if err := s.FinishCompaction(); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, db, h.m)
	h.checkEveryRevision()
}

// tuneCompaction varies, by seed, how the compaction steps delete: range
// deletions from 1, 2 or the default number of records on, and a list of
// kept versions that always, sometimes or (mostly) never overflows, so
// the events pass runs both ways (see compactScan).
func tuneCompaction(s *Store, seed uint64) {
	s.rangeMin = []int{1, 2, compactRangeMin}[(seed/2)%3]
	switch seed % 5 {
	case 0:
		s.keptMax = 0
	case 1:
		s.keptMax = 3
	}
}

func (h *harness) applyRandom(g *gen, w *Writer) {
	switch x := g.rnd.IntN(20); {
	case x < 6:
		req := g.putReq()
		got, gotErr := w.Put(req)
		want, wantErr := h.m.Put(req)
		h.same("put", req, got, want, gotErr, wantErr)
	case x < 9:
		req := g.deleteReq()
		got, gotErr := w.DeleteRange(req)
		want, wantErr := h.m.DeleteRange(req)
		h.same("delete", req, got, want, gotErr, wantErr)
	case x < 14:
		req := g.txnReq(0)
		if err := CheckTxn(req, 128); err != nil {
			if !errors.Is(err, ErrDuplicateKey) && !errors.Is(err, ErrInvalidSortOption) {
				h.fatalf("CheckTxn(%v): unexpected %v", req, err)
			}
			return
		}
		got, gotErr := w.Txn(req)
		want, wantErr := h.m.Txn(req)
		h.same("txn", req, got, want, gotErr, wantErr)
	case x < 16:
		req := &etcdserverpb.CompactionRequest{Revision: h.m.compactRev - 1 + g.rnd.Int64N(h.m.rev-h.m.compactRev+3)}
		got, gotErr := w.Compact(req)
		want, wantErr := h.m.Compact(req)
		h.same("compact", req, got, want, gotErr, wantErr)
	default:
		req := g.rangeReq()
		got, gotErr := w.Range(req)
		want, wantErr := h.m.Range(req)
		h.same("writer range", req, got, want, gotErr, wantErr)
	}
}

// checkEveryRevision reads every key at every revision still readable and
// compares with the model: compaction must not have changed any answer.
func (h *harness) checkEveryRevision() {
	for rev := max(h.m.compactRev, 1); rev <= h.m.rev; rev++ {
		req := &etcdserverpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
		got, gotErr := h.s.Range(req)
		want, wantErr := h.m.Range(req)
		h.same("full range", req, got, want, gotErr, wantErr)
	}
}

func eventsEqual(a, b []*mvccpb.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// checkLayout checks the stored records against the model: the latest
// span holds exactly the live keys; history and event records agree; above
// the compact revision every change is kept; at or below it, only each
// key's newest version if it is a put.
func checkLayout(t *testing.T, db *pebble.DB, m *model) {
	t.Helper()
	wantHist := map[string]bool{} // history key -> is put
	type survivor struct {
		hk  string
		put bool
	}
	newestOld := map[string]survivor{}
	subs := map[int64]int64{}
	for _, r := range m.recs {
		rev := storage.Revision{Main: r.main, Sub: subs[r.main]}
		subs[r.main]++
		hk := string(storage.HistoryKey([]byte(r.key), rev))
		if r.main > m.compactRev {
			wantHist[hk] = r.kv != nil
		} else {
			newestOld[r.key] = survivor{hk, r.kv != nil}
		}
	}
	for _, s := range newestOld {
		if s.put {
			wantHist[s.hk] = true
		}
	}
	gotHist := map[string]bool{}
	scan(t, db, storage.HistorySpanStart(nil), storage.HistorySpanEnd(nil), func(k, v []byte) {
		put, err := decodeHistoryValue(k, v)
		if err != nil {
			t.Fatal(err)
		}
		gotHist[string(k)] = put
		_, rev, err := storage.DecodeHistoryKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if ev, _ := storage.Get(db, storage.EventKey(rev)); ev == nil {
			t.Fatalf("history record %x has no event", k)
		}
	})
	if len(gotHist) != len(wantHist) {
		t.Fatalf("%d history records stored, want %d (compact rev %d)", len(gotHist), len(wantHist), m.compactRev)
	}
	for k, put := range wantHist {
		if got, ok := gotHist[k]; !ok || got != put {
			t.Fatalf("history record %x: stored %v (present %v), want put=%v", k, got, ok, put)
		}
	}
	events := 0
	lo, hi := storage.EventSpan(0, m.rev+1)
	scan(t, db, lo, hi, func(k, v []byte) { events++ })
	if events != len(gotHist) {
		t.Fatalf("%d events stored for %d history records", events, len(gotHist))
	}
	latest := 0
	llo, lhi := storage.LatestSpan(nil, nil)
	scan(t, db, llo, lhi, func(k, v []byte) { latest++ })
	if want := len(m.liveAt(m.rev, []byte{0}, []byte{0})); latest != want {
		t.Fatalf("%d latest records, %d live keys", latest, want)
	}
}

func scan(t *testing.T, r pebble.Reader, lo, hi []byte, f func(k, v []byte)) {
	t.Helper()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		f(it.Key(), it.Value())
	}
	if err := closeIter(it); err != nil {
		t.Fatal(err)
	}
}

func openMemDB(t *testing.T) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)         {}
func (quietLogger) Errorf(string, ...any)        {}
func (quietLogger) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
