package raftnode

import (
	"errors"
	"io"
	"log"
	"testing"

	"go.etcd.io/raft/v3"
)

var quiet = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

// A proposal nobody can take (a follower that knows no leader) is dropped
// and its proposer told so; after the Ready loop ended, proposing reports
// that.
func TestProposalsAreRefusedWithoutALeaderAndAfterStop(t *testing.T) {
	st := raft.NewMemoryStorage()
	r, err := newRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st, MaxInflightMsgs: 256, Logger: quiet}, []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.propose([]byte("x")); !errors.Is(err, raft.ErrProposalDropped) {
		t.Errorf("proposal without a leader: %v, want %v", err, raft.ErrProposalDropped)
	}
	r.stop()
	if err := r.propose([]byte("y")); !errors.Is(err, ErrStopped) {
		t.Errorf("proposal after stop: %v, want %v", err, ErrStopped)
	}
	if err := r.readIndex([]byte("z")); !errors.Is(err, ErrStopped) {
		t.Errorf("read index after stop: %v, want %v", err, ErrStopped)
	}
}
