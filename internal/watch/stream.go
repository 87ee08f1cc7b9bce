package watch

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Cancel reasons etcd sends for creates it refuses; clients match on them.
const (
	reasonCompacted   = "etcdserver: mvcc: required revision has been compacted"
	reasonEmptyRange  = "mvcc: watcher range is empty"
	reasonDuplicateID = "mvcc: duplicate watch ID provided on the WatchStream"
)

// ErrClosed is returned by Next once the stream is closed and drained.
var ErrClosed = errors.New("watch: stream closed")

// Response is one message for the client. Fragment asks the sender to
// split it if it is too large (the watch was created with fragment set).
// Header carries only the revision; the sender fills in the rest.
type Response struct {
	Msg      *pb.WatchResponse
	Fragment bool
}

// Stream is the server side of one client Watch stream: its watchers and
// the queue of responses for the client, in the order they must be sent.
type Stream struct {
	h *Hub

	// Guarded by h.mu.
	watchers map[int64]*watcher
	nextID   int64

	qmu     sync.Mutex
	queue   []Response
	events  int // queued events
	bytes   int // their estimated size
	control int // queued control responses
	closed  bool
	ready   chan struct{} // signaled when the queue becomes non-empty or the stream closes
	room    chan struct{} // signaled when the queue is drained
}

// NewStream opens a stream; after Hub.Close the stream is closed already.
func (h *Hub) NewStream() *Stream {
	st := &Stream{
		h:        h,
		watchers: make(map[int64]*watcher),
		ready:    make(chan struct{}, 1),
		room:     make(chan struct{}, 1),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		st.closed = true
	} else {
		h.streams[st] = struct{}{}
	}
	return st
}

// Watch handles a create request exactly as etcd does: the response (queued
// before any event of the new watcher) is "created" with the watch ID and
// the current revision, or "created and canceled" with watch ID -1 and
// etcd's reason for a negative start revision, an empty range or a watch
// ID already in use on this stream. A key of "" means "\x00"; a range end
// of "\x00" means every key from key on.
func (st *Stream) Watch(req *pb.WatchCreateRequest) {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if st.isClosed() {
		return
	}
	refuse := func(reason string) {
		st.pushControl(&pb.WatchResponse{
			Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: -1, Created: true, Canceled: true, CancelReason: reason,
		})
	}
	key := req.GetKey()
	if len(key) == 0 {
		key = []byte{0}
	}
	var end []byte
	switch re := req.GetRangeEnd(); {
	case len(re) == 0:
	case len(re) == 1 && re[0] == 0:
		end = []byte{}
	default:
		end = re
	}
	if req.GetStartRevision() < 0 {
		refuse(reasonCompacted)
		return
	}
	if len(end) > 0 && bytes.Compare(key, end) >= 0 {
		refuse(reasonEmptyRange)
		return
	}
	id := req.GetWatchId()
	if id == 0 { // etcd's AutoWatchID
		for st.watchers[st.nextID] != nil {
			st.nextID++
		}
		id = st.nextID
		st.nextID++
	} else if st.watchers[id] != nil {
		refuse(reasonDuplicateID)
		return
	}
	w := &watcher{
		id:             id,
		st:             st,
		key:            bytes.Clone(key),
		end:            bytes.Clone(end),
		startRev:       req.GetStartRevision(),
		prevKV:         req.GetPrevKv(),
		progressNotify: req.GetProgressNotify(),
		fragment:       req.GetFragment(),
		idle:           true,
	}
	for _, f := range req.GetFilters() {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	st.watchers[id] = w
	st.pushControl(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: id, Created: true})
	if w.startRev == 0 || w.startRev > h.rev {
		w.next = max(w.startRev, h.rev+1)
		w.state = stateSynced
		h.synced.add(w)
		return
	}
	w.next = w.startRev
	h.addUnsynced(w)
}

// Cancel cancels the stream's watch id; the response says so. An unknown
// id gets no response, as in etcd.
func (st *Stream) Cancel(id int64) {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	w := st.watchers[id]
	if w == nil {
		return
	}
	h.remove(w)
	st.pushControl(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: id, Canceled: true})
}

