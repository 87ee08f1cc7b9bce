package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// checkInOrder checks that got is exactly indexes 1..n of type typ.
func checkInOrder(t *testing.T, got []*raftpb.Message, typ raftpb.MessageType, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if m.GetType() != typ || m.GetIndex() != uint64(i+1) {
			t.Fatalf("message %d is %s/%d, want %s/%d", i, m.GetType(), m.GetIndex(), typ, i+1)
		}
	}
}

func TestTwoMembersExchangeMessagesInOrder(t *testing.T) {
	a := startMember(t, 1, 0xc1, "")
	b := startMember(t, 2, 0xc1, "")
	connect(a, b)
	eventually(t, "both streams are up", func() bool { return connected(a.tr, 2) && connected(b.tr, 1) })

	const n = 3000
	for i := 1; i <= n; i++ {
		a.tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, uint64(i))})
		b.tr.Send([]*raftpb.Message{msg(raftpb.MsgAppResp, 2, 1, uint64(i))})
	}
	eventually(t, "all messages arrive", func() bool {
		return len(b.raft.received(1)) == n && len(a.raft.received(2)) == n
	})
	checkInOrder(t, b.raft.received(1), raftpb.MsgApp, n)
	checkInOrder(t, a.raft.received(2), raftpb.MsgAppResp, n)
	if got := a.tr.ActivePeers(); got != 1 {
		t.Errorf("ActivePeers = %d, want 1", got)
	}
	eventually(t, "inbound stream is reported", func() bool { return a.tr.Peers()[0].Inbound })
}

func TestThreeMembersExchangeMessagesInOrder(t *testing.T) {
	ms := []*member{startMember(t, 1, 7, ""), startMember(t, 2, 7, ""), startMember(t, 3, 7, "")}
	connect(ms...)
	eventually(t, "all streams are up", func() bool {
		for _, m := range ms {
			if m.tr.ActivePeers() != 2 {
				return false
			}
		}
		return true
	})
	const n = 500
	for i := 1; i <= n; i++ {
		for _, from := range ms {
			var batch []*raftpb.Message
			for _, to := range ms {
				if to != from {
					batch = append(batch, msg(raftpb.MsgHeartbeat, from.id, to.id, uint64(i)))
				}
			}
			from.tr.Send(batch)
		}
	}
	for _, to := range ms {
		for _, from := range ms {
			if to == from {
				continue
			}
			eventually(t, fmt.Sprintf("%d has all from %d", to.id, from.id), func() bool { return len(to.raft.received(from.id)) >= n })
			checkInOrder(t, to.raft.received(from.id), raftpb.MsgHeartbeat, n)
		}
	}
}

func TestSenderConnectsToPeerThatStartsLater(t *testing.T) {
	addr := freeAddr(t)
	a := startMember(t, 1, 7, "")
	a.tr.AddPeer(2, []string{"http://" + addr})
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
	eventually(t, "peer 2 is reported unreachable", func() bool { return a.raft.unreachableCount(2) > 0 })
	eventually(t, "the outage is logged", func() bool { return a.logs.count("peer unreachable") == 1 })

	b := startMember(t, 2, 7, addr)
	eventually(t, "the stream comes up", func() bool { return connected(a.tr, 2) })
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 2)})
	eventually(t, "the message arrives", func() bool { return len(b.raft.received(1)) == 1 })
	if got := b.raft.received(1)[0].GetIndex(); got != 2 {
		t.Errorf("got message %d; the one queued during the outage should have been dropped", got)
	}
	if n := a.logs.count("peer unreachable"); n != 1 {
		t.Errorf("outage logged %d times at Warn, want once:\n%s", n, a.logs)
	}
	if !strings.Contains(a.logs.String(), "peer connected") {
		t.Errorf("no \"peer connected\" log:\n%s", a.logs)
	}
}

