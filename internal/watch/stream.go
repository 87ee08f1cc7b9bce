package watch

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Cancel reasons etcd sends for creates it refuses; clients match on them.
const (
	reasonCompacted   = "etcdserver: mvcc: required revision has been compacted"
	reasonEmptyRange  = "mvcc: watcher range is empty"
	reasonDuplicateID = "mvcc: duplicate watch ID provided on the WatchStream"
)

// ErrClosed is returned by Next once the stream is closed and drained.
var ErrClosed = errors.New("watch: stream closed")

// Response is one message for the client: a control response (created,
// canceled, progress) or a watcher's events. Its header carries only the
// revision; the sender fills in the rest.
type Response struct {
	ctl *pb.WatchResponse // a control response; nil for events

	// An event response: watch watchID is sent changes (whole revisions,
	// in order), with their PrevKv if prevKV, under header revision rev.
	// changes is shared with other responses unless its capacity equals
	// its length or this response owns it: appending never writes into
	// another response's events.
	watchID  int64
	rev      int64
	changes  []*change
	size     int // estimated memory of the changes
	prevKV   bool
	fragment bool
}

// Control reports whether r is a control response (no events).
func (r Response) Control() bool { return r.ctl != nil }

// Fragment reports whether the watch asked for large responses to be split
// (it was created with fragment set).
func (r Response) Fragment() bool { return r.fragment }

// Revision is the response's header revision.
func (r Response) Revision() int64 {
	if r.ctl != nil {
		return r.ctl.GetHeader().GetRevision()
	}
	return r.rev
}

// WatchID is the watch the response is for (-1 for a progress
// notification of the whole stream).
func (r Response) WatchID() int64 {
	if r.ctl != nil {
		return r.ctl.GetWatchId()
	}
	return r.watchID
}

// NumEvents is the number of events in the response.
func (r Response) NumEvents() int { return len(r.changes) }

// Message is the response as a protobuf message; its header holds only the
// revision. A control response's message is the response itself; the
// sender may set its header.
func (r Response) Message() *pb.WatchResponse {
	if r.ctl != nil {
		return r.ctl
	}
	evs := make([]*mvccpb.Event, len(r.changes))
	for i, c := range r.changes {
		evs[i] = c.event(r.prevKV)
	}
	return &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: r.rev}, WatchId: r.watchID, Events: evs}
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
	done    chan struct{} // closed when the stream closes
}

// NewStream opens a stream; after Hub.Close the stream is closed already.
func (h *Hub) NewStream() *Stream {
	st := &Stream{
		h:        h,
		watchers: make(map[int64]*watcher),
		ready:    make(chan struct{}, 1),
		room:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		st.closed = true
		close(st.done)
	} else {
		h.streams[st] = struct{}{}
	}
	return st
}

