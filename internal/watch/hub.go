package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/kvorum/kvorum/internal/mvcc"
)

// Source is the stored history unsynced watchers replay: the member's
// mvcc.Store (looked up on every call, since a raft snapshot replaces it).
type Source interface {
	Events(mvcc.EventsRequest) (mvcc.EventsResult, error)
	CompactRev() int64
}

// Clock makes the waits between progress notifications; tests substitute
// one they control.
type Clock interface {
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Defaults of Config.
const (
	DefaultMaxQueuedEvents  = 4096
	DefaultMaxQueuedBytes   = 8 << 20
	DefaultRecentBytes      = 16 << 20
	DefaultCatchUpEvents    = 4096
	DefaultCatchUpBytes     = 1 << 20
	DefaultProgressInterval = 10 * time.Minute // etcd's

	// maxWatchersPerSync bounds the watchers one catch-up round serves
	// (they share one read of the event log).
	maxWatchersPerSync = 512
	// maxQueuedControl bounds the control responses (created, canceled,
	// progress) a stream may have queued before the client's further
	// requests wait (Stream.WaitControlRoom).
	maxQueuedControl = 64
)

// Config configures a Hub. Zero values take the defaults above.
type Config struct {
	Source Source
	// Rev is the store's current revision when the hub starts.
	Rev int64
	// MaxQueuedEvents and MaxQueuedBytes bound the events (and their key
	// and value bytes) a stream holds that its client has not taken yet.
	// A watcher whose events do not fit becomes unsynced.
	MaxQueuedEvents int
	MaxQueuedBytes  int
	// RecentBytes bounds the buffer of the latest changes, from which a
	// watcher that is only a little behind catches up without reading
	// storage.
	RecentBytes int
	// CatchUpEvents and CatchUpBytes bound the stored events one catch-up
	// round reads (whole revisions are always read), and so the size of a
	// catch-up response.
	CatchUpEvents int
	CatchUpBytes  int
	// ProgressInterval is the period of progress notifications for
	// watchers created with progress_notify; a random tenth of it is added
	// per stream, as etcd does, so streams do not tick together.
	ProgressInterval time.Duration
	Clock            Clock
	Logger           *slog.Logger
}

// Hub fans committed changes out to watchers.
//
// Invariants, kept under mu:
//   - every live watcher is in exactly one of synced and unsynced;
//   - a synced watcher has been given (queued) every event of its keys
//     with a revision in [its next, rev]; Notify keeps that by queueing or
//     unsyncing;
//   - an unsynced watcher has been given every event of its keys in
//     [its start, its next); it is served only by the catch-up path, which
//     moves it to synced once next > rev.
type Hub struct {
	cfg  Config
	lg   *slog.Logger
	wake chan struct{}

	mu       sync.Mutex
	closed   bool
	streams  map[*Stream]struct{}
	rev      int64 // the last revision notified
	synced   group
	unsynced map[*watcher]struct{}
	recent   recent
	// notifySeq numbers Notify calls; a watcher matched by the current
	// call carries it in notifyMark (see Notify).
	notifySeq uint64
	// notifyBatches is Notify's scratch list of the watchers it matched.
	notifyBatches []notifyBatch
}

// New returns a hub at revision cfg.Rev.
func New(cfg Config) *Hub {
	if cfg.MaxQueuedEvents <= 0 {
		cfg.MaxQueuedEvents = DefaultMaxQueuedEvents
	}
	if cfg.MaxQueuedBytes <= 0 {
		cfg.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if cfg.RecentBytes <= 0 {
		cfg.RecentBytes = DefaultRecentBytes
	}
	if cfg.CatchUpEvents <= 0 {
		cfg.CatchUpEvents = DefaultCatchUpEvents
	}
	if cfg.CatchUpBytes <= 0 {
		cfg.CatchUpBytes = DefaultCatchUpBytes
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Hub{
		cfg:      cfg,
		lg:       cfg.Logger,
		wake:     make(chan struct{}, 1),
		rev:      cfg.Rev,
		synced:   newGroup(),
		unsynced: make(map[*watcher]struct{}),
		streams:  make(map[*Stream]struct{}),
		recent:   recent{start: cfg.Rev, end: cfg.Rev, max: cfg.RecentBytes},
	}
}

// Close ends every stream (their Next fails with ErrClosed) and refuses
// new ones: the member is stopping, and clients should resume elsewhere.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	streams := make([]*Stream, 0, len(h.streams))
	for st := range h.streams {
		streams = append(streams, st)
	}
	h.mu.Unlock()
	for _, st := range streams {
		st.Close()
	}
}

// Rev is the last revision the hub was notified of.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Unsynced is the number of watchers replaying from storage.
func (h *Hub) Unsynced() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.unsynced)
}

