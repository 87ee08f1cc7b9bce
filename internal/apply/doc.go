// Package apply turns committed raft entries into changes of a member's
// replicated state — the key space (mvcc), leases and the member list —
// and reports what each entry produced.
//
// An Applier is a deterministic state machine over one Pebble engine: the
// same entries applied to the same state give the same state, results and
// events on every member. It holds no reference to the server, no clock
// and no network; the caller (the raft Ready loop, through the server's
// adapter) feeds it entries in index order and acts on the Outcome:
// answers the waiting requests with Results, passes Events to the watch
// hub, and updates its transport from Members.
//
// Obligations of the caller:
//   - Apply is called from one goroutine at a time, with entries in index
//     order; entries at or below Applied are skipped, so replaying a
//     prefix after a crash is harmless.
//   - The effects of a call and the new applied index are written in one
//     engine batch. The batch is not synced: the raft log holds the
//     entries durably and re-creates their effects on restart.
//   - An error from Apply means storage failed and the batch was dropped;
//     the member must stop rather than go on with a state that may differ
//     from its peers'. Errors that are a request's replicated outcome
//     (a failed compare, an unknown lease, a missing member) are not
//     errors of Apply: they travel in that request's Result.
//   - After a raft snapshot replaced the state span, Restore reloads
//     everything in memory from the engine.
package apply
