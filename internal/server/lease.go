package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/transport"
)

// Lease timing, as in etcd.
const (
	// leaseTick is how often the leader looks for expired leases.
	leaseTick = 500 * time.Millisecond
	// leaseRevokeRetry is how long the leader waits for a proposed
	// revocation to apply before proposing it again.
	leaseRevokeRetry = 3 * time.Second
	// leaseRevokePerTick bounds revocations started per tick, so a mass
	// expiry does not flood raft (etcd: 1000 per second).
	leaseRevokePerTick = 500
	// leaseRevokeParallel bounds revocations in flight.
	leaseRevokeParallel = 16
	// leaseCheckpointBatch bounds leases per checkpoint proposal.
	leaseCheckpointBatch = 1000
	// defaultLeaseCheckpointInterval is how often the leader replicates
	// the remaining TTL of long leases.
	defaultLeaseCheckpointInterval = 5 * time.Minute
)

// Names of the unary peer calls a follower forwards to the leader.
const (
	callLeaseRenew      = "lease-renew"
	callLeaseTimeToLive = "lease-timetolive"
)

// minLeaseTTL is the shortest TTL granted, in seconds: one and a half
// election timeouts, rounded up (etcd's rule), so that a lease can survive
// a leader election.
func (s *Server) minLeaseTTL() int64 {
	return int64(math.Ceil((s.cfg.ElectionTimeout * 3 / 2).Seconds()))
}

// LeaseGrant replicates a new lease. A zero ID asks the server to choose
// one; a TTL below the minimum is raised to it.
func (s *Server) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	req := &pb.LeaseGrantRequest{ID: r.GetID(), TTL: max(r.GetTTL(), s.minLeaseTTL())}
	for req.ID == 0 {
		req.ID = int64(s.ids.Next() & math.MaxInt64)
	}
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseGrant: req})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseGrantResponse)
	out.Header = s.header(out.Header)
	return out, nil
}

// LeaseRevoke replicates the revocation of a lease and the deletion of
// its keys.
func (s *Server) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: r.GetID()}})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseRevokeResponse)
	out.Header = s.header(out.Header)
	return out, nil
}

// LeaseTimeToLive asks the leader how long a lease has left.
func (s *Server) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	req, err := proto.Marshal(&pb.LeaseTimeToLiveRequest{ID: r.GetID(), Keys: r.GetKeys()})
	if err != nil {
		return nil, err
	}
	out, err := s.atLeader(ctx, callLeaseTimeToLive, req)
	if err != nil {
		return nil, err
	}
	resp := &pb.LeaseTimeToLiveResponse{}
	if err := proto.Unmarshal(out, resp); err != nil {
		return nil, fmt.Errorf("lease time-to-live answer: %w", err)
	}
	resp.Header = s.header(nil)
	return resp, nil
}

// LeaseLeases lists the leases this member knows.
func (s *Server) LeaseLeases(context.Context) (*pb.LeaseLeasesResponse, error) {
	ids := s.lessor.IDs()
	out := &pb.LeaseLeasesResponse{Header: s.header(nil), Leases: make([]*pb.LeaseStatus, len(ids))}
	for i, id := range ids {
		out.Leases[i] = &pb.LeaseStatus{ID: id}
	}
	return out, nil
}

// Outcomes of a forwarded lease call, the first byte of its answer.
const (
	leaseCallOK byte = iota
	leaseCallNotFound
	leaseCallNotPrimary
)

// atLeader runs the lease call name with req on the leader: here if this
// member leads, otherwise through the peer transport. It retries while
// leadership moves, until the request timeout.
func (s *Server) atLeader(ctx context.Context, name string, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	for {
		lead := s.node.Leader()
		var out []byte
		var err error
		switch lead {
		case raft.None:
			wctx, wcancel := context.WithTimeout(ctx, s.cfg.ElectionTimeout)
			err = s.node.WaitLeader(wctx)
			wcancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil, s.ctxError(ctx, 0)
				}
				return nil, ErrNoLeader
			}
			continue
		case s.memberID:
			out, err = s.leaseCall(ctx, name, req)
		default:
			out, err = s.transport.Call(ctx, lead, name, req)
		}
		if err == nil && len(out) > 0 {
			switch out[0] {
			case leaseCallOK:
				return out[1:], nil
			case leaseCallNotFound:
				return nil, lease.ErrNotFound
			}
			// Not primary there (yet, or any more): ask again.
		} else if err != nil && ctx.Err() == nil {
			s.lg.Debug("forwarding lease request to the leader failed", "call", name, "leader", fmt.Sprintf("%x", lead), "err", err)
		}
		if err := s.awaitRetry(ctx, lead); err != nil {
			return nil, err
		}
	}
}

