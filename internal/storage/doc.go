// Package storage is a member's single Pebble engine: the raft log, the raft
// hard state, the applied index and the state machine (the revisioned key
// space and cluster metadata) all live in it, under disjoint key prefixes
// that are encoded in keys.go and nowhere else.
//
// Guarantees kept here:
//   - One engine, one write-ahead log: a synced write makes every earlier
//     write durable too, so the state machine may be written without sync as
//     long as the raft log entries it was derived from are synced.
//   - The applied index is written in the same batch as the state it
//     describes (see ApplyIndexKey); after a crash the state machine is
//     exactly the result of applying entries 1..applied.
package storage