// RequestProgress answers a WatchProgressRequest the way etcd 3.7 does: if
// every watcher of the stream is synced (and none waits for a future start
// revision), it queues a progress notification with watch ID -1 and the
// current revision, after all events up to that revision; otherwise, or
// if the stream has no watchers, nothing is sent.
func (st *Stream) RequestProgress() {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(st.watchers) == 0 {
		return
	}
	for _, w := range st.watchers {
		if w.state != stateSynced || h.rev < w.startRev {
			return
		}
	}
	st.pushControl(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: -1})
}

// ProgressTick sends the periodic progress notifications: to each watcher
// created with progress_notify that is synced and was sent no events since
// the previous tick, a response without events carrying its watch ID and
// the current revision.
func (st *Stream) ProgressTick() {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range st.watchers {
		if !w.progressNotify {
			continue
		}
		if w.idle && w.state == stateSynced && h.rev >= w.startRev {
			st.pushControl(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: w.id})
		}
		w.idle = true
	}
}

// RunProgress calls ProgressTick every progress interval (plus this
// stream's jitter) until ctx ends.
func (st *Stream) RunProgress(ctx context.Context) {
	d := st.h.cfg.ProgressInterval
	d += time.Duration(rand.Int64N(int64(d)/10 + 1))
	for {
		select {
		case <-st.h.cfg.Clock.After(d):
			st.ProgressTick()
		case <-ctx.Done():
			return
		}
	}
}

// Close cancels every watcher of the stream, silently, and wakes Next.
func (st *Stream) Close() {
	// Closed first: a Watch racing with Close then either sees it or
	// registers a watcher before the removal below.
	st.qmu.Lock()
	st.closed = true
	st.queue, st.events, st.bytes, st.control = nil, 0, 0, 0
	st.qmu.Unlock()
	h := st.h
	h.mu.Lock()
	for _, w := range st.watchers {
		h.remove(w)
	}
	delete(h.streams, st)
	h.mu.Unlock()
	signalChan(st.ready)
	signalChan(st.room)
}

func (st *Stream) isClosed() bool {
	st.qmu.Lock()
	defer st.qmu.Unlock()
	return st.closed
}

