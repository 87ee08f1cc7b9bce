package server

import (
	"fmt"
	"sync"

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
	m  map[uint64]chan applyResult
}

func (w *waiters) register(id uint64) chan applyResult {
	ch := make(chan applyResult, 1)
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) cancel(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

func (w *waiters) trigger(id uint64, r applyResult) {
	w.mu.Lock()
	ch, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		ch <- r
	}
}

// stateMachine connects the applier to the rest of the member: it
// implements raftnode.StateMachine and acts on each Outcome. Only the raft
// Ready loop calls Apply and Restore.
type stateMachine struct {
	s *Server
}

func (sm *stateMachine) AppliedIndex() uint64 { return sm.s.applier.Applied() }

func (sm *stateMachine) Restore() error {
	if err := sm.s.applier.Restore(); err != nil {
		return err
	}
	sm.s.attachKVStats()
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
		if r.Session != nil && r.Session.Token != "" {
			sm.s.tokens.Register(r.Session.Token, r.Session.User)
		}
		sm.s.waiters.trigger(r.ID, applyResult{r.Resp, r.Err})
	}
	if sm.s.auth.Revision() != authBefore || sm.s.auth.Enabled() != authOn {
		sm.s.signalAuthChanged()
	}
	for _, c := range out.Members {
		if c.ProposalID != 0 {
			sm.s.waiters.trigger(c.ProposalID, applyResult{})
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
