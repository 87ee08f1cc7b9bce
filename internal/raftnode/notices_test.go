package raftnode

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// appendMsg is a MsgApp from leader 1 to peer to in term 2, after index
// (of term 2), with entries ents (of term 2).
func appendMsg(to, index, commit uint64, ents ...uint64) *pb.Message {
	m := app(to, index, 2, commit)
	for _, e := range ents {
		m.Entries = append(m.Entries, ent(e, 2, "x"))
	}
	return m
}

// send is route for tests that do not look at released.
func (c *commitNotices) send(msgs []*pb.Message) []*pb.Message {
	out, _ := c.route(msgs)
	return out
}

// A commit notice that ends a Ready's messages to its peer waits; the next
// append to that peer takes it along, and coalesce makes one message of
// the two, with the entries and the later commit index.
func TestCommitNoticeRidesWithTheNextAppend(t *testing.T) {
	var c commitNotices
	sent := c.send([]*pb.Message{
		appendMsg(2, 10, 10), appendMsg(3, 10, 10),
		heartbeat(4),
	})
	if len(sent) != 1 || sent[0].GetType() != pb.MessageType_MsgHeartbeat {
		t.Fatalf("sent %v now, want only the heartbeat", sent)
	}
	if len(c.held) != 2 || c.due == nil {
		t.Fatalf("holds %d notices (timer armed: %v), want 2 and a timer", len(c.held), c.due != nil)
	}

	routed, released := c.route([]*pb.Message{appendMsg(2, 10, 10, 11, 12)})
	if !released {
		t.Fatal("the held notice went in front of the append, but route did not report it released")
	}
	sent = coalesce(routed, maxSizePerMsg)
	if len(sent) != 1 {
		t.Fatalf("sent %d messages to peer 2, want the notice merged into the append: %v", len(sent), sent)
	}
	if m := sent[0]; m.GetTo() != 2 || m.GetIndex() != 10 || len(m.GetEntries()) != 2 || m.GetCommit() != 10 {
		t.Fatalf("sent %v, want an append to 2 after index 10 with entries 11-12 and commit 10", m)
	}
	if len(c.held) != 1 || c.held[0].GetTo() != 3 {
		t.Fatalf("still holds %v, want peer 3's notice", c.held)
	}

	// Nothing else goes to peer 3: its notice goes alone once the delay
	// is over.
	select {
	case <-c.due:
	case <-time.After(10 * time.Second):
		t.Fatal("the held notice's timer never fired")
	}
	if late := c.flush(); len(late) != 1 || late[0].GetTo() != 3 || late[0].GetCommit() != 10 {
		t.Fatalf("flush gave %v, want peer 3's notice", late)
	}
	if len(c.held) != 0 || c.due != nil {
		t.Fatalf("after flush: holds %v, timer armed %v", c.held, c.due != nil)
	}
}

// Only the last message to a peer is held: a notice followed by something
// else to the same peer goes at once, in its place. A later notice of the
// same term replaces a held one; one of another term sends it first. A
// route that leaves nothing held disarms the timer.
func TestCommitNoticesKeepEachPeersOrder(t *testing.T) {
	var c commitNotices
	vote := &pb.Message{Type: pb.MessageType_MsgTimeoutNow.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(2))}
	sent := c.send([]*pb.Message{appendMsg(2, 10, 10), vote})
	if len(sent) != 2 || sent[0].GetType() != pb.MessageType_MsgApp || sent[1] != vote || len(c.held) != 0 {
		t.Fatalf("sent %v and held %v, want the notice and then the other message, nothing held", sent, c.held)
	}

	c.send([]*pb.Message{appendMsg(2, 10, 10)})
	if sent := c.send([]*pb.Message{appendMsg(2, 11, 11)}); len(sent) != 0 || len(c.held) != 1 || c.held[0].GetCommit() != 11 {
		t.Fatalf("sent %v, holds %v: want the later notice held in place of the first", sent, c.held)
	}
	next := appendMsg(2, 11, 11)
	next.Term, next.LogTerm = new(uint64(3)), new(uint64(3))
	sent = c.send([]*pb.Message{next})
	if len(sent) != 1 || sent[0].GetTerm() != 2 || len(c.held) != 1 || c.held[0] != next {
		t.Fatalf("sent %v, holds %v: want the term-2 notice sent and the term-3 one held", sent, c.held)
	}

	resp := heartbeat(2)
	resp.Term = new(uint64(3))
	sent = c.send([]*pb.Message{resp})
	if len(sent) != 2 || sent[0] != next || sent[1] != resp {
		t.Fatalf("sent %v, want the held notice before the heartbeat", sent)
	}
	if len(c.held) != 0 || c.due != nil {
		t.Fatalf("holds %v, timer armed %v: want nothing held and no timer", c.held, c.due != nil)
	}
}