// Next waits for queued responses and takes them all, in order. It fails
// with ErrClosed after Close, or with ctx's error.
func (st *Stream) Next(ctx context.Context) ([]Response, error) {
	for {
		out, err := st.TryNext()
		if out != nil || err != nil {
			return out, err
		}
		select {
		case <-st.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TryNext takes the queued responses without waiting; nil if there are none.
func (st *Stream) TryNext() ([]Response, error) {
	st.qmu.Lock()
	if st.closed {
		st.qmu.Unlock()
		return nil, ErrClosed
	}
	out := st.queue
	st.queue, st.events, st.bytes, st.control = nil, 0, 0, 0
	st.qmu.Unlock()
	if out != nil {
		signalChan(st.room)
		// Unsynced watchers of this stream may fit now.
		st.h.signal()
	}
	return out, nil
}

// Bounds of a response an Outbox builds by merging.
const (
	coalesceMaxEvents = 1000
	coalesceMaxBytes  = 1 << 20
)

// Outbox holds the responses taken from a stream that the sender has not
// sent yet, and merges the event responses of each watcher into fewer,
// larger ones: a client that falls behind then catches up with one message
// per watcher instead of one per applied batch, and per-message work is
// what a busy client spends its time on. The sender adds what it takes
// from the stream before every send, so whatever queued up during a send
// joins the responses still waiting.
//
// A watcher's events keep their order and only move earlier in the
// stream, never past a control response (created, canceled, progress),
// which is a barrier for every watcher. Whole responses are merged, so the
// events of one revision stay together.
type Outbox struct {
	q       []Response
	events  int // events in q
	sent    int // responses popped so far: q[0] is response number sent
	merging map[int64]*mergeTarget
}

type mergeTarget struct {
	at, events, bytes int // at: number of the response merged into
}

// Len is the number of responses waiting.
func (o *Outbox) Len() int { return len(o.q) }

// Events is the number of events waiting.
func (o *Outbox) Events() int { return o.events }

// Add appends rs, merging event responses into waiting ones of the same
// watcher where no barrier lies between.
func (o *Outbox) Add(rs []Response) {
	if o.merging == nil {
		o.merging = make(map[int64]*mergeTarget)
	}
	for _, r := range rs {
		m := r.Msg
		o.events += len(m.GetEvents())
		if len(m.GetEvents()) == 0 || m.GetCreated() || m.GetCanceled() || m.GetCompactRevision() != 0 {
			clear(o.merging)
			o.q = append(o.q, r)
			continue
		}
		size := 0
		for _, ev := range m.GetEvents() {
			size += eventSize(ev)
		}
		if t := o.merging[m.GetWatchId()]; t != nil && t.events+len(m.GetEvents()) <= coalesceMaxEvents && t.bytes+size <= coalesceMaxBytes {
			into := o.q[t.at-o.sent].Msg
			into.Events = append(into.Events, m.GetEvents()...)
			into.Header = m.GetHeader()
			t.events += len(m.GetEvents())
			t.bytes += size
			continue
		}
		o.merging[m.GetWatchId()] = &mergeTarget{at: o.sent + len(o.q), events: len(m.GetEvents()), bytes: size}
		o.q = append(o.q, r)
	}
}

// Pop takes the next response to send; a response being sent takes no
// more merges.
func (o *Outbox) Pop() (Response, bool) {
	if len(o.q) == 0 {
		return Response{}, false
	}
	r := o.q[0]
	o.events -= len(r.Msg.GetEvents())
	o.q[0] = Response{}
	o.q = o.q[1:]
	if t := o.merging[r.Msg.GetWatchId()]; t != nil && t.at == o.sent {
		delete(o.merging, r.Msg.GetWatchId())
	}
	o.sent++
	return r, true
}

// MaxQueuedEvents is the bound on events queued for this stream; a sender
// holding an Outbox keeps it under the same bound, so memory stays bounded
// when the client reads slowly.
func (st *Stream) MaxQueuedEvents() int { return st.h.cfg.MaxQueuedEvents }

// WaitControlRoom waits until the stream has room for more control
// responses: the API layer calls it before handling each client request,
// so a client that sends requests without reading responses is slowed
// down instead of growing the queue.
func (st *Stream) WaitControlRoom(ctx context.Context) error {
	for {
		st.qmu.Lock()
		ok := st.closed || st.control < maxQueuedControl
		st.qmu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-st.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// push queues a response with events if the queue has room: it always has
// when empty, so any single response can pass.
func (st *Stream) push(r Response, events, size int) bool {
	st.qmu.Lock()
	defer st.qmu.Unlock()
	if st.closed {
		return true // nobody will read it; the watcher is as good as served
	}
	if len(st.queue) > 0 && (st.events+events > st.h.cfg.MaxQueuedEvents || st.bytes+size > st.h.cfg.MaxQueuedBytes) {
		return false
	}
	st.queue = append(st.queue, r)
	st.events += events
	st.bytes += size
	signalChan(st.ready)
	return true
}

// pushControl queues a response without events; it is never refused (see
// WaitControlRoom for what bounds them).
func (st *Stream) pushControl(m *pb.WatchResponse) {
	st.qmu.Lock()
	defer st.qmu.Unlock()
	if st.closed {
		return
	}
	st.queue = append(st.queue, Response{Msg: m})
	st.control++
	signalChan(st.ready)
}

// hasRoom reports whether the queue is below its bounds.
func (st *Stream) hasRoom() bool {
	st.qmu.Lock()
	defer st.qmu.Unlock()
	return !st.closed && (len(st.queue) == 0 ||
		(st.events < st.h.cfg.MaxQueuedEvents && st.bytes < st.h.cfg.MaxQueuedBytes))
}

func signalChan(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
