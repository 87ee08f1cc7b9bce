package mvcc

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// EventsRequest asks for the stored changes with main revisions in
// [From, To], in revision order: the history a watcher replays.
type EventsRequest struct {
	From, To int64
	// Match selects the events to return by key; nil selects every event.
	Match func(key []byte) bool
	// PrevKV reports whether the event of a key needs PrevKv, the key's
	// version at the revision before the event (etcd's prev_kv); nil means
	// none does. Creations never get one, as in etcd.
	PrevKV func(key []byte) bool
	// Limit bounds the work of one call: once Limit stored events (matching
	// or not) have been read, the scan stops at the end of the current
	// revision, so a revision is never split. 0 means no limit.
	Limit int
	// LimitBytes is the same bound on the stored bytes read.
	LimitBytes int
}

// EventsResult is the answer to an EventsRequest.
type EventsResult struct {
	Events []*mvccpb.Event
	// Through is the last revision the scan covered completely: Events holds
	// every selected change with a revision in [From, Through]. It is To
	// unless Limit ended the scan earlier, and From-1 if it covered nothing.
	Through int64
	// CompactRev is the store's compact revision at the time of the read.
	CompactRev int64
}

// Events reads changes from the revision-major event log, from one
// consistent snapshot. Its cost is proportional to the changes in the
// window it scans (plus one history seek and one point read per event that
// gets PrevKv).
//
// A From below the compact revision fails with ErrCompacted (the result
// still carries CompactRev), and a To above the current revision with
// ErrFutureRev. As in etcd, a From equal to the compact revision is
// allowed, but deletions made at exactly that revision are gone with the
// compaction.
func (s *Store) Events(req EventsRequest) (EventsResult, error) {
	v, release := s.committedView()
	defer release()
	return v.events(req)
}

func (v *view) events(req EventsRequest) (EventsResult, error) {
	res := EventsResult{Through: req.From - 1, CompactRev: v.compactRev}
	if req.From < v.compactRev {
		return res, fmt.Errorf("%w: events from revision %d, compacted at %d", ErrCompacted, req.From, v.compactRev)
	}
	if req.To > v.rev {
		return res, fmt.Errorf("%w: events up to revision %d, current revision is %d", ErrFutureRev, req.To, v.rev)
	}
	if req.To < req.From {
		return res, nil
	}
	lo, hi := storage.EventSpan(req.From, req.To+1)
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return res, err
	}
	var history *pebble.Iterator
	defer func() {
		if history != nil {
			_ = history.Close()
		}
	}()
	scanned, scannedBytes := 0, 0
	cur := req.From - 1 // main revision of the events read last
	for valid := it.First(); valid; valid = it.Next() {
		r, err := storage.DecodeEventKey(it.Key())
		if err != nil {
			_ = it.Close()
			return res, err
		}
		if r.Main != cur {
			// Every event of revision cur has been read.
			res.Through = cur
			if (req.Limit > 0 && scanned >= req.Limit) || (req.LimitBytes > 0 && scannedBytes >= req.LimitBytes) {
				return res, closeIter(it)
			}
			cur = r.Main
		}
		scanned++
		scannedBytes += len(it.Value())
		ev, err := decodeEvent(it.Key(), it.Value())
		if err != nil {
			_ = it.Close()
			return res, err
		}
		key := ev.GetKv().GetKey()
		if req.Match != nil && !req.Match(key) {
			continue
		}
		needHistory := req.PrevKV != nil && !isCreate(ev) && req.PrevKV(key)
		// The compact revision's own events are served, but not those
		// its compaction discards; steps still due may not have yet.
		stepsDue := r.Main == v.compactRev && v.compacted < v.compactRev
		if (needHistory || stepsDue) && history == nil {
			if history, err = v.r.NewIter(&pebble.IterOptions{
				LowerBound: storage.HistorySpanStart(nil),
				UpperBound: storage.HistorySpanEnd(nil),
			}); err != nil {
				_ = it.Close()
				return res, err
			}
		}
		if stepsDue {
			gone, err := discardedByCompaction(history, ev, r, v.compactRev)
			if err != nil {
				_ = it.Close()
				return res, err
			}
			if gone {
				continue
			}
		}
		if needHistory {
			if ev.PrevKv, err = v.versionBefore(history, key, r.Main); err != nil {
				_ = it.Close()
				return res, err
			}
		}
		res.Events = append(res.Events, ev)
	}
	res.Through = req.To
	return res, closeIter(it)
}

// versionBefore returns the version of key in force at revision rev-1, or
// nil if there was none or it has been compacted away (etcd answers such a
// prev_kv read with an error and leaves PrevKv unset).
func (v *view) versionBefore(history *pebble.Iterator, key []byte, rev int64) (*mvccpb.KeyValue, error) {
	if rev-1 < v.compactRev {
		return nil, nil
	}
	r, put, found, err := newestAtOrBelow(history, key, rev-1)
	if err != nil || !found || !put {
		return nil, err
	}
	return v.eventKV(r)
}

// discardedByCompaction reports whether the compaction at compactRev
// discards the change ev, at revision r: a deletion, or a put the same key
// changed again at or below compactRev (see compaction.event).
func discardedByCompaction(history *pebble.Iterator, ev *mvccpb.Event, r storage.Revision, compactRev int64) (bool, error) {
	if ev.GetType() == mvccpb.Event_DELETE {
		return true, nil
	}
	key := ev.GetKv().GetKey()
	if !history.SeekGE(storage.HistoryKey(key, storage.Revision{Main: r.Main, Sub: r.Sub + 1})) ||
		!isHistoryOf(history.Key(), storage.HistoryKeyPrefix(key)) {
		return false, history.Error()
	}
	_, next, err := storage.DecodeHistoryKey(history.Key())
	if err != nil {
		return false, err
	}
	return next.Main <= compactRev, nil
}

// isCreate reports a put that created its key: it has no previous version.
func isCreate(ev *mvccpb.Event) bool {
	return ev.GetType() == mvccpb.Event_PUT && ev.GetKv().GetCreateRevision() == ev.GetKv().GetModRevision()
}
