package storage

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/membudget"
)

// The block cache keeps its share of the budget while the memtables are
// allocated: Pebble reserves each memtable in its cache, and a cache sized
// for the blocks alone had no room left for any block once two memtables
// existed, so every read of a table went to the operating system.
func TestBlockCacheHasRoomBesideTheMemtables(t *testing.T) {
	b := membudget.Split(membudget.Min)
	e, err := OpenWithBudget(t.TempDir(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Enough writes that the engine has rotated through its memtables
	// (each allocated one is reserved in the cache), then a flush.
	value := make([]byte, 256)
	keys := int(3*b.MemTable) / 300
	for i := 0; i < keys; i++ {
		if err := e.DB.Set(LatestKey([]byte(fmt.Sprintf("key%08d", i))), value, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.DB.Flush(); err != nil {
		t.Fatal(err)
	}
	read := func() {
		for i := 0; i < keys; i += 97 {
			_, closer, err := e.DB.Get(LatestKey([]byte(fmt.Sprintf("key%08d", i))))
			if err != nil {
				t.Fatal(err)
			}
			closer.Close()
		}
	}
	read()
	before := e.DB.Metrics().BlockCache
	read() // the same blocks again: they should come from the cache now
	after := e.DB.Metrics().BlockCache
	if after.Size == 0 || after.Hits-before.Hits == 0 {
		t.Fatalf("block cache holds %d bytes and answered %d of the second pass's reads (misses %d); want the blocks cached",
			after.Size, after.Hits-before.Hits, after.Misses-before.Misses)
	}
	if use := e.MemoryUse(); use.BlockCache+use.MemTables > b.BlockCache+b.MemTableBytes() {
		t.Errorf("blocks (%d bytes) and memtables (%d) hold more than the budget's engine share %d", use.BlockCache, use.MemTables, b.BlockCache+b.MemTableBytes())
	}
	t.Logf("block cache: %d bytes, second pass %d hits, %d misses", after.Size, after.Hits-before.Hits, after.Misses-before.Misses)
}
