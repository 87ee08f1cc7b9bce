package storage

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Flushes and compactions write tables that each hold keys of one prefix:
// records written interleaved (as a put writes its latest version, history
// record and event, next to raft log entries) end up in separate tables.
func TestTablesHoldOnePrefixEach(t *testing.T) {
	e, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	value := make([]byte, 200)
	for round := 0; round < 4; round++ {
		b := e.DB.NewBatch()
		for i := 0; i < 2000; i++ {
			n := uint64(round*2000 + i)
			k := []byte(fmt.Sprintf("key%05d", (n*7919)%5000))
			rev := Revision{Main: int64(n + 1)}
			for _, rec := range [][]byte{EntryKey(n + 1), LatestKey(k), HistoryKey(k, rev), EventKey(rev)} {
				if err := b.Set(rec, value, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if err := e.DB.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.DB.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	levels, err := e.DB.SSTables()
	if err != nil {
		t.Fatal(err)
	}
	tables := 0
	for lvl, ts := range levels {
		for _, tab := range ts {
			tables++
			lo, hi := tab.Smallest.UserKey, tab.Largest.UserKey
			if lo[0] != hi[0] {
				t.Errorf("L%d table %s spans prefixes %#x..%#x", lvl, tab.FileNum, lo[0], hi[0])
			}
		}
	}
	if tables < 4 {
		t.Fatalf("%d tables for four kinds of records", tables)
	}
}
