package mvcc

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// Compaction happens in two parts, as in etcd. Writer.Compact is the
// replicated part: it checks the revision and records it as the compact
// revision, in the batch of the apply, so from then on reads below it are
// refused; that is cheap whatever the size of the history. Discarding the
// history the compaction made unreadable is physical work in proportion
// to the changes it covers (a million revisions take minutes), which in
// the apply would hold up every later request. Store.CompactStep does it
// in short steps, each its own commit, from the member's own goroutine
// (Store.RunCompactor), while requests go on being applied.
//
// That is safe because the two never touch the same records: the Writer
// only adds history above the current revision, the steps only delete
// history at or below the compact revision; and a read at a revision at or
// above the compact revision answers the same before and after any step
// (a step deletes a key's superseded versions no later than the version
// superseding them, and a deletion's tombstone together with everything
// older). What the steps have done so far is recorded with them
// (storage.CompactedRevKey), so a restart or a raft snapshot carries on
// where they were; a step repeated after a crash deletes the same records.
// Only what hashes or exports the stored history waits for the steps to
// catch up (Store.WaitCompacted), so every member hashes the same records.

// compactChunk is the most changes one compaction step goes through (it
// finishes the revision it is in): a few milliseconds of work.
const compactChunk = 1000

// Compact records req.Revision as the compact revision: ranges below it are
// refused from now on, and the history no read at or above it can see (for
// every key, the versions older than its newest version at or below the
// revision, and that newest version too when it is a deletion) is left to
// the compaction steps to discard. Ranges at revisions >= req.Revision
// answer exactly as before.
func (w *Writer) Compact(req *etcdserverpb.CompactionRequest) (*etcdserverpb.CompactionResponse, error) {
	if err := w.begin(); err != nil {
		return nil, err
	}
	rev := req.GetRevision()
	if rev <= w.compactRev {
		return nil, fmt.Errorf("%w: compaction at revision %d, already compacted at %d", ErrCompacted, rev, w.compactRev)
	}
	if rev > w.rev {
		return nil, fmt.Errorf("%w: compaction at revision %d, current revision is %d", ErrFutureRev, rev, w.rev)
	}
	if !w.s.compactedStored.Load() {
		// A store from before the steps: its history is compacted up
		// to the old compact revision, which the steps must know.
		if err := w.fail(putCounter(w.b, storage.CompactedRevKey, w.s.compacted.Load())); err != nil {
			return nil, err
		}
	}
	if err := w.fail(putCounter(w.b, storage.CompactRevKey, rev)); err != nil {
		return nil, err
	}
	w.compactRev = rev
	return &etcdserverpb.CompactionResponse{Header: &etcdserverpb.ResponseHeader{Revision: w.rev}}, nil
}

// CompactedRev is the revision up to which the history was physically
// compacted; it trails CompactRev while compaction steps are due.
func (s *Store) CompactedRev() int64 { return s.compacted.Load() }

// CompactStep discards, in one commit, the history of up to about
// maxChanges changes that the compact revision made unreadable and no
// earlier step discarded. It reports whether none is left. It may run
// alongside the Writer and reads, but not alongside itself (it is
// serialized) nor after StopCompaction.
func (s *Store) CompactStep(maxChanges int) (done bool, err error) {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	if s.stepsStopped {
		return true, nil
	}
	target, prev := s.compactRev.Load(), s.compacted.Load()
	if prev >= target {
		return true, nil
	}
	lo, hi := storage.EventSpan(prev+1, target+1)
	events, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return false, err
	}
	defer events.Close()
	history, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: storage.HistorySpanStart(nil),
		UpperBound: storage.HistorySpanEnd(nil),
	})
	if err != nil {
		return false, err
	}
	defer history.Close()
	b := s.db.NewBatch()
	defer b.Close()
	c := compaction{b: b, history: history, prev: prev, rev: target}
	reached, n := target, 0
	for valid := events.First(); valid; valid = events.Next() {
		r, err := storage.DecodeEventKey(events.Key())
		if err != nil {
			return false, err
		}
		if n >= maxChanges && r.Main != reached {
			reached = r.Main - 1 // every change of the revisions before r is done
			break
		}
		if err := c.event(events.Key(), events.Value(), r); err != nil {
			return false, err
		}
		reached, n = r.Main, n+1
	}
	if err := events.Error(); err != nil {
		return false, err
	}
	if !events.Valid() {
		reached = target
	}
	if err := putCounter(b, storage.CompactedRevKey, reached); err != nil {
		return false, err
	}
	s.mu.Lock()
	err = b.Commit(pebble.NoSync)
	if err == nil {
		s.compacted.Store(reached)
		s.compactedStored.Store(true)
	}
	s.mu.Unlock()
	if err != nil {
		return false, err
	}
	s.notifyCompacted()
	return reached >= target, nil
}

// FinishCompaction runs compaction steps until none is due.
func (s *Store) FinishCompaction() error {
	for {
		done, err := s.CompactStep(compactChunk)
		if done || err != nil {
			return err
		}
	}
}

