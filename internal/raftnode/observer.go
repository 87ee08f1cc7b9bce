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
	// SnapshotReceived reports a snapshot received from the leader and
	// stored: the whole save and, within it, the file's sync. It is called
	// on the goroutine that received it.
	SnapshotReceived(save, sync time.Duration)
}
