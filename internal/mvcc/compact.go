package mvcc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
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
// 0.4 µs a revision, most of it reading the history in key order); the
// deletions are range deletions, one per key's run of superseded versions
// and one per gap between kept events (see compactScan), which the storage
// engine resolves by dropping whole tables. Point deletions, one per
// record, were what made unpaced steps hurt: the 2 million deletions of a
// 1M-revision compaction flooded the memtables and compactions of a busy
// 3-member cluster on two cores, and a leader lost its leadership. The
// pace still bounds how much of the machine the reading takes.
type Pace struct {
	Records int           // most history records a step goes through (0: 10000)
	Sleep   time.Duration // least time between steps (0: 130ms)
}

// DefaultPace is the pace of a zero Pace.
var DefaultPace = Pace{Records: 10000, Sleep: 130 * time.Millisecond}

// compactChunk is the most history records one step of FinishCompaction
// goes through.
const compactChunk = 2000

const (
	// compactKeptMax bounds the list of kept versions the events pass of
	// a compaction uses (16 bytes an entry; see compactScan).
	compactKeptMax = 1 << 18
	// compactRangeMin is the fewest records deleted with a range deletion
	// rather than one by one: a range deletion costs the engine more than
	// a point deletion, until it covers a few records.
	compactRangeMin = 8
)

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

// CompactStep discards, in one commit, some of the history that the
// compact revision made unreadable, going through up to maxRecords records
// from where the previous step stopped. It reports whether nothing is left
// to discard. It may run alongside the Writer and reads, but not alongside
// itself (it is serialized) nor after StopCompaction.
//
// The steps of one compaction make two passes (see compactScan): through
// the history in key order, then through the events the compaction
// covers in revision order. A compaction that comes while the steps of an
// earlier one are under way waits for them to finish, then starts its own.
func (s *Store) CompactStep(maxRecords int) (done bool, err error) {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	if s.stepsStopped {
		return true, nil
	}
	start := time.Now()
	sc := s.scan
	if sc == nil {
		base := s.compacted.Load()
		if base >= s.compactRev.Load() {
			return true, nil
		}
		sc = &compactScan{target: s.compactRev.Load(), base: base,
			history: storage.HistorySpanStart(nil), keptAll: true}
	}
	if sc.started.IsZero() {
		sc.started = start
	}
	b := s.db.NewBatch()
	defer b.Close()
	next := *sc
	if next.history != nil {
		err = s.historyStep(b, &next, maxRecords)
	} else {
		err = s.eventsStep(b, &next, maxRecords)
	}
	if err == nil {
		err = s.commitStep(b, &next)
	}
	if err != nil {
		// The list of kept versions is shared with next, which may have
		// changed it (appended, sorted): trust it no more.
		sc.kept, sc.keptAll = nil, false
		s.scan = sc
		return false, err
	}
	s.scan = &next
	finished := next.history == nil && next.events == nil
	if finished {
		s.scan = nil
	}
	// The batch holds the step's deletions and its progress: one record
	// while the scan goes on, two once it is over (commitStep).
	progress := 1
	if finished {
		progress = 2
	}
	s.observeCompactStep(time.Since(start), int(b.Count())-progress, finished, next.started)
	s.notifyCompacted()
	return s.scan == nil && s.compacted.Load() >= s.compactRev.Load(), nil
}

