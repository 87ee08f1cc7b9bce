package server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/membership"
)

// Refusals of a membership change, checked before it is proposed. The api
// package maps them to etcd's errors.
var (
	ErrMemberExist             = errors.New("server: member ID already exists")
	ErrPeerURLExist            = errors.New("server: peer URLs already exist")
	ErrMemberBadURLs           = errors.New("server: given member URLs are invalid")
	ErrNotEnoughStartedMembers = errors.New("server: re-configuration failed due to not enough started members")
	ErrUnhealthy               = errors.New("server: unhealthy cluster")
	ErrMemberNotLearner        = errors.New("server: can only promote a learner member")
	ErrLearnerNotReady         = errors.New("server: can only promote a learner member which is in sync with leader")
	ErrTooManyLearners         = errors.New("server: too many learner members in cluster")
)

// learnerReadyPercent is how far a learner's log must have caught up with
// the leader's, in percent of the leader's last index, before it may be
// promoted (etcd's rule).
const learnerReadyPercent = 90

// callMemberPromote is the peer call that runs a promotion on the leader,
// the only member that knows how far a learner has caught up.
const callMemberPromote = "member-promote"

// MemberAdd adds a member (a voter, or a learner that does not vote) with
// the given peer URLs and returns it and the member list after the change.
// The new member is then started with --initial-cluster-state existing.
//
// autoPromote (Kvorum only, for a learner) asks the leader to promote the
// learner by itself once it has caught up and its promotion keeps a
// started, connected quorum (see runAutoPromote).
func (s *Server) MemberAdd(ctx context.Context, peerURLs []string, learner, autoPromote bool) (*pb.Member, []*pb.Member, error) {
	urls, err := normalizePeerURLs(peerURLs)
	if err != nil {
		return nil, nil, err
	}
	list := s.members.List()
	if err := checkURLsFree(list, 0, urls); err != nil {
		return nil, nil, err
	}
	if learner {
		if countLearners(list) >= s.cfg.MaxLearners {
			return nil, nil, ErrTooManyLearners
		}
	} else if !s.cfg.NoStrictReconfigCheck {
		if err := s.checkQuorumAfter(list, 1, 0); err != nil {
			return nil, nil, err
		}
	}
	now := time.Now()
	mem := &pb.Member{ID: membership.MemberID(urls, s.cfg.ClusterToken, &now), PeerURLs: urls, IsLearner: learner}
	if slices.ContainsFunc(list, func(m *pb.Member) bool { return m.GetID() == mem.GetID() }) {
		return nil, nil, ErrMemberExist
	}
	typ := raftpb.ConfChangeType_ConfChangeAddNode
	if learner {
		typ = raftpb.ConfChangeType_ConfChangeAddLearnerNode
	}
	if err := s.proposeConfChangeMarked(ctx, typ, mem, learner && autoPromote); err != nil {
		return nil, nil, err
	}
	s.lg.Info("added member", "member-id", fmt.Sprintf("%x", mem.GetID()), "peer-urls", urls, "learner", learner, "auto-promote", learner && autoPromote)
	return mem, s.members.List(), nil
}

// MemberRemove removes a member. A member removed stops by itself once it
// applies its removal.
func (s *Server) MemberRemove(ctx context.Context, id uint64) ([]*pb.Member, error) {
	list := s.members.List()
	i := slices.IndexFunc(list, func(m *pb.Member) bool { return m.GetID() == id })
	if i < 0 {
		return nil, ErrMemberNotFound
	}
	if !s.cfg.NoStrictReconfigCheck && !list[i].GetIsLearner() {
		if err := s.checkQuorumAfter(list, -1, id); err != nil {
			return nil, err
		}
	}
	if err := s.proposeConfChange(ctx, raftpb.ConfChangeType_ConfChangeRemoveNode, &pb.Member{ID: id}); err != nil {
		return nil, err
	}
	s.lg.Info("removed member", "member-id", fmt.Sprintf("%x", id))
	return s.members.List(), nil
}

// MemberUpdate replaces a member's peer URLs.
func (s *Server) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) ([]*pb.Member, error) {
	urls, err := normalizePeerURLs(peerURLs)
	if err != nil {
		return nil, err
	}
	list := s.members.List()
	if !slices.ContainsFunc(list, func(m *pb.Member) bool { return m.GetID() == id }) {
		return nil, ErrMemberNotFound
	}
	if err := checkURLsFree(list, id, urls); err != nil {
		return nil, err
	}
	if err := s.proposeConfChange(ctx, raftpb.ConfChangeType_ConfChangeUpdateNode, &pb.Member{ID: id, PeerURLs: urls}); err != nil {
		return nil, err
	}
	s.lg.Info("updated member", "member-id", fmt.Sprintf("%x", id), "peer-urls", urls)
	return s.members.List(), nil
}

