// Package raftnode is the only place that drives the raft state machine
// (go.etcd.io/raft/v3): it ticks it, persists what it asks to persist,
// sends what it asks to send, hands committed entries to the state machine
// and serves batched ReadIndex requests. Raft is a RawNode behind a mutex
// (rawnode.go): whoever has something for it steps it directly, and one
// goroutine, the Ready loop, collects and acts on each Ready.
//
// Obligations kept by the Ready loop, in the order the raft library demands:
//
//  1. A received snapshot is installed into the engine before anything else
//     of the Ready is acted upon.
//  2. Hard state and new entries are written to the engine, synced when
//     raft says MustSync, before any message of the Ready is sent — except
//     on the leader, which may send appends in parallel with its own write
//     (Raft thesis §10.2.1); its own progress only advances after Advance.
//  3. Committed entries are applied in index order by one applier
//     goroutine, handed over before the Ready's own entries are persisted
//     (they are durable on a quorum already; a Ready holding a conf change
//     waits for it to be applied first); the state machine
//     records the applied index atomically with their effects, and skips
//     entries at or below it (so a snapshot that is newer than its raft
//     metadata, and replay after a crash, never apply anything twice).
//  4. The raft log is compacted only up to an index whose state is durable.
package raftnode
