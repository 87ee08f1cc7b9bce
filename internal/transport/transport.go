package transport

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// PathPrefix is the URL path under which Handler serves; mount the handler
// there on the peer listener.
const PathPrefix = "/raft/"

const (
	pathStream   = PathPrefix + "stream"
	pathSnapshot = PathPrefix + "snapshot"
	pathProbe    = PathPrefix + "probe"

	headerClusterID = "X-Kvorum-Cluster-ID"
	headerFrom      = "X-Kvorum-From"
	headerTo        = "X-Kvorum-To"
	headerMemberID  = "X-Kvorum-Member-ID"

	contentTypeStream = "application/x-kvorum-raft-stream"
)

// DefaultQueueSize is the per-peer send queue length unless
// Config.QueueSize says otherwise.
const DefaultQueueSize = 4096

// Config configures a Transport. LocalID, ClusterID and Raft are required.
type Config struct {
	LocalID uint64
	// ClusterID is sent with every request and checked on every incoming
	// one; a peer of another cluster is refused with HTTP 412, so a
	// mistyped URL never mixes two clusters' raft groups.
	ClusterID uint64
	// TLS, when set, is used to dial peers (https URLs). The server side is
	// the caller's http.Server. nil means plain http.
	TLS *tls.Config
	// Raft receives the messages and the delivery reports.
	Raft Raft
	// Snapshots reads outgoing and stores incoming snapshot data. Without
	// it snapshots are refused in both directions.
	Snapshots SnapshotStore
	// Logger defaults to discarding.
	Logger *slog.Logger
	// IsRemoved, if set, reports members removed from the cluster: their
	// requests are refused with HTTP 410, which tells them to stop.
	IsRemoved func(id uint64) bool
	// OnRemoved, if set, is called (once, in its own goroutine) when a
	// peer refuses this member as removed from the cluster.
	OnRemoved func()
	// QueueSize bounds each peer's send queue (and, separately, its queue
	// of MsgApp); 0 means DefaultQueueSize.
	QueueSize int
	// MaxMessageSize bounds a single message on the wire, in both
	// directions; 0 means DefaultMaxMessageSize.
	MaxMessageSize int
	// Calls are the unary calls this member answers, by name (see Call).
	Calls map[string]CallHandler
	// Bytes, if set, counts the raft message bytes sent to and received
	// from each peer (for metrics).
	Bytes ByteCounter
}

// Raft is the local raft node as the transport sees it. All methods may be
// called concurrently, but never from within a Transport method, so they may
// block briefly without stalling the caller of Send.
type Raft interface {
	// Process steps a message received from a peer into raft. Messages of
	// one stream are processed one at a time, in arrival order.
	Process(ctx context.Context, m *raftpb.Message) error
	// ReportUnreachable tells raft that messages to id may have been lost.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells raft how sending a MsgSnap to id ended.
	ReportSnapshot(id uint64, failure bool)
}

// ProposalReturner is implemented by a Raft that takes back the proposals
// (MsgProp, forwarded to the leader) the transport dropped without writing
// them to a stream, because no stream to the peer came up: they never left
// this member, so no member appended them and stepping them again cannot
// apply them twice. Without it such a proposal is lost and its client
// waits for a timeout.
type ProposalReturner interface {
	ProposalNotSent(m *raftpb.Message)
}

// SnapshotStore is where snapshot data comes from and goes to; the raft
// message of a MsgSnap only describes the snapshot.
type SnapshotStore interface {
	// Open returns the data stream of the snapshot described by
	// msg.Snapshot (a MsgSnap), to send after the message. It is called
	// once per attempt: again if a peer has several URLs and the first
	// attempt failed before the peer answered.
	Open(msg *raftpb.Message) (io.ReadCloser, error)
	// Receive consumes the data stream of an incoming MsgSnap; when it
	// returns nil the data is durably stored and the transport then calls
	// Raft.Process(msg).
	Receive(msg *raftpb.Message, data io.Reader) error
}

// PeerStatus describes the connection to one peer.
type PeerStatus struct {
	ID uint64
	// URLs are the peer's URLs as last given to AddPeer.
	URLs []string
	// Connected reports whether the outgoing stream is up, and URL which
	// URL it uses.
	Connected bool
	URL       string
	// Inbound reports whether the peer's stream to us is up.
	Inbound bool
	// Since is when Connected last changed.
	Since time.Time
	// LastError is why the last connection attempt or stream failed.
	LastError string
	// Dropped counts messages dropped because the queue was full or the
	// peer unreachable.
	Dropped uint64
}

// ProbeResult is what a member answers on GET /raft/probe.
type ProbeResult struct {
	ClusterID uint64
	MemberID  uint64
}