// Refuse answers a create request that may not proceed (access control)
// as etcd does: "created and canceled" with watch ID -1 and reason.
func (st *Stream) Refuse(reason string) {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if st.isClosed() {
		return
	}
	st.pushControl(&pb.WatchResponse{
		Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: -1, Created: true, Canceled: true, CancelReason: reason,
	})
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
		span:           span{key: string(key), end: string(end), single: end == nil},
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

// CancelUnless cancels, with reason, every watch of the stream whose key
// range allowed refuses (access control changed after it was created).
// The range is passed as in the create request: end nil for one key,
// "\x00" for every key from key on.
func (st *Stream) CancelUnless(allowed func(key, end []byte) bool, reason string) {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, w := range st.watchers {
		end := w.end
		if end != nil && len(end) == 0 {
			end = []byte{0}
		}
		if allowed(w.key, end) {
			continue
		}
		h.remove(w)
		st.pushControl(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: id, Canceled: true, CancelReason: reason})
	}
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
	if !st.closed {
		st.closed = true
		close(st.done)
	}
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

// Ready is signaled when responses are queued (or the stream closes); a
// sender that waits for something else as well selects on it, then calls
// TryNext.
func (st *Stream) Ready() <-chan struct{} { return st.ready }

// Done is closed when the stream is closed.
func (st *Stream) Done() <-chan struct{} { return st.done }

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

// A stream's message budget: sendRate messages a second on average, with
// bursts of up to sendBurst. Within it every response goes out as soon as
// it is queued. Beyond it responses wait their turn, and the events that
// reach a watcher meanwhile join its waiting response (see Outbox). The
// budget limits messages, never events: a watcher whose keys change faster
// than the stream may send gets its events in fewer, larger responses, at
// most about (watchers with events waiting)/sendRate seconds late.
//
// Per-message work (framing, and the client's decoding and dispatch of
// each response to its watcher) is what a server and its clients spend
// their time on when a thousand watchers follow a fast writer: one message
// per watcher per applied batch costs several times more than the events
// themselves. etcd gets its batching from overflow: watchers whose stream's
// 128-slot buffer is full wait for a background loop (10 ms and 100 ms
// rounds) to send them everything since.
//
// The numbers: a burst of a thousand watchers seeing four writes passes
// unpaced, and so does a steady 2000 messages a second (ten watchers of a
// key written 200 times a second). A sender out of budget waits for as
// many messages' worth as it has responses waiting, up to sendRefill, and
// then sends them together: with many watchers waiting it wakes about a
// hundred times a second rather than sendRate times.
const (
	sendRate   = 2000
	sendBurst  = 4000
	sendRefill = 20
)

// Outbox holds the responses taken from a stream that the sender has not
// sent yet, and merges the event responses of each watcher into fewer,
// larger ones: a client that falls behind, or a stream over its message
// budget, then gets one message per watcher instead of one per applied
// batch. The sender adds what it takes from the stream before every send,
// so whatever queued up meanwhile joins the responses still waiting.
//
// A watcher's events keep their order and only move earlier in the
// stream, never past a control response (created, canceled, progress),
// which is a barrier for every watcher. Whole responses are merged, so the
// events of one revision stay together.
type Outbox struct {
	q       []Response
	events  int // events in q
	bytes   int // their estimated size
	control int // control responses in q
	sent    int // responses popped so far: q[0] is response number sent
	merging map[int64]*mergeTarget

	// The message budget: tokens available at time filled.
	tokens float64
	filled time.Time
}

type mergeTarget struct {
	at, events, bytes int  // at: number of the response merged into
	owned             bool // its changes slice is a copy only it uses
}

// Len is the number of responses waiting.
func (o *Outbox) Len() int { return len(o.q) }

// Events is the number of events waiting.
func (o *Outbox) Events() int { return o.events }

// HasRoom reports whether the sender may take more of st's queue into the
// outbox: while it holds under four queues' worth of events (they are
// shared with other watchers, so each costs a pointer) and of estimated
// bytes, and under a queue's worth of control responses. One take adds at
// most one more queue's worth. Beyond that responses stay in the stream's
// queue, whose bounds make watchers fall back to catching up from storage
// and make the client's further requests wait (WaitControlRoom).
func (o *Outbox) HasRoom(st *Stream) bool {
	return o.events < 4*st.h.cfg.MaxQueuedEvents && o.bytes < 4*st.h.cfg.MaxQueuedBytes &&
		o.control < maxQueuedControl
}

// Add appends rs, merging event responses into waiting ones of the same
// watcher where no barrier lies between.
func (o *Outbox) Add(rs []Response) {
	if o.merging == nil {
		o.merging = make(map[int64]*mergeTarget)
	}
	for _, r := range rs {
		if r.ctl != nil {
			clear(o.merging)
			o.q = append(o.q, r)
			o.control++
			continue
		}
		n := len(r.changes)
		o.events += n
		o.bytes += r.size
		if t := o.merging[r.watchID]; t != nil && t.events+n <= coalesceMaxEvents && t.bytes+r.size <= coalesceMaxBytes {
			into := &o.q[t.at-o.sent]
			if t.owned {
				into.changes = append(into.changes, r.changes...)
			} else {
				into.changes = append(append(make([]*change, 0, 2*(t.events+n)), into.changes...), r.changes...)
				t.owned = true
			}
			into.rev = r.rev
			into.size += r.size
			t.events += n
			t.bytes += r.size
			continue
		}
		o.merging[r.watchID] = &mergeTarget{at: o.sent + len(o.q), events: n, bytes: r.size}
		o.q = append(o.q, r)
	}
}

// Delay is how long the sender should wait, at time now, before sending
// the next response, to keep the stream within its message budget; zero
// means at once. While it waits, what it adds merges.
//
// A control response waiting (created, canceled, progress: what the client
// asked for) suspends the budget until it is sent, so it waits only for the
// responses ahead of it to be written, never for pacing; what goes out
// meanwhile is not charged.
func (o *Outbox) Delay(now time.Time) time.Duration {
	if o.filled.IsZero() {
		o.tokens, o.filled = sendBurst, now
	}
	if now.After(o.filled) {
		o.tokens = min(sendBurst, o.tokens+now.Sub(o.filled).Seconds()*sendRate)
		o.filled = now
	}
	if o.tokens >= 1 || o.control > 0 {
		return 0
	}
	need := min(sendRefill, float64(max(len(o.q), 1)))
	return time.Duration((need - o.tokens) / sendRate * float64(time.Second))
}

// Pop takes the next response to send, spending one message of the
// budget unless a control response is waiting; a response being sent takes
// no more merges.
func (o *Outbox) Pop() (Response, bool) {
	if len(o.q) == 0 {
		return Response{}, false
	}
	r := o.q[0]
	o.events -= len(r.changes)
	o.bytes -= r.size
	o.q[0] = Response{}
	o.q = o.q[1:]
	if o.control == 0 {
		o.tokens--
	}
	if r.ctl != nil {
		o.control--
	} else if t := o.merging[r.watchID]; t != nil && t.at == o.sent {
		delete(o.merging, r.watchID)
	}
	o.sent++
	return r, true
}

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
	st.queue = append(st.queue, Response{ctl: m})
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