// MemberPromote makes a learner a voting member, once it has caught up
// with the leader. The check and the proposal run on the leader.
func (s *Server) MemberPromote(ctx context.Context, id uint64) ([]*pb.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	for {
		lead := s.node.Leader()
		var err error
		switch lead {
		case raft.None:
			err = ErrNoLeader
		case s.memberID:
			err = s.promoteHere(ctx, id)
		default:
			var out []byte
			out, err = s.transport.Call(ctx, lead, callMemberPromote, encodeIDs([]int64{int64(id)}))
			if err == nil {
				err = decodeCallError(out)
			}
		}
		switch {
		case err == nil:
			// Applied on the leader; wait until it is applied here too, so
			// the answer lists the member as a voter.
			if err := s.linearizableBarrier(ctx); err != nil {
				return nil, err
			}
			return s.members.List(), nil
		case !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader):
			return nil, err
		}
		if err := s.awaitRetry(ctx, lead); err != nil {
			return nil, err
		}
	}
}

func (s *Server) promoteHere(ctx context.Context, id uint64) error {
	if s.node.Leader() != s.memberID {
		return ErrNotLeader
	}
	list := s.members.List()
	i := slices.IndexFunc(list, func(m *pb.Member) bool { return m.GetID() == id })
	if i < 0 {
		return ErrMemberNotFound
	}
	if !list[i].GetIsLearner() {
		return ErrMemberNotLearner
	}
	st := s.node.Status()
	lp, ok := st.Progress[id]
	leaderMatch := st.Progress[s.memberID].Match
	if !ok || lp.Match*100 < leaderMatch*learnerReadyPercent {
		s.metrics.LearnerPromoteFailed(ErrLearnerNotReady.Error())
		return ErrLearnerNotReady
	}
	if !s.cfg.NoStrictReconfigCheck {
		// Judge the configuration after the promotion, where the learner
		// counts as the voter it will be, started and connected or not.
		list[i].IsLearner = false
		if err := s.checkQuorumAfter(list, 0, 0); err != nil {
			s.metrics.LearnerPromoteFailed(err.Error())
			return err
		}
	}
	if err := s.proposeConfChange(ctx, raftpb.ConfChangeType_ConfChangeAddNode, &pb.Member{ID: id}); err != nil {
		return err
	}
	s.metrics.LearnerPromoted()
	s.lg.Info("promoted learner", "member-id", fmt.Sprintf("%x", id))
	return nil
}

// checkQuorumAfter refuses a change of the number of voters by delta
// (+1 adding one, -1 removing removed; a promotion passes the list as it
// will be) that would leave fewer
// started, or fewer connected, voters than the new quorum. etcd checks the
// same for started members; for connections it demands that every voter
// be connected when one is added, where a quorum of the new configuration
// is what keeps the cluster writable.
func (s *Server) checkQuorumAfter(list []*pb.Member, delta int, removed uint64) error {
	connected := make(map[uint64]bool)
	for _, p := range s.transport.Peers() {
		connected[p.ID] = p.Connected
	}
	connected[s.memberID] = true
	voters, started, active := 0, 0, 0
	for _, m := range list {
		if m.GetIsLearner() || m.GetID() == removed {
			continue
		}
		voters++
		if m.GetName() != "" {
			started++
		}
		if connected[m.GetID()] {
			active++
		}
	}
	if delta > 0 {
		voters += delta // the new voter has neither started nor connected
	}
	quorum := voters/2 + 1
	if started < quorum {
		return ErrNotEnoughStartedMembers
	}
	if active < quorum && removed != s.memberID {
		return ErrUnhealthy
	}
	return nil
}

// proposeConfChange replicates one membership change and waits until it
// is applied here.
func (s *Server) proposeConfChange(ctx context.Context, typ raftpb.ConfChangeType, mem *pb.Member) error {
	return s.proposeConfChangeMarked(ctx, typ, mem, false)
}