func TestPeerRestartBreaksAndResumesStream(t *testing.T) {
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	connect(a, b)
	eventually(t, "stream up", func() bool { return connected(a.tr, 2) })
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	eventually(t, "first message arrives", func() bool { return len(b.raft.received(1)) == 1 })

	addr := strings.TrimPrefix(b.url, "http://")
	before := a.raft.unreachableCount(2)
	b.stop()
	eventually(t, "peer lost is logged", func() bool { return a.logs.count("peer lost") == 1 })
	eventually(t, "peer reported unreachable", func() bool { return a.raft.unreachableCount(2) > before })
	if connected(a.tr, 2) {
		t.Error("peer still reported connected after it stopped")
	}

	b2 := startMember(t, 2, 7, addr)
	eventually(t, "stream resumes", func() bool { return connected(a.tr, 2) })
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 2)})
	eventually(t, "message after restart arrives", func() bool { return len(b2.raft.received(1)) == 1 })
	if n := a.logs.count("peer connected"); n != 2 {
		t.Errorf("\"peer connected\" logged %d times, want 2", n)
	}
	if n := a.logs.count("peer lost"); n != 1 {
		t.Errorf("\"peer lost\" logged %d times, want once:\n%s", n, a.logs)
	}
}

func TestAddPeerWithNewURLsMovesTheStream(t *testing.T) {
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	a.tr.AddPeer(2, []string{"http://" + freeAddr(t)})
	eventually(t, "peer reported unreachable", func() bool { return a.raft.unreachableCount(2) > 0 })
	a.tr.AddPeer(2, []string{"http://" + freeAddr(t), b.url})
	eventually(t, "stream up on the second URL", func() bool { return connected(a.tr, 2) })
	if st := a.tr.Peers()[0]; st.URL != b.url {
		t.Errorf("connected to %q, want %q", st.URL, b.url)
	}
}

func TestRemovePeerStopsDelivery(t *testing.T) {
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	connect(a, b)
	eventually(t, "stream up", func() bool { return connected(a.tr, 2) })
	a.tr.RemovePeer(2)
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	if n := len(a.tr.Peers()); n != 0 {
		t.Errorf("%d peers after RemovePeer", n)
	}
	eventually(t, "inbound stream on 2 ends", func() bool {
		for _, st := range b.tr.Peers() {
			if st.Inbound {
				return false
			}
		}
		return true
	})
	if n := len(b.raft.received(1)); n != 0 {
		t.Errorf("removed peer got %d messages", n)
	}
}

func TestClusterIDMismatchIsRefused(t *testing.T) {
	a := startMember(t, 1, 0xaaa, "")
	b := startMember(t, 2, 0xbbb, "")
	a.tr.AddPeer(2, []string{b.url})
	eventually(t, "the refusal is logged on the receiver", func() bool {
		return strings.Contains(b.logs.String(), "refused peer request from another cluster")
	})
	eventually(t, "the sender sees 412", func() bool {
		st := a.tr.Peers()[0]
		return !st.Connected && strings.Contains(st.LastError, "412")
	})
	if !strings.Contains(a.logs.String(), "cluster ID mismatch") {
		t.Errorf("sender log does not name the mismatch:\n%s", a.logs)
	}
	eventually(t, "the sender retried a few times", func() bool { return a.raft.unreachableCount(2) >= 3 })
	if n := b.logs.count(`level=WARN msg="refused peer request from another cluster`); n != 1 {
		t.Errorf("refusal logged %d times at Warn, want once despite the retries", n)
	}
}

// postStream sends body as a raw stream from member from (of cluster
// cluster) to m and returns the answer's status once m is done with it.
func postStream(t *testing.T, m *member, cluster, from, to uint64, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, m.url+pathStream, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(headerClusterID, hexID(cluster))
	req.Header.Set(headerFrom, hexID(from))
	req.Header.Set(headerTo, hexID(to))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		// The receiver answers at once; wait for it to end the stream.
		eventually(t, "receiver ends the stream", func() bool {
			m.tr.mu.RLock()
			defer m.tr.mu.RUnlock()
			return m.tr.inbound[from] == nil
		})
	}
	return resp.StatusCode
}

