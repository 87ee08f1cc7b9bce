package raftnode

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func ent(index, term uint64, data string) *pb.Entry {
	return &pb.Entry{Index: new(index), Term: new(term), Data: []byte(data)}
}

// app is a MsgApp from leader 1 to peer to, in term 2.
func app(to, index, logTerm, commit uint64, ents ...*pb.Entry) *pb.Message {
	return &pb.Message{Type: pb.MessageType_MsgApp.Enum(), From: new(uint64(1)), To: new(to), Term: new(uint64(2)),
		Index: new(index), LogTerm: new(logTerm), Commit: new(commit), Entries: ents}
}

// appResp is a MsgAppResp from follower from to leader 1, in term 2.
func appResp(from, index uint64, reject bool) *pb.Message {
	m := &pb.Message{Type: pb.MessageType_MsgAppResp.Enum(), From: new(from), To: new(uint64(1)), Term: new(uint64(2)), Index: new(index)}
	if reject {
		m.Reject, m.RejectHint = new(true), new(index-1)
	}
	return m
}

func heartbeat(to uint64) *pb.Message {
	return &pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(to), Term: new(uint64(2))}
}

func TestCoalesce(t *testing.T) {
	e := func(i uint64) *pb.Entry { return ent(i, 2, fmt.Sprint("e", i)) }
	for _, tc := range []struct {
		name string
		in   []*pb.Message
		want []*pb.Message
	}{{
		name: "contiguous appends to one peer become one, with the later commit",
		in:   []*pb.Message{app(2, 10, 2, 9, e(11)), app(2, 11, 2, 10, e(12)), app(2, 12, 2, 10, e(13), e(14))},
		want: []*pb.Message{app(2, 10, 2, 10, e(11), e(12), e(13), e(14))},
	}, {
		name: "interleaved peers are merged per peer, order kept",
		in:   []*pb.Message{app(2, 10, 2, 9, e(11)), app(3, 10, 2, 9, e(11)), app(2, 11, 2, 9, e(12)), app(3, 11, 2, 9, e(12))},
		want: []*pb.Message{app(2, 10, 2, 9, e(11), e(12)), app(3, 10, 2, 9, e(11), e(12))},
	}, {
		name: "a commit-only append joins the one before it",
		in:   []*pb.Message{app(2, 10, 2, 9, e(11)), app(2, 11, 2, 11)},
		want: []*pb.Message{app(2, 10, 2, 11, e(11))},
	}, {
		name: "an append after a commit-only one",
		in:   []*pb.Message{app(2, 10, 2, 10), app(2, 10, 2, 10, e(11))},
		want: []*pb.Message{app(2, 10, 2, 10, e(11))},
	}, {
		name: "nothing joins an append from below the commit index it carries (a follower past it would drop all)",
		in:   []*pb.Message{app(2, 7, 2, 12, e(8), e(9), e(10), e(11), e(12)), app(2, 12, 2, 12, e(13))},
		want: []*pb.Message{app(2, 7, 2, 12, e(8), e(9), e(10), e(11), e(12)), app(2, 12, 2, 12, e(13))},
	}, {
		name: "a gap is not merged",
		in:   []*pb.Message{app(2, 10, 2, 9, e(11)), app(2, 12, 2, 9, e(13))},
		want: []*pb.Message{app(2, 10, 2, 9, e(11)), app(2, 12, 2, 9, e(13))},
	}, {
		name: "a previous term that does not match is not merged",
		in:   []*pb.Message{app(2, 10, 2, 9, e(11)), app(2, 11, 1, 9, e(12))},
		want: []*pb.Message{app(2, 10, 2, 9, e(11)), app(2, 11, 1, 9, e(12))},
	}, {
		name: "nothing is merged across another message to the same peer",
		in:   []*pb.Message{app(2, 10, 2, 9, e(11)), heartbeat(2), app(2, 11, 2, 9, e(12))},
		want: []*pb.Message{app(2, 10, 2, 9, e(11)), heartbeat(2), app(2, 11, 2, 9, e(12))},
	}, {
		name: "a message to another peer in between does not matter",
		in:   []*pb.Message{app(2, 10, 2, 9, e(11)), heartbeat(3), app(2, 11, 2, 9, e(12))},
		want: []*pb.Message{app(2, 10, 2, 9, e(11), e(12)), heartbeat(3)},
	}, {
		name: "a later accepting response replaces an earlier one",
		in:   []*pb.Message{appResp(2, 11, false), appResp(2, 12, false), appResp(2, 14, false)},
		want: []*pb.Message{appResp(2, 14, false)},
	}, {
		name: "rejections and lower indexes are kept",
		in:   []*pb.Message{appResp(2, 11, false), appResp(2, 12, true), appResp(2, 13, false), appResp(2, 9, false)},
		want: []*pb.Message{appResp(2, 11, false), appResp(2, 12, true), appResp(2, 13, false), appResp(2, 9, false)},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			in := make([]*pb.Message, len(tc.in))
			for i, m := range tc.in {
				in[i] = proto.Clone(m).(*pb.Message)
			}
			got := coalesce(in, maxSizePerMsg)
			if !slices.EqualFunc(got, tc.want, func(a, b *pb.Message) bool { return proto.Equal(a, b) }) {
				t.Errorf("coalesce(%v)\n got %v\nwant %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestCoalesceKeepsWithinTheSizeLimitAndLeavesEntrySlicesAlone(t *testing.T) {
	big := func(i uint64) *pb.Entry { return ent(i, 2, string(make([]byte, 600))) }
	ents := make([]*pb.Entry, 2, 8) // room to append: a merge must not write into it
	ents[0], ents[1] = big(11), big(12)
	first := app(2, 10, 2, 9, ents...)
	first.Entries = ents
	got := coalesce([]*pb.Message{first, app(2, 12, 2, 9, big(13)), app(2, 13, 2, 9, big(14))}, 2000)
	if len(got) != 2 || len(got[0].GetEntries()) != 3 || len(got[1].GetEntries()) != 1 {
		t.Fatalf("with a 2000-byte limit, 4 entries of 600 bytes should go as 3 + 1; got %v", got)
	}
	if spare := ents[:3][2]; spare != nil {
		t.Errorf("merging wrote entry %v into the spare capacity of the first message's entry slice, which raft may still hold", spare)
	}
}

// TestCoalescedMessagesReplicateTheSameLog runs three raft members in
// memory whose every Ready's messages pass through coalesce, with
// proposals in bursts so that a Ready holds many appends per follower, and
// checks that every proposal commits, on all members, in the same order.
//
// The leader's commit notices are held back (commitNotices) in a second
// run, their delay ending at random moments: the same holds. (Here every
// member takes all its messages at once, so notices held for a later
// message save nothing; the saving is with proposals one at a time, see
// commitNotices.)
func TestCoalescedMessagesReplicateTheSameLog(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("commit-notices-held=%v", hold), func(t *testing.T) {
			replicateCoalesced(t, hold)
		})
	}
}

// replicateCoalesced runs the scenario of TestCoalescedMessagesReplicateTheSameLog
// and returns how many messages were sent.
func replicateCoalesced(t *testing.T, holdNotices bool) int {
	const members, proposals = 3, 2000
	rnd := rand.New(rand.NewPCG(1, 2))
	nodes := newMemRafts(t, members)
	inbox := map[uint64][]*pb.Message{}
	var notices commitNotices
	sent, coalesced := 0, 0
	deliver := func(from uint64, msgs []*pb.Message) {
		for _, m := range msgs {
			// Nothing is lost or reordered here, so a follower never
			// has reason to refuse an append; raft would recover from
			// a bad merge by probing, which must not be needed.
			if m.GetType() == pb.MessageType_MsgAppResp && m.GetReject() {
				t.Fatalf("member %d refused an append: %v", from, m)
			}
			inbox[m.GetTo()] = append(inbox[m.GetTo()], m)
		}
	}
	step := func(id uint64) {
		n := nodes[id]
		for _, m := range inbox[id] {
			if err := n.rn.Step(m); err != nil && err != raft.ErrProposalDropped {
				t.Fatalf("member %d: step %v: %v", id, m.GetType(), err)
			}
		}
		inbox[id] = nil
		for n.rn.HasReady() {
			raw := n.ready(t)
			msgs := raw
			if holdNotices && id == 1 {
				msgs = notices.send(msgs)
			}
			msgs = coalesce(msgs, maxSizePerMsg)
			sent, coalesced = sent+len(raw), coalesced+len(msgs)
			deliver(id, msgs)
		}
	}
	if err := nodes[1].rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	next := 0
	for round := 0; round < 100000 && (next < proposals || !allCommitted(proposals, nodes[1].committed, nodes[2].committed, nodes[3].committed)); round++ {
		if lead := nodes[1].rn.Status().Lead; lead == 1 && next < proposals {
			for burst := 1 + rnd.IntN(30); burst > 0 && next < proposals; burst-- {
				if err := nodes[1].rn.Propose([]byte(fmt.Sprint("p", next))); err != nil {
					t.Fatal(err)
				}
				next++
			}
		}
		// Members take their turns in a random order, and one of them
		// sometimes ticks, so heartbeats and their answers mix in.
		for _, id := range rnd.Perm(members) {
			step(uint64(id + 1))
		}
		if rnd.IntN(10) == 0 {
			nodes[1].rn.Tick()
		}
		if holdNotices && rnd.IntN(4) == 0 {
			late := notices.flush()
			coalesced += len(late)
			deliver(1, late)
		}
	}
	want := make([]string, proposals)
	for i := range want {
		want[i] = fmt.Sprint("p", i)
	}
	for id, n := range nodes {
		if !slices.Equal(n.committed, want) {
			t.Fatalf("member %d committed %d entries, want the %d proposals in order (first difference at %d)", id, len(n.committed), proposals, firstDiff(n.committed, want))
		}
	}
	if coalesced*2 > sent {
		t.Errorf("raft emitted %d messages and %d were sent after coalescing; bursts of proposals should at least halve them", sent, coalesced)
	}
	t.Logf("raft emitted %d messages, %d sent after coalescing", sent, coalesced)
	return coalesced
}

// allCommitted reports whether every log has at least n entries.
func allCommitted(n int, logs ...[]string) bool {
	for _, l := range logs {
		if len(l) < n {
			return false
		}
	}
	return true
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// memRaft is a raft member in memory for the coalescing scenarios.
type memRaft struct {
	rn        *raft.RawNode
	st        *raft.MemoryStorage
	committed []string // the data of the normal entries committed so far
}

func newMemRafts(t *testing.T, n int) map[uint64]*memRaft {
	t.Helper()
	var peers []raft.Peer
	for id := uint64(1); id <= uint64(n); id++ {
		peers = append(peers, raft.Peer{ID: id})
	}
	rafts := map[uint64]*memRaft{}
	for id := uint64(1); id <= uint64(n); id++ {
		st := raft.NewMemoryStorage()
		rn, err := raft.NewRawNode(&raft.Config{ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: st,
			MaxSizePerMsg: maxSizePerMsg, MaxInflightMsgs: 256, Logger: raftLogger{slog.New(slog.DiscardHandler)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := rn.Bootstrap(peers); err != nil {
			t.Fatal(err)
		}
		rafts[id] = &memRaft{rn: rn, st: st}
	}
	return rafts
}

// ready persists one Ready of r, applies its conf changes and returns its
// messages, as they come from raft.
func (r *memRaft) ready(t *testing.T) []*pb.Message {
	t.Helper()
	if !r.rn.HasReady() {
		return nil
	}
	rd := r.rn.Ready()
	if err := r.st.Append(rd.Entries); err != nil {
		t.Fatal(err)
	}
	if rd.HardState != nil {
		if err := r.st.SetHardState(rd.HardState); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range rd.CommittedEntries {
		if e.GetType() == pb.EntryType_EntryNormal && len(e.GetData()) > 0 {
			r.committed = append(r.committed, string(e.GetData()))
		}
		if e.GetType() == pb.EntryType_EntryConfChange {
			var cc pb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				t.Fatal(err)
			}
			r.rn.ApplyConfChange(&cc)
		}
	}
	msgs := rd.Messages
	r.rn.Advance(rd)
	return msgs
}

func (r *memRaft) last() uint64 { i, _ := r.st.LastIndex(); return i }

// A follower ignores a MsgApp whose previous index is below its commit
// index. A leader that probes a follower from a match index that lags (its
// acknowledgements were on the way) and, in the same Ready, sends it a new
// entry once an acknowledgement arrives, must not have the new entry merged
// into the probe: the follower would drop both, and the entry would wait
// for a later round trip.
func TestCoalesceKeepsNewEntriesOutOfAStaleProbe(t *testing.T) {
	rafts := newMemRafts(t, 3)
	settle := func() {
		for range 100 {
			quiet := true
			for id := uint64(1); id <= 3; id++ {
				for _, m := range coalesce(rafts[id].ready(t), maxSizePerMsg) {
					quiet = false
					rafts[m.GetTo()].rn.Step(m)
				}
			}
			if quiet {
				return
			}
		}
	}
	settle()
	l, f := rafts[1], rafts[2]
	if err := l.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	settle()
	if l.rn.Status().RaftState != raft.StateLeader {
		t.Fatal("member 1 did not become leader")
	}
	// Five entries reach the follower; its acknowledgements are held back
	// while member 3's let the leader commit them and tell the follower.
	for range 5 {
		if err := l.rn.Propose([]byte("b")); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range l.ready(t) {
		rafts[m.GetTo()].rn.Step(m)
	}
	held := f.ready(t)
	for _, m := range rafts[3].ready(t) {
		l.rn.Step(m)
	}
	for _, m := range l.ready(t) {
		if m.GetTo() == 2 {
			f.rn.Step(m)
		}
	}
	held = append(held, f.ready(t)...)
	if l.rn.Status().Progress[2].Match >= f.last() {
		t.Fatal("scenario: the leader already knows the follower's log")
	}
	// The transport reports the follower unreachable: the leader probes it
	// from the stale match index at the next heartbeat answer. In the same
	// Ready a new entry is proposed and the held acknowledgement arrives.
	l.rn.ReportUnreachable(2)
	l.rn.Step(&pb.Message{Type: pb.MessageType_MsgHeartbeatResp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: l.rn.Status().Term})
	if err := l.rn.Propose([]byte("c")); err != nil {
		t.Fatal(err)
	}
	var ack *pb.Message
	for _, m := range held {
		if m.GetType() == pb.MessageType_MsgAppResp && !m.GetReject() && (ack == nil || m.GetIndex() >= ack.GetIndex()) {
			ack = m
		}
	}
	l.rn.Step(ack)
	for _, m := range coalesce(l.ready(t), maxSizePerMsg) {
		if m.GetTo() == 2 {
			f.rn.Step(m)
		}
	}
	f.ready(t)
	if f.last() != l.last() {
		t.Fatalf("after one exchange the follower's log ends at %d, the leader's at %d: the new entry was dropped with the probe it was merged into", f.last(), l.last())
	}
}

// entriesBytes never counts less than raft does (the encoded size), so a
// merged message stays within MaxSizePerMsg.
func TestEntriesBytesBoundsTheEncodedSize(t *testing.T) {
	huge := ^uint64(0)
	for _, e := range []*pb.Entry{
		ent(1, 1, ""),
		ent(huge, huge, string(make([]byte, 300))),
		{Index: new(huge), Term: new(huge), Type: pb.EntryType_EntryConfChangeV2.Enum(), Data: make([]byte, 1<<20)},
	} {
		if got, enc := entriesBytes([]*pb.Entry{e}), uint64(proto.Size(e)); got < enc {
			t.Errorf("entry of %d data bytes: counted %d, encoded %d", len(e.GetData()), got, enc)
		}
	}
}