// proposeConfChangeMarked is proposeConfChange with, for autoPromote, the
// request to promote the added learner once ready.
func (s *Server) proposeConfChangeMarked(ctx context.Context, typ raftpb.ConfChangeType, mem *pb.Member, autoPromote bool) error {
	data, err := proto.Marshal(mem)
	if err != nil {
		return err
	}
	if autoPromote {
		data = membership.MarkAutoPromote(data)
	}
	cc := &raftpb.ConfChange{Type: typ.Enum(), NodeId: proto.Uint64(mem.GetID()), Context: data, Id: proto.Uint64(s.ids.Next())}
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	lead := s.node.Leader()
	// Raft drops a conf change proposed while an earlier one is not
	// applied as far as raft knows. A client answered for the earlier one
	// (as soon as this member applied it) can be faster than the Ready loop
	// telling raft so; wait for raft to catch up with what is applied here.
	for s.node.Status().Applied < s.node.AppliedIndex() {
		select {
		case <-ctx.Done():
			return s.ctxError(ctx, lead)
		case <-s.stopped:
			return ErrStopped
		case <-time.After(2 * time.Millisecond):
		}
	}
	ch := s.waiters.register(cc.GetId(), 0)
	if err := s.node.ProposeConfChange(ctx, cc); err != nil {
		s.waiters.cancel(cc.GetId())
		return s.ctxError(ctx, lead)
	}
	select {
	case r := <-ch:
		return r.err
	case <-ctx.Done():
		s.waiters.cancel(cc.GetId())
		return s.ctxError(ctx, lead)
	case <-s.stopped:
		s.waiters.cancel(cc.GetId())
		return ErrStopped
	}
}

// normalizePeerURLs checks peer URLs as etcd does (http or https, a host
// and a port, nothing else) and returns them sorted.
func normalizePeerURLs(raw []string) ([]string, error) {
	if len(raw) == 0 {
		return nil, ErrMemberBadURLs
	}
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, ErrMemberBadURLs
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	slices.Sort(out)
	if len(slices.Compact(slices.Clone(out))) != len(out) {
		return nil, ErrMemberBadURLs
	}
	return out, nil
}

// checkURLsFree refuses URLs that another member (not except) already
// uses.
func checkURLsFree(list []*pb.Member, except uint64, urls []string) error {
	for _, m := range list {
		if m.GetID() == except {
			continue
		}
		for _, u := range m.GetPeerURLs() {
			if slices.Contains(urls, u) {
				return ErrPeerURLExist
			}
		}
	}
	return nil
}

func countLearners(list []*pb.Member) int {
	n := 0
	for _, m := range list {
		if m.GetIsLearner() {
			n++
		}
	}
	return n
}

// Errors a member-promote call carries back from the leader, by code.
var callErrors = []error{nil, ErrNotLeader, ErrMemberNotFound, ErrMemberNotLearner, ErrLearnerNotReady,
	ErrNotEnoughStartedMembers, ErrUnhealthy, ErrTimeout}

func encodeCallError(err error) []byte {
	for i, e := range callErrors {
		if errors.Is(err, e) || (e == nil && err == nil) {
			return []byte{byte(i)}
		}
	}
	return []byte{byte(len(callErrors))}
}

func decodeCallError(out []byte) error {
	if len(out) != 1 {
		return fmt.Errorf("member promote on the leader: malformed answer")
	}
	if int(out[0]) < len(callErrors) {
		return callErrors[out[0]]
	}
	return ErrTimeout
}

// memberPromoteCall answers a follower's member-promote call.
func (s *Server) memberPromoteCall(ctx context.Context, _ uint64, req []byte) ([]byte, error) {
	ids, err := decodeIDs(req)
	if err != nil || len(ids) != 1 {
		return nil, fmt.Errorf("member promote call: malformed request")
	}
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	return encodeCallError(s.promoteHere(ctx, uint64(ids[0]))), nil
}

// autoPromoteInterval is how often the leader looks at learners waiting
// for automatic promotion.
const autoPromoteInterval = time.Second

// runAutoPromote has the leader promote learners added with automatic
// promotion as soon as each has caught up (etcd's 90% rule) and the
// configuration after it keeps a started, connected quorum — checked even
// with --strict-reconfig-check=false: promoting by itself must never make
// the cluster unable to commit.
func (s *Server) runAutoPromote() {
	t := time.NewTicker(autoPromoteInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		if s.node.Leader() != s.memberID {
			continue
		}
		for _, id := range s.members.AutoPromote() {
			list := s.members.List()
			i := slices.IndexFunc(list, func(m *pb.Member) bool { return m.GetID() == id })
			if i < 0 || !list[i].GetIsLearner() {
				continue
			}
			list[i].IsLearner = false
			if err := s.checkQuorumAfter(list, 0, 0); err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
			err := s.promoteHere(ctx, id)
			cancel()
			switch {
			case err == nil:
				s.lg.Info("promoted a learner that has caught up, as asked when it was added", "member-id", fmt.Sprintf("%x", id))
			case errors.Is(err, ErrLearnerNotReady), errors.Is(err, ErrNotLeader):
			default:
				s.lg.Warn("automatic promotion of a learner failed; will retry", "member-id", fmt.Sprintf("%x", id), "err", err)
			}
		}
	}
}
