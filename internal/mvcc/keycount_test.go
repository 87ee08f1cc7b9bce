package mvcc

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestKeysFollowsWritesDuringTheCount counts the live keys a few at a time
// while puts of new and existing keys, deletes and range deletes land on
// both sides of the count's cursor, and checks the count against a model
// of the key space, then that later batches keep it exact.
func TestKeysFollowsWritesDuringTheCount(t *testing.T) {
	db, s := newTestStore(t)
	s.countChunk = 3
	live := map[string]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	name := func(i int) string { return fmt.Sprintf("k%02d", i) }
	batch := func() {
		apply(t, db, s, func(w *Writer) {
			for range 1 + rng.IntN(4) {
				i := rng.IntN(60)
				switch k := name(i); rng.IntN(6) {
				case 0, 1, 2, 3:
					mustPut(t, w, put(k, "v"))
					live[k] = true
				case 4:
					if _, err := w.DeleteRange(&etcdserverpb.DeleteRangeRequest{Key: []byte(k)}); err != nil {
						t.Fatal(err)
					}
					delete(live, k)
				case 5:
					end := name(i + 3)
					if _, err := w.DeleteRange(&etcdserverpb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}); err != nil {
						t.Fatal(err)
					}
					for l := range live {
						if l >= k && l < end {
							delete(live, l)
						}
					}
				}
			}
		})
	}
	for range 30 {
		batch()
	}
	if _, ok := s.Keys(); ok {
		t.Fatal("Keys reports a count before counting")
	}
	chunks := 0
	for {
		done, err := s.countKeysChunk()
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		chunks++
		batch()
	}
	if chunks < 5 {
		t.Fatalf("the count took %d chunks (%d live keys); the test wants writes between several", chunks, len(live))
	}
	for i := range 20 {
		n, ok := s.Keys()
		if !ok || n != int64(len(live)) {
			t.Fatalf("after %d batches past the count: Keys() = %d, %v; want %d", i, n, ok, len(live))
		}
		batch()
	}
}

// TestKeysIgnoresDiscardedBatches checks that only committed batches move
// the count: a batch given up after a failed write changes nothing.
func TestKeysIgnoresDiscardedBatches(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) { mustPut(t, w, put("a", "1")) })
	if err := s.countKeys(); err != nil {
		t.Fatal(err)
	}
	b := db.NewIndexedBatch()
	w := s.NewWriter(b)
	mustPut(t, w, put("b", "2"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	apply(t, db, s, func(w *Writer) { mustPut(t, w, put("a", "3")) })
	if n, ok := s.Keys(); !ok || n != 1 {
		t.Fatalf("Keys() = %d, %v; want 1", n, ok)
	}
}

// TestStopCompactionEndsTheCount checks that stopping the steps in the
// middle of a count releases its snapshot and leaves the count unknown.
func TestStopCompactionEndsTheCount(t *testing.T) {
	db, s := newTestStore(t)
	s.countChunk = 2
	apply(t, db, s, func(w *Writer) {
		for i := range 10 {
			mustPut(t, w, put(fmt.Sprint(i), "v"))
		}
	})
	if done, err := s.countKeysChunk(); err != nil || done {
		t.Fatalf("first chunk: done %v, err %v", done, err)
	}
	s.StopCompaction()
	if s.counting != nil {
		t.Fatal("the count's snapshot outlived StopCompaction")
	}
	if err := s.countKeys(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Keys(); ok {
		t.Fatal("Keys reports a count that was stopped half-way")
	}
}
