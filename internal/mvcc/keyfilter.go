package mvcc

import (
	"github.com/bits-and-blooms/bloom/v3"
	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/storage"
)

// A put of a key the store has never seen still has to look for its
// previous version, and a Pebble point lookup of a missing key costs as much
// as one of a present key (memtables have no bloom filter). The key filter
// answers most of those lookups from memory: a Bloom filter over every live
// key, at about 1.2 bytes a key — not an index of the key space.
//
// Invariant: once built, the filter contains every key that has a live
// version in the Writer's view (it may also contain deleted keys: those only
// cost a lookup). It is built when the store is opened, by scanning the keys
// of the latest span, and the Writer adds every key it writes. Only the
// Writer's goroutine uses it after Open.
const (
	keyFilterMinKeys  = 1 << 20 // smallest capacity a filter is built for
	keyFilterMaxScan  = 8 << 20 // above this many live keys no filter is built
	keyFilterFalsePos = 0.01
)

type keyFilter struct {
	f        *bloom.BloomFilter
	added    uint
	capacity uint
	// stale is set once more keys were added than the filter was sized
	// for; the store then rebuilds it after the next commit.
	stale   bool
	minKeys uint
}

// buildKeyFilter scans the live keys of r. It returns nil (no filter: every
// lookup goes to storage) when there are more keys than it is worth holding.
func buildKeyFilter(r pebble.Reader, minKeys uint) (*keyFilter, error) {
	lo, hi := storage.LatestSpan(nil, nil)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for valid := it.First(); valid; valid = it.Next() {
		if len(keys) >= keyFilterMaxScan {
			return nil, closeIter(it)
		}
		keys = append(keys, append([]byte(nil), storage.UserKeyFromLatest(it.Key())...))
	}
	if err := closeIter(it); err != nil {
		return nil, err
	}
	capacity := max(minKeys, 4*uint(len(keys)))
	kf := &keyFilter{f: bloom.NewWithEstimates(capacity, keyFilterFalsePos), capacity: capacity, minKeys: minKeys}
	for _, k := range keys {
		kf.add(k)
	}
	return kf, nil
}

func (kf *keyFilter) add(key []byte) {
	kf.f.Add(key)
	kf.added++
	if kf.added > kf.capacity {
		kf.stale = true
	}
}

// absent reports that key certainly has no live version.
func (kf *keyFilter) absent(key []byte) bool {
	return kf != nil && !kf.f.Test(key)
}