// RunCompactor runs the compaction steps each compaction leaves, until
// ctx ends or StopCompaction is called; errors go to onError, and the
// steps are tried again a second later. Steps yield the processor
// between them, so requests being served meanwhile wait little.
func (s *Store) RunCompactor(ctx context.Context, onError func(error)) {
	for {
		start := time.Now()
		done, err := s.CompactStep(compactChunk)
		wait := time.Duration(0)
		switch {
		case err != nil:
			onError(fmt.Errorf("mvcc: compaction step: %w", err))
			wait = time.Second
		case done:
			select {
			case <-ctx.Done():
				return
			case <-s.stepsStop:
				return
			case <-s.compactKick:
			}
			continue
		default:
			// Half the time for the steps at most, so that a long
			// compaction on a busy member takes a bounded share.
			wait = time.Since(start)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.stepsStop:
			return
		case <-time.After(wait):
		}
	}
}

// StopCompaction stops the compaction steps for good (before the state is
// replaced by a raft snapshot, or the engine closes): it waits for a step
// in progress and makes later ones do nothing.
func (s *Store) StopCompaction() {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	if !s.stepsStopped {
		s.stepsStopped = true
		close(s.stepsStop)
	}
}

// WaitCompacted waits until the history is physically compacted up to
// rev, or up to the compact revision of the moment when rev <= 0.
func (s *Store) WaitCompacted(ctx context.Context, rev int64) error {
	for {
		ch := s.compactedChanged()
		target := rev
		if target <= 0 {
			target = s.compactRev.Load()
		}
		if s.compacted.Load() >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (compacted up to %d of %d)", ErrCompactionInProgress, s.compacted.Load(), s.compactRev.Load())
		case <-ch:
		}
	}
}

// SettledSnapshot is a snapshot of the whole DB in which the history is
// compacted up to the compact revision: what exports and hashes of the
// stored history must read, so that every member's look the same. It waits
// for the compaction steps until ctx ends.
func (s *Store) SettledSnapshot(ctx context.Context) (*pebble.Snapshot, error) {
	for {
		if err := s.WaitCompacted(ctx, 0); err != nil {
			return nil, err
		}
		s.mu.RLock()
		settled := s.compacted.Load() >= s.compactRev.Load()
		var snap *pebble.Snapshot
		if settled {
			snap = s.db.NewSnapshot()
		}
		s.mu.RUnlock()
		if settled {
			return snap, nil
		}
	}
}

func (s *Store) compactedChanged() <-chan struct{} {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.compactedNotify
}

func (s *Store) notifyCompacted() {
	s.notifyMu.Lock()
	close(s.compactedNotify)
	s.compactedNotify = make(chan struct{})
	s.notifyMu.Unlock()
}

// kickCompactor tells RunCompactor a compaction was committed.
func (s *Store) kickCompactor() {
	select {
	case s.compactKick <- struct{}{}:
	default:
	}
}

// compaction is one compaction step's state. For each change of key k at
// revision r in (prev, rev] it deletes:
//   - the version of k that survived the earlier steps, if r is the first
//     change of k after them (that version is now superseded);
//   - r itself, if k changed again at or below rev, or if r is a deletion.
//
// history reads the committed state, without the step's own deletions;
// the rules need only records the step does not delete.
type compaction struct {
	b         *pebble.Batch
	history   *pebble.Iterator
	prev, rev int64
}

func (c *compaction) event(ek, ev []byte, r storage.Revision) error {
	e, err := decodeEvent(ek, ev)
	if err != nil {
		return err
	}
	key := e.GetKv().GetKey()
	prefix := storage.HistoryKeyPrefix(key)
	hk := storage.HistoryKey(key, r)
	history := c.history

	if history.SeekLT(hk) && isHistoryOf(history.Key(), prefix) {
		_, older, err := storage.DecodeHistoryKey(history.Key())
		if err != nil {
			return err
		}
		if older.Main <= c.prev {
			if err := c.drop(key, older); err != nil {
				return err
			}
		}
	}
	if err := history.Error(); err != nil {
		return err
	}

	drop := e.GetType() == mvccpb.Event_DELETE
	if !drop && history.SeekGE(storage.HistoryKey(key, storage.Revision{Main: r.Main, Sub: r.Sub + 1})) &&
		isHistoryOf(history.Key(), prefix) {
		_, next, err := storage.DecodeHistoryKey(history.Key())
		if err != nil {
			return err
		}
		drop = next.Main <= c.rev
	}
	if err := history.Error(); err != nil {
		return err
	}
	if drop {
		return c.drop(key, r)
	}
	return nil
}

// drop deletes the history record and the event of key's change at rev.
func (c *compaction) drop(key []byte, rev storage.Revision) error {
	if err := c.b.Delete(storage.HistoryKey(key, rev), nil); err != nil {
		return err
	}
	return c.b.Delete(storage.EventKey(rev), nil)
}
