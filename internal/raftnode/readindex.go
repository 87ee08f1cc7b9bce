package raftnode

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
)

// readIndexer batches linearizable reads: every read that arrives while a
// ReadIndex round trip is in flight joins the next one, so a burst of
// concurrent reads costs one heartbeat round, not one each.
type readIndexer struct {
	n       *Node
	mu      sync.Mutex
	pending *readBatch
	wake    chan struct{}
	states  chan raft.ReadState
	seq     uint64
}

type readBatch struct {
	done  chan struct{}
	index uint64
	err   error
}

func newReadIndexer(n *Node) *readIndexer {
	return &readIndexer{
		n:       n,
		pending: &readBatch{done: make(chan struct{})},
		wake:    make(chan struct{}, 1),
		states:  make(chan raft.ReadState, 64),
	}
}

// ReadIndex returns an index such that a read served from a state machine
// that has applied it is linearizable. It gives up with ctx's error when
// ctx ends, and with ErrTimeout when expired closes (nil: never).
func (n *Node) ReadIndex(ctx context.Context, expired <-chan struct{}) (uint64, error) {
	r := n.reads
	r.mu.Lock()
	b := r.pending
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
		return b.index, b.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-expired:
		return 0, ErrTimeout
	case <-n.donec:
		return 0, ErrStopped
	}
}

func (r *readIndexer) deliver(states []raft.ReadState) {
	for _, s := range states {
		select {
		case r.states <- s:
		default:
			// Nobody waits for this many; a waiter that misses its state
			// retries.
		}
	}
}

func (r *readIndexer) run() {
	for {
		select {
		case <-r.wake:
		case <-r.n.stopc:
			return
		}
		r.mu.Lock()
		b := r.pending
		r.pending = &readBatch{done: make(chan struct{})}
		r.mu.Unlock()
		b.index, b.err = r.roundTrip()
		close(b.done)
	}
}

// roundTrip asks raft for a read index, retrying when raft drops the
// request (no leader yet, leadership changed) until the request timeout.
func (r *readIndexer) roundTrip() (uint64, error) {
	retry := r.n.cfg.TickInterval * time.Duration(r.n.cfg.ElectionTicks) / 2
	if retry < 50*time.Millisecond {
		retry = 50 * time.Millisecond
	}
	deadline := time.Now().Add(5*time.Second + 2*r.n.cfg.TickInterval*time.Duration(r.n.cfg.ElectionTicks))
	for time.Now().Before(deadline) {
		r.seq++
		var id [8]byte
		binary.BigEndian.PutUint64(id[:], r.seq)
		ctx, cancel := context.WithTimeout(context.Background(), retry)
		err := r.n.raft.readIndex(id[:])
		if err != nil {
			cancel()
			select {
			case <-r.n.stopc:
				return 0, ErrStopped
			case <-time.After(retry / 4):
			}
			continue
		}
		idx, ok := r.await(ctx, id[:])
		cancel()
		if ok {
			return idx, nil
		}
		select {
		case <-r.n.stopc:
			return 0, ErrStopped
		default:
		}
	}
	if r.n.Leader() == raft.None {
		return 0, ErrNoLeader
	}
	return 0, ErrTimeout
}

func (r *readIndexer) await(ctx context.Context, id []byte) (uint64, bool) {
	for {
		select {
		case s := <-r.states:
			if string(s.RequestCtx) == string(id) {
				return s.Index, true
			}
		case <-ctx.Done():
			return 0, false
		case <-r.n.stopc:
			return 0, false
		}
	}
}
