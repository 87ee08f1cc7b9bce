package mvcc

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestCountsMatchTheModelWhateverTheHistoryLength compares the count (and
// the keys) of limited and count_only ranges with the model over keys whose
// histories differ in length: keys "s…" have one version each, so the
// history index counts them all; keys "l…" have up to 13 versions, some
// ending in a deletion, so the scan seeks past long runs, and a count at
// the current revision switches to the latest records part way. Half the
// history is compacted, and part of that compaction is left pending, as a
// member's reads may find it.
func TestCountsMatchTheModelWhateverTheHistoryLength(t *testing.T) {
	db := openMemDB(t)
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: db, s: s, m: newModel()}
	write := func(f func(w *Writer)) {
		w := s.NewWriter(db.NewIndexedBatch())
		f(w)
		if err := s.Commit(w, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	put := func(w *Writer, k, v string) {
		req := &etcdserverpb.PutRequest{Key: []byte(k), Value: []byte(v)}
		got, gotErr := w.Put(req)
		want, wantErr := h.m.Put(req)
		h.same("put", req, got, want, gotErr, wantErr)
	}
	del := func(w *Writer, k string) {
		req := &etcdserverpb.DeleteRangeRequest{Key: []byte(k)}
		got, gotErr := w.DeleteRange(req)
		want, wantErr := h.m.DeleteRange(req)
		h.same("delete", req, got, want, gotErr, wantErr)
	}
	const keys = 300
	write(func(w *Writer) {
		for i := range keys {
			put(w, fmt.Sprintf("s%03d", i), "one")
		}
	})
	// Round r writes every "l" key that has more than r versions to go:
	// a put, or a deletion every fifth round for every third key.
	for r := range 13 {
		write(func(w *Writer) {
			for i := range keys {
				k := fmt.Sprintf("l%03d", i)
				switch {
				case i%13 < r:
				case r%5 == 4 && i%3 == 0:
					del(w, k)
				default:
					put(w, k, fmt.Sprint("v", r))
				}
			}
		})
	}
	mid := h.m.rev / 2
	write(func(w *Writer) {
		req := &etcdserverpb.CompactionRequest{Revision: mid}
		got, gotErr := w.Compact(req)
		want, wantErr := h.m.Compact(req)
		h.same("compact", req, got, want, gotErr, wantErr)
	})
	if _, err := s.CompactStep(200); err != nil {
		t.Fatal(err)
	}

	spans := [][2]string{
		{"\x00", "\x00"}, // every key
		{"l", "m"},       // the long histories
		{"s", "t"},       // the short ones
		{"l150", "s150"}, // across both
		{"l007", ""},     // one key
		{"l295", "m"},    // a few keys at the end
		{"q", "r"},       // no key
	}
	for _, sp := range spans {
		for _, rev := range []int64{0, h.m.rev - 1, h.m.rev - keys, mid + 1, mid} {
			for _, limit := range []int64{0, 1, 7, 150, 1000} {
				for _, countOnly := range []bool{false, true} {
					req := &etcdserverpb.RangeRequest{Key: []byte(sp[0]), RangeEnd: []byte(sp[1]), Revision: rev, Limit: limit, CountOnly: countOnly}
					got, gotErr := s.Range(req)
					want, wantErr := h.m.Range(req)
					h.same("range", req, got, want, gotErr, wantErr)
				}
			}
		}
	}
}
