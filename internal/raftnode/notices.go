package raftnode

import (
	"slices"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// commitNoticeDelay is how long a leader holds back a commit notice (see
// commitNotices) waiting for a message it can ride along with.
const commitNoticeDelay = time.Millisecond

// commitNotices holds back a leader's commit notices: the MsgApp without
// entries that raft sends every follower each time the commit index moves.
// Each costs a frame, a step on the follower, and an answer (a MsgAppResp
// that tells the leader nothing new) — four messages a put on three
// members, half of what a put needs, when puts come one at a time.
//
// A notice that is the last message to its peer in a Ready is held for
// commitNoticeDelay (a little longer if the Ready loop is busy writing the
// log when it is over: the next Ready sends it first). The next message to
// that peer takes it along: the held notice goes just before it, in order,
// and coalesce merges the two when the next one is an append continuing it
// (the usual case: the next proposal's entries), so the follower learns the
// commit index with them and answers once. If nothing goes to that peer
// within the delay, the notice goes alone. Nothing else is delayed: the
// leader commits as soon as a quorum has the entries, whatever the
// followers know of it.
//
// What the delay costs: a follower of an idle cluster learns that an entry
// was committed, and applies it (its watchers, its serializable reads),
// about a millisecond later than with the notice sent at once. In a run of
// puts from one client this took 17% off the members' CPU a put and made
// the puts 11% faster (docs/benchmarks.md).
//
// Only the Ready loop uses it.
type commitNotices struct {
	held  []*pb.Message // at most one a peer
	timer *time.Timer
	due   <-chan time.Time // fires when held notices must go; nil while none are held
}

// isCommitNotice reports whether m is an append without entries.
func isCommitNotice(m *pb.Message) bool {
	return m.GetType() == pb.MessageType_MsgApp && len(m.GetEntries()) == 0
}

// route returns the messages to send now out of msgs (one Ready's, in
// raft's order, already coalesced: a notice that continues an append to
// the same peer in the same Ready is merged into it and goes at once), a
// held notice going in front of the first message to its peer; a notice
// that is the last message to its peer is held instead (replacing one held
// before, which it supersedes). released reports whether a held notice
// went in front of a message: coalesce the result again then, so that it
// merges with the append that follows it.
func (c *commitNotices) route(msgs []*pb.Message) (out []*pb.Message, released bool) {
	if len(c.held) == 0 && !hasCommitNotice(msgs) {
		return msgs, false
	}
	// The position of the last message to each peer (a peer set is small:
	// a linear scan beats a map).
	type peerLast struct {
		to  uint64
		pos int
	}
	var last []peerLast
	for i, m := range msgs {
		j := 0
		for j < len(last) && last[j].to != m.GetTo() {
			j++
		}
		if j == len(last) {
			last = append(last, peerLast{to: m.GetTo()})
		}
		last[j].pos = i
	}
	isLast := func(i int, to uint64) bool {
		for _, l := range last {
			if l.to == to {
				return l.pos == i
			}
		}
		return false
	}
	out = make([]*pb.Message, 0, len(msgs)+len(c.held))
	for i, m := range msgs {
		to := m.GetTo()
		hold := isCommitNotice(m) && isLast(i, to)
		if j := c.heldFor(to); j >= 0 {
			if hold && c.held[j].GetTerm() == m.GetTerm() {
				// A later notice of the same term tells the follower all
				// the held one did: where the leader's log is and a commit
				// index at least as high.
				c.held[j] = m
				continue
			}
			out = append(out, c.held[j])
			c.held = slices.Delete(c.held, j, j+1)
			released = true
		}
		if hold {
			c.held = append(c.held, m)
			continue
		}
		out = append(out, m)
	}
	switch {
	case len(c.held) == 0 && c.due != nil:
		c.timer.Stop()
		c.due = nil
	case len(c.held) > 0 && c.due == nil:
		if c.timer == nil {
			c.timer = time.NewTimer(commitNoticeDelay)
		} else {
			c.timer.Reset(commitNoticeDelay)
		}
		c.due = c.timer.C
	}
	return out, released
}

// flush returns the held notices and forgets them: their delay is over.
func (c *commitNotices) flush() []*pb.Message {
	held := c.held
	c.held, c.due = nil, nil
	return held
}

func (c *commitNotices) heldFor(to uint64) int {
	for j, m := range c.held {
		if m.GetTo() == to {
			return j
		}
	}
	return -1
}

func hasCommitNotice(msgs []*pb.Message) bool {
	for _, m := range msgs {
		if isCommitNotice(m) {
			return true
		}
	}
	return false
}