func frame(t *testing.T, m *raftpb.Message) []byte {
	t.Helper()
	b, err := appendFrame(nil, m, DefaultMaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPeerRequestHeadersAreChecked(t *testing.T) {
	m := startMember(t, 2, 7, "")
	tests := []struct {
		name          string
		cluster, from uint64
		to            uint64
		want          int
		log           string
	}{
		{"other cluster", 8, 1, 2, http.StatusPreconditionFailed, "another cluster"},
		{"other member", 7, 1, 3, http.StatusPreconditionFailed, "meant for another member"},
		{"no sender", 7, 0, 2, http.StatusBadRequest, "without a valid sender ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := postStream(t, m, tt.cluster, tt.from, tt.to, frame(t, msg(raftpb.MsgApp, 1, 2, 1)))
			if got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
			if !strings.Contains(m.logs.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, m.logs)
			}
		})
	}
	if n := len(m.raft.received(1)); n != 0 {
		t.Errorf("refused requests delivered %d messages", n)
	}
}

func TestGarbageAndOversizeFramesAreRefused(t *testing.T) {
	m := startMember(t, 2, 7, "", func(c *Config) { c.MaxMessageSize = 1 << 10 })
	valid := frame(t, msg(raftpb.MsgApp, 1, 2, 1))
	big := msg(raftpb.MsgApp, 1, 2, 2)
	big.Entries = []*raftpb.Entry{{Data: make([]byte, 4<<10)}}
	tests := []struct {
		name string
		body []byte
		log  string
	}{
		{"length beyond limit", append(append([]byte{}, valid...), frame(t, big)...), "refusing oversize raft frame"},
		{"huge length prefix", append(append([]byte{}, valid...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), "refusing oversize raft frame"},
		{"overflowing uvarint", append(append([]byte{}, valid...), bytes.Repeat([]byte{0xff}, 11)...), "inbound stream broken"},
		{"undecodable payload", append(append([]byte{}, valid...), 4, 0xff, 0xff, 0xff, 0xff), "refusing garbage"},
		{"truncated frame", append(append([]byte{}, valid...), 100, 1, 2, 3), "inbound stream broken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(m.raft.received(1))
			if got := postStream(t, m, 7, 1, 2, tt.body); got != http.StatusOK {
				t.Fatalf("status %d", got)
			}
			eventually(t, "the refusal is logged", func() bool { return strings.Contains(m.logs.String(), tt.log) })
			if got := len(m.raft.received(1)) - before; got != 1 {
				t.Errorf("%d messages delivered, want only the valid one before the garbage", got)
			}
		})
	}
}

func TestMisaddressedAndLocalMessagesAreDropped(t *testing.T) {
	m := startMember(t, 2, 7, "")
	var body []byte
	for _, bad := range []*raftpb.Message{
		msg(raftpb.MsgApp, 1, 3, 1),                // for another member
		msg(raftpb.MsgApp, 4, 2, 2),                // claims another sender
		msg(raftpb.MsgHup, 1, 2, 3),                // local only
		msg(raftpb.MsgSnap, 1, 2, 4),               // snapshot without its data
		{From: new(uint64(1)), To: new(uint64(2))}, // no type: decodes as MsgHup
	} {
		body = append(body, frame(t, bad)...)
	}
	body = append(body, frame(t, msg(raftpb.MsgHeartbeat, 1, 2, 9))...)
	if got := postStream(t, m, 7, 1, 2, body); got != http.StatusOK {
		t.Fatalf("status %d", got)
	}
	got := m.raft.received(1)
	if len(got) != 1 || got[0].GetIndex() != 9 {
		t.Fatalf("delivered %s, want only MsgHeartbeat/9", describe(got))
	}
	if n := m.logs.count("level=WARN msg=\"dropping raft message\""); n != 1 {
		t.Errorf("dropped messages logged %d times at Warn, want once per stream:\n%s", n, m.logs)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	a.snaps.out = make([]byte, 8<<20+123)
	rand.Read(a.snaps.out)
	connect(a, b)

	snap := msg(raftpb.MsgSnap, 1, 2, 0)
	snap.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(42)), Term: new(uint64(3))}}
	a.tr.Send([]*raftpb.Message{snap})
	eventually(t, "the sender hears the outcome", func() bool { return len(a.raft.snapshotReports()) == 1 })
	if r := a.raft.snapshotReports()[0]; r != (snapReport{id: 2, failure: false}) {
		t.Fatalf("report %+v, want success for 2", r)
	}
	if !bytes.Equal(b.snaps.received(), a.snaps.out) {
		t.Fatalf("received %d bytes differing from the %d sent", len(b.snaps.received()), len(a.snaps.out))
	}
	got := b.raft.received(1)
	if len(got) != 1 || got[0].GetSnapshot().GetMetadata().GetIndex() != 42 {
		t.Fatalf("raft got %s, want the MsgSnap at 42", describe(got))
	}
	b.raft.mu.Lock()
	events := strings.Join(b.raft.events, ", ")
	b.raft.mu.Unlock()
	if events != "receive, process MsgSnap" {
		t.Errorf("events %q: the data must be stored before raft sees the message", events)
	}
}

