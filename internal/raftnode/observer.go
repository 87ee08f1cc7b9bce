package raftnode

import "time"

// Observer hears how long the node's storage work takes, for metrics. Its
// methods are called on the Ready loop and the applier and must not block.
type Observer interface {
	// Synced reports one synced write of the raft log (hard state and
	// entries), the write raft waits for before acknowledging.
	Synced(time.Duration)
	// Applied reports applying one batch of committed entries.
	Applied(time.Duration)
}
