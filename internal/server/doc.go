// Package server is one Kvorum member: it wires the engine, the raft node,
// the peer transport and the applier (internal/apply), turns client
// requests into raft proposals or linearizable reads, and hands each
// proposal's apply result back to the request that made it.
//
// Guarantees: a write is acknowledged only after its entry was committed by
// a majority and applied here; a linearizable read is served only after the
// local state machine applied the read index raft confirmed with a quorum;
// a request that cannot be committed within the request timeout fails with
// an error and, if it was committed after all, is applied exactly once.
package server