func TestSnapshotFailureIsReported(t *testing.T) {
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	a.snaps.out = []byte("snapshot data")
	b.snaps.receiveErr = errors.New("disk full")
	connect(a, b)
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgSnap, 1, 2, 0)})
	eventually(t, "the sender hears the outcome", func() bool { return len(a.raft.snapshotReports()) == 1 })
	if r := a.raft.snapshotReports()[0]; r != (snapReport{id: 2, failure: true}) {
		t.Fatalf("report %+v, want failure for 2", r)
	}
	if n := len(b.raft.received(1)); n != 0 {
		t.Errorf("raft got the MsgSnap although storing it failed")
	}
	if !strings.Contains(a.logs.String(), "disk full") {
		t.Errorf("sender log does not carry the receiver's reason:\n%s", a.logs)
	}
}

// blackhole accepts connections and never reads from them.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return "http://" + l.Addr().String()
}

func TestSendNeverBlocksWhenPeerIsDown(t *testing.T) {
	a := startMember(t, 1, 7, "", func(c *Config) { c.QueueSize = 16 })
	a.tr.AddPeer(2, []string{blackhole(t)})
	a.tr.AddPeer(3, []string{"http://" + freeAddr(t)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50000 {
			a.tr.Send([]*raftpb.Message{
				msg(raftpb.MsgApp, 1, 2, uint64(i)),
				msg(raftpb.MsgHeartbeat, 1, 2, uint64(i)),
				msg(raftpb.MsgApp, 1, 3, uint64(i)),
			})
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Send blocked")
	}
	for _, st := range a.tr.Peers() {
		if st.Dropped == 0 {
			t.Errorf("peer %d: no message dropped", st.ID)
		}
	}
	eventually(t, "both peers reported unreachable", func() bool {
		return a.raft.unreachableCount(2) > 0 && a.raft.unreachableCount(3) > 0
	})
}

func TestUrgentMessagesJumpTheBacklog(t *testing.T) {
	tr := newTransport(Config{LocalID: 1, Raft: newFakeRaft()}, testTiming)
	defer tr.Close()
	p := newPeer(tr, 2, nil)
	for i := 2; i <= 5; i++ {
		p.enqueue(msg(raftpb.MsgApp, 1, 2, uint64(i)))
	}
	p.enqueue(msg(raftpb.MsgHeartbeat, 1, 2, 100))
	p.enqueue(msg(raftpb.MsgVoteResp, 1, 2, 101))

	b := newStreamBody(p, &stream{})
	defer b.stop()
	if err := b.batch(msg(raftpb.MsgApp, 1, 2, 1)); err != nil {
		t.Fatal(err)
	}
	var got []*raftpb.Message
	r := bufio.NewReader(bytes.NewReader(b.buf))
	for {
		payload, err := readFrame(r, nil, DefaultMaxMessageSize)
		if err != nil {
			break
		}
		m, err := decodeMessage(payload)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	want := "MsgApp/1 MsgHeartbeat/100 MsgVoteResp/101 MsgApp/2 MsgApp/3 MsgApp/4 MsgApp/5 "
	if describe(got) != want {
		t.Errorf("wrote %s\nwant  %s", describe(got), want)
	}
}

func TestProbeAnswersIDs(t *testing.T) {
	a := startMember(t, 1, 0xfeed, "")
	b := startMember(t, 2, 0xfeed, "")
	got, err := a.tr.Probe(context.Background(), b.url+"/")
	if err != nil {
		t.Fatal(err)
	}
	if got != (ProbeResult{ClusterID: 0xfeed, MemberID: 2}) {
		t.Errorf("probe = %+v", got)
	}
}

func TestMessagesFlowOverTLS(t *testing.T) {
	start := func(id uint64) *member {
		m := &member{id: id, raft: newFakeRaft(), logs: &logBuffer{}}
		m.snaps = &memSnapshots{raft: m.raft}
		m.srv = httptest.NewUnstartedServer(nil)
		m.srv.StartTLS()
		tlsCfg := m.srv.Client().Transport.(*http.Transport).TLSClientConfig
		m.tr = newTransport(Config{LocalID: id, ClusterID: 7, Raft: m.raft, Snapshots: m.snaps, TLS: tlsCfg}, testTiming)
		m.srv.Config.Handler = m.tr.Handler()
		m.url = m.srv.URL
		t.Cleanup(m.stop)
		return m
	}
	a, b := start(1), start(2)
	connect(a, b)
	a.snaps.out = bytes.Repeat([]byte("x"), 1<<20)
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1), msg(raftpb.MsgSnap, 1, 2, 0)})
	b.tr.Send([]*raftpb.Message{msg(raftpb.MsgAppResp, 2, 1, 1)})
	eventually(t, "messages and snapshot arrive over TLS", func() bool {
		return len(b.raft.received(1)) == 2 && len(a.raft.received(2)) == 1 && len(a.raft.snapshotReports()) == 1
	})
	if !strings.HasPrefix(a.tr.Peers()[0].URL, "https://") {
		t.Errorf("stream URL %q is not https", a.tr.Peers()[0].URL)
	}
}