// commitStep commits the deletions of a step in b with its progress, sc.
func (s *Store) commitStep(b *pebble.Batch, sc *compactScan) error {
	finished := sc.history == nil && sc.events == nil
	compacted := s.compacted.Load()
	if finished {
		compacted = sc.target
		if err := b.Delete(storage.CompactScanKey, nil); err != nil {
			return err
		}
		if err := putCounter(b, storage.CompactedRevKey, sc.target); err != nil {
			return err
		}
	} else {
		progress := binary.BigEndian.AppendUint64(nil, uint64(sc.target))
		if sc.history != nil {
			progress = append(progress, sc.history...)
		} else {
			progress = append(progress, sc.events...)
		}
		if err := b.Set(storage.CompactScanKey, progress, nil); err != nil {
			return err
		}
		if !s.compactedStored.Load() {
			if err := putCounter(b, storage.CompactedRevKey, compacted); err != nil {
				return err
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	s.compacted.Store(compacted)
	s.compactedStored.Store(true)
	return nil
}

// compactScan is the progress of one compaction's steps.
//
// The history pass goes through the whole history span once, in key order,
// as etcd's compaction goes through its whole key index: for each key, the
// versions at or below the target are discarded but the newest, and that
// one too if it is a deletion. In key order, a key's versions are next to
// each other, so one look at the record after a version tells whether it
// is superseded, and the versions a key loses are one run of records,
// deleted with one range deletion (the storage engine then drops whole
// tables a deletion covers instead of rewriting them record by record).
// The event of a discarded version that an earlier compaction had kept
// (at or below base) is deleted with it; the others wait for the events
// pass.
//
// The events pass deletes the events of the revisions in (base, target]
// that the history pass discarded: every one of them but the events of
// the versions it kept. With the list of those (kept, in revision order),
// the gaps between them are deleted without reading them, each with one
// range deletion. A list that would have grown past keptMax entries, or
// that a restart lost, is not trusted: the pass then reads each event and
// looks for its history record, which exists exactly for the kept ones.
//
// Between the passes, events without history may exist at or below the
// target; nothing reads them (reads below the compact revision are
// refused, and events at it are filtered, see discardedByCompaction), and
// hashes and exports wait for the compaction to finish.
type compactScan struct {
	target int64 // the revision compacted to
	base   int64 // the revision the history was compacted to before
	// history is the history key the next step goes on from; nil once
	// the history pass is over. events is then the event key the events
	// pass goes on from; nil once it is over too.
	history, events []byte
	// kept lists the revisions in (base, target] of the versions the
	// history pass kept, in key order until the pass ends, then sorted;
	// keptAll says it lists every one of them.
	kept    []storage.Revision
	keptAll bool
	// started is when this member's first step toward target ran (after
	// a restart: the first since), for the metrics.
	started time.Time
}

// historyStep goes on with the history pass through up to maxRecords
// records.
func (s *Store) historyStep(b *pebble.Batch, sc *compactScan, maxRecords int) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sc.history, UpperBound: storage.HistorySpanEnd(nil)})
	if err != nil {
		return err
	}
	defer it.Close()
	run := deletionRun{min: s.rangeMin}
	drop := func(hk []byte, prefix []byte, rev storage.Revision) error {
		if err := run.add(b, hk, prefix); err != nil {
			return err
		}
		if rev.Main <= sc.base {
			return b.Delete(storage.EventKey(rev), nil)
		}
		return nil
	}
	keep := func(rev storage.Revision) {
		if rev.Main <= sc.base || !sc.keptAll {
			return
		}
		if len(sc.kept) >= s.keptMax {
			sc.kept, sc.keptAll = nil, false
			return
		}
		sc.kept = append(sc.kept, rev)
	}
	// prev is the last version at or below the target, not yet judged:
	// it is discarded if it is a deletion or the next record is a later
	// version of its key at or below the target.
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
			return err
		}
		if prev != nil {
			if prevTomb || (rev.Main <= sc.target && bytes.Equal(prefix, prevPrefix)) {
				if err := drop(prev, prevPrefix, prevRev); err != nil {
					return err
				}
			} else {
				keep(prevRev)
			}
			prev = nil
		}
		if n >= maxRecords {
			resume = bytes.Clone(hk)
			break
		}
		n++
		if rev.Main > sc.target {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		put, err := decodeHistoryValue(hk, v)
		if err != nil {
			return err
		}
		prev = append(prev[:0:0], hk...)
		prevPrefix, prevRev, prevTomb = prev[:len(prefix)], rev, !put
	}
	if err := it.Error(); err != nil {
		return err
	}
	if prev != nil { // the last key's newest version at or below the target
		if prevTomb {
			if err := drop(prev, prevPrefix, prevRev); err != nil {
				return err
			}
		} else {
			keep(prevRev)
		}
	}
	if err := run.flush(b); err != nil {
		return err
	}
	sc.history = resume
	if resume == nil {
		slices.SortFunc(sc.kept, compareRevisions)
		sc.events = storage.EventKey(storage.Revision{Main: sc.base + 1})
	}
	return nil
}

// eventsStep goes on with the events pass, through up to maxRecords kept
// versions or events.
func (s *Store) eventsStep(b *pebble.Batch, sc *compactScan, maxRecords int) error {
	end := storage.EventKey(storage.Revision{Main: sc.target + 1})
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sc.events, UpperBound: end})
	if err != nil {
		return err
	}
	defer it.Close()
	if sc.keptAll {
		return s.deleteEventGaps(b, it, sc, end, maxRecords)
	}
	run := deletionRun{min: s.rangeMin}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if n >= maxRecords {
			if err := run.flush(b); err != nil {
				return err
			}
			sc.events = bytes.Clone(it.Key())
			return nil
		}
		n++
		rev, err := storage.DecodeEventKey(it.Key())
		if err != nil {
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		ev, err := decodeEvent(it.Key(), v)
		if err != nil {
			return err
		}
		hist, err := storage.Get(s.db, storage.HistoryKey(ev.GetKv().GetKey(), rev))
		if err != nil {
			return err
		}
		if hist != nil { // a kept version
			if err := run.flush(b); err != nil {
				return err
			}
			continue
		}
		if err := run.add(b, it.Key(), nil); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	sc.events = nil
	return run.flush(b)
}

