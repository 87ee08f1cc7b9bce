package raftnode

import (
	"context"
	"errors"
	"testing"
)

// A read that no leader answers, and a wait for an index that is not
// applied, end with ErrTimeout when their expiry channel closes, with the
// context's error when it ends first, and as soon as the index is applied.
func TestWaitsEndAtExpiryContextOrProgress(t *testing.T) {
	n := &Node{donec: make(chan struct{})}
	n.reads = newReadIndexer(n) // its loop is not running: nobody answers

	expired := make(chan struct{})
	close(expired)
	if _, err := n.ReadIndex(context.Background(), expired); !errors.Is(err, ErrTimeout) {
		t.Errorf("read index past its expiry: %v, want %v", err, ErrTimeout)
	}
	if err := n.WaitApplied(context.Background(), expired, 5); !errors.Is(err, ErrTimeout) {
		t.Errorf("wait for an unapplied index past its expiry: %v, want %v", err, ErrTimeout)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.ReadIndex(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("read index of a cancelled request: %v, want %v", err, context.Canceled)
	}
	if err := n.WaitApplied(ctx, nil, 5); !errors.Is(err, context.Canceled) {
		t.Errorf("wait of a cancelled request: %v, want %v", err, context.Canceled)
	}

	done := make(chan error, 1)
	go func() { done <- n.WaitApplied(context.Background(), nil, 5) }()
	n.setApplied(4)
	select {
	case err := <-done:
		t.Fatalf("wait for index 5 ended at applied 4: %v", err)
	default:
	}
	n.setApplied(5)
	if err := <-done; err != nil {
		t.Errorf("wait for index 5 once it applied: %v", err)
	}
}
