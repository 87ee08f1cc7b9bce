package raftnode

import (
	"errors"
	"sync"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// rawNode is raft's RawNode behind a mutex. The goroutines that have
// something for raft (client requests proposing, the transport stepping a
// peer's message, the ticker) call it directly, and the Ready loop is woken
// to collect what that produced.
//
// raft.Node does the same through channels to a goroutine of its own: every
// proposal and every message waited for that goroutine to take it, and
// every Ready and Advance crossed over to it and back. With one client,
// those goroutine switches were a large part of a write's latency; under
// load, a share of the leader's CPU.
type rawNode struct {
	id uint64

	mu      sync.Mutex
	rn      *raft.RawNode
	stopped bool // the Ready loop has ended; nothing is stepped after it

	// wake tells the Ready loop that raft may have something for it. One
	// pending signal is enough: the loop collects everything there is.
	wake chan struct{}
}

func newRawNode(c *raft.Config, peers []raft.Peer) (*rawNode, error) {
	rn, err := raft.NewRawNode(c)
	if err != nil {
		return nil, err
	}
	if len(peers) > 0 {
		if err := rn.Bootstrap(peers); err != nil {
			return nil, err
		}
	}
	return &rawNode{id: c.ID, rn: rn, wake: make(chan struct{}, 1)}, nil
}

func (r *rawNode) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// do runs f on the RawNode unless the Ready loop has ended, and wakes the
// loop afterwards.
func (r *rawNode) do(f func(rn *raft.RawNode) error) error {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return ErrStopped
	}
	err := f(r.rn)
	r.mu.Unlock()
	r.notify()
	return err
}

// stop marks the Ready loop as ended: later calls return ErrStopped.
func (r *rawNode) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}

// ready returns the next Ready, if raft has one. Every Ready it returns
// must be handed back to advance before the next call.
func (r *rawNode) ready() (raft.Ready, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.rn.HasReady() {
		return raft.Ready{}, false
	}
	return r.rn.Ready(), true
}

// advance tells raft that rd was persisted, sent and handed to the applier.
func (r *rawNode) advance(rd raft.Ready) {
	r.mu.Lock()
	r.rn.Advance(rd)
	r.mu.Unlock()
}

func (r *rawNode) tick() {
	r.mu.Lock()
	r.rn.Tick()
	r.mu.Unlock()
}

func (r *rawNode) campaign() error {
	return r.do(func(rn *raft.RawNode) error { return rn.Campaign() })
}

// propose appends data to the log as a proposal of this member (a follower
// forwards it to the leader). raft.ErrProposalDropped means it was appended
// nowhere: no leader is known, or leadership is being handed over.
func (r *rawNode) propose(data []byte) error {
	return r.do(func(rn *raft.RawNode) error { return rn.Propose(data) })
}

func (r *rawNode) proposeConfChange(cc pb.ConfChangeI) error {
	return r.do(func(rn *raft.RawNode) error { return rn.ProposeConfChange(cc) })
}

// step hands raft a message from a peer. A proposal a follower forwarded is
// stepped as this member's own, as raft.Node does; raft.ErrProposalDropped
// reports one that was appended nowhere. Local message types arriving from
// the network and responses from members not in the configuration are
// ignored.
func (r *rawNode) step(m *pb.Message) error {
	return r.do(func(rn *raft.RawNode) error {
		if m.GetType() == pb.MessageType_MsgProp {
			m.From = proto.Uint64(r.id)
		}
		err := rn.Step(m)
		if errors.Is(err, raft.ErrStepLocalMsg) || errors.Is(err, raft.ErrStepPeerNotFound) {
			return nil
		}
		return err
	})
}

func (r *rawNode) readIndex(rctx []byte) error {
	return r.do(func(rn *raft.RawNode) error { rn.ReadIndex(rctx); return nil })
}

func (r *rawNode) transferLeader(transferee uint64) {
	_ = r.do(func(rn *raft.RawNode) error { rn.TransferLeader(transferee); return nil })
}

func (r *rawNode) reportUnreachable(id uint64) {
	_ = r.do(func(rn *raft.RawNode) error { rn.ReportUnreachable(id); return nil })
}

func (r *rawNode) reportSnapshot(id uint64, st raft.SnapshotStatus) {
	_ = r.do(func(rn *raft.RawNode) error { rn.ReportSnapshot(id, st); return nil })
}

// applyConfChange applies a committed membership change to raft's
// configuration and returns the new one.
func (r *rawNode) applyConfChange(cc pb.ConfChangeI) *pb.ConfState {
	var cs *pb.ConfState
	r.mu.Lock()
	cs = r.rn.ApplyConfChange(cc)
	r.mu.Unlock()
	r.notify()
	return cs
}

func (r *rawNode) status() raft.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rn.Status()
}
