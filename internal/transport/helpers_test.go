package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// testTiming makes reconnects and failure detection fast enough for tests.
var testTiming = timing{
	dial:       time.Second,
	keepalive:  50 * time.Millisecond,
	idle:       time.Second,
	write:      time.Second,
	minBackoff: 10 * time.Millisecond,
	maxBackoff: 100 * time.Millisecond,
}

// fakeRaft records what the transport hands to raft.
type fakeRaft struct {
	mu          sync.Mutex
	msgs        []*raftpb.Message
	unreachable map[uint64]int
	snapReports []snapReport
	events      []string // "receive", "process MsgSnap", in order
}

type snapReport struct {
	id      uint64
	failure bool
}

func newFakeRaft() *fakeRaft { return &fakeRaft{unreachable: make(map[uint64]int)} }

func (r *fakeRaft) Process(_ context.Context, m *raftpb.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	if m.GetType() == raftpb.MsgSnap {
		r.events = append(r.events, "process MsgSnap")
	}
	return nil
}

func (r *fakeRaft) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[id]++
}

func (r *fakeRaft) ReportSnapshot(id uint64, failure bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snapReports = append(r.snapReports, snapReport{id, failure})
}

func (r *fakeRaft) event(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// received returns the messages from sender, in arrival order.
func (r *fakeRaft) received(from uint64) []*raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*raftpb.Message
	for _, m := range r.msgs {
		if m.GetFrom() == from {
			out = append(out, m)
		}
	}
	return out
}

func (r *fakeRaft) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *fakeRaft) snapshotReports() []snapReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]snapReport(nil), r.snapReports...)
}

// memSnapshots serves outgoing snapshot data from memory and keeps what it
// receives.
type memSnapshots struct {
	raft       *fakeRaft
	out        []byte
	receiveErr error

	mu  sync.Mutex
	got []byte
}

func (s *memSnapshots) Open(*raftpb.Message) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.out)), nil
}

func (s *memSnapshots) Receive(_ *raftpb.Message, data io.Reader) error {
	b, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	if s.receiveErr != nil {
		return s.receiveErr
	}
	s.mu.Lock()
	s.got = b
	s.mu.Unlock()
	s.raft.event("receive")
	return nil
}

func (s *memSnapshots) received() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(substr string) int { return strings.Count(b.String(), substr) }

// member is one transport with its peer listener.
type member struct {
	id    uint64
	tr    *Transport
	srv   *httptest.Server
	raft  *fakeRaft
	snaps *memSnapshots
	logs  *logBuffer
	url   string
}

type memberOpt func(*Config)

// startMember starts a member on addr ("" for any free loopback port).
func startMember(t *testing.T, id, cluster uint64, addr string, opts ...memberOpt) *member {
	t.Helper()
	m := &member{id: id, raft: newFakeRaft(), logs: &logBuffer{}}
	m.snaps = &memSnapshots{raft: m.raft}
	cfg := Config{
		LocalID:   id,
		ClusterID: cluster,
		Raft:      m.raft,
		Snapshots: m.snaps,
		Logger:    slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	m.tr = newTransport(cfg, testTiming)
	m.srv = httptest.NewUnstartedServer(m.tr.Handler())
	if addr != "" {
		l := listenOn(t, addr)
		m.srv.Listener.Close()
		m.srv.Listener = l
	}
	m.srv.Start()
	m.url = m.srv.URL
	t.Cleanup(m.stop)
	return m
}

// stop closes the transport, then the listener; it may be called twice.
func (m *member) stop() {
	m.tr.Close()
	m.srv.Close()
}

// listenOn listens on addr, retrying briefly while a just-closed listener
// releases it.
func listenOn(t *testing.T, addr string) net.Listener {
	t.Helper()
	var err error
	for range 50 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("listen on %s: %v", addr, err)
	return nil
}

// freeAddr returns a loopback address nobody listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func connect(members ...*member) {
	for _, a := range members {
		for _, b := range members {
			if a != b {
				a.tr.AddPeer(b.id, []string{b.url})
			}
		}
	}
}

func connected(tr *Transport, id uint64) bool {
	for _, st := range tr.Peers() {
		if st.ID == id {
			return st.Connected
		}
	}
	return false
}

// eventually fails the test if cond does not hold within 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func msg(typ raftpb.MessageType, from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{Type: new(typ), From: new(from), To: new(to), Index: new(index), Term: new(uint64(1))}
}

func describe(ms []*raftpb.Message) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%s/%d ", m.GetType(), m.GetIndex())
	}
	return b.String()
}