// awaitRetry waits before a call to the leader is tried again: until
// leadership changes or a heartbeat interval passes. It fails when ctx
// ends (explaining why, see ctxError) or the server stops.
func (s *Server) awaitRetry(ctx context.Context, lead uint64) error {
	select {
	case <-ctx.Done():
		return s.ctxError(ctx, lead)
	case <-s.stopped:
		return ErrStopped
	case <-s.node.LeaderChanged():
	case <-time.After(s.cfg.HeartbeatInterval):
	}
	return nil
}

// confirmLeader returns nil if a quorum confirms, now, that this member
// leads, once everything committed before is applied here (so a lease
// granted or revoked just before is known or gone). A leader that was
// paused or cut off still believes it leads until it hears otherwise; its
// lease clock is stale then, and it must not answer keep-alives from it
// (etcd checks the same way before renewing).
func (s *Server) confirmLeader(ctx context.Context) error {
	if err := s.linearizableBarrier(ctx); err != nil {
		return err
	}
	if s.node.Leader() != s.memberID {
		return ErrNotLeader
	}
	return nil
}

// leaseCall answers a lease call on this member, which should be the
// leader: the answer is an outcome byte and, when OK, the response.
func (s *Server) leaseCall(ctx context.Context, name string, req []byte) ([]byte, error) {
	if err := s.confirmLeader(ctx); err != nil {
		return []byte{leaseCallNotPrimary}, nil
	}
	var resp proto.Message
	var err error
	switch name {
	case callLeaseRenew:
		ids, err := decodeIDs(req)
		if err != nil {
			return nil, err
		}
		if !s.lessor.Primary() {
			return []byte{leaseCallNotPrimary}, nil
		}
		return append([]byte{leaseCallOK}, encodeIDs(s.renewBatchHere(ctx, ids))...), nil
	case callLeaseTimeToLive:
		r := &pb.LeaseTimeToLiveRequest{}
		if err := proto.Unmarshal(req, r); err != nil {
			return nil, err
		}
		resp, err = s.timeToLiveHere(r)
	default:
		return nil, fmt.Errorf("unknown lease call %q", name)
	}
	switch {
	case errors.Is(err, lease.ErrNotFound):
		return []byte{leaseCallNotFound}, nil
	case errors.Is(err, lease.ErrNotPrimary):
		return []byte{leaseCallNotPrimary}, nil
	case err != nil:
		return nil, err
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	return append([]byte{leaseCallOK}, out...), nil
}

func (s *Server) timeToLiveHere(r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	st, err := s.lessor.TimeToLive(r.GetID(), r.GetKeys())
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{ID: st.ID, TTL: st.Remaining, GrantedTTL: st.GrantedTTL, Keys: st.Keys}, nil
}

// peerCalls are the peer calls this member answers as leader.
func (s *Server) peerCalls() map[string]transport.CallHandler {
	handler := func(name string) transport.CallHandler {
		return func(ctx context.Context, _ uint64, req []byte) ([]byte, error) {
			if s.node.Leader() != s.memberID {
				return []byte{leaseCallNotPrimary}, nil
			}
			ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
			defer cancel()
			return s.leaseCall(ctx, name, req)
		}
	}
	return map[string]transport.CallHandler{
		callLeaseRenew:      handler(callLeaseRenew),
		callLeaseTimeToLive: handler(callLeaseTimeToLive),
		callMemberPromote:   s.memberPromoteCall,
		callHashKV:          s.hashKVCall,
		callIndexes:         s.indexesCall,
	}
}

// runLeases keeps the lessor's role in step with raft leadership and, while
// this member leads, revokes expired leases and checkpoints long ones.
func (s *Server) runLeases() {
	tick := time.NewTicker(leaseTick)
	defer tick.Stop()
	interval := s.cfg.LeaseCheckpointInterval
	if interval <= 0 {
		interval = defaultLeaseCheckpointInterval
	}
	checkpoint := time.NewTicker(interval)
	defer checkpoint.Stop()
	revoking := make(chan struct{}, leaseRevokeParallel)
	for {
		changed := s.node.LeaderChanged()
		if s.node.Leader() == s.memberID {
			s.lessor.Promote(s.cfg.ElectionTimeout)
		} else {
			s.lessor.Demote()
		}
		select {
		case <-s.stopped:
			s.lessor.Demote()
			return
		case <-changed:
		case <-tick.C:
			if s.node.Leader() != s.memberID {
				continue // the role is synced at the top of the loop
			}
			for _, id := range s.lessor.Expired(leaseRevokePerTick, leaseRevokeRetry) {
				select {
				case revoking <- struct{}{}:
				case <-s.stopped:
					return
				}
				go func() {
					defer func() { <-revoking }()
					s.revokeExpired(id)
				}()
			}
		case <-checkpoint.C:
			go s.proposeCheckpoints(s.lessor.Due(interval))
		}
	}
}

func (s *Server) revokeExpired(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
	defer cancel()
	// The expiry was decided by this member's clock, which is only right
	// while it leads: a leader that was paused wakes up with every lease
	// overdue. Revoke only what a confirmed leader finds expired.
	if err := s.confirmLeader(ctx); err != nil {
		s.lg.Debug("not revoking an expired lease: leadership not confirmed", "lease", fmt.Sprintf("%x", id), "err", err)
		return
	}
	_, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}})
	switch {
	case err == nil:
		s.metrics.LeaseExpired()
		s.lg.Debug("revoked expired lease", "lease", fmt.Sprintf("%x", id))
	case errors.Is(err, lease.ErrNotFound):
	default:
		s.lg.Warn("revoking an expired lease failed; will retry", "lease", fmt.Sprintf("%x", id), "err", err)
	}
}

