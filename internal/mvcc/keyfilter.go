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
// cost a lookup). Only the Writer's goroutine uses it.
//
// Building it means visiting every live key, which at millions of keys takes
// seconds. So it is never built while a member opens its store or inside a
// commit (that would hold up reads): a filterBuild visits the keys a chunk
// at a time, after the Writer's commits, while puts do without a filter (or
// keep using the one it replaces, which is only overfull). A key live when
// the build completes was either visited (it was live when the build passed
// it) or written after the build started, and the Writer adds every key it
// writes to the filter being built too.
const (
	keyFilterMinKeys  = 1 << 20 // smallest capacity a filter is built for
	keyFilterFalsePos = 0.01
	// keyFilterBitsPerKey is what a filter at keyFilterFalsePos takes
	// (9.6 bits a key), rounded up, for turning a byte bound into a key
	// capacity.
	keyFilterBitsPerKey = 10
	// keyFilterChunk is how many keys a build visits after one commit: a
	// few milliseconds of the applying goroutine.
	keyFilterChunk = 8192
)

type keyFilter struct {
	f        *bloom.BloomFilter
	added    uint
	capacity uint
	// stale is set once more keys were added than the filter was sized
	// for; the store then builds a bigger one.
	stale bool
}

// filterBuild is a key filter under construction. Without an estimate of
// the key count it first counts the live keys to size the filter, then
// fills it; both passes go a chunk at a time (see step).
type filterBuild struct {
	minKeys uint
	maxKeys uint // more live keys than this: no filter at all
	chunk   int
	counted uint       // keys counted so far
	kf      *keyFilter // nil while counting
	cursor  []byte     // the latest-span key the next chunk starts at; nil: the start
}

// newFilterBuild starts a build of the Writer's next filter; estimate, if
// not 0, bounds the live key count and skips counting.
func (s *Store) newFilterBuild(estimate uint) *filterBuild {
	b := &filterBuild{minKeys: s.filterMinKeys, maxKeys: uint(s.filterBytes * 8 / keyFilterBitsPerKey), chunk: s.filterChunk}
	if estimate > 0 {
		b.fill(estimate)
	}
	return b
}

// fill starts the second pass, with a filter sized for estimate keys.
func (b *filterBuild) fill(estimate uint) {
	capacity := min(max(b.minKeys, 4*estimate), b.maxKeys)
	b.kf = &keyFilter{f: bloom.NewWithEstimates(max(capacity, 1), keyFilterFalsePos), capacity: capacity}
	b.cursor = nil
}

// written is told of every key the Writer writes during the build.
func (b *filterBuild) written(key []byte) {
	if b.kf != nil {
		b.kf.add(key)
	}
}

// step visits the next chunk of keys in r. It reports done with the
// filter when the build is complete (a nil filter: more live keys than
// the memory bound allows, so puts go to storage).
func (b *filterBuild) step(r pebble.Reader) (kf *keyFilter, done bool, err error) {
	lo, hi := storage.LatestSpan(nil, nil)
	if b.cursor != nil {
		lo = b.cursor
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, false, err
	}
	n := 0
	valid := it.First()
	for ; valid && n < b.chunk; valid = it.Next() {
		n++
		if b.kf == nil {
			b.counted++
		} else {
			b.kf.add(storage.UserKeyFromLatest(it.Key()))
		}
	}
	if valid {
		b.cursor = append(b.cursor[:0], it.Key()...)
	}
	if err := closeIter(it); err != nil {
		return nil, false, err
	}
	switch {
	case b.kf == nil && b.counted >= b.maxKeys, b.kf != nil && b.kf.added >= b.maxKeys:
		return nil, true, nil
	case valid:
		return nil, false, nil
	case b.kf == nil:
		b.fill(b.counted) // counted them all: now fill a filter sized for them
		return nil, false, nil
	}
	return b.kf, true, nil
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
