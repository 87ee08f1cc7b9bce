package snapshot

import (
	"context"
	"testing"

	"github.com/kvorum/kvorum/internal/mvcc"
)

// A file's HashKV equals the store's at the file's revision, for a history
// with puts, deletes, a compaction and a transaction.
func TestFileHashKVEqualsStoreHashKV(t *testing.T) {
	eng := loadedEngine(t)
	path := saveFile(t, eng.DB)
	kv, err := mvcc.Open(eng.DB)
	if err != nil {
		t.Fatal(err)
	}
	want, wantRev, wantCompact, err := kv.HashKV(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, rev, compact, err := f.HashKV()
	if err != nil {
		t.Fatal(err)
	}
	if got != want || rev != wantRev || compact != wantCompact {
		t.Errorf("file HashKV = %d at rev %d compacted %d, store's = %d at rev %d compacted %d",
			got, rev, compact, want, wantRev, wantCompact)
	}
}