// proposeCheckpoints replicates remaining TTLs in batches.
func (s *Server) proposeCheckpoints(cps []lease.CheckpointEntry) {
	for len(cps) > 0 {
		n := min(len(cps), leaseCheckpointBatch)
		req := &pb.LeaseCheckpointRequest{Checkpoints: make([]*pb.LeaseCheckpoint, n)}
		for i, cp := range cps[:n] {
			req.Checkpoints[i] = &pb.LeaseCheckpoint{ID: cp.ID, Remaining_TTL: cp.Remaining}
		}
		cps = cps[n:]
		ctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
		_, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: req})
		cancel()
		if err != nil {
			s.lg.Warn("lease checkpoint failed", "leases", n, "err", err)
			return
		}
	}
}

// applyLeaseGrant creates a lease (replicated outcome: exists, too long).
func (s *Server) applyLeaseGrant(w *mvcc.Writer, b *pebble.Batch, r *pb.LeaseGrantRequest) applyResult {
	if err := s.lessor.Grant(b, r.GetID(), r.GetTTL()); err != nil {
		return applyResult{err: err}
	}
	return applyResult{resp: &pb.LeaseGrantResponse{
		Header: &pb.ResponseHeader{Revision: w.Rev()},
		ID:     r.GetID(),
		TTL:    r.GetTTL(),
	}}
}

// applyLeaseRevoke deletes a lease's keys, in key order and as one
// revision, then the lease.
func (s *Server) applyLeaseRevoke(w *mvcc.Writer, b *pebble.Batch, r *pb.LeaseRevokeRequest) applyResult {
	keys, err := s.lessor.Keys(r.GetID())
	if err != nil {
		return applyResult{err: err}
	}
	rev, err := w.DeleteKeys(keys)
	if err != nil {
		return applyResult{err: err}
	}
	if err := s.lessor.Revoke(b, r.GetID()); err != nil {
		return applyResult{err: err}
	}
	return applyResult{resp: &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: rev}}}
}

func (s *Server) applyLeaseCheckpoint(b *pebble.Batch, r *pb.LeaseCheckpointRequest) applyResult {
	for _, cp := range r.GetCheckpoints() {
		if err := s.lessor.Checkpoint(b, cp.GetID(), cp.GetRemaining_TTL()); err != nil {
			return applyResult{err: err}
		}
	}
	return applyResult{resp: &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{}}}
}
