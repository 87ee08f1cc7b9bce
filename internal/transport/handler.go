package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// inboundStream is the receiving side of one peer's stream; a newer stream
// from the same peer replaces (cancels) an older one.
type inboundStream struct {
	cancel context.CancelFunc
}

// Handler serves the peer endpoints under PathPrefix:
//
//	POST /raft/stream    a stream of framed raft messages from one peer
//	POST /raft/snapshot  one framed MsgSnap followed by its data
//	GET  /raft/probe     this member's cluster and member IDs, as JSON
//	POST /raft/call/...  a unary call (see Call)
//
// Streams are long-lived: the http.Server serving this handler must not set
// ReadTimeout or WriteTimeout (the transport keeps its own idle deadlines).
func (t *Transport) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathStream, t.serveStream)
	mux.HandleFunc("POST "+pathSnapshot, t.serveSnapshot)
	mux.HandleFunc("GET "+pathProbe, t.serveProbe)
	mux.HandleFunc("POST "+pathCall, t.serveCall)
	return mux
}

// checkPeerRequest validates the identity headers of a stream or snapshot
// request, answering and logging the refusal itself.
func (t *Transport) checkPeerRequest(w http.ResponseWriter, r *http.Request) (from uint64, ok bool) {
	log := t.log.With("remote", r.RemoteAddr, "path", r.URL.Path)
	cid, err := parseID(r.Header.Get(headerClusterID))
	if err != nil {
		t.warnLimited(log, "refused peer request without a valid cluster ID header")
		httpError(w, "missing or invalid "+headerClusterID+" header", http.StatusBadRequest)
		return 0, false
	}
	if cid != t.cfg.ClusterID {
		t.warnLimited(log, "refused peer request from another cluster; check the peer URLs and --initial-cluster-token of both members",
			"local_cluster", hexID(t.cfg.ClusterID), "remote_cluster", hexID(cid), "from", r.Header.Get(headerFrom))
		httpError(w, fmt.Sprintf("cluster ID mismatch: this member belongs to cluster %s, the request to %s",
			hexID(t.cfg.ClusterID), hexID(cid)), http.StatusPreconditionFailed)
		return 0, false
	}
	from, err = parseID(r.Header.Get(headerFrom))
	if err != nil || from == 0 {
		t.warnLimited(log, "refused peer request without a valid sender ID header")
		httpError(w, "missing or invalid "+headerFrom+" header", http.StatusBadRequest)
		return 0, false
	}
	if t.cfg.IsRemoved != nil && t.cfg.IsRemoved(from) {
		t.warnLimited(log, "refused peer request of a member removed from the cluster", "from", hexID(from))
		httpError(w, "member "+hexID(from)+" was removed from the cluster", http.StatusGone)
		return 0, false
	}
	to, err := parseID(r.Header.Get(headerTo))
	if err != nil {
		t.warnLimited(log, "refused peer request without a valid recipient ID header", "from", hexID(from))
		httpError(w, "missing or invalid "+headerTo+" header", http.StatusBadRequest)
		return 0, false
	}
	if to != t.cfg.LocalID {
		t.warnLimited(log, "refused peer request meant for another member; a peer URL points at the wrong member",
			"from", hexID(from), "to", hexID(to), "local", hexID(t.cfg.LocalID))
		httpError(w, fmt.Sprintf("member ID mismatch: this is member %s, not %s", hexID(t.cfg.LocalID), hexID(to)),
			http.StatusPreconditionFailed)
		return 0, false
	}
	return from, true
}

// beginRequest registers an incoming request so that Close cancels and
// waits for it. With replace, the request is from's stream and cancels the
// one it had before.
func (t *Transport) beginRequest(w http.ResponseWriter, r *http.Request, from uint64, replace bool) (context.Context, func(), bool) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		httpError(w, "member is shutting down", http.StatusServiceUnavailable)
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(t.ctx)
	var in *inboundStream
	if replace {
		if old := t.inbound[from]; old != nil {
			old.cancel()
		}
		in = &inboundStream{cancel: cancel}
		t.inbound[from] = in
	}
	t.wg.Add(1)
	t.mu.Unlock()
	stop := context.AfterFunc(r.Context(), cancel)
	release := func() {
		stop()
		cancel()
		if in != nil {
			t.mu.Lock()
			if t.inbound[from] == in {
				delete(t.inbound, from)
			}
			t.mu.Unlock()
		}
		t.wg.Done()
	}
	return ctx, release, true
}

