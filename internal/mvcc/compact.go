package mvcc

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// Compact discards the history that no read at a revision >= req.Revision
// can see: for every key, the versions older than its newest version at or
// below the compaction revision, and that newest version too when it is a
// deletion. Ranges at revisions >= req.Revision answer exactly as before.
//
// The work is proportional to the changes made since the previous
// compaction: only keys changed in (previous, req.Revision] can have
// versions to discard, and each has at most one version older than the
// previous compaction left.
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
	if err := w.compactHistory(w.compactRev, rev); err != nil {
		return nil, w.fail(err)
	}
	if err := w.fail(putCounter(w.b, storage.CompactRevKey, rev)); err != nil {
		return nil, err
	}
	w.compactRev = rev
	return &etcdserverpb.CompactionResponse{Header: &etcdserverpb.ResponseHeader{Revision: w.rev}}, nil
}

// compactHistory walks the events in (prev, rev]. For each change of key k
// at revision r it deletes:
//   - the version of k that survived the previous compaction, if r is the
//     first change of k after it (that version is now superseded);
//   - r itself, if k changed again at or below rev, or if r is a deletion.
//
// Both iterators see the batch as it was before the walk, so deletions made
// by the walk do not disturb its lookups.
func (w *Writer) compactHistory(prev, rev int64) error {
	lo, hi := storage.EventSpan(prev+1, rev+1)
	events, err := w.b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	history, err := w.b.NewIter(&pebble.IterOptions{
		LowerBound: storage.HistorySpanStart(nil),
		UpperBound: storage.HistorySpanEnd(nil),
	})
	if err != nil {
		_ = events.Close()
		return err
	}
	for valid := events.First(); valid && err == nil; valid = events.Next() {
		err = w.compactEvent(history, events.Key(), events.Value(), prev, rev)
	}
	if err != nil {
		_ = events.Close()
		_ = history.Close()
		return err
	}
	if err := closeIter(history); err != nil {
		_ = events.Close()
		return err
	}
	return closeIter(events)
}

func (w *Writer) compactEvent(history *pebble.Iterator, ek, ev []byte, prev, rev int64) error {
	r, err := storage.DecodeEventKey(ek)
	if err != nil {
		return err
	}
	e, err := decodeEvent(ek, ev)
	if err != nil {
		return err
	}
	key := e.GetKv().GetKey()
	prefix := storage.HistoryKeyPrefix(key)
	hk := storage.HistoryKey(key, r)

	if history.SeekLT(hk) && isHistoryOf(history.Key(), prefix) {
		_, older, err := storage.DecodeHistoryKey(history.Key())
		if err != nil {
			return err
		}
		if older.Main <= prev {
			if err := w.dropVersion(key, older); err != nil {
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
		drop = next.Main <= rev
	}
	if err := history.Error(); err != nil {
		return err
	}
	if drop {
		return w.dropVersion(key, r)
	}
	return nil
}

// dropVersion deletes the history record and the event of key's change at
// rev.
func (w *Writer) dropVersion(key []byte, rev storage.Revision) error {
	if err := w.b.Delete(storage.HistoryKey(key, rev), nil); err != nil {
		return err
	}
	return w.b.Delete(storage.EventKey(rev), nil)
}