// Notify hands the hub the changes committed since the last call: evs (in
// revision order, as mvcc.Writer.Events lists them) took the store to
// revision rev. It never blocks on a client: a synced watcher whose stream
// has no room for its events becomes unsynced and replays them from
// storage later.
func (h *Hub) Notify(rev int64, evs []*mvccpb.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.rev {
		return
	}
	prev := h.rev
	h.rev = rev
	cs := wrap(evs)
	h.recent.add(prev, rev, cs)
	if h.synced.size() > 0 {
		// Each matching watcher's changes, as a run of cs while they are
		// consecutive, shared when the run is the whole batch (nothing
		// copied: the common case of every watcher of a key getting all of
		// it) and copied otherwise.
		h.notifySeq++
		seq := h.notifySeq
		batches := h.notifyBatches[:0]
		for i, c := range cs {
			h.synced.match(c.key(), func(w *watcher) {
				if c.rev() < w.next {
					return
				}
				if w.notifyMark != seq {
					w.notifyMark, w.notifyAt = seq, len(batches)
					batches = append(batches, notifyBatch{w: w, lo: i, hi: i + 1})
					return
				}
				b := &batches[w.notifyAt]
				switch {
				case b.own != nil:
					b.own = append(b.own, c)
				case b.hi == i:
					b.hi++
				default:
					b.own = append(slices.Clip(cs[b.lo:b.hi]), c)
				}
			})
		}
		for i, b := range batches {
			own := b.own
			switch {
			case own != nil:
			case b.lo == 0 && b.hi == len(cs):
				own = cs // the whole batch: shared
			default:
				// Part of it: a copy, so the rest of the batch is not
				// kept alive for as long as this response is queued.
				own = slices.Clone(cs[b.lo:b.hi])
			}
			if !b.w.deliver(own, rev) {
				h.unsync(b.w, prev+1)
			}
			batches[i] = notifyBatch{}
		}
		h.notifyBatches = batches[:0]
	}
	if len(h.unsynced) > 0 {
		h.signal()
	}
}

// sinceKey identifies watchers that catch up with the same changes: the
// same keys from the same revision.
type sinceKey struct {
	next int64
	span span
}

type sinceResult struct {
	cs []*change
	ok bool
}

func (w *watcher) sinceKey() sinceKey { return sinceKey{next: w.next, span: w.span} }

// notifyBatch is what Notify gives one watcher: cs[lo:hi] of its
// changes, or own when they are not consecutive.
type notifyBatch struct {
	w      *watcher
	lo, hi int
	own    []*change
}

// Restored tells the hub that the key space was replaced by a raft
// snapshot at revision rev: every synced watcher replays what it has not
// seen from storage.
func (h *Hub) Restored(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.synced.all() {
		h.unsync(w, h.rev+1)
	}
	if rev > h.rev {
		h.rev = rev
	}
	h.recent.reset(h.rev)
	h.signal()
}

// Run serves unsynced watchers until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	for {
		for h.SyncOnce() {
			if ctx.Err() != nil {
				return
			}
		}
		select {
		case <-h.wake:
		case <-ctx.Done():
			return
		}
	}
}

