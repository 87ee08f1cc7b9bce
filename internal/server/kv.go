package server

import (
	"time"

	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"

	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/raftnode"
	"github.com/kvorum/kvorum/internal/version"
)

// header fills the parts of a response header this member knows; the
// revision is set by whoever produced the response.
func (s *Server) header(h *pb.ResponseHeader) *pb.ResponseHeader {
	if h == nil {
		h = &pb.ResponseHeader{Revision: s.kvStore().Rev()}
	}
	h.ClusterId = s.clusterID
	h.MemberId = s.memberID
	h.RaftTerm = s.node.Term()
	return h
}

// ClusterHeader is the header of Cluster service responses: like etcd's,
// it names the member, cluster and raft term, but no revision.
func (s *Server) ClusterHeader() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.memberID, RaftTerm: s.node.Term()}
}

// linearizableBarrier waits until this member has applied everything that
// was committed when the call began, as confirmed by a quorum.
func (s *Server) linearizableBarrier(ctx context.Context) error {
	expired := s.expiries.after(s.reqTimeout)
	idx, err := s.node.ReadIndex(ctx, expired)
	switch {
	case err == nil, ctx.Err() != nil, errors.Is(err, raftnode.ErrStopped):
	case errors.Is(err, raftnode.ErrTimeout):
		s.metrics.SlowReadIndex()
	default:
		s.metrics.ReadIndexFailed()
	}
	if err == nil {
		err = s.node.WaitApplied(ctx, expired, idx)
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return s.ctxError(ctx, 0)
	case errors.Is(err, raftnode.ErrTimeout):
		return s.timeoutError(0)
	default:
		return s.mapNodeError(err)
	}
}

func (s *Server) mapNodeError(err error) error {
	switch {
	case errors.Is(err, raftnode.ErrNoLeader):
		return ErrNoLeader
	case errors.Is(err, raftnode.ErrStopped):
		return ErrStopped
	default:
		return ErrTimeout
	}
}

// Range serves a read; linearizable unless r.Serializable.
func (s *Server) Range(ctx context.Context, r *pb.RangeRequest) (_ *pb.RangeResponse, err error) {
	defer s.timeRequest("Range", time.Now(), &err)
	if !r.GetSerializable() {
		if err := s.linearizableBarrier(ctx); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	resp, err := s.kvStore().Range(r)
	s.metrics.Ranged(err == nil, time.Since(start))
	if err != nil {
		return nil, err
	}
	resp.Header = s.header(resp.Header)
	return resp, nil
}

// Put replicates a put.
func (s *Server) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.PutResponse)
	out.Header = s.header(out.Header)
	return out, nil
}

// DeleteRange replicates a delete.
func (s *Server) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.DeleteRangeResponse)
	out.Header = s.header(out.Header)
	return out, nil
}

// txnSerializable reports whether every range of a read-only txn, nested
// ones included, is serializable.
func txnSerializable(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			if rr := op.GetRequestRange(); rr != nil && !rr.GetSerializable() {
				return false
			}
			if t := op.GetRequestTxn(); t != nil && !txnSerializable(t) {
				return false
			}
		}
	}
	return true
}

// Txn replicates a transaction; one that only reads is served as a read.
func (s *Server) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if mvcc.IsReadOnlyTxn(r) {
		return s.readTxn(ctx, r)
	}
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, err
	}
	// Only the outer header names the member; the responses inside keep
	// just their revision, as etcd's do.
	out := resp.(*pb.TxnResponse)
	out.Header = s.header(out.Header)
	return out, nil
}

