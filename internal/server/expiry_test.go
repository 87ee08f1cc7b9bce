package server

import (
	"testing"
	"time"
)

// A channel from after closes no sooner than asked and within a step more;
// deadlines in the same step share a channel, later ones do not, and a
// closed step's channel is forgotten.
func TestExpiriesCloseOnTimeAndShareASteps(t *testing.T) {
	const step = 20 * time.Millisecond
	e := newExpiries(step)
	start := time.Now()
	a := e.after(50 * time.Millisecond)
	b := e.after(50 * time.Millisecond)
	if a != b {
		t.Fatal("two deadlines in the same step got different channels")
	}
	c := e.after(50*time.Millisecond + 3*step)
	if c == a {
		t.Fatal("deadlines three steps apart share a channel")
	}
	select {
	case <-a:
	case <-time.After(5 * time.Second):
		t.Fatal("channel never closed")
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("channel for 50ms closed after %v", waited)
	}
	select {
	case <-c:
		t.Fatal("the later deadline's channel closed with the earlier one")
	default:
	}
	<-c
	if waited := time.Since(start); waited < 50*time.Millisecond+3*step {
		t.Fatalf("channel for %v closed after %v", 50*time.Millisecond+3*step, waited)
	}
	e.mu.Lock()
	left := len(e.at)
	e.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d closed channels still held", left)
	}
}
