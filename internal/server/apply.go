package server

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
)

// errUnsupportedRequest is the outcome of an entry this version cannot
// apply (proposed by a newer member); every member of this version skips it
// the same way.
var errUnsupportedRequest = errors.New("server: unsupported request in raft entry")

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

// stateMachine applies committed entries to the engine. It implements
// raftnode.StateMachine. Only the raft Ready loop calls Apply and Restore.
type stateMachine struct {
	s       *Server
	applied uint64
}

func (sm *stateMachine) AppliedIndex() uint64 { return sm.applied }

func (sm *stateMachine) Restore() error {
	v, err := storage.Get(sm.s.db, storage.AppliedIndexKey)
	if err != nil {
		return err
	}
	applied, err := storage.GetUint64(v)
	if err != nil {
		return err
	}
	if err := sm.s.openKV(); err != nil {
		return err
	}
	if err := sm.s.lessor.Load(sm.s.db); err != nil {
		return err
	}
	sm.s.watch.Restored(sm.s.kvStore().Rev())
	sm.applied = applied
	return sm.s.members.load()
}

// Apply applies ents in one engine batch written together with the new
// applied index. The batch is not synced: the entries are durable in the
// raft log, and replay after a crash skips what the batch did persist.
func (sm *stateMachine) Apply(ents []*raftpb.Entry) error {
	b := sm.s.db.NewIndexedBatch()
	defer b.Close()
	w := sm.s.kvStore().NewWriter(b)
	type done struct {
		id uint64
		r  applyResult
	}
	var results []done
	tracked := 0 // events already passed to the lessor
	last := sm.applied
	membersChanged := false
	for _, e := range ents {
		if e.GetIndex() <= sm.applied {
			continue
		}
		last = e.GetIndex()
		switch e.GetType() {
		case raftpb.EntryType_EntryNormal:
			if len(e.GetData()) == 0 {
				continue // the empty entry a new leader appends
			}
			req := &pb.InternalRaftRequest{}
			if err := proto.Unmarshal(e.GetData(), req); err != nil {
				// Every member skips the same undecodable entry, so state
				// stays identical; its proposer learns why.
				sm.s.lg.Error("skipping undecodable raft entry", "index", e.GetIndex(), "err", err)
				continue
			}
			r := sm.s.applyRequest(w, b, req)
			if r.err == nil && len(w.Events()) > tracked {
				r.err = sm.s.lessor.Track(b, w.Events()[tracked:])
				tracked = len(w.Events())
			}
			if r.err != nil && !isRequestError(r.err) {
				// A storage failure: the batch may be half written. Drop it;
				// raftnode stops this member rather than diverge.
				return fmt.Errorf("apply entry %d: %w", e.GetIndex(), r.err)
			}
			if req.ClusterMemberAttrSet != nil {
				membersChanged = true
			}
			results = append(results, done{req.GetID(), r})
		case raftpb.EntryType_EntryConfChange:
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return fmt.Errorf("conf change entry %d is corrupt: %w", e.GetIndex(), err)
			}
			if err := sm.s.members.applyConfChange(b, cc); err != nil {
				return err
			}
			membersChanged = true
		}
	}
	if last == sm.applied {
		return nil
	}
	if err := b.Set(storage.AppliedIndexKey, storage.PutUint64(last), nil); err != nil {
		return err
	}
	if err := sm.s.kvStore().Commit(w, pebble.NoSync); err != nil {
		return fmt.Errorf("apply entries up to %d: %w", last, err)
	}
	// Watchers learn of the changes once they are readable; Notify never
	// blocks (slow watchers catch up from storage later).
	sm.s.watch.Notify(w.Rev(), w.Events())
	sm.applied = last
	if membersChanged {
		if err := sm.s.members.load(); err != nil {
			return err
		}
	}
	for _, d := range results {
		sm.s.waiters.trigger(d.id, d.r)
	}
	return nil
}

// applyRequest applies one client proposal. Errors it returns are part of
// the replicated outcome: every member reaches the same one.
func (s *Server) applyRequest(w *mvcc.Writer, b *pebble.Batch, req *pb.InternalRaftRequest) applyResult {
	switch {
	case req.Put != nil:
		resp, err := w.Put(req.Put)
		return applyResult{resp, err}
	case req.DeleteRange != nil:
		resp, err := w.DeleteRange(req.DeleteRange)
		return applyResult{resp, err}
	case req.Txn != nil:
		resp, err := w.Txn(req.Txn)
		return applyResult{resp, err}
	case req.Compaction != nil:
		resp, err := w.Compact(req.Compaction)
		return applyResult{resp, err}
	case req.LeaseGrant != nil:
		return s.applyLeaseGrant(w, b, req.LeaseGrant)
	case req.LeaseRevoke != nil:
		return s.applyLeaseRevoke(w, b, req.LeaseRevoke)
	case req.LeaseCheckpoint != nil:
		return s.applyLeaseCheckpoint(b, req.LeaseCheckpoint)
	case req.ClusterMemberAttrSet != nil:
		return applyResult{err: s.members.applyAttrSet(b, req.ClusterMemberAttrSet)}
	default:
		return applyResult{err: errUnsupportedRequest}
	}
}

// isRequestError reports whether an apply error is the request's
// replicated outcome rather than a local storage failure.
func isRequestError(err error) bool {
	return mvcc.IsRequestError(err) || lease.IsRequestError(err) || errors.Is(err, ErrMemberNotFound) || errors.Is(err, errUnsupportedRequest)
}
