package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// CorruptCheck says when members compare their data. Both checks are on in
// Kvorum's defaults (etcd ships them off).
type CorruptCheck struct {
	// NoInitial turns off the comparison with the peers at start
	// (--experimental-initial-corrupt-check=false).
	NoInitial bool
	// NoCompactHash turns off the leader's comparison of hashes at
	// compaction revisions (--experimental-compact-hash-check-enabled=false).
	NoCompactHash bool
	// CompactHashInterval is how often the leader compares; 0 means a
	// minute (etcd's --compact-hash-check-time).
	CompactHashInterval time.Duration
}

// callHashKV is the peer call that answers HashKV at a revision.
const callHashKV = "hashkv"

// hashKVCall answers a peer's HashKV call: the request is the revision (8
// bytes), the answer a marshaled HashKVResponse.
func (s *Server) hashKVCall(ctx context.Context, _ uint64, req []byte) ([]byte, error) {
	if len(req) != 8 {
		return nil, fmt.Errorf("hashkv call: malformed request")
	}
	resp, err := s.HashKV(ctx, &pb.HashKVRequest{Revision: int64(binary.BigEndian.Uint64(req))})
	if err != nil {
		return nil, err
	}
	return proto.Marshal(resp)
}

// peerHashKV asks member id for its HashKV at rev.
func (s *Server) peerHashKV(ctx context.Context, id uint64, rev int64) (*pb.HashKVResponse, error) {
	out, err := s.transport.Call(ctx, id, callHashKV, binary.BigEndian.AppendUint64(nil, uint64(rev)))
	if err != nil {
		return nil, err
	}
	resp := &pb.HashKVResponse{}
	if err := proto.Unmarshal(out, resp); err != nil {
		return nil, fmt.Errorf("hashkv answer of %x: %w", id, err)
	}
	return resp, nil
}

// initialCorruptCheck compares this member's data with its peers' before
// it serves clients: each peer hashes the history up to this member's
// revision; where the compaction points agree, the hashes must too. A
// mismatch raises the CORRUPT alarm for this member. Peers that cannot
// answer (down, compacted past the revision, behind it) are skipped.
func (s *Server) initialCorruptCheck() {
	if s.cfg.CorruptCheck.NoInitial {
		return
	}
	var peers []uint64
	for _, m := range s.members.List() {
		if m.GetID() != s.memberID && !m.GetIsLearner() {
			peers = append(peers, m.GetID())
		}
	}
	if len(peers) == 0 {
		s.lg.Info("initial hash check skipped: no other voting member to compare with")
		return
	}
	// The peers hash the history up to this member's revision while this
	// member hashes its own: the check costs one hash's time, not two.
	rev := s.kvStore().Rev()
	type answer struct {
		peer uint64
		resp *pb.HashKVResponse
		err  error
	}
	answers := make(chan answer, len(peers))
	for _, id := range peers {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ElectionTimeout)
			defer cancel()
			resp, err := s.peerHashKV(ctx, id, rev)
			answers <- answer{id, resp, err}
		}()
	}
	hctx, hcancel := context.WithTimeout(context.Background(), s.cfg.ElectionTimeout)
	mine, err := s.HashKV(hctx, &pb.HashKVRequest{Revision: rev})
	hcancel()
	if err != nil {
		s.lg.Warn("initial hash check against the peers skipped: cannot hash the local data", "err", err)
		return
	}
	compared := 0
	for range peers {
		a := <-answers
		if a.err != nil {
			s.lg.Info("initial hash check against the peers: a peer could not answer", "peer", fmt.Sprintf("%x", a.peer), "err", a.err)
			continue
		}
		if a.resp.GetCompactRevision() != mine.GetCompactRevision() {
			continue
		}
		compared++
		if a.resp.GetHash() != mine.GetHash() {
			s.lg.Error("initial corruption check: this member's data differs from a peer's; raising the CORRUPT alarm",
				"revision", mine.GetHashRevision(), "local-hash", mine.GetHash(), "peer", fmt.Sprintf("%x", a.peer), "peer-hash", a.resp.GetHash())
			s.raiseAlarm(pb.AlarmType_CORRUPT, s.memberID)
			return
		}
	}
	s.lg.Info("initial hash check against the peers passed", "revision", mine.GetHashRevision(), "peers-compared", compared)
}

// runCompactHashCheck has the leader compare, after each compaction, the
// hash every voter computes of the history up to the compaction revision.
// A member whose hash differs from the majority's gets the CORRUPT alarm.
func (s *Server) runCompactHashCheck() {
	cc := s.cfg.CorruptCheck
	if cc.NoCompactHash {
		return
	}
	interval := cc.CompactHashInterval
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var checked int64
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		rev := s.kvStore().CompactRev()
		if s.node.Leader() != s.memberID || rev <= checked || rev == 0 {
			continue
		}
		if s.compareHashes(rev) {
			checked = rev
		}
	}
}

// compareHashes compares the voters' hashes at rev and raises alarms; it
// reports whether enough members answered for a verdict.
func (s *Server) compareHashes(rev int64) bool {
	hashes := make(map[uint64]uint32)
	hctx, hcancel := context.WithTimeout(context.Background(), s.cfg.ElectionTimeout)
	mine, err := s.HashKV(hctx, &pb.HashKVRequest{Revision: rev})
	hcancel()
	if err != nil || mine.GetCompactRevision() != rev {
		return false
	}
	hashes[s.memberID] = mine.GetHash()
	voters := 1
	for _, m := range s.members.List() {
		if m.GetID() == s.memberID || m.GetIsLearner() {
			continue
		}
		voters++
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ElectionTimeout)
		theirs, err := s.peerHashKV(ctx, m.GetID(), rev)
		cancel()
		if err == nil && theirs.GetCompactRevision() == rev {
			hashes[m.GetID()] = theirs.GetHash()
		}
	}
	count := make(map[uint32]int)
	for _, h := range hashes {
		count[h]++
	}
	var major uint32
	for h, n := range count {
		if n > count[major] || (n == count[major] && h < major) {
			major = h
		}
	}
	if count[major] <= voters/2 {
		// No majority agrees (yet): judge nobody.
		return len(hashes) == voters
	}
	for id, h := range hashes {
		if h != major {
			s.lg.Error("compaction hash check: a member's data differs from the majority's; raising the CORRUPT alarm",
				"revision", rev, "member-id", fmt.Sprintf("%x", id), "hash", h, "majority-hash", major)
			s.raiseAlarm(pb.AlarmType_CORRUPT, id)
		}
	}
	return len(hashes) == voters
}
