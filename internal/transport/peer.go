package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// writeChunk sizes the buffer a stream's receiver reads through.
const writeChunk = 64 << 10

// peer is the sending side towards one member: one goroutine (run) keeping
// one stream at a time up, and two bounded queues that the stream's body
// (streamBody) drains as net/http writes it.
//
// Everything but MsgApp goes to urgent and is always written first, so
// heartbeats, votes and their responses never wait behind a backlog of log
// entries and are not dropped because that backlog is full. Raft tolerates
// the reordering this causes between the two kinds.
type peer struct {
	t      *Transport
	id     uint64
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	urgent      chan *raftpb.Message
	bulk        chan *raftpb.Message
	urlsChanged chan struct{}
	dropped     atomic.Uint64

	mu           sync.Mutex
	urls         []string
	lastGood     string  // URL of the last stream that came up
	cur          *stream // current stream, so a URL change can cut it
	status       PeerStatus
	downLogged   bool // the current outage has been logged at Warn
	snapInFlight bool
}

func newPeer(t *Transport, id uint64, urls []string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:           t,
		id:          id,
		log:         t.log.With("peer", hexID(id)),
		ctx:         ctx,
		cancel:      cancel,
		urgent:      make(chan *raftpb.Message, t.cfg.QueueSize),
		bulk:        make(chan *raftpb.Message, t.cfg.QueueSize),
		urlsChanged: make(chan struct{}, 1),
		urls:        urls,
		status:      PeerStatus{ID: id, Since: time.Now()},
	}
}

func (p *peer) enqueue(m *raftpb.Message) bool {
	q := p.urgent
	if m.GetType() == raftpb.MsgApp {
		q = p.bulk
	}
	select {
	case q <- m:
		return true
	default:
		return false
	}
}

func (p *peer) setURLs(urls []string) {
	p.mu.Lock()
	if slices.Equal(p.urls, urls) {
		p.mu.Unlock()
		return
	}
	p.urls = urls
	cur := p.cur
	p.mu.Unlock()
	p.log.Info("peer URLs updated", "urls", urls)
	if cur != nil && !slices.Contains(urls, cur.url) {
		cur.abort(errors.New("peer URLs changed"))
	}
	select {
	case p.urlsChanged <- struct{}{}:
	default:
	}
}

func (p *peer) statusSnapshot() PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	st.URLs = slices.Clone(p.urls)
	st.Dropped = p.dropped.Load()
	return st
}

// run keeps a stream to the peer up until the peer is removed, reconnecting
// with backoff. While no stream is up, queued messages are dropped and the
// peer reported unreachable, so raft learns of the outage at once instead of
// its messages going stale in the queue.
func (p *peer) run() {
	backoff := p.t.timing.minBackoff
	for p.ctx.Err() == nil {
		s, err := p.connect()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.connectFailed(err)
			timer := time.NewTimer(backoff)
			select {
			case <-p.ctx.Done():
				timer.Stop()
				return
			case <-p.urlsChanged:
				timer.Stop()
			case <-timer.C:
			}
			backoff = min(2*backoff, p.t.timing.maxBackoff)
			continue
		}
		backoff = p.t.timing.minBackoff
		p.connected(s)
		err = p.await(s)
		s.close()
		if p.ctx.Err() != nil {
			return
		}
		p.lost(s, err)
	}
}

func (p *peer) connected(s *stream) {
	p.mu.Lock()
	p.cur = s
	p.lastGood = s.url
	p.status.Connected = true
	p.status.URL = s.url
	p.status.Since = time.Now()
	p.status.LastError = ""
	p.downLogged = false
	p.mu.Unlock()
	p.log.Info("peer connected", "url", s.url)
}

func (p *peer) lost(s *stream, err error) {
	p.mu.Lock()
	p.cur = nil
	p.status.Connected = false
	p.status.Since = time.Now()
	p.status.LastError = err.Error()
	p.downLogged = true
	p.mu.Unlock()
	p.log.Warn("peer lost", "url", s.url, "err", err)
	p.t.reportUnreachable(p.id)
}

