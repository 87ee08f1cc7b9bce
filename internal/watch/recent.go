package watch

import (
	"slices"
	"sort"
)

// recent holds the latest committed changes, up to a byte budget: every
// change with a revision in (start, end]. A watcher that is only a little
// behind (a new watch of a recent revision, or one that has just replayed
// storage up to a revision that writes have since passed) catches up from
// it under the hub's lock, without touching storage, so the hand-over to
// the synced set always completes, however fast writes come.
type recent struct {
	start, end int64
	revs       []recentRev // ascending from head; revs[head].rev > start
	head       int
	bytes, max int
}

type recentRev struct {
	rev  int64
	cs   []*change
	size int
}

// add appends the changes that took the store from revision prev to rev.
func (r *recent) add(prev, rev int64, cs []*change) {
	if prev != r.end {
		r.reset(prev)
	}
	for i := 0; i < len(cs); {
		main := cs[i].rev()
		j := i
		size := 0
		for j < len(cs) && cs[j].rev() == main {
			size += cs[j].size
			j++
		}
		rc := cs[i:j:j]
		if j-i < len(cs) {
			// A revision of a larger batch gets a slice of its own, so
			// that it does not keep the batch's other revisions alive
			// after they are evicted.
			rc = slices.Clone(rc)
		}
		r.revs = append(r.revs, recentRev{rev: main, cs: rc, size: size})
		r.bytes += size
		i = j
	}
	r.end = rev
	for r.head < len(r.revs) && r.bytes > r.max {
		r.bytes -= r.revs[r.head].size
		r.start = r.revs[r.head].rev
		r.revs[r.head] = recentRev{}
		r.head++
	}
	if r.head > len(r.revs)/2 {
		// Move the kept revisions to the front of the same array: a new
		// array each time made every later append grow it again (half of
		// the buffer's upkeep in a follower's profile).
		n := copy(r.revs, r.revs[r.head:])
		clear(r.revs[n:])
		r.revs, r.head = r.revs[:n], 0
	}
}

// reset empties the buffer; it then holds everything in (rev, rev].
func (r *recent) reset(rev int64) {
	r.start, r.end, r.revs, r.head, r.bytes = rev, rev, nil, 0, 0
}

// since returns the held changes with revision >= from whose keys match,
// or false if some of them are no longer (or not yet) held.
func (r *recent) since(from int64, match func([]byte) bool) ([]*change, bool) {
	if from <= r.start || from > r.end+1 {
		return nil, false
	}
	held := r.revs[r.head:]
	i := sort.Search(len(held), func(i int) bool { return held[i].rev >= from })
	var out []*change
	for _, rr := range held[i:] {
		for _, c := range rr.cs {
			if match(c.key()) {
				out = append(out, c)
			}
		}
	}
	return out, true
}
