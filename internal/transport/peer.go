package transport

import (
	"bufio"
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

// writeChunk is the largest single write to a stream; the write watchdog
// (timing.write) applies to each, so a stream must move at least
// writeChunk bytes per timing.write to stay up.
const writeChunk = 64 << 10

// peer is the sending side towards one member: one goroutine (run) owning
// one stream at a time, fed by two bounded queues.
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
		err = p.pump(s)
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
type stream struct {
	url    string
	ctx    context.Context
	cancel context.CancelFunc
	pw     *io.PipeWriter
	w      *bufio.Writer
	buf    []byte    // frame scratch
	last   time.Time // of the last flush

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
	s.pw.CloseWithError(err)
}

type doResult struct {
	resp *http.Response
	err  error
}

func (p *peer) dial(base string) (*stream, error) {
	tm := p.t.timing
	ctx, cancel := context.WithCancel(p.ctx)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+pathStream, pr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("stream to %s: %w", base, err)
	}
	p.t.setPeerHeaders(req.Header, p.id)
	req.Header.Set("Content-Type", contentTypeStream)
	respc := make(chan doResult, 1)
	go func() {
		resp, err := p.t.client.Do(req)
		respc <- doResult{resp, err}
	}()
	s := &stream{
		url:    base,
		ctx:    ctx,
		cancel: cancel,
		pw:     pw,
		done:   make(chan struct{}),
	}
	s.w = bufio.NewWriterSize(&watchdogWriter{w: pw, timeout: tm.write, abort: s.abort}, writeChunk)
	timedOut := time.AfterFunc(tm.dial, func() { s.abort(fmt.Errorf("no answer within %v", tm.dial)) })
	// A first, empty frame makes the client send the request at once,
	// whatever its buffering, so the receiver can answer.
	helloc := make(chan error, 1)
	go func() { helloc <- s.keepalive() }()
	r := <-respc
	inTime := timedOut.Stop()
	fail := func(err error) (*stream, error) {
		s.abort(err)
		<-helloc
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
	if err := <-helloc; err != nil {
		return fail(err)
	}
	go s.watchResponse(r.resp.Body, tm.idle)
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

func (s *stream) keepalive() error {
	if err := s.w.WriteByte(0); err != nil {
		return err
	}
	return s.flush()
}

func (s *stream) flush() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	s.last = time.Now()
	return nil
}

// pump writes queued messages to s until it breaks or the peer is removed.
func (p *peer) pump(s *stream) error {
	tick := time.NewTicker(p.t.timing.keepalive)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-p.ctx.Done():
			return p.ctx.Err()
		case <-s.done:
			return s.err
		case <-tick.C:
			if time.Since(s.last) >= p.t.timing.keepalive/2 {
				err = s.keepalive()
			}
		case m := <-p.urgent:
			err = p.writeBatch(s, m)
		case m := <-p.bulk:
			err = p.writeBatch(s, m)
		}
		if err != nil {
			// If a watchdog cut the stream, its reason is the
			// better one.
			if why := s.reason(); why != nil {
				return why
			}
			return err
		}
	}
}

// writeBatch writes first and then everything queued, urgent messages
// before any MsgApp, and flushes once the queues are empty.
func (p *peer) writeBatch(s *stream, first *raftpb.Message) error {
	if err := p.writeMsg(s, first); err != nil {
		return err
	}
	for {
		var m *raftpb.Message
		select {
		case m = <-p.urgent:
		default:
			select {
			case m = <-p.urgent:
			case m = <-p.bulk:
			default:
				return s.flush()
			}
		}
		if err := p.writeMsg(s, m); err != nil {
			return err
		}
	}
}

func (p *peer) writeMsg(s *stream, m *raftpb.Message) error {
	buf, err := appendFrame(s.buf[:0], m, p.t.cfg.MaxMessageSize)
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
	if cap(buf) <= maxRetainedBuf {
		s.buf = buf
	} else {
		s.buf = nil
	}
	n, err := s.w.Write(buf)
	p.t.countSent(p.id, n)
	return err
}

// watchdogWriter cuts the stream (abort) when a single write, of at most
// writeChunk bytes, takes longer than timeout: a receiver that stopped
// reading, or a dead network path, blocks writes rather than failing them.
type watchdogWriter struct {
	w       io.Writer
	timeout time.Duration
	abort   func(error)
}

func (d *watchdogWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), writeChunk)]
		timer := time.AfterFunc(d.timeout, func() { d.abort(fmt.Errorf("write stalled for %v", d.timeout)) })
		n, err := d.w.Write(chunk)
		timer.Stop()
		written += n
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
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