// deleteEventGaps deletes the events between the kept versions, from
// sc.events on, up to maxRecords of those (or of the events it reads, see
// deleteEvents).
func (s *Store) deleteEventGaps(b *pebble.Batch, it *pebble.Iterator, sc *compactScan, end []byte, maxRecords int) error {
	lo, n := sc.events, 0
	for len(sc.kept) > 0 && n < maxRecords {
		k := sc.kept[0]
		read, err := s.deleteEvents(b, it, lo, storage.EventKey(k))
		if err != nil {
			return err
		}
		n += 1 + read
		lo = storage.EventKey(storage.Revision{Main: k.Main, Sub: k.Sub + 1})
		sc.kept = sc.kept[1:]
	}
	if len(sc.kept) > 0 {
		sc.events = lo
		return nil
	}
	if _, err := s.deleteEvents(b, it, lo, end); err != nil {
		return err
	}
	sc.events = nil
	return nil
}

// deleteEvents deletes the events in [lo, hi): with one range deletion if
// they may be many (rangeMin revisions apart or more), else one by one,
// reading their keys with it; it returns how many it read.
func (s *Store) deleteEvents(b *pebble.Batch, it *pebble.Iterator, lo, hi []byte) (int, error) {
	if bytes.Compare(lo, hi) >= 0 {
		return 0, nil
	}
	from, err := storage.DecodeEventKey(lo)
	if err != nil {
		return 0, err
	}
	to, err := storage.DecodeEventKey(hi)
	if err != nil {
		return 0, err
	}
	if to.Main-from.Main >= int64(s.rangeMin) {
		return 0, b.DeleteRange(lo, hi, nil)
	}
	n := 0
	for valid := it.SeekGE(lo); valid && bytes.Compare(it.Key(), hi) < 0; valid = it.Next() {
		if err := b.Delete(it.Key(), nil); err != nil {
			return n, err
		}
		n++
	}
	return n, it.Error()
}

// deletionRun gathers records to delete that are next to each other in
// key order (with nothing between them), and deletes them together: with
// one range deletion from min records on, one by one below.
type deletionRun struct {
	min    int
	prefix []byte   // what the records share (see add)
	keys   [][]byte // the first min of them
	last   []byte
	n      int
}

// add adds the record at k. The run is flushed first when prefix differs
// from the run's (a run of history records holds one key's versions).
func (r *deletionRun) add(b *pebble.Batch, k, prefix []byte) error {
	if r.n > 0 && !bytes.Equal(prefix, r.prefix) {
		if err := r.flush(b); err != nil {
			return err
		}
	}
	if r.n == 0 {
		r.prefix = bytes.Clone(prefix)
	}
	if r.n < r.min {
		r.keys = append(r.keys, bytes.Clone(k))
	}
	r.last = append(r.last[:0], k...)
	r.n++
	return nil
}

// flush deletes the records of the run and empties it.
func (r *deletionRun) flush(b *pebble.Batch) error {
	defer func() { r.keys, r.n = r.keys[:0], 0 }()
	if r.n == 0 {
		return nil
	}
	if r.n >= r.min {
		return b.DeleteRange(r.keys[0], append(bytes.Clone(r.last), 0), nil)
	}
	for _, k := range r.keys {
		if err := b.Delete(k, nil); err != nil {
			return err
		}
	}
	return nil
}

func compareRevisions(a, b storage.Revision) int {
	if c := cmp.Compare(a.Main, b.Main); c != 0 {
		return c
	}
	return cmp.Compare(a.Sub, b.Sub)
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

// RunCompactor first counts the live keys (see Store.Keys), then runs the
// compaction steps each compaction leaves, until ctx ends or
// StopCompaction is called; errors go to onError, and the
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
	var countAgain time.Time
	for {
		if !s.keysKnown.Load() && !time.Now().Before(countAgain) {
			// A failed count (a storage error) is tried again a minute
			// later; the steps go on meanwhile.
			if err := s.countKeys(); err != nil {
				onError(fmt.Errorf("mvcc: counting the live keys: %w", err))
				countAgain = time.Now().Add(time.Minute)
			}
		}
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
	s.endKeyCount()
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

func (s *Store) compactedChanged() <-chan struct{} { return s.compactedSignal.Changed() }

func (s *Store) notifyCompacted() { s.compactedSignal.Notify() }

// kickCompactor tells RunCompactor a compaction was committed.
func (s *Store) kickCompactor() {
	select {
	case s.compactKick <- struct{}{}:
	default:
	}
}
