package notify

import "testing"

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestSignal(t *testing.T) {
	var s Signal
	a, b := s.Changed(), s.Changed()
	if a != b || closed(a) {
		t.Fatal("before a Notify, Changed should hand out the same open channel")
	}
	s.Notify()
	if !closed(a) {
		t.Fatal("Notify did not close the channel handed out")
	}
	c := s.Changed()
	if closed(c) {
		t.Fatal("Changed after a Notify handed out a closed channel")
	}
	s.Notify()
	s.Notify() // nobody waiting: nothing to close, no panic
	if !closed(c) {
		t.Fatal("the second Notify did not close the channel handed out after the first")
	}
	if n := testing.AllocsPerRun(100, s.Notify); n != 0 {
		t.Errorf("Notify with nobody waiting allocates %v times", n)
	}
}