// deadlineReader reads a request body with an idle deadline renewed before
// every read, and fails once ctx is done. Together with an AfterFunc that
// sets a past deadline when ctx ends, it makes a read blocked on a silent
// peer return.
type deadlineReader struct {
	ctx  context.Context
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (d *deadlineReader) Read(b []byte) (int, error) {
	// Errors mean the connection cannot take deadlines; ctx still bounds
	// the read through the connection's closing.
	_ = d.rc.SetReadDeadline(time.Now().Add(d.idle))
	// Checked after setting the deadline: if ctx ended before, we stop
	// here; if after, its AfterFunc overrides our deadline.
	if err := d.ctx.Err(); err != nil {
		return 0, err
	}
	return d.r.Read(b)
}

var errMalformed = errors.New("malformed raft message")

func (t *Transport) serveStream(w http.ResponseWriter, r *http.Request) {
	from, ok := t.checkPeerRequest(w, r)
	if !ok {
		return
	}
	ctx, release, ok := t.beginRequest(w, r, from, true)
	if !ok {
		return
	}
	defer release()
	log := t.log.With("peer", hexID(from), "remote", r.RemoteAddr)

	rc := http.NewResponseController(w)
	// HTTP/1.1 would otherwise stop the request body once the response
	// starts; HTTP/2 is full duplex anyway.
	_ = rc.EnableFullDuplex()
	// A stream's connection is never reused: once the handler returns
	// with the body unfinished, Go's HTTP/1 server in full-duplex mode
	// would otherwise read the next request on it while still draining
	// this body ("invalid concurrent Body.Read call").
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Type", contentTypeStream)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	stopDeadline := context.AfterFunc(ctx, func() { _ = rc.SetReadDeadline(time.Now()) })
	defer stopDeadline()

	// The response body carries one byte per keepalive interval: the
	// sender's proof that we are still here.
	stopPing := make(chan struct{})
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		tick := time.NewTicker(t.timing.keepalive)
		defer tick.Stop()
		for {
			select {
			case <-stopPing:
				return
			case <-tick.C:
			}
			_ = rc.SetWriteDeadline(time.Now().Add(t.timing.write))
			if _, err := w.Write([]byte{0}); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}()
	defer func() {
		close(stopPing)
		<-pingDone
	}()

	log.Debug("inbound stream opened")
	body := &deadlineReader{ctx: ctx, r: r.Body, rc: rc, idle: t.timing.idle}
	err := t.receive(ctx, from, bufio.NewReaderSize(body, writeChunk), log)
	var ne net.Error
	switch {
	case errors.Is(err, errFrameTooLarge):
		log.Warn("refusing oversize raft frame; closing the stream", "err", err)
	case errors.Is(err, errMalformed):
		log.Warn("refusing garbage on a raft stream; closing it", "err", err)
	case ctx.Err() != nil, errors.Is(err, io.EOF):
		log.Debug("inbound stream closed", "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		log.Warn("inbound stream silent; closing it", "idle", t.timing.idle)
	default:
		log.Info("inbound stream broken", "err", err)
	}
}

// receive steps the messages of one stream into raft, in order, until the
// stream ends or carries something that is not a valid frame.
func (t *Transport) receive(ctx context.Context, from uint64, br *bufio.Reader, log *slog.Logger) error {
	var buf []byte
	warned := false
	for {
		payload, err := readFrame(br, buf, t.cfg.MaxMessageSize)
		if err != nil {
			return err
		}
		if cap(payload) <= maxRetainedBuf {
			buf = payload[:0]
		} else {
			buf = nil
		}
		if len(payload) == 0 {
			continue // keepalive
		}
		t.countReceived(from, len(payload))
		m, err := decodeMessage(payload)
		if err != nil {
			return fmt.Errorf("%w: %w", errMalformed, err)
		}
		if why := t.refuse(m, from); why != "" {
			if !warned {
				log.Warn("dropping raft message", "type", m.GetType(), "reason", why)
				warned = true
			} else {
				log.Debug("dropping raft message", "type", m.GetType(), "reason", why)
			}
			continue
		}
		if err := t.cfg.Raft.Process(ctx, m); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Debug("raft refused message", "type", m.GetType(), "err", err)
		}
	}
}

// refuse says why a message received on from's stream must not reach raft,
// or "" if it may.
func (t *Transport) refuse(m *raftpb.Message, from uint64) string {
	switch {
	case m.GetTo() != t.cfg.LocalID:
		return fmt.Sprintf("addressed to member %s, this is %s", hexID(m.GetTo()), hexID(t.cfg.LocalID))
	case m.GetFrom() == 0:
		return "no sender"
	case m.GetFrom() != from && !relayed(m.GetType()):
		return fmt.Sprintf("claims to be from %s on the stream of %s", hexID(m.GetFrom()), hexID(from))
	case raft.IsLocalMsg(m.GetType()):
		// Also what an unset or unknown type decodes to (MsgHup).
		return "local message type " + m.GetType().String() + " is never sent between members"
	case m.GetType() == raftpb.MsgSnap:
		return "MsgSnap is only accepted with its data, on " + pathSnapshot
	}
	return ""
}

// relayed reports whether messages of type typ may arrive on another
// member's stream than their sender's. Raft forwards a proposal or a read
// index request it cannot serve to the leader it knows, keeping the
// original sender so the answer goes straight back to it: a member that
// has just lost leadership relays what a follower sent it. (Found by the
// partition tests: refusing them left those requests to time out.)
func relayed(typ raftpb.MessageType) bool {
	return typ == raftpb.MsgProp || typ == raftpb.MsgReadIndex
}

func (t *Transport) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	from, ok := t.checkPeerRequest(w, r)
	if !ok {
		return
	}
	log := t.log.With("peer", hexID(from), "remote", r.RemoteAddr)
	if t.cfg.Snapshots == nil {
		log.Error("refused incoming snapshot: no snapshot store configured")
		httpError(w, "this member cannot receive snapshots", http.StatusServiceUnavailable)
		return
	}
	ctx, release, ok := t.beginRequest(w, r, from, false)
	if !ok {
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	stopDeadline := context.AfterFunc(ctx, func() { _ = rc.SetReadDeadline(time.Now()) })
	defer stopDeadline()
	br := bufio.NewReaderSize(&deadlineReader{ctx: ctx, r: r.Body, rc: rc, idle: t.timing.idle}, writeChunk)

	payload, err := readFrame(br, nil, t.cfg.MaxMessageSize)
	if err != nil {
		log.Warn("refused incoming snapshot: cannot read its message", "err", err)
		httpError(w, "cannot read snapshot message: "+err.Error(), http.StatusBadRequest)
		return
	}
	m, err := decodeMessage(payload)
	if err == nil && m.GetType() != raftpb.MsgSnap {
		err = fmt.Errorf("expected MsgSnap, got %s", m.GetType())
	}
	if err == nil && (m.GetTo() != t.cfg.LocalID || m.GetFrom() != from) {
		// refuse checks the addressing first.
		err = errors.New(t.refuse(m, from))
	}
	if err != nil {
		log.Warn("refused incoming snapshot", "err", err)
		httpError(w, err.Error(), http.StatusBadRequest)
		return
	}
	index := m.GetSnapshot().GetMetadata().GetIndex()
	log.Info("receiving snapshot", "index", index, "term", m.GetSnapshot().GetMetadata().GetTerm())
	if err := t.cfg.Snapshots.Receive(m, br); err != nil {
		log.Error("storing incoming snapshot failed", "index", index, "err", err)
		httpError(w, "storing snapshot failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if err := t.cfg.Raft.Process(ctx, m); err != nil {
		log.Warn("raft refused the received snapshot", "index", index, "err", err)
		httpError(w, "raft refused the snapshot: "+err.Error(), http.StatusInternalServerError)
		return
	}
	log.Info("snapshot received", "index", index)
	w.WriteHeader(http.StatusNoContent)
}

func (t *Transport) serveProbe(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerClusterID, hexID(t.cfg.ClusterID))
	w.Header().Set(headerMemberID, hexID(t.cfg.LocalID))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(probeBody{ClusterID: hexID(t.cfg.ClusterID), MemberID: hexID(t.cfg.LocalID)})
}

// httpError answers a peer request with an error and closes the connection.
// Closing matters: the request body is a stream that may never end, and Go's
// HTTP/1 server would otherwise try to drain it before answering.
func httpError(w http.ResponseWriter, msg string, code int) {
	w.Header().Set("Connection", "close")
	http.Error(w, msg, code)
}

// refusalLogInterval is how often the same refusal of the same remote is
// logged at Warn; a misconfigured peer retries every second.
const refusalLogInterval = time.Minute

// warnLimited logs at Warn, or at Debug if the same message with the same
// args was logged at Warn within refusalLogInterval.
func (t *Transport) warnLimited(log *slog.Logger, msg string, args ...any) {
	key := msg
	for i := 0; i+1 < len(args); i += 2 {
		key += fmt.Sprint("|", args[i], "=", args[i+1])
	}
	now := time.Now()
	t.refusalMu.Lock()
	last, seen := t.refusalLogged[key]
	quiet := seen && now.Sub(last) < refusalLogInterval
	if !quiet {
		if len(t.refusalLogged) > 1000 {
			clear(t.refusalLogged)
		}
		t.refusalLogged[key] = now
	}
	t.refusalMu.Unlock()
	if quiet {
		log.Debug(msg, args...)
	} else {
		log.Warn(msg, args...)
	}
}
