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
	keyFilterFalsePos = 0.01
	// keyFilterBitsPerKey is what a filter at keyFilterFalsePos takes
	// (9.6 bits a key), rounded up, for turning a byte bound into a key
	// capacity.
	keyFilterBitsPerKey = 10
)

type keyFilter struct {
	f        *bloom.BloomFilter
	added    uint
	capacity uint
	// stale is set once more keys were added than the filter was sized
	// for; the store then rebuilds it after the next commit.
	stale    bool
	minKeys  uint
	maxBytes int64
}

// buildKeyFilter scans the live keys of r into a filter of at most
// maxBytes. It returns nil (no filter: every lookup goes to storage) when
// there are more live keys than a filter of that size holds, so the filter
// is bounded by the memory budget, not by the key count.
//
// estimate, if not 0, is an upper bound of the live key count that sizes
// the filter; with 0 a first pass counts the keys. Either way no key is
// held in memory while scanning (an earlier version collected them all,
// which at a few million keys cost hundreds of MB for a moment).
func buildKeyFilter(r pebble.Reader, minKeys uint, maxBytes int64, estimate uint) (*keyFilter, error) {
	maxKeys := uint(maxBytes * 8 / keyFilterBitsPerKey)
	lo, hi := storage.LatestSpan(nil, nil)
	if estimate == 0 {
		n, err := countKeys(r, lo, hi, maxKeys)
		if err != nil || n >= maxKeys {
			return nil, err
		}
		estimate = n
	}
	capacity := min(max(minKeys, 4*estimate), maxKeys)
	if capacity == 0 {
		return nil, nil
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	kf := &keyFilter{f: bloom.NewWithEstimates(capacity, keyFilterFalsePos), capacity: capacity, minKeys: minKeys, maxBytes: maxBytes}
	for valid := it.First(); valid; valid = it.Next() {
		if kf.added >= maxKeys {
			return nil, closeIter(it)
		}
		kf.add(storage.UserKeyFromLatest(it.Key()))
	}
	if err := closeIter(it); err != nil {
		return nil, err
	}
	return kf, nil
}

// countKeys counts the keys in [lo, hi), stopping at limit.
func countKeys(r pebble.Reader, lo, hi []byte, limit uint) (uint, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	var n uint
	for valid := it.First(); valid && n < limit; valid = it.Next() {
		n++
	}
	return n, closeIter(it)
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