func (p *peer) connectFailed(err error) {
	p.mu.Lock()
	first := !p.downLogged
	p.downLogged = true
	p.status.LastError = err.Error()
	p.mu.Unlock()
	if first {
		p.log.Warn("peer unreachable; retrying", "err", err)
	} else {
		p.log.Debug("peer still unreachable", "err", err)
	}
	n, props := p.drop()
	p.dropped.Add(uint64(n))
	p.t.reportUnreachable(p.id)
	if errors.Is(err, syscall.ECONNREFUSED) {
		p.t.reportGone(p.id)
	}
	if r, ok := p.t.cfg.Raft.(ProposalReturner); ok {
		for _, m := range props {
			r.ProposalNotSent(m)
		}
	}
}

// drop discards everything queued and returns how much that was, and the
// proposals among it.
func (p *peer) drop() (int, []*raftpb.Message) {
	n := 0
	var props []*raftpb.Message
	for {
		var m *raftpb.Message
		select {
		case m = <-p.urgent:
		case m = <-p.bulk:
		default:
			return n, props
		}
		if m.GetType() == raftpb.MsgProp {
			props = append(props, m)
		}
		n++
	}
}

// connect opens a stream on the first URL that accepts one, starting with
// the one that worked last.
func (p *peer) connect() (*stream, error) {
	urls := p.dialOrder()
	if len(urls) == 0 {
		return nil, errors.New("peer has no usable URLs")
	}
	var errs []error
	for _, u := range urls {
		s, err := p.dial(u)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if p.ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dialOrder returns the peer's URLs starting with the one that worked last.
func (p *peer) dialOrder() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := max(slices.Index(p.urls, p.lastGood), 0)
	return slices.Concat(p.urls[i:], p.urls[:i])
}

// stream is one outgoing POST /raft/stream: the request body carries our
// frames, the response body the receiver's keepalive bytes.
//
// The body is a streamBody: net/http's connection goroutine takes the
// queued messages itself when it reads the body, and writes them to the
// connection at once. (Fed through a pipe from a goroutine of our own,
// every batch waited for two goroutine switches on its way out; with one
// client, waking those goroutines was a tenth of a put's latency.)
type stream struct {
	url    string
	cancel context.CancelFunc // cancels the request
	body   *streamBody

	done chan struct{} // closed when the response body ended
	err  error         // why; written before done is closed

	mu  sync.Mutex
	why error // the first reason given to abort
}

func (s *stream) close() {
	s.abort(errors.New("stream closed"))
	<-s.done
}

func (s *stream) reason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why
}

// abort cuts the stream, unblocking any write to it.
func (s *stream) abort(err error) {
	s.mu.Lock()
	if s.why == nil {
		s.why = err
	}
	s.mu.Unlock()
	s.cancel()
	s.body.stop()
}

type doResult struct {
	resp *http.Response
	err  error
}

func (p *peer) dial(base string) (*stream, error) {
	tm := p.t.timing
	ctx, cancel := context.WithCancel(p.ctx)
	s := &stream{
		url:    base,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	s.body = newStreamBody(p, s)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+pathStream, s.body)
	if err != nil {
		s.abort(err)
		return nil, fmt.Errorf("stream to %s: %w", base, err)
	}
	p.t.setPeerHeaders(req.Header, p.id)
	req.Header.Set("Content-Type", contentTypeStream)
	respc := make(chan doResult, 1)
	go func() {
		resp, err := p.t.client.Do(req)
		respc <- doResult{resp, err}
	}()
	timedOut := time.AfterFunc(tm.dial, func() { s.abort(fmt.Errorf("no answer within %v", tm.dial)) })
	r := <-respc
	inTime := timedOut.Stop()
	fail := func(err error) (*stream, error) {
		s.abort(err)
		if r.resp != nil {
			r.resp.Body.Close()
		}
		return nil, fmt.Errorf("stream to %s: %w", base, err)
	}
	switch {
	case !inTime:
		return fail(p.t.explainFailure(base, fmt.Errorf("no answer within %v", tm.dial)))
	case r.err != nil:
		return fail(p.t.explainFailure(base, r.err))
	case r.resp.StatusCode == http.StatusGone && p.t.cfg.OnRemoved != nil:
		p.t.removedOnce.Do(func() { go p.t.cfg.OnRemoved() })
		return fail(fmt.Errorf("refused: this member was removed from the cluster"))
	case r.resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(r.resp.Body, 512))
		return fail(fmt.Errorf("refused: %s: %s", r.resp.Status, strings.TrimSpace(string(msg))))
	}
	go s.watchResponse(r.resp.Body, tm.idle)
	close(s.body.accepted)
	return s, nil
}

