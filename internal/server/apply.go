package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kvorum/kvorum/internal/apply"
	"github.com/kvorum/kvorum/internal/mvcc"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// applyResult is what applying one proposal produced.
type applyResult struct {
	resp proto.Message
	err  error
}

// waiters pairs proposals with the requests waiting for them, by ID.
type waiters struct {
	mu sync.Mutex
	m  map[uint64]waiter
}

// waiter is one attempt at a proposal: its channel and the term it was
// tagged with (0 for untagged proposals).
type waiter struct {
	ch   chan applyResult
	term uint64
}

// register waits for proposal id's attempt tagged term.
func (w *waiters) register(id, term uint64) chan applyResult {
	ch := make(chan applyResult, 1)
	w.mu.Lock()
	w.m[id] = waiter{ch, term}
	w.mu.Unlock()
	return ch
}

func (w *waiters) cancel(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// trigger hands the outcome of proposal id, tagged term, to its waiter.
//
// A proposal made again under the same ID (see Server.propose) can meet
// the skipped entry of an earlier attempt: that attempt was relayed late to
// a leader of a later term. Such a stale outcome says nothing about the
// attempt now waiting, which may yet apply; taking it for that attempt's
// would make the proposer try a third time and apply the request twice
// (found by the robustness suite, a paused leader). So a stale outcome
// answers only the attempt with its own tag.
func (w *waiters) trigger(id, term uint64, r applyResult) {
	w.mu.Lock()
	wt, ok := w.m[id]
	if ok && errors.Is(r.err, apply.ErrStaleProposal) && wt.term != term {
		ok = false
	}
	if ok {
		delete(w.m, id)
	}
	w.mu.Unlock()
	if ok {
		wt.ch <- r
	}
}

// stateMachine connects the applier to the rest of the member: it
// implements raftnode.StateMachine and acts on each Outcome. Only the raft
// Ready loop calls Apply and Restore.
type stateMachine struct {
	s *Server
}

func (sm *stateMachine) AppliedIndex() uint64 { return sm.s.applier.Applied() }

// PrepareRestore stops the compaction steps of the key space a raft
// snapshot is about to replace.
func (sm *stateMachine) PrepareRestore() { sm.s.stopCompactor() }

func (sm *stateMachine) Restore() error {
	if err := sm.s.applier.Restore(); err != nil {
		return err
	}
	sm.s.attachKVStats() // before the compactor, which reports its steps
	sm.s.startCompactor()
	sm.s.watch.Restored(sm.s.kvStore().Rev())
	sm.s.signalAuthChanged()
	sm.s.syncPeers(nil)
	return nil
}

func (sm *stateMachine) Apply(ents []*raftpb.Entry) error {
	before := sm.s.applier.Applied()
	authBefore, authOn := sm.s.auth.Revision(), sm.s.auth.Enabled()
	out, err := sm.s.applier.Apply(ents)
	if err != nil {
		return err
	}
	if out.Applied == before {
		return nil
	}
	// Watchers learn of the changes once they are readable; Notify never
	// blocks (slow watchers catch up from storage later).
	sm.s.watch.Notify(out.Rev, out.Events)
	if len(out.Members) > 0 {
		sm.s.syncPeers(out.Members)
	}
	for _, r := range out.Results {
		sm.s.observeApplied(r)
		if r.Session != nil && r.Session.Token != "" {
			sm.s.tokens.Register(r.Session.Token, r.Session.User)
		}
		sm.s.waiters.trigger(r.ID, r.Term, applyResult{r.Resp, r.Err})
	}
	if sm.s.auth.Revision() != authBefore || sm.s.auth.Enabled() != authOn {
		sm.s.signalAuthChanged()
	}
	for _, c := range out.Members {
		if c.ProposalID != 0 {
			sm.s.waiters.trigger(c.ProposalID, 0, applyResult{})
		}
		if c.Removed && c.ID == sm.s.memberID {
			sm.s.lg.Warn("this member was removed from the cluster; stopping", "member-id", fmt.Sprintf("%x", c.ID))
			sm.s.markRemoved()
			// Stop waits for this goroutine (the applier) to return.
			go sm.s.Stop()
		}
	}
	return nil
}

// observeApplied feeds one applied request into the metrics: its apply
// time, and the leases granted and revoked (counted on every member, as
// etcd's lessor does).
func (s *Server) observeApplied(r apply.Result) {
	if r.Op == "" {
		return // a stale proposal, not applied
	}
	// As etcd's, a request refused for a compacted revision counts as a
	// success: it was applied as asked.
	s.metrics.AppliedRequest(r.Op, r.Err == nil || errors.Is(r.Err, mvcc.ErrCompacted), r.Took)
	switch resp := r.Resp.(type) {
	case *pb.LeaseGrantResponse:
		s.metrics.LeaseGranted(resp.GetTTL())
	case *pb.LeaseRevokeResponse:
		s.metrics.LeaseRevoked()
	}
}

// compactor runs the compaction steps of the current key space (see
// mvcc.Store.RunCompactor); a raft snapshot replaces the key space and
// with it the compactor.
type compactor struct {
	mu   sync.Mutex
	kv   *mvcc.Store
	done chan struct{}
}

func (s *Server) startCompactor() {
	c := &s.compactor
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv != nil {
		return
	}
	select {
	case <-s.stopped:
		return
	default:
	}
	kv, done := s.kvStore(), make(chan struct{})
	c.kv, c.done = kv, done
	go func() {
		defer close(done)
		kv.RunCompactor(context.Background(), s.cfg.CompactionPace, func(err error) {
			s.lg.Error("compaction step failed; trying again", "err", err)
		})
	}()
}

func (s *Server) stopCompactor() {
	c := &s.compactor
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv == nil {
		return
	}
	c.kv.StopCompaction()
	<-c.done
	c.kv = nil
}