// timing holds the transport's timeouts; tests shorten them.
type timing struct {
	// dial bounds connecting, the TLS handshake and the response headers
	// of a stream request.
	dial time.Duration
	// keepalive is how often both ends of an idle stream show they are
	// alive.
	keepalive time.Duration
	// idle is how long a stream end waits for a byte from the other before
	// declaring the stream dead. It must be well above keepalive.
	idle time.Duration
	// write bounds the write of what one read of a stream's body handed
	// to net/http (at most its copy buffer, 32 KiB).
	write time.Duration
	// minBackoff and maxBackoff bound the pause between reconnects.
	minBackoff, maxBackoff time.Duration
}

var defaultTiming = timing{
	dial:       2 * time.Second,
	keepalive:  time.Second,
	idle:       5 * time.Second,
	write:      5 * time.Second,
	minBackoff: 100 * time.Millisecond,
	maxBackoff: time.Second,
}

// Transport delivers raft messages between members. Create it with New.
type Transport struct {
	cfg         Config
	removedOnce sync.Once // guards the call of cfg.OnRemoved
	log         *slog.Logger
	timing      timing
	client      *http.Client
	httpTr      *http.Transport

	// ctx is canceled by Close; every goroutine and handler of the
	// transport watches it and is counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	closed  bool // guards wg.Add against a concurrent Close
	peers   map[uint64]*peer
	inbound map[uint64]*inboundStream

	refusalMu     sync.Mutex
	refusalLogged map[string]time.Time // see warnLimited

	unreachMu      sync.Mutex
	unreachPending map[uint64]struct{}
	unreachC       chan struct{}
}

// New returns a transport; it sends nothing until peers are added and
// receives nothing until Handler is mounted.
func New(cfg Config) *Transport {
	return newTransport(cfg, defaultTiming)
}

func newTransport(cfg Config, tm timing) *Transport {
	if cfg.Raft == nil {
		panic("transport: Config.Raft is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	var tlsCfg *tls.Config
	if cfg.TLS != nil {
		// Streams are HTTP/1.1 requests with a long-lived body in each
		// direction; keep ALPN from picking h2, which this client does
		// not speak.
		tlsCfg = cfg.TLS.Clone()
		tlsCfg.NextProtos = []string{"http/1.1"}
	}
	httpTr := &http.Transport{
		Proxy:               nil, // peer traffic never goes through HTTP(S)_PROXY
		DialContext:         (&net.Dialer{Timeout: tm.dial, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: tm.dial,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:            cfg,
		log:            cfg.Logger,
		timing:         tm,
		client:         &http.Client{Transport: httpTr},
		httpTr:         httpTr,
		ctx:            ctx,
		cancel:         cancel,
		peers:          make(map[uint64]*peer),
		inbound:        make(map[uint64]*inboundStream),
		unreachPending: make(map[uint64]struct{}),
		refusalLogged:  make(map[string]time.Time),
		unreachC:       make(chan struct{}, 1),
	}
	t.goTracked(t.runReporter)
	return t
}

// goTracked runs f in a goroutine counted by Close, unless the transport is
// closed, in which case it reports false and f does not run.
func (t *Transport) goTracked(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// AddPeer starts delivering messages to member id at urls. Adding a known
// peer again replaces its URLs; a stream on a URL no longer listed is
// reconnected.
func (t *Transport) AddPeer(id uint64, urls []string) {
	if id == t.cfg.LocalID || id == 0 {
		t.log.Warn("ignoring peer with the local or zero member ID", "peer", hexID(id))
		return
	}
	clean := make([]string, 0, len(urls))
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.log.Error("ignoring invalid peer URL; expected http(s)://host:port", "peer", hexID(id), "url", raw)
			continue
		}
		clean = append(clean, strings.TrimRight(raw, "/"))
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	if p := t.peers[id]; p != nil {
		t.mu.Unlock()
		p.setURLs(clean)
		return
	}
	p := newPeer(t, id, clean)
	t.peers[id] = p
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		p.run()
	}()
}

// RemovePeer stops delivering messages to id, drops what is queued and
// ends id's inbound stream. It does not wait for the peer's goroutines to
// end; Close does.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	// Its stream to us ends too: a removed member that dials again learns
	// (through IsRemoved) that it was removed.
	if in := t.inbound[id]; in != nil {
		in.cancel()
	}
	t.mu.Unlock()
	if p != nil {
		p.cancel()
	}
}

// Send queues msgs for delivery and returns at once. It takes ownership of
// the messages: they are encoded later, by the peer's sender, so the caller
// must not modify them. A message that cannot be queued (unknown peer, full
// queue) is dropped and, for a known peer, reported unreachable; raft
// retransmits. MsgSnap is sent on a request of its own and its outcome is
// reported through Raft.ReportSnapshot.
func (t *Transport) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		t.mu.RLock()
		p := t.peers[m.GetTo()]
		t.mu.RUnlock()
		if p == nil {
			t.log.Debug("dropping message to unknown peer", "peer", hexID(m.GetTo()), "type", m.GetType())
			continue
		}
		if m.GetType() == raftpb.MsgSnap {
			p.sendSnapshot(m)
			continue
		}
		if !p.enqueue(m) {
			p.dropped.Add(1)
			t.log.Debug("dropping message: peer queue full", "peer", hexID(p.id), "type", m.GetType())
			t.reportUnreachable(p.id)
		}
	}
}

