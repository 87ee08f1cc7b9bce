package mvcc

import (
	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/storage"
)

// The number of live keys (etcd_debugging_mvcc_keys_total). etcd reads it
// off its in-memory index; Kvorum has none, so it counts the keys once,
// off to the side, and then follows the Writer's changes:
//
//   - Every committed batch adds to keysDelta what it changed in the count
//     (+1 for a put that created its key, -1 for each key deleted). The
//     Writer knows both: a put looks up the live version before writing,
//     and a delete lists the keys it deletes.
//   - The count takes a snapshot together with keysDelta, under mu (which
//     Commit holds), so the snapshot holds exactly the batches whose deltas
//     were added by then. Its live keys plus the deltas since then are the
//     live keys now, whatever was written meanwhile.
//
// The count runs on the compaction goroutine (RunCompactor), a chunk of
// keys at a time under stepMu, so StopCompaction waits for a chunk and the
// snapshot is released before the engine closes.

// keyCountChunk is how many keys one chunk of the count visits (a few
// milliseconds).
const keyCountChunk = 1 << 16

// keyCount is a count of live keys under way.
type keyCount struct {
	snap   *pebble.Snapshot
	base   int64  // keysDelta when snap was taken
	n      int64  // live keys counted so far
	cursor []byte // the latest-span key the next chunk starts at; nil: the start
}

// Keys reports the number of live keys, and false until the count that
// follows Open (on the compaction goroutine) has finished.
func (s *Store) Keys() (int64, bool) {
	if !s.keysKnown.Load() {
		return 0, false
	}
	return s.keysBase.Load() + s.keysDelta.Load(), true
}

// countKeys counts the live keys (see above). It returns early, with the
// count unfinished, once the compaction steps are stopped; after an error
// a later call starts over.
func (s *Store) countKeys() error {
	for {
		done, err := s.countKeysChunk()
		if err != nil || done {
			return err
		}
	}
}

// countKeysChunk visits the next countChunk keys of the count. done is
// true when the count is over or the steps are stopped.
func (s *Store) countKeysChunk() (done bool, err error) {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	defer func() {
		if err != nil {
			s.endKeyCount() // the next count starts over
		}
	}()
	if s.stepsStopped || s.keysKnown.Load() {
		s.endKeyCount()
		return true, nil
	}
	c := s.counting
	if c == nil {
		c = &keyCount{}
		s.mu.RLock()
		c.snap, c.base = s.db.NewSnapshot(), s.keysDelta.Load()
		s.mu.RUnlock()
		s.counting = c
	}
	lo, hi := storage.LatestSpan(nil, nil)
	if c.cursor != nil {
		lo = c.cursor
	}
	it, err := c.snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return false, err
	}
	visited := 0
	valid := it.First()
	for ; valid && visited < s.countChunk; valid = it.Next() {
		visited++
	}
	if valid {
		c.cursor = append(c.cursor[:0], it.Key()...)
	}
	if err := it.Close(); err != nil {
		return false, err
	}
	c.n += int64(visited)
	if valid {
		return false, nil
	}
	s.keysBase.Store(c.n - c.base)
	s.keysKnown.Store(true)
	s.endKeyCount()
	return true, nil
}

// endKeyCount releases the count's snapshot; stepMu is held.
func (s *Store) endKeyCount() {
	if s.counting != nil {
		s.counting.snap.Close()
		s.counting = nil
	}
}