func (h *Hub) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// SyncOnce runs one catch-up round: it cancels unsynced watchers whose next
// revision has been compacted, moves those that are close enough to the
// present to synced (from the recent-changes buffer), and serves up to
// maxWatchersPerSync of the others, whose streams have room, from one read
// of the stored event log. It reports whether it did anything; false means
// the remaining unsynced watchers wait for their streams to drain.
func (h *Hub) SyncOnce() bool {
	h.mu.Lock()
	if len(h.unsynced) == 0 {
		h.mu.Unlock()
		return false
	}
	target := h.rev
	compactRev := h.cfg.Source.CompactRev()
	progress := false
	var batch []*watcher
	from := int64(math.MaxInt64)
	// Whether each stream has room, asked once per round: a watcher whose
	// stream is full is skipped before any of its events are copied, and
	// the work done under the lock is bounded, because Notify (on the
	// apply path) waits for it.
	room := make(map[*Stream]bool)
	memo := make(map[sinceKey]sinceResult)
	served := 0
	for w := range h.unsynced {
		if w.next < compactRev {
			h.compacted(w, compactRev)
			progress = true
			continue
		}
		if w.next > h.rev {
			h.finishFromRecent(w, nil) // caught up: nothing to send
			progress = true
			continue
		}
		r, asked := room[w.st]
		if !asked {
			r = w.st.hasRoom()
			room[w.st] = r
		}
		if !r {
			continue
		}
		if served == maxWatchersPerSync {
			h.signal() // more next round, after the lock was released
			break
		}
		served++
		if h.finishFromRecent(w, memo) {
			progress = true
			continue
		}
		if !w.st.hasRoom() {
			room[w.st] = false // filled up by the watchers served before
			continue
		}
		batch = append(batch, w)
		from = min(from, w.next)
		if len(batch) == maxWatchersPerSync {
			break
		}
	}
	h.mu.Unlock()
	if len(batch) == 0 {
		return progress
	}

	// Watchers' keys and options never change, so they can be read
	// without the lock.
	match := func(key []byte) bool {
		for _, w := range batch {
			if w.contains(key) {
				return true
			}
		}
		return false
	}
	prevKV := func(key []byte) bool {
		for _, w := range batch {
			if w.prevKV && w.contains(key) {
				return true
			}
		}
		return false
	}
	res, err := h.cfg.Source.Events(mvcc.EventsRequest{From: from, To: target, Match: match, PrevKV: prevKV, Limit: h.cfg.CatchUpEvents, LimitBytes: h.cfg.CatchUpBytes})

	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if errors.Is(err, mvcc.ErrCompacted) {
			return true // the next round cancels the watchers concerned
		}
		for _, w := range batch {
			if w.state == stateUnsynced {
				h.lg.Error("canceling watch: reading its history failed", "watch-id", w.id, "from", w.next, "err", err)
				h.cancel(w, fmt.Sprintf("kvorum: reading watch history from revision %d failed: %v", w.next, err))
			}
		}
		return true
	}
	cs := wrap(res.Events)
	clear(memo)
	read := make(map[sinceKey][]*change)
	for _, w := range batch {
		if w.state != stateUnsynced {
			continue // canceled meanwhile
		}
		k := w.sinceKey()
		evs, seen := read[k]
		if !seen {
			for _, c := range cs {
				if c.rev() >= w.next && w.contains(c.key()) {
					evs = append(evs, c)
				}
			}
			read[k] = evs
		}
		if !w.deliver(evs, res.Through) {
			continue // no room after all; the next round reads again
		}
		w.next = max(w.next, res.Through+1)
		h.finishFromRecent(w, memo)
	}
	return true
}

