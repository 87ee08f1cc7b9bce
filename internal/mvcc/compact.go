package mvcc

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// Compaction happens in two parts, as in etcd. Writer.Compact is the
// replicated part: it checks the revision and records it as the compact
// revision, in the batch of the apply, so from then on reads below it are
// refused; that is cheap whatever the size of the history. Discarding the
// history the compaction made unreadable is physical work in proportion
// to the history (seconds for a million revisions), which in the apply
// would hold up every later request. Store.CompactStep does it
// in short steps, each its own commit, from the member's own goroutine
// (Store.RunCompactor), while requests go on being applied.
//
// That is safe because the two never touch the same records: the Writer
// only adds history above the current revision, the steps only delete
// history at or below the compact revision; and a read at a revision at or
// above the compact revision answers the same before and after any step
// (a step never deletes a key's newest version at or below the compact
// revision unless it is a deletion, and then no earlier than every older
// version of the key, which come before it in key order). What the steps
// have done so far is recorded with them (storage.CompactScanKey and
// storage.CompactedRevKey), so a restart or a raft snapshot carries on
// where they were; a step repeated after a crash deletes the same records.
// Only what hashes or exports the stored history waits for the steps to
// catch up (Store.WaitCompacted), so every member hashes the same records.

// Pace paces RunCompactor. Going through the history is cheap (about
// 1.5 µs a revision); what costs is the storage engine's work on the
// deletions afterwards (flushing them, compacting the deleted records out
// of its levels). Unpaced, the steps of a 1M-revision compaction issued two
// million deletions in 16 s on each member of a busy 3-member cluster on
// two cores: writes waited for memtable flushes, a leader's raft log
// writes with them, and it lost its leadership. At the default pace
// (about 15,000 records a second) that compaction takes a little over a
// minute.
type Pace struct {
	Records int           // most history records a step goes through (0: 2000)
	Sleep   time.Duration // least time between steps (0: 130ms)
}

// DefaultPace is the pace of a zero Pace.
var DefaultPace = Pace{Records: 2000, Sleep: 130 * time.Millisecond}

// compactChunk is the most history records one step of FinishCompaction
// goes through.
const compactChunk = 2000

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

// CompactStep discards, in one commit, the history that the compact
// revision made unreadable, going through up to maxRecords history records
// (in key order) from where the previous step stopped. It reports whether
// nothing is left to discard. It may run alongside the Writer and reads,
// but not alongside itself (it is serialized) nor after StopCompaction.
//
// The steps of one compaction go through the whole history span once, in
// key order, as etcd's compaction goes through its whole key index: for
// each key, the versions at or below the compaction's revision are
// discarded but the newest, and that one too if it is a deletion. In key
// order, a key's versions are next to each other, so one look at the
// record after a version tells whether it is superseded; the records
// (key, revision, one byte) are small and read in sequence. A compaction
// that comes while the steps of an earlier one are under way waits for
// them to finish, then starts its own.
func (s *Store) CompactStep(maxRecords int) (done bool, err error) {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	if s.stepsStopped {
		return true, nil
	}
	target, from := s.scanTarget, s.scanFrom
	if target == 0 {
		if s.compacted.Load() >= s.compactRev.Load() {
			return true, nil
		}
		target, from = s.compactRev.Load(), storage.HistorySpanStart(nil)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: storage.HistorySpanEnd(nil)})
	if err != nil {
		return false, err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer b.Close()

	drop := func(hk []byte, rev storage.Revision) error {
		if err := b.Delete(hk, nil); err != nil {
			return err
		}
		return b.Delete(storage.EventKey(rev), nil)
	}
	// prev is the last version at or below target, not yet judged: it is
	// discarded if it is a deletion or the next record is a later version
	// of its key at or below target.
	var (
		prev       []byte
		prevPrefix []byte
		prevRev    storage.Revision
		prevTomb   bool
		resume     []byte
	)
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		hk := it.Key()
		prefix, rev, err := storage.SplitHistoryKey(hk)
		if err != nil {
			return false, err
		}
		if prev != nil {
			if prevTomb || (rev.Main <= target && bytes.Equal(prefix, prevPrefix)) {
				if err := drop(prev, prevRev); err != nil {
					return false, err
				}
			}
			prev = nil
		}
		if n >= maxRecords {
			resume = bytes.Clone(hk)
			break
		}
		n++
		if rev.Main > target {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return false, err
		}
		put, err := decodeHistoryValue(hk, v)
		if err != nil {
			return false, err
		}
		prev = append(prev[:0:0], hk...)
		prevPrefix, prevRev, prevTomb = prev[:len(prefix)], rev, !put
	}
	if err := it.Error(); err != nil {
		return false, err
	}
	if prev != nil && prevTomb { // the last key's newest version
		if err := drop(prev, prevRev); err != nil {
			return false, err
		}
	}
	compacted := s.compacted.Load()
	if resume == nil {
		compacted = target
		if err := b.Delete(storage.CompactScanKey, nil); err != nil {
			return false, err
		}
		if err := putCounter(b, storage.CompactedRevKey, target); err != nil {
			return false, err
		}
	} else {
		progress := binary.BigEndian.AppendUint64(nil, uint64(target))
		if err := b.Set(storage.CompactScanKey, append(progress, resume...), nil); err != nil {
			return false, err
		}
		if !s.compactedStored.Load() {
			if err := putCounter(b, storage.CompactedRevKey, compacted); err != nil {
				return false, err
			}
		}
	}
	s.mu.Lock()
	err = b.Commit(pebble.NoSync)
	if err == nil {
		s.compacted.Store(compacted)
		s.compactedStored.Store(true)
	}
	s.mu.Unlock()
	if err != nil {
		return false, err
	}
	if resume == nil {
		s.scanTarget, s.scanFrom = 0, nil
	} else {
		s.scanTarget, s.scanFrom = target, resume
	}
	s.notifyCompacted()
	return resume == nil && compacted >= s.compactRev.Load(), nil
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
// steps are tried again a second later. The steps are paced (see Pace)
// and take half of the time at most, so that requests served meanwhile
// wait little.
func (s *Store) RunCompactor(ctx context.Context, pace Pace, onError func(error)) {
	if pace.Records <= 0 {
		pace.Records = DefaultPace.Records
	}
	if pace.Sleep <= 0 {
		pace.Sleep = DefaultPace.Sleep
	}
	for {
		start := time.Now()
		done, err := s.CompactStep(pace.Records)
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
			wait = max(time.Since(start), pace.Sleep)
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
