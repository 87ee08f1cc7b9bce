package watch

import (
	"bytes"

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

// eventSize estimates the memory an event holds.
func eventSize(ev *mvccpb.Event) int {
	n := 64 + len(ev.GetKv().GetKey()) + len(ev.GetKv().GetValue())
	if p := ev.GetPrevKv(); p != nil {
		n += 48 + len(p.GetKey()) + len(p.GetValue())
	}
	return n
}
