package raftnode

import (
	pb "go.etcd.io/raft/v3/raftpb"
)

// coalesce merges the messages of one Ready that tell the same peer the
// same kind of thing, so that a busy member sends one message where raft
// emitted many.
//
// Raft emits a MsgApp to every follower for each proposal it steps, and
// again for each commit-index advance; under load a Ready holds tens of
// them per follower, each carrying one entry, and each answered by its own
// MsgAppResp. Every message costs an encoding, a frame on the peer stream,
// a decoding and a step on the other side, which showed as the largest
// part of raft's cost per put. Two rules, both leaving what raft learns
// unchanged:
//
//   - A MsgApp that continues the previous message to the same peer (that
//     message is a MsgApp of the same term, and the new one's previous
//     index and term are its last entry) is appended to it: one MsgApp
//     with both runs of entries and the later commit index. A follower
//     ignores a MsgApp whose previous index is below its own commit index
//     (it answers with its commit index and drops the entries): harmless
//     for a probe the leader sent from a lagging match index, but the new
//     entries merged into it would go too. So the first message takes
//     others only if its previous index is not below the commit index it
//     carries: the follower's commit index is at most the highest the
//     leader sent it, and raft sends commit indexes in increasing order, so
//     such a message, and the merged one, is one the follower accepts.
//     (Right after an election the new leader's commit index can lag a
//     follower's; a merged message dropped then costs a round trip, not
//     safety.) The follower checks the merged run as it would have checked
//     the second message after the first, and its one answer acknowledges
//     the last index, which releases the leader's flow-control slots of
//     both. The merged entries stay within maxBytes (at most their encoded
//     size, as raft counts them), so the message stays within what raft
//     would have sent itself (MaxSizePerMsg).
//   - A MsgAppResp that accepts up to an index replaces an earlier
//     accepting MsgAppResp of the same term to the same peer: the leader
//     learns the higher match index either way. Rejections are kept.
//
// Messages are never merged across another message to the same peer, so
// every peer still sees its messages in the order raft emitted them.
// coalesce does not change the messages it is given other than the ones
// it merges into (which raft no longer holds once the Ready is out); the
// merged entry slices are new.
func coalesce(msgs []*pb.Message, maxBytes uint64) []*pb.Message {
	if len(msgs) < 2 {
		return msgs
	}
	out := make([]*pb.Message, 0, len(msgs))
	// The latest message to each peer: its position in out, and, once
	// something was merged into it, that its entries slice is ours and
	// their encoded size. A peer set is small: a linear scan beats a map.
	type latest struct {
		to    uint64
		pos   int
		owned bool
		bytes uint64
	}
	var peers []latest
	for _, m := range msgs {
		to := m.GetTo()
		i := 0
		for i < len(peers) && peers[i].to != to {
			i++
		}
		if i == len(peers) {
			peers = append(peers, latest{to: to, pos: len(out)})
			out = append(out, m)
			continue
		}
		p := &peers[i]
		prev := out[p.pos]
		if continuesAppend(prev, m) {
			if !p.owned {
				p.bytes = entriesBytes(prev.GetEntries())
			}
			if add := entriesBytes(m.GetEntries()); p.bytes+add <= maxBytes {
				if !p.owned {
					ents := make([]*pb.Entry, len(prev.GetEntries()), len(prev.GetEntries())+len(m.GetEntries()))
					copy(ents, prev.GetEntries())
					prev.Entries, p.owned = ents, true
				}
				prev.Entries = append(prev.Entries, m.GetEntries()...)
				p.bytes += add
				if m.GetCommit() > prev.GetCommit() {
					prev.Commit = m.Commit
				}
				continue
			}
		} else if supersedesAppendResp(prev, m) {
			out[p.pos] = nil
		}
		*p = latest{to: to, pos: len(out)}
		out = append(out, m)
	}
	n := 0
	for _, m := range out {
		if m != nil {
			out[n] = m
			n++
		}
	}
	return out[:n]
}

// continuesAppend reports whether MsgApp m starts right after the last
// entry of MsgApp prev (same term, same sender), and prev's previous index
// is not below the commit index it carries (see coalesce).
func continuesAppend(prev, m *pb.Message) bool {
	if prev.GetType() != pb.MessageType_MsgApp || m.GetType() != pb.MessageType_MsgApp ||
		prev.GetTerm() != m.GetTerm() || prev.GetFrom() != m.GetFrom() {
		return false
	}
	if prev.GetIndex() < prev.GetCommit() {
		return false
	}
	ents := prev.GetEntries()
	lastIndex, lastTerm := prev.GetIndex(), prev.GetLogTerm()
	if len(ents) > 0 {
		e := ents[len(ents)-1]
		lastIndex, lastTerm = e.GetIndex(), e.GetTerm()
	}
	return m.GetIndex() == lastIndex && m.GetLogTerm() == lastTerm
}

// supersedesAppendResp reports whether MsgAppResp m accepts at least what
// MsgAppResp prev accepted, in the same term from the same member.
func supersedesAppendResp(prev, m *pb.Message) bool {
	return prev.GetType() == pb.MessageType_MsgAppResp && m.GetType() == pb.MessageType_MsgAppResp &&
		!prev.GetReject() && !m.GetReject() &&
		prev.GetTerm() == m.GetTerm() && prev.GetFrom() == m.GetFrom() &&
		m.GetIndex() >= prev.GetIndex()
}

// maxEntryOverhead bounds what an entry's encoding adds to its data: the
// tags and varints of its term, index and type, and the data's tag and
// length.
const maxEntryOverhead = 32

// entriesBytes bounds the encoded size of the entries, as raft counts
// them against MaxSizePerMsg, without encoding them (the transport sizes
// the message once, when it frames it).
func entriesBytes(ents []*pb.Entry) uint64 {
	var n uint64
	for _, e := range ents {
		n += uint64(len(e.GetData())) + maxEntryOverhead
	}
	return n
}
