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
//     with both runs of entries and the later commit index. The follower
//     accepts or rejects the run as a whole, as it would have accepted or
//     rejected the second after the first; its one answer acknowledges the
//     last index, which releases the leader's flow-control slots of both.
//     The merged entries stay within maxBytes, so the message stays within
//     what raft would have sent itself (MaxSizePerMsg).
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
	// last[i] is the position in out of the latest message to peer
	// peers[i]; a peer set is small, so a linear scan beats a map.
	var peers []uint64
	var last []int
	for _, m := range msgs {
		to := m.GetTo()
		i := 0
		for i < len(peers) && peers[i] != to {
			i++
		}
		if i == len(peers) {
			peers, last = append(peers, to), append(last, len(out))
			out = append(out, m)
			continue
		}
		prev := out[last[i]]
		switch {
		case continuesAppend(prev, m, maxBytes):
			ents := make([]*pb.Entry, 0, len(prev.GetEntries())+len(m.GetEntries()))
			ents = append(append(ents, prev.GetEntries()...), m.GetEntries()...)
			prev.Entries = ents
			if m.GetCommit() > prev.GetCommit() {
				prev.Commit = m.Commit
			}
			continue
		case supersedesAppendResp(prev, m):
			out[last[i]] = nil
		}
		last[i] = len(out)
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
// entry of MsgApp prev (same term, same peer) and both fit in maxBytes.
func continuesAppend(prev, m *pb.Message, maxBytes uint64) bool {
	if prev.GetType() != pb.MessageType_MsgApp || m.GetType() != pb.MessageType_MsgApp ||
		prev.GetTerm() != m.GetTerm() || prev.GetFrom() != m.GetFrom() {
		return false
	}
	ents := prev.GetEntries()
	lastIndex, lastTerm := prev.GetIndex(), prev.GetLogTerm()
	if len(ents) > 0 {
		e := ents[len(ents)-1]
		lastIndex, lastTerm = e.GetIndex(), e.GetTerm()
	}
	if m.GetIndex() != lastIndex || m.GetLogTerm() != lastTerm {
		return false
	}
	return entriesBytes(ents)+entriesBytes(m.GetEntries()) <= maxBytes
}

// supersedesAppendResp reports whether MsgAppResp m accepts at least what
// MsgAppResp prev accepted, in the same term from the same member.
func supersedesAppendResp(prev, m *pb.Message) bool {
	return prev.GetType() == pb.MessageType_MsgAppResp && m.GetType() == pb.MessageType_MsgAppResp &&
		!prev.GetReject() && !m.GetReject() &&
		prev.GetTerm() == m.GetTerm() && prev.GetFrom() == m.GetFrom() &&
		m.GetIndex() >= prev.GetIndex()
}

// entriesBytes is the size of the entries' payloads, as raft counts
// them against MaxSizePerMsg.
func entriesBytes(ents []*pb.Entry) uint64 {
	var n uint64
	for _, e := range ents {
		n += uint64(len(e.GetData()))
	}
	return n
}