// watchResponse reads the receiver's keepalive bytes, cutting the stream if
// they stop for longer than idle: that is how the sender notices a receiver
// that vanished without closing the connection.
func (s *stream) watchResponse(body io.ReadCloser, idle time.Duration) {
	timer := time.AfterFunc(idle, func() {
		s.abort(fmt.Errorf("receiver silent for %v", idle))
	})
	buf := make([]byte, 64)
	var err error
	for err == nil {
		var n int
		n, err = body.Read(buf)
		if n > 0 {
			timer.Reset(idle)
		}
	}
	timer.Stop()
	switch why := s.reason(); {
	case why != nil:
		err = why
	case err == io.EOF:
		err = errors.New("receiver closed the stream")
	}
	s.err = err
	s.abort(err)
	body.Close()
	close(s.done)
}

// await waits while the stream carries the queued messages, until it
// breaks or the peer is removed.
func (p *peer) await(s *stream) error {
	select {
	case <-p.ctx.Done():
		return p.ctx.Err()
	case <-s.done:
		return s.err
	}
}

// maxBatchBytes bounds the frames one read of a stream's body encodes; what
// is left in the queues goes with the next read.
const maxBatchBytes = 256 << 10

// streamBody is the request body of a stream. Read hands net/http the next
// frames: first an empty one (the request goes out at once, so the
// receiver can answer), then, once the receiver accepted the stream, the
// queued messages (urgent ones before any MsgApp, as many as are queued, up
// to maxBatchBytes), or a keepalive when the stream was idle for half the
// keepalive interval.
//
// net/http writes what one Read returned and flushes it before it reads
// again, so the time between the two is the time that write took: longer
// than timing.write, and the stream is cut (a receiver that stopped
// reading, or a dead network path, blocks writes rather than failing
// them).
type streamBody struct {
	p        *peer
	s        *stream
	accepted chan struct{} // closed by dial once the receiver answered 200
	stopped  chan struct{} // closed by stop
	stopOnce sync.Once
	tick     *time.Ticker

	// Only Read, which net/http calls from one goroutine, uses these.
	hello bool        // the first, empty frame was handed out
	buf   []byte      // encoded frames
	off   int         // how much of buf was handed out
	last  time.Time   // when bytes were last handed out
	stall *time.Timer // cuts the stream if the last bytes are not written in time
}

func newStreamBody(p *peer, s *stream) *streamBody {
	return &streamBody{
		p:        p,
		s:        s,
		accepted: make(chan struct{}),
		stopped:  make(chan struct{}),
		tick:     time.NewTicker(p.t.timing.keepalive),
	}
}

// stop ends the body: a Read waiting for messages returns.
func (b *streamBody) stop() {
	b.stopOnce.Do(func() {
		b.tick.Stop()
		close(b.stopped)
	})
}

// Close is called by net/http when the request is over, also when it
// failed.
func (b *streamBody) Close() error {
	b.s.abort(errors.New("stream request ended"))
	return nil
}

func (b *streamBody) Read(dst []byte) (int, error) {
	if b.stall != nil {
		b.stall.Stop()
	}
	if b.off == len(b.buf) {
		if err := b.fill(); err != nil {
			b.s.abort(err)
			return 0, err
		}
	}
	n := copy(dst, b.buf[b.off:])
	b.off += n
	if b.off == len(b.buf) {
		if cap(b.buf) > maxRetainedBuf {
			b.buf = nil
		}
		b.buf, b.off = b.buf[:0], 0
	}
	b.p.t.countSent(b.p.id, n)
	b.last = time.Now()
	timeout := b.p.t.timing.write
	if b.stall == nil {
		b.stall = time.AfterFunc(timeout, func() { b.s.abort(fmt.Errorf("write stalled for %v", timeout)) })
	} else {
		b.stall.Reset(timeout)
	}
	return n, nil
}

// fill waits for something to send and encodes it into buf.
func (b *streamBody) fill() error {
	if !b.hello {
		b.hello = true
		b.buf = append(b.buf, 0) // an empty frame
		return nil
	}
	select {
	case <-b.accepted:
	case <-b.stopped:
		return b.why()
	}
	p := b.p
	for {
		var m *raftpb.Message
		select {
		case <-b.stopped:
			return b.why()
		case <-b.tick.C:
			if time.Since(b.last) >= p.t.timing.keepalive/2 {
				b.buf = append(b.buf, 0)
				return nil
			}
			continue
		case m = <-p.urgent:
		case m = <-p.bulk:
		}
		if err := b.batch(m); err != nil || len(b.buf) > 0 {
			return err
		}
	}
}