// readTxn serves a txn that only reads, as etcd does: as a read,
// linearizable unless every range in it asks to be serializable.
func (s *Server) readTxn(ctx context.Context, r *pb.TxnRequest) (_ *pb.TxnResponse, err error) {
	if !txnSerializable(r) {
		if err := s.linearizableBarrier(ctx); err != nil {
			return nil, err
		}
	}
	// As etcd's, the time of a read-only txn starts after the barrier
	// (that of a range includes it).
	start := time.Now()
	defer s.timeRequest("ReadonlyTxn", start, &err)
	out, err := s.kvStore().ReadTxn(r)
	s.metrics.Ranged(err == nil, time.Since(start))
	if err != nil {
		return nil, err
	}
	out.Header = s.header(out.Header)
	return out, nil
}

// timeRequest records a request of type typ that started at start and
// ended with *err (etcd_server_request_duration_seconds).
func (s *Server) timeRequest(typ string, start time.Time, err *error) {
	s.metrics.Request(typ, *err == nil, time.Since(start))
}

// Compact replicates a compaction. Applying it only records the compact
// revision, whatever the history it covers: each member then discards
// that history in the background (see mvcc.Store.CompactStep), so a large
// compaction holds up no request. With Physical set, as in etcd, the
// answer waits until this member has discarded it.
func (s *Server) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	if r.GetPhysical() {
		if err := s.kvStore().WaitCompacted(ctx, r.GetRevision()); err != nil {
			return nil, s.ctxError(ctx, s.node.Leader())
		}
	}
	out := resp.(*pb.CompactionResponse)
	out.Header = s.header(out.Header)
	return out, nil
}

// MemberList lists the members; linearizable when asked.
func (s *Server) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.GetLinearizable() {
		if err := s.linearizableBarrier(ctx); err != nil {
			return nil, err
		}
	}
	return &pb.MemberListResponse{Header: s.ClusterHeader(), Members: s.members.List()}, nil
}

// Status reports this member's view of the cluster.
func (s *Server) Status(context.Context) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{
		Header:           s.header(nil),
		Version:          version.APIVersion,
		DbSize:           s.space.size.Load(),
		DbSizeInUse:      s.space.inUse.Load(),
		DbSizeQuota:      s.space.quota,
		Errors:           s.alarmErrors(),
		Leader:           s.node.Leader(),
		RaftIndex:        s.node.CommittedIndex(),
		RaftTerm:         s.node.Term(),
		RaftAppliedIndex: s.node.AppliedIndex(),
		StorageVersion:   version.StorageVersion,
		IsLearner:        s.isLearner(),
	}, nil
}

func (s *Server) isLearner() bool {
	m := s.members.Get(s.memberID)
	return m != nil && m.GetIsLearner()
}

func attrSet(id uint64, name string, clientURLs []string) *membershippb.ClusterMemberAttrSetRequest {
	return &membershippb.ClusterMemberAttrSetRequest{
		Member_ID:        id,
		MemberAttributes: &membershippb.Attributes{Name: name, ClientUrls: clientURLs},
	}
}

// HashKV hashes the key space history up to rev (see mvcc.Store.HashKV),
// once it is compacted up to the compact revision or ctx ends.
func (s *Server) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	start := time.Now()
	h, rev, compactRev, err := s.kvStore().HashKV(ctx, r.GetRevision())
	s.metrics.Hashed(true, time.Since(start))
	if err != nil {
		return nil, err
	}
	return &pb.HashKVResponse{Header: s.header(nil), Hash: h, HashRevision: rev, CompactRevision: compactRev}, nil
}

// MoveLeader hands leadership from this member (which must lead) to the
// voting member target, waiting until it leads.
func (s *Server) MoveLeader(ctx context.Context, target uint64) error {
	if s.node.Leader() != s.memberID {
		return ErrNotLeader
	}
	m := s.members.Get(target)
	if m == nil || m.GetIsLearner() {
		return ErrBadLeaderTransferee
	}
	if target == s.memberID {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	s.lg.Info("moving leadership on request", "to", fmt.Sprintf("%x", target), "term", s.node.Term())
	if err := s.node.TransferLeadershipTo(ctx, target); err != nil {
		return s.ctxError(ctx, s.memberID)
	}
	return nil
}
