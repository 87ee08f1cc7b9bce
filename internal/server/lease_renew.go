package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kvorum/kvorum/internal/lease"
)

// Keep-alives are renewed by the leader. A follower collects the renewals
// its clients ask for while a forwarded batch is in flight and sends them
// as one peer call, so a hundred clients renewing through a follower cost
// a handful of calls rather than a hundred.
const (
	renewBatchMax      = 1024
	renewBatchInFlight = 4
)

// Per-lease outcomes in a renewal batch answer, in place of the TTL.
const (
	renewNotFound   int64 = -1
	renewNotPrimary int64 = -2
)

type renewReq struct {
	id   int64
	done chan int64 // the TTL or a renew* outcome
}

// renewBatcher sends renewals to the leader in batches.
type renewBatcher struct {
	s    *Server
	reqs chan renewReq
	sem  chan struct{}
}

func newRenewBatcher(s *Server) *renewBatcher {
	return &renewBatcher{s: s, reqs: make(chan renewReq, renewBatchMax), sem: make(chan struct{}, renewBatchInFlight)}
}

// run batches renewals until the server stops.
func (b *renewBatcher) run() {
	for {
		var first renewReq
		select {
		case first = <-b.reqs:
		case <-b.s.stopped:
			return
		}
		select {
		case b.sem <- struct{}{}:
		case <-b.s.stopped:
			return
		}
		// Everything that queued while waiting for a slot goes along.
		batch := []renewReq{first}
	drain:
		for len(batch) < renewBatchMax {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		go func() {
			defer func() { <-b.sem }()
			b.send(batch)
		}()
	}
}

func (b *renewBatcher) send(batch []renewReq) {
	ids := make([]int64, len(batch))
	for i, r := range batch {
		ids[i] = r.id
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.s.reqTimeout)
	defer cancel()
	out, err := b.s.atLeader(ctx, callLeaseRenew, encodeIDs(ids))
	var ttls []int64
	if err == nil {
		ttls, err = decodeIDs(out)
		if err == nil && len(ttls) != len(ids) {
			err = fmt.Errorf("lease renew answer holds %d results for %d leases", len(ttls), len(ids))
		}
	}
	for i, r := range batch {
		ttl := renewNotPrimary // the caller retries or gives up with its own context
		if err == nil {
			ttl = ttls[i]
		}
		r.done <- ttl
	}
}

// LeaseRenew restarts a lease's TTL on the leader and returns the TTL. A
// lease that is unknown or already expired gives lease.ErrNotFound.
func (s *Server) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	for {
		if s.node.Leader() == s.memberID {
			var ttl int64
			err := s.confirmLeader(ctx)
			if err == nil {
				ttl, err = s.renewHere(ctx, id)
			} else if ctx.Err() == nil {
				err = lease.ErrNotPrimary // ask again once leadership settles
			}
			if !errors.Is(err, lease.ErrNotPrimary) {
				if err != nil && ctx.Err() != nil {
					return 0, s.ctxError(ctx, s.memberID)
				}
				return ttl, err
			}
		} else {
			r := renewReq{id: id, done: make(chan int64, 1)}
			select {
			case s.renewals.reqs <- r:
			case <-ctx.Done():
				return 0, s.ctxError(ctx, s.node.Leader())
			}
			select {
			case ttl := <-r.done:
				switch ttl {
				case renewNotFound:
					return 0, fmt.Errorf("%w: %x", lease.ErrNotFound, id)
				case renewNotPrimary:
				default:
					return ttl, nil
				}
			case <-ctx.Done():
				return 0, s.ctxError(ctx, s.node.Leader())
			}
		}
		select {
		case <-ctx.Done():
			return 0, s.ctxError(ctx, s.node.Leader())
		case <-s.stopped:
			return 0, ErrStopped
		case <-s.node.LeaderChanged():
		case <-time.After(s.cfg.HeartbeatInterval):
		}
	}
}

// renewBatchHere renews a forwarded batch on this member, the leader. The
// renewals run in parallel: one of an expired lease waits for its
// revocation without holding up the others.
func (s *Server) renewBatchHere(ctx context.Context, ids []int64) []int64 {
	ttls := make([]int64, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			ttl, err := s.renewHere(ctx, id)
			switch {
			case err == nil:
				ttls[i] = ttl
			case errors.Is(err, lease.ErrNotFound):
				ttls[i] = renewNotFound
			default:
				ttls[i] = renewNotPrimary
			}
		})
	}
	wg.Wait()
	return ttls
}

// renewHere renews a lease in this member's lessor.
func (s *Server) renewHere(ctx context.Context, id int64) (int64, error) {
	ttl, clear, err := s.lessor.Renew(ctx, id)
	if err != nil {
		return 0, err
	}
	s.metrics.LeaseRenewed()
	if clear {
		// The lease was checkpointed with less than its TTL left; record
		// that it has its full TTL again, or a later leader would give it
		// only the old remainder.
		go s.proposeCheckpoints([]lease.CheckpointEntry{{ID: id}})
	}
	return ttl, nil
}

// encodeIDs and decodeIDs are the wire form of a renewal batch and of its
// answer: 8-byte big-endian signed integers.
func encodeIDs(ids []int64) []byte {
	b := make([]byte, 0, 8*len(ids))
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, uint64(id))
	}
	return b
}

func decodeIDs(b []byte) ([]int64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("malformed lease renewal batch of %d bytes", len(b))
	}
	ids := make([]int64, len(b)/8)
	for i := range ids {
		ids[i] = int64(binary.BigEndian.Uint64(b[8*i:]))
	}
	return ids, nil
}