func (b *streamBody) why() error {
	if err := b.s.reason(); err != nil {
		return err
	}
	return errors.New("stream closed")
}

// batch encodes first and then what else is queued, urgent messages before
// any MsgApp, up to maxBatchBytes.
func (b *streamBody) batch(first *raftpb.Message) error {
	p := b.p
	m := first
	for {
		if err := b.encode(m); err != nil {
			return err
		}
		if len(b.buf) >= maxBatchBytes {
			return nil
		}
		select {
		case m = <-p.urgent:
		default:
			select {
			case m = <-p.urgent:
			case m = <-p.bulk:
			default:
				return nil
			}
		}
	}
}

func (b *streamBody) encode(m *raftpb.Message) error {
	p := b.p
	buf, err := appendFrame(b.buf, m, p.t.cfg.MaxMessageSize)
	if errors.Is(err, errFrameTooLarge) {
		// The receiver would refuse it and cut the stream; raft
		// will have to do with fewer entries per message.
		p.log.Error("dropping raft message larger than the size limit", "err", err)
		p.dropped.Add(1)
		p.t.reportUnreachable(p.id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.GetType(), err)
	}
	b.buf = buf
	return nil
}

// sendSnapshot starts sending a MsgSnap with its data on a request of its
// own. One snapshot per peer is in flight at a time; raft does not send
// another before the outcome of the first is reported.
func (p *peer) sendSnapshot(m *raftpb.Message) {
	p.mu.Lock()
	busy := p.snapInFlight
	p.snapInFlight = true
	p.mu.Unlock()
	if busy {
		p.log.Warn("refusing to send a snapshot while another is in flight", "index", m.GetSnapshot().GetMetadata().GetIndex())
		p.t.goTracked(func() { p.t.cfg.Raft.ReportSnapshot(p.id, true) })
		return
	}
	started := p.t.goTracked(func() {
		err := p.postSnapshot(m)
		p.mu.Lock()
		p.snapInFlight = false
		p.mu.Unlock()
		if p.t.ctx.Err() != nil {
			return
		}
		if err != nil {
			p.log.Warn("sending snapshot failed", "index", m.GetSnapshot().GetMetadata().GetIndex(), "err", err)
		} else {
			p.log.Info("snapshot sent", "index", m.GetSnapshot().GetMetadata().GetIndex())
		}
		p.t.cfg.Raft.ReportSnapshot(p.id, err != nil)
	})
	if !started {
		p.mu.Lock()
		p.snapInFlight = false
		p.mu.Unlock()
	}
}

// postSnapshot tries the peer's URLs in turn until one answers; a peer
// that answered with an error is not tried on another URL.
func (p *peer) postSnapshot(m *raftpb.Message) error {
	store := p.t.cfg.Snapshots
	if store == nil {
		return errors.New("no snapshot store configured")
	}
	head, err := appendFrame(nil, m, p.t.cfg.MaxMessageSize)
	if err != nil {
		return err
	}
	urls := p.dialOrder()
	if len(urls) == 0 {
		return errors.New("peer has no usable URLs")
	}
	var errs []error
	for _, base := range urls {
		answered, err := p.postSnapshotTo(base, head, m, store)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if answered || p.ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func (p *peer) postSnapshotTo(base string, head []byte, m *raftpb.Message, store SnapshotStore) (answered bool, err error) {
	data, err := store.Open(m)
	if err != nil {
		return true, fmt.Errorf("open snapshot data: %w", err)
	}
	defer data.Close()
	req, err := http.NewRequestWithContext(p.ctx, http.MethodPost, base+pathSnapshot, io.MultiReader(bytes.NewReader(head), data))
	if err != nil {
		return false, fmt.Errorf("snapshot to %s: %w", base, err)
	}
	p.t.setPeerHeaders(req.Header, p.id)
	req.Header.Set("Content-Type", contentTypeStream)
	resp, err := p.t.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("snapshot to %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return true, fmt.Errorf("snapshot to %s refused: %s: %s", base, resp.Status, strings.TrimSpace(string(msg)))
	}
	return true, nil
}