// Proposals one at a time, each made as soon as the leader committed the
// one before (a single client): with the commit notices held, each
// proposal costs an append and an answer per follower, half the messages
// of sending the notices at once, and every member still commits every
// proposal in order once the last notices went out.
func TestCommitNoticesHalveTheMessagesOfOneProposalAtATime(t *testing.T) {
	const proposals = 200
	count := func(hold bool) int {
		rafts := newMemRafts(t, 3)
		var notices commitNotices
		sent := 0
		// settle runs the members until no message is left; the leader's
		// notices are held when hold is set.
		settle := func() {
			for range 1000 {
				quiet := true
				for id := uint64(1); id <= 3; id++ {
					msgs := rafts[id].ready(t)
					if hold && id == 1 {
						msgs = notices.send(msgs)
					}
					for _, m := range coalesce(msgs, maxSizePerMsg) {
						quiet = false
						sent++
						if err := rafts[m.GetTo()].rn.Step(m); err != nil {
							t.Fatal(err)
						}
					}
				}
				if quiet {
					return
				}
			}
			t.Fatal("the members never went quiet")
		}
		settle() // the bootstrap's members
		if err := rafts[1].rn.Campaign(); err != nil {
			t.Fatal(err)
		}
		settle()
		for _, m := range notices.flush() {
			rafts[m.GetTo()].rn.Step(m)
		}
		settle()
		sent = 0
		for i := range proposals {
			if err := rafts[1].rn.Propose([]byte(fmt.Sprint("p", i))); err != nil {
				t.Fatal(err)
			}
			settle()
			if got := len(rafts[1].committed); got != i+1 {
				t.Fatalf("the leader committed %d proposals after proposal %d", got, i)
			}
		}
		for _, m := range notices.flush() {
			sent++
			rafts[m.GetTo()].rn.Step(m)
		}
		settle()
		for id, r := range rafts {
			if len(r.committed) != proposals {
				t.Fatalf("hold=%v: member %d committed %d proposals, want %d", hold, id, len(r.committed), proposals)
			}
		}
		return sent
	}
	plain, held := count(false), count(true)
	t.Logf("%d proposals one at a time: %d messages with commit notices sent at once, %d with them held", proposals, plain, held)
	if held*10 > plain*6 {
		t.Errorf("holding commit notices sent %d messages against %d, want at most 60%%", held, plain)
	}
}

// A notice that continues an append to the same peer in the same Ready is
// merged into it and goes at once: holding it would send the append with
// the older commit index and make the follower wait for the newer one.
func TestCommitNoticeMergedWithinItsReadyIsNotHeld(t *testing.T) {
	var c commitNotices
	ready := []*pb.Message{appendMsg(2, 10, 9, 11), appendMsg(2, 11, 10)}
	sent := coalesce(c.send(coalesce(ready, maxSizePerMsg)), maxSizePerMsg)
	if len(sent) != 1 || sent[0].GetCommit() != 10 || len(sent[0].GetEntries()) != 1 {
		t.Fatalf("sent %v, want one append of entry 11 with commit index 10", sent)
	}
	if len(c.held) != 0 || c.due != nil {
		t.Fatalf("holds %v (timer armed %v), want nothing", c.held, c.due != nil)
	}
}