// Peers returns the status of every peer, ordered by nothing in particular.
func (t *Transport) Peers() []PeerStatus {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]PeerStatus, 0, len(t.peers))
	for id, p := range t.peers {
		st := p.statusSnapshot()
		_, st.Inbound = t.inbound[id]
		out = append(out, st)
	}
	return out
}

// ActivePeers is the number of peers whose outgoing stream is up.
func (t *Transport) ActivePeers() int {
	n := 0
	for _, st := range t.Peers() {
		if st.Connected {
			n++
		}
	}
	return n
}

// Close stops all senders and incoming streams and waits for them. After
// Close returns the transport calls neither Raft nor SnapshotStore again;
// the handler answers 503.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	for id, p := range t.peers {
		p.cancel()
		delete(t.peers, id)
	}
	t.cancel()
	t.mu.Unlock()
	t.wg.Wait()
	t.httpTr.CloseIdleConnections()
	return nil
}

// Probe asks the member at peerURL (its base URL, as given to AddPeer) for
// its cluster and member IDs.
func (t *Transport) Probe(ctx context.Context, peerURL string) (ProbeResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(peerURL, "/")+pathProbe, nil)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("probe %s: %w", peerURL, err)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("probe %s: %w", peerURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ProbeResult{}, fmt.Errorf("probe %s: %s", peerURL, resp.Status)
	}
	var body probeBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body); err != nil {
		return ProbeResult{}, fmt.Errorf("probe %s: decode answer: %w", peerURL, err)
	}
	cid, err1 := parseID(body.ClusterID)
	mid, err2 := parseID(body.MemberID)
	if err1 != nil || err2 != nil {
		return ProbeResult{}, fmt.Errorf("probe %s: answer carries invalid IDs %q, %q", peerURL, body.ClusterID, body.MemberID)
	}
	return ProbeResult{ClusterID: cid, MemberID: mid}, nil
}

// explainFailure adds to err, a stream request that failed, the reason
// when it is a TLS refusal. With TLS 1.3 a peer that refuses our
// certificate says so only after our side of the handshake has ended, and
// the stream request, whose body stays open, may end with a timeout or a
// broken pipe instead of the alert; a probe, which has no body, sees it.
func (t *Transport) explainFailure(base string, err error) error {
	if t.cfg.TLS == nil || isTLSRefusal(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.timing.dial)
	defer cancel()
	if _, perr := t.Probe(ctx, base); isTLSRefusal(perr) {
		return fmt.Errorf("%w; %v", err, perr)
	}
	return err
}

// isTLSRefusal reports a certificate this side does not accept, or a TLS
// alert from the other side.
func isTLSRefusal(err error) bool {
	var remote *net.OpError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &verify) || errors.As(err, &remote) && remote.Op == "remote error"
}

type probeBody struct {
	ClusterID string `json:"cluster_id"`
	MemberID  string `json:"member_id"`
}

// GoneReporter is implemented by a Raft that wants to hear that a peer's
// process is gone (see reportGone).
type GoneReporter interface {
	ReportPeerGone(id uint64)
}

// reportGone tells raft that peer id's process is most likely gone:
// nothing listens at its address any more (the connection was refused, not
// timed out, as it would be across a network fault) and no stream from it
// is open. A leader that only one link of lost still streams to us.
func (t *Transport) reportGone(id uint64) {
	g, ok := t.cfg.Raft.(GoneReporter)
	if !ok {
		return
	}
	t.mu.RLock()
	_, inbound := t.inbound[id]
	t.mu.RUnlock()
	if !inbound {
		g.ReportPeerGone(id)
	}
}

// reportUnreachable queues a ReportUnreachable for id. Reports are
// coalesced and delivered by runReporter, so that neither Send nor a sender
// stuck in a write ever waits on raft.
func (t *Transport) reportUnreachable(id uint64) {
	t.unreachMu.Lock()
	t.unreachPending[id] = struct{}{}
	t.unreachMu.Unlock()
	select {
	case t.unreachC <- struct{}{}:
	default:
	}
}

func (t *Transport) runReporter() {
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.unreachC:
		}
		t.unreachMu.Lock()
		ids := t.unreachPending
		t.unreachPending = make(map[uint64]struct{})
		t.unreachMu.Unlock()
		for id := range ids {
			t.cfg.Raft.ReportUnreachable(id)
		}
	}
}

// setPeerHeaders identifies a request from the local member to member to.
func (t *Transport) setPeerHeaders(h http.Header, to uint64) {
	h.Set(headerClusterID, hexID(t.cfg.ClusterID))
	h.Set(headerFrom, hexID(t.cfg.LocalID))
	h.Set(headerTo, hexID(to))
}

func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

func parseID(s string) (uint64, error) { return strconv.ParseUint(s, 16, 64) }
