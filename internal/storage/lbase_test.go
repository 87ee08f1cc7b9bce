package storage

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/membudget"
)

// Flushed tables are compacted into a level of about one memtable above
// the bottom one (Lbase, see OpenWithBudget): keys written at random
// overlap every table of the level L0 is compacted into, so the smaller it
// is, the less each such compaction rewrites. With Pebble's default (64 MB)
// a store of the size written here (about 23 MB in tables) has no level
// between L0 and the bottom, and every flush is merged into all of it.
func TestFlushesAreCompactedIntoALevelAboveTheBottom(t *testing.T) {
	b := membudget.Split(membudget.Min) // 4 MiB memtables
	e, err := OpenWithBudget(t.TempDir(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const keys = 100_000
	value := make([]byte, 256)
	key := make([]byte, 8)
	rng := rand.New(rand.NewPCG(1, 2))
	written := int64(0)
	for written < 12*b.MemTable {
		batch := e.DB.NewBatch()
		for range 1000 {
			binary.BigEndian.PutUint64(key, rng.Uint64N(keys))
			for i := 0; i < len(value); i += 8 { // values that do not compress away
				binary.LittleEndian.PutUint64(value[i:], rng.Uint64())
			}
			if err := batch.Set(LatestKey(key), value, nil); err != nil {
				t.Fatal(err)
			}
			written += int64(len(value) + len(key))
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.DB.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.DB.Metrics().Compact.NumInProgress > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	m := e.DB.Metrics()
	var sizes []int64
	var above uint64 // bytes compacted into levels between L0 and the bottom
	for lvl, l := range m.Levels {
		sizes = append(sizes, l.TablesSize)
		if lvl > 0 && lvl < len(m.Levels)-1 {
			above += l.TableBytesCompacted
		}
	}
	if above == 0 {
		t.Fatalf("every compaction out of L0 went into the bottom level (level sizes %v after %d bytes written); want a base level of about one memtable (%d bytes) above it", sizes, written, b.MemTable)
	}
	t.Logf("level sizes %v; %d bytes compacted into levels above the bottom", sizes, above)
}