func TestCloseEndsInboundStreamsAndStopsCallbacks(t *testing.T) {
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	connect(a, b)
	eventually(t, "streams up", func() bool { return connected(a.tr, 2) && connected(b.tr, 1) })
	done := make(chan struct{})
	go func() { b.tr.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs while a peer's stream is open")
	}
	n := len(b.raft.received(1))
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	eventually(t, "the sender notices", func() bool { return !connected(a.tr, 2) })
	if got := len(b.raft.received(1)); got != n {
		t.Errorf("closed transport delivered %d more messages", got-n)
	}
}

// A member that is not the leader relays proposals and read index requests
// it receives to the leader with their original sender (raft's forwarding).
// The leader's transport must deliver them, though they arrive on the
// relaying member's stream; other message types claiming another sender
// stay refused (TestMisaddressedAndLocalMessagesAreDropped).
func TestRelayedProposalsAndReadIndexReachRaft(t *testing.T) {
	// Member 2 is a follower of leader 3 and receives, from member 1, a
	// proposal and a read index request (1 still took 2 for the leader).
	st := raft.NewMemoryStorage()
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	if err := st.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{ConfState: cs, Index: new(uint64(1)), Term: new(uint64(1))}}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 2, ElectionTick: 10, HeartbeatTick: 1, Storage: st, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16,
		Logger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	heartbeat := &raftpb.Message{Type: new(raftpb.MsgHeartbeat), From: new(uint64(3)), To: new(uint64(2)), Term: new(uint64(2)), Commit: new(uint64(1))}
	prop := &raftpb.Message{Type: new(raftpb.MsgProp), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(0)),
		Entries: []*raftpb.Entry{{Data: []byte("put")}}}
	read := &raftpb.Message{Type: new(raftpb.MsgReadIndex), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(0)),
		Entries: []*raftpb.Entry{{Data: []byte("read-ctx")}}}
	for _, m := range []*raftpb.Message{heartbeat, prop, read} {
		if err := rn.Step(m); err != nil {
			t.Fatalf("step %s: %v", m.GetType(), err)
		}
	}
	var relayedMsgs []*raftpb.Message
	for _, m := range rn.Ready().Messages {
		if m.GetTo() == 3 && m.GetFrom() == 1 {
			relayedMsgs = append(relayedMsgs, m)
		}
	}
	if len(relayedMsgs) != 2 {
		t.Fatalf("raft relayed %s from 1 to the leader, want MsgProp and MsgReadIndex", describe(relayedMsgs))
	}

	// Member 2 sends them on its stream to leader 3.
	leader := startMember(t, 3, 7, "")
	var body []byte
	for _, m := range relayedMsgs {
		body = append(body, frame(t, m)...)
	}
	if got := postStream(t, leader, 7, 2, 3, body); got != http.StatusOK {
		t.Fatalf("status %d", got)
	}
	eventually(t, "the relayed messages reach raft", func() bool { return len(leader.raft.received(1)) == 2 })
	if strings.Contains(leader.logs.String(), "dropping raft message") {
		t.Errorf("the leader dropped a relayed message:\n%s", leader.logs.String())
	}
}