// finishFromRecent moves unsynced watcher w to synced if it has caught up,
// or if what it misses is still in the recent-changes buffer (which it is
// then sent). It reports whether w is synced now. memo, if not nil, holds
// what the buffer gave other watchers of the same keys from the same
// revision under the same lock: the same changes, shared.
func (h *Hub) finishFromRecent(w *watcher, memo map[sinceKey]sinceResult) bool {
	if w.next <= h.rev {
		var r sinceResult
		k := w.sinceKey()
		if m, seen := memo[k]; seen {
			r = m
		} else {
			r.cs, r.ok = h.recent.since(w.next, w.contains)
			if memo != nil {
				memo[k] = r
			}
		}
		if !r.ok || !w.deliver(r.cs, h.rev) {
			return false
		}
		w.next = h.rev + 1
	}
	delete(h.unsynced, w)
	w.state = stateSynced
	h.synced.add(w)
	return true
}

// unsync moves synced watcher w to the unsynced set; it has been given
// everything before revision from.
func (h *Hub) unsync(w *watcher, from int64) {
	h.synced.remove(w)
	w.next = max(w.next, from)
	w.state = stateUnsynced
	h.unsynced[w] = struct{}{}
}

// addUnsynced registers a new watcher that starts at or below the current
// revision.
func (h *Hub) addUnsynced(w *watcher) {
	w.state = stateUnsynced
	h.unsynced[w] = struct{}{}
	if c := h.cfg.Source.CompactRev(); w.next < c {
		h.compacted(w, c)
		return
	}
	if !h.finishFromRecent(w, nil) {
		h.signal()
	}
}

// remove forgets watcher w.
func (h *Hub) remove(w *watcher) {
	switch w.state {
	case stateSynced:
		h.synced.remove(w)
	case stateUnsynced:
		delete(h.unsynced, w)
	}
	w.state = stateCanceled
	delete(w.st.watchers, w.id)
}

// compacted cancels w because the history it needs is compacted, the way
// etcd does: a response with compact_revision set.
func (h *Hub) compacted(w *watcher, compactRev int64) {
	h.remove(w)
	h.lg.Info("canceling watch: the history it needs is compacted", "watch-id", w.id,
		"next-revision", w.next, "compact-revision", compactRev)
	w.st.pushControl(&pb.WatchResponse{
		Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: w.id, CompactRevision: compactRev, Canceled: true,
	})
}

// cancel cancels w with a reason the client sees.
func (h *Hub) cancel(w *watcher, reason string) {
	h.remove(w)
	w.st.pushControl(&pb.WatchResponse{
		Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: w.id, Canceled: true, CancelReason: reason,
	})
}

// Stats counts the hub's streams and watchers at one moment.
type Stats struct {
	Streams  int // open watch streams
	Watchers int // watchers on them, synced or not
	// Unsynced watchers catch up from the recent buffer or storage: new
	// ones that start in the past, and those whose stream had no room.
	Unsynced int
	// QueuedEvents are events on the streams' queues that their clients
	// have not taken yet.
	QueuedEvents int
}

// Stats reports the hub's streams and watchers. It takes the hub's lock
// and each stream's queue lock briefly.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	st := Stats{Streams: len(h.streams), Watchers: h.synced.size() + len(h.unsynced), Unsynced: len(h.unsynced)}
	streams := h.streamList()
	h.mu.Unlock()
	st.QueuedEvents, _ = queues(streams)
	return st
}

// MemoryUse reports, in estimated bytes, the buffer of recent changes and
// the events queued on every stream for clients that have not taken them
// yet. It takes the hub's lock and each stream's queue lock briefly.
func (h *Hub) MemoryUse() (recent, queued int64) {
	h.mu.Lock()
	recent = int64(h.recent.bytes)
	streams := h.streamList()
	h.mu.Unlock()
	_, bytes := queues(streams)
	return recent, int64(bytes)
}

// streamList copies the open streams; h.mu is held.
func (h *Hub) streamList() []*Stream {
	streams := make([]*Stream, 0, len(h.streams))
	for st := range h.streams {
		streams = append(streams, st)
	}
	return streams
}

// queues sums the events queued on streams and their estimated size,
// taking each stream's queue lock in turn.
func queues(streams []*Stream) (events, bytes int) {
	for _, st := range streams {
		st.qmu.Lock()
		events += st.events
		bytes += st.bytes
		st.qmu.Unlock()
	}
	return events, bytes
}
