package mvcc

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Keys written while the key filter is built a chunk at a time — before
// and after the build's position, during the count and the fill — are in
// the finished filter: a second put of each finds its first version.
func TestKeyFilterBuiltInChunksKeepsKeysWrittenMeanwhile(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) {
		for i := range 20 {
			mustPut(t, w, put(fmt.Sprintf("m%02d", i), "old"))
		}
	})
	// Reopen: the build starts over the 20 keys, 3 keys a commit.
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	s.filterMinKeys, s.filterChunk = 4, 3
	s.build = s.newFilterBuild(0)
	var written []string
	for i := 0; s.build != nil; i++ {
		if i > 100 {
			t.Fatal("the build did not finish in 100 commits")
		}
		// One key before everything, one after: the build's position
		// passes the first kind early and reaches the second late.
		a, z := fmt.Sprintf("a%03d", i), fmt.Sprintf("z%03d", i)
		written = append(written, a, z)
		apply(t, db, s, func(w *Writer) {
			mustPut(t, w, put(a, "1"))
			mustPut(t, w, put(z, "1"))
		})
	}
	if s.keys == nil {
		t.Fatal("no filter after the build")
	}
	for _, k := range append(written, "m00", "m19") {
		if s.keys.absent([]byte(k)) {
			t.Errorf("the filter says %q is absent", k)
		}
	}
	apply(t, db, s, func(w *Writer) {
		for _, k := range written {
			if resp := mustPut(t, w, &etcdserverpb.PutRequest{Key: []byte(k), Value: []byte("2"), PrevKv: true}); resp.PrevKv == nil || resp.PrevKv.Version != 1 {
				t.Errorf("second put of %q: previous version %v, want version 1", k, resp.PrevKv)
			}
		}
	})
}

// A store with more live keys than its filter's memory bound holds builds
// none: puts look up storage instead.
func TestKeyFilterGivesUpPastItsMemoryBound(t *testing.T) {
	db, s := newTestStore(t)
	s.filterBytes, s.filterChunk = 8, 5 // room for 6 keys
	s.build = s.newFilterBuild(0)
	apply(t, db, s, func(w *Writer) {
		for i := range 10 {
			mustPut(t, w, put(fmt.Sprintf("k%d", i), "v"))
		}
	})
	for i := 0; s.build != nil; i++ {
		if i > 10 {
			t.Fatal("the build did not end")
		}
		apply(t, db, s, func(w *Writer) {})
	}
	if s.keys != nil {
		t.Fatalf("a filter of %d bytes for 10 keys", s.keys.f.Cap()/8)
	}
}