// returningRaft is a fakeRaft that takes back unsent proposals.
type returningRaft struct {
	*fakeRaft
	returned chan *raftpb.Message
}

func (r *returningRaft) ProposalNotSent(m *raftpb.Message) { r.returned <- m }

func TestProposalsNeverSentAreReturnedToRaft(t *testing.T) {
	rr := &returningRaft{fakeRaft: newFakeRaft(), returned: make(chan *raftpb.Message, 16)}
	a := startMember(t, 1, 7, "", func(c *Config) { c.Raft = rr })
	a.tr.AddPeer(2, []string{"http://" + freeAddr(t)})
	prop := msg(raftpb.MsgProp, 1, 2, 0)
	prop.Term = nil
	prop.Entries = []*raftpb.Entry{{Data: []byte("put")}}
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 0), prop})
	select {
	case m := <-rr.returned:
		if m.GetType() != raftpb.MsgProp || len(m.GetEntries()) != 1 || string(m.GetEntries()[0].GetData()) != "put" {
			t.Fatalf("returned %v, want the proposal", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the proposal queued for an unreachable peer was not returned to raft")
	}
	select {
	case m := <-rr.returned:
		t.Fatalf("also returned %v; only proposals are", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// A receiver that accepts a stream and keeps sending its keepalives but
// stops reading: the sender's writes block once the socket buffers are
// full, and only the write watchdog notices. The stream must be cut and the
// peer reported unreachable.
func TestStreamToAReceiverThatStopsReadingIsCut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: "+contentTypeStream+"\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
			return
		}
		tick := time.NewTicker(testTiming.keepalive)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := io.WriteString(c, "1\r\n\x00\r\n"); err != nil {
					return
				}
			}
		}
	}()
	a := startMember(t, 1, 7, "", func(c *Config) { c.QueueSize = 4096 })
	a.tr.AddPeer(2, []string{"http://" + l.Addr().String()})
	big := make([]byte, 256<<10)
	go func() {
		for i := range 400 {
			select {
			case <-stop:
				return
			default:
			}
			m := msg(raftpb.MsgApp, 1, 2, uint64(i))
			m.Entries = []*raftpb.Entry{{Data: big}}
			a.tr.Send([]*raftpb.Message{m})
			time.Sleep(time.Millisecond)
		}
	}()
	eventually(t, "the stalled stream cut", func() bool {
		for _, st := range a.tr.Peers() {
			if st.ID == 2 && strings.Contains(st.LastError, "write stalled") {
				return true
			}
		}
		return false
	})
	// The peer's status shows the error before raft is told (peer.lost).
	eventually(t, "peer 2 reported unreachable", func() bool { return a.raft.unreachableCount(2) > 0 })
}
