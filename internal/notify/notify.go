// Package notify wakes every goroutine that waits for the next change of
// some state (the leader, the applied index, the auth configuration, ...).
package notify

import "sync"

// Signal hands out channels that are closed at the next Notify. Waiters
// take a channel first and then read the state, so a change between the
// two still wakes them. The zero value is ready to use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{} // nil while nobody has asked for one
}

// Changed returns a channel that is closed at the next Notify.
func (s *Signal) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify closes the channel Changed handed out, if any; the next Changed
// gets a new one. With nobody waiting it allocates nothing.
func (s *Signal) Notify() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}
