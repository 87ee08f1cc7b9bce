package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"

	"github.com/kvorum/kvorum/internal/transport"
)

// This file gathers what the status page shows about replication and
// backups; it reads state, it changes nothing.

// Replication is raft's view of the log from this member.
type Replication struct {
	Term    uint64
	Commit  uint64 // this member's commit index
	Applied uint64 // this member's applied index
	// Progress is raft's tracking of every member's log, by member ID;
	// only a leader has it (nil on followers).
	Progress map[uint64]Progress
	// LastIndex is the leader's last log index (0 on followers): a
	// member's lag is LastIndex - Match.
	LastIndex uint64
}

// Progress is the leader's record of one member's log.
type Progress struct {
	Match uint64 // highest entry known to be in the member's log
	Next  uint64 // next entry the leader sends it
	// State is how the leader replicates to it: "replicate" (streaming),
	// "probe" (finding where the logs agree: the member is down or just
	// came back) or "snapshot" (sending a snapshot).
	State        string
	RecentActive bool // heard from it within an election timeout
}

// Replication reports raft's view of the log; on the leader it includes
// every member's progress.
func (s *Server) Replication() Replication {
	st := s.node.Status()
	r := Replication{Term: s.node.Term(), Commit: s.node.CommittedIndex(), Applied: s.node.AppliedIndex()}
	if st.RaftState != raft.StateLeader || st.Progress == nil {
		return r
	}
	r.Progress = make(map[uint64]Progress, len(st.Progress))
	for id, pr := range st.Progress {
		r.Progress[id] = Progress{Match: pr.Match, Next: pr.Next, State: progressState(pr.State), RecentActive: pr.RecentActive}
	}
	if self, ok := st.Progress[s.memberID]; ok {
		r.LastIndex = self.Match // the leader's own progress tracks its log
	}
	return r
}

func progressState(st tracker.StateType) string {
	switch st {
	case tracker.StateProbe:
		return "probe"
	case tracker.StateReplicate:
		return "replicate"
	case tracker.StateSnapshot:
		return "snapshot"
	}
	return st.String()
}

// callIndexes is the peer call that answers a member's commit and applied
// index (16 bytes, big endian).
const callIndexes = "indexes"

func (s *Server) indexesCall(context.Context, uint64, []byte) ([]byte, error) {
	out := binary.BigEndian.AppendUint64(nil, s.node.CommittedIndex())
	return binary.BigEndian.AppendUint64(out, s.node.AppliedIndex()), nil
}

// Indexes are one member's commit and applied index as it reported them,
// or why it did not.
type Indexes struct {
	Commit, Applied uint64
	Err             error
}

// PeerIndexes asks every other member for its commit and applied index,
// in parallel, each within timeout. Members that do not answer (down,
// unreachable, a version without the call) have Err set.
func (s *Server) PeerIndexes(ctx context.Context, timeout time.Duration) map[uint64]Indexes {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := make(map[uint64]Indexes)
	for _, m := range s.members.List() {
		id := m.GetID()
		if id == s.memberID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			var ix Indexes
			b, err := s.transport.Call(ctx, id, callIndexes, nil)
			switch {
			case err != nil:
				ix.Err = err
			case len(b) != 16:
				ix.Err = fmt.Errorf("indexes answer of %x: %d bytes, want 16", id, len(b))
			default:
				ix.Commit, ix.Applied = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
			}
			mu.Lock()
			out[id] = ix
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// Peers is the state of this member's connections to the others.
func (s *Server) Peers() []transport.PeerStatus { return s.transport.Peers() }

// BackupOutcome is the result of the last scheduled backup this member
// attempted.
type BackupOutcome struct {
	At    time.Time // when it finished
	Saved SavedBackup
	Err   error // nil: saved and verified
}

// lastBackup holds the latest outcome (nil before the first) and the time
// of the latest success.
type lastBackup struct {
	mu          sync.Mutex
	o           *BackupOutcome
	lastSuccess time.Time
}

func (l *lastBackup) set(o BackupOutcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.o = &o
	if o.Err == nil {
		l.lastSuccess = o.At
	}
}

// LastBackup is the outcome of the last scheduled backup this member
// attempted and when the last one succeeded (zero if none). Only a leader
// takes scheduled backups, so a follower that never led has neither.
func (s *Server) LastBackup() (last *BackupOutcome, lastSuccess time.Time) {
	s.backups.mu.Lock()
	defer s.backups.mu.Unlock()
	if s.backups.o != nil {
		o := *s.backups.o
		last = &o
	}
	return last, s.backups.lastSuccess
}
