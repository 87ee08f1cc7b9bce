package server

import (
	"errors"
	"testing"

	"github.com/kvorum/kvorum/internal/apply"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// A request proposed again under the same ID must not take the skipped
// entry of its earlier attempt for its own outcome: that attempt was
// relayed late to a leader of a later term, while the new one may still
// apply. Taken for the new attempt's, the stale outcome made the proposer
// try a third time, and the request applied twice (robustness suite, a
// paused leader: the same value at revisions 563 and 567).
func TestStaleOutcomeAnswersOnlyItsOwnAttempt(t *testing.T) {
	w := waiters{m: make(map[uint64]waiter)}
	const id = 7

	// Attempt one, tagged 3, was given up when term 4 applied; attempt
	// two is tagged 4.
	ch := w.register(id, 4)
	w.trigger(id, 3, applyResult{err: apply.ErrStaleProposal})
	select {
	case r := <-ch:
		t.Fatalf("attempt tagged 4 got the outcome of the attempt tagged 3: %v", r.err)
	default:
	}
	if w.len() != 1 {
		t.Fatalf("%d waiters after a stale outcome of another attempt, want the attempt still waiting", w.len())
	}

	// Its own outcome reaches it.
	want := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 9}}
	w.trigger(id, 4, applyResult{resp: want})
	select {
	case r := <-ch:
		if r.err != nil || r.resp != want {
			t.Fatalf("attempt tagged 4 got %v, %v; want its put response", r.resp, r.err)
		}
	default:
		t.Fatal("attempt tagged 4 did not get its own outcome")
	}
	if w.len() != 0 {
		t.Fatalf("%d waiters after the outcome, want 0", w.len())
	}

	// A stale outcome of the attempt itself does reach it: it is then
	// proposed again.
	ch = w.register(id, 5)
	w.trigger(id, 5, applyResult{err: apply.ErrStaleProposal})
	select {
	case r := <-ch:
		if !errors.Is(r.err, apply.ErrStaleProposal) {
			t.Fatalf("got %v, want the stale outcome", r.err)
		}
	default:
		t.Fatal("the attempt's own stale outcome did not reach it")
	}

	// Untagged waiters (conf changes) take any outcome for their ID.
	ch = w.register(8, 0)
	w.trigger(8, 0, applyResult{})
	select {
	case <-ch:
	default:
		t.Fatal("an untagged waiter did not get its outcome")
	}
}
