package watch

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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

// deliver queues evs (the watcher's events, whole revisions, in order) as
// one response whose header revision is rev, after applying the watcher's
// filters and prev_kv choice. It reports false, queueing nothing, if the
// stream has no room; a watcher with nothing left to send after filtering
// gets no response, as in etcd.
func (w *watcher) deliver(evs []*mvccpb.Event, rev int64) bool {
	out := make([]*mvccpb.Event, 0, len(evs))
	size := 0
	for _, ev := range evs {
		switch ev.GetType() {
		case mvccpb.Event_PUT:
			if w.noPut {
				continue
			}
		case mvccpb.Event_DELETE:
			if w.noDelete {
				continue
			}
		}
		// Events are shared between watchers and never modified: each
		// watcher gets its own envelope.
		e := &mvccpb.Event{Type: ev.GetType(), Kv: ev.GetKv()}
		if w.prevKV {
			e.PrevKv = ev.GetPrevKv()
		}
		size += eventSize(e)
		out = append(out, e)
	}
	if len(out) == 0 {
		return true
	}
	resp := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: rev}, WatchId: w.id, Events: out}
	if !w.st.push(Response{Msg: resp, Fragment: w.fragment}, len(out), size) {
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
