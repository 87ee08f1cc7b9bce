package watch

import (
	"bytes"
	"math/bits"
	"unsafe"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

type state int

const (
	stateSynced state = iota
	stateUnsynced
	stateCanceled
)

// watcher is one watch of a stream. Its keys and options never change
// after creation; next, state and idle are guarded by the hub's mutex.
type watcher struct {
	id  int64
	st  *Stream
	key []byte
	// end is nil for a single key, empty (not nil) for every key >= key,
	// else the exclusive end of the range.
	end      []byte
	span     span // key and end as a comparable value
	startRev int64

	prevKV, noPut, noDelete  bool
	progressNotify, fragment bool

	// next is the lowest revision whose events the watcher has not been
	// given. For a synced watcher it is only a lower bound (it has been
	// given everything up to the hub's revision); it exceeds the hub's
	// revision for a watch of a future revision.
	next  int64
	state state
	// idle is true when no events were queued for the watcher since the
	// last progress tick (etcd's rule for periodic notifications).
	idle bool
	// notifyMark is the Notify call that last matched the watcher, and
	// notifyAt its entry in that call's list (Hub.Notify's bookkeeping).
	notifyMark uint64
	notifyAt   int
}

// span is what a watcher watches, as a map key.
type span struct {
	key, end string
	single   bool // end == nil
}

func (w *watcher) contains(key []byte) bool {
	switch {
	case w.end == nil:
		return bytes.Equal(key, w.key)
	case len(w.end) == 0:
		return bytes.Compare(key, w.key) >= 0
	default:
		return bytes.Compare(key, w.key) >= 0 && bytes.Compare(key, w.end) < 0
	}
}

// deliver queues cs (the watcher's changes, whole revisions, in order) as
// one response whose header revision is rev, after applying the watcher's
// filters. It reports false, queueing nothing, if the stream has no room;
// a watcher with nothing left to send after filtering gets no response, as
// in etcd. cs may be shared with other watchers: it is never written to.
func (w *watcher) deliver(cs []*change, rev int64) bool {
	out := cs
	if w.noPut || w.noDelete {
		out = make([]*change, 0, len(cs))
		for _, c := range cs {
			if t := c.ev.GetType(); (t == mvccpb.Event_PUT && !w.noPut) || (t == mvccpb.Event_DELETE && !w.noDelete) {
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		return true
	}
	size := 0
	for _, c := range out {
		size += c.size
	}
	// Capacity capped at the length: whoever appends to it copies first.
	r := Response{watchID: w.id, rev: rev, changes: out[:len(out):len(out)], size: size, prevKV: w.prevKV, fragment: w.fragment}
	if !w.st.push(r, len(out), size) {
		return false
	}
	w.idle = false
	return true
}

// eventSize is the memory an event's change holds, in bytes: its key and
// value (and those of its previous version), the change, the Event and
// its KeyValues (an allocation each), the change's place in its batch's
// slice and, in the recent buffer, its revision's slot, counted twice
// because that slice is compacted only once half of it was evicted. The
// estimate before counted only the bytes and a flat 64 (48 for the previous
// version), some 60% of the real heap: the recent buffer held 1.6 times
// its share, and the collector let the heap grow by as much again
// (TestEventSizeIsTheHeapAChangeHolds).
func eventSize(ev *mvccpb.Event) int {
	n := changeOverhead + allocSize(len(ev.GetKv().GetKey())) + allocSize(len(ev.GetKv().GetValue()))
	if p := ev.GetPrevKv(); p != nil {
		n += keyValueSize + allocSize(len(p.GetKey())) + allocSize(len(p.GetValue()))
	}
	return n
}

var (
	keyValueSize   = allocSize(int(unsafe.Sizeof(mvccpb.KeyValue{})))
	changeOverhead = allocSize(int(unsafe.Sizeof(change{}))) + allocSize(int(unsafe.Sizeof(mvccpb.Event{}))) +
		keyValueSize + int(unsafe.Sizeof(&change{})) + 2*int(unsafe.Sizeof(recentRev{}))
)

// allocSize is about what the Go allocator hands out for n bytes: its
// size classes are spaced an eighth of the size apart (at least 8 bytes).
func allocSize(n int) int {
	if n == 0 {
		return 0
	}
	step := max(8, 1<<max(0, bits.Len(uint(n))-4))
	return (n + step - 1) / step * step
}
