package watch

import (
	"runtime"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func recentChange(rev int64) *change {
	return &change{ev: &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("k"), ModRevision: rev}}, size: 100}
}

// The buffer holds exactly the latest revisions that fit its bytes, in
// order, through many evictions and compactions of its array; once warm,
// adding a revision allocates nothing.
func TestRecentKeepsTheLatestRevisionsWithinItsBytes(t *testing.T) {
	r := &recent{max: 1000}
	r.reset(0)
	cs := make([][]*change, 1001)
	for rev := int64(1); rev <= 1000; rev++ {
		cs[rev] = []*change{recentChange(rev)}
	}
	check := func(end int64) {
		t.Helper()
		if r.end != end || r.start != end-10 || r.bytes != 1000 {
			t.Fatalf("after revision %d: holds (%d, %d] in %d bytes, want (%d, %d] in 1000", end, r.start, r.end, r.bytes, end-10, end)
		}
		got, ok := r.since(r.start+1, func([]byte) bool { return true })
		if !ok || len(got) != 10 {
			t.Fatalf("after revision %d: since %d gave %d changes (ok %v), want 10", end, r.start+1, len(got), ok)
		}
		for i, c := range got {
			if c.rev() != r.start+1+int64(i) {
				t.Fatalf("after revision %d: change %d has revision %d, want %d", end, i, c.rev(), r.start+1+int64(i))
			}
		}
		if _, ok := r.since(r.start, func([]byte) bool { return true }); ok {
			t.Fatalf("after revision %d: revision %d is reported held", end, r.start)
		}
		for _, rr := range r.revs[len(r.revs):cap(r.revs)] {
			if rr.cs != nil {
				t.Fatalf("after revision %d: the array keeps an evicted revision %d alive", end, rr.rev)
			}
		}
	}
	for rev := int64(1); rev <= 100; rev++ {
		r.add(rev-1, rev, cs[rev])
		if rev >= 10 {
			check(rev)
		}
	}
	// Counted add by add: an allocation every few adds (a compaction into
	// a new array) would average out below one an add.
	rev := int64(100)
	var allocs float64
	for range 400 {
		allocs += testing.AllocsPerRun(1, func() {
			rev++
			r.add(rev-1, rev, cs[rev])
		})
	}
	if allocs != 0 {
		t.Fatalf("800 revisions added to a warm buffer allocated %v times", allocs)
	}
	check(rev)
}

// What the recent buffer counts is what it holds on the heap: filled far
// past its budget with events as the server makes them (key and value
// decoded into allocations of their own, every other one with its previous
// version), the bytes it reports are within a fifth of the heap it keeps
// alive.
func TestEventSizeIsTheHeapAChangeHolds(t *testing.T) {
	const budget = 4 << 20
	alloc := func(n int, c byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = c
		}
		return b
	}
	sizes := []int{16, 100, 256, 1000}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := &recent{max: budget}
	r.reset(0)
	for rev := int64(1); rev <= 40000; rev++ {
		ev := &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: alloc(16, 'k'), Value: alloc(sizes[rev%4], 'v'), ModRevision: rev}}
		if rev%2 == 0 {
			ev.PrevKv = &mvccpb.KeyValue{Key: alloc(16, 'k'), Value: alloc(sizes[(rev+1)%4], 'p'), ModRevision: rev - 1}
		}
		r.add(rev-1, rev, wrap([]*mvccpb.Event{ev}))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	counted := r.bytes
	runtime.KeepAlive(r)
	if counted > budget {
		t.Fatalf("the buffer counts %d bytes, over its budget of %d", counted, budget)
	}
	t.Logf("counted %d bytes, holds %d on the heap", counted, held)
	if ratio := float64(counted) / float64(held); ratio < 0.8 || ratio > 1.25 {
		t.Fatalf("the buffer counts %d bytes and holds %d on the heap (%.2f of it), want within 0.8–1.25", counted, held, ratio)
	}
}
