package mvcc

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestHashKVEqualForEqualHistoriesAndDiffersOtherwise(t *testing.T) {
	build := func(lastValue string, compact bool) *Store {
		db, s := newTestStore(t)
		for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"a", "3"}} {
			apply(t, db, s, func(w *Writer) { mustPut(t, w, put(kv[0], kv[1])) })
		}
		if compact {
			apply(t, db, s, func(w *Writer) {
				if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: 4}); err != nil {
					t.Fatal(err)
				}
			})
			// The history hashed is the compacted one: until the
			// compaction steps ran, HashKV waits.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, _, _, err := s.HashKV(ctx, 0); !errors.Is(err, ErrCompactionInProgress) {
				t.Fatalf("hash before the compaction steps: %v, want ErrCompactionInProgress", err)
			}
			if err := s.FinishCompaction(); err != nil {
				t.Fatal(err)
			}
		}
		apply(t, db, s, func(w *Writer) { mustPut(t, w, put("c", lastValue)) })
		return s
	}
	hash := func(s *Store, rev int64) uint32 {
		h, _, _, err := s.HashKV(context.Background(), rev)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	x, y, z := build("4", false), build("4", false), build("other", false)
	if hash(x, 0) != hash(y, 0) {
		t.Fatal("equal histories hash differently")
	}
	if hash(x, 0) == hash(z, 0) {
		t.Fatal("different last values hash equally")
	}
	if hash(x, 4) != hash(z, 4) {
		t.Fatal("histories equal up to revision 4 hash differently at 4")
	}
	if hash(x, 0) == hash(build("4", true), 0) {
		t.Fatal("a compacted history hashes like an uncompacted one")
	}
	if _, _, _, err := x.HashKV(context.Background(), 99); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("hash at a future revision: %v", err)
	}
	if _, _, _, err := build("4", true).HashKV(context.Background(), 3); !errors.Is(err, ErrCompacted) {
		t.Fatalf("hash below the compaction: %v", err)
	}
}
