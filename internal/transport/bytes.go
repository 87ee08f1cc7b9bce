package transport

// ByteCounter counts raft message bytes per peer, for metrics. Its methods
// are called from the streams' goroutines and must not block.
type ByteCounter interface {
	Sent(to uint64, n int)
	Received(from uint64, n int)
}

func (t *Transport) countSent(to uint64, n int) {
	if t.cfg.Bytes != nil && n > 0 {
		t.cfg.Bytes.Sent(to, n)
	}
}

func (t *Transport) countReceived(from uint64, n int) {
	if t.cfg.Bytes != nil && n > 0 {
		t.cfg.Bytes.Received(from, n)
	}
}
