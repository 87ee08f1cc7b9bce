// Package lease is the lessor: the replicated table of leases and the keys
// attached to them, plus the leader's clock that decides when leases expire.
//
// The Lessor has two halves with different rules.
//
// The replicated half (Grant, Revoke, Checkpoint, Track, Load) changes only
// when a committed raft entry is applied, writes its records into the
// apply batch, and depends on nothing but its inputs, so every member holds
// the same leases and attachments at the same applied index. Attachments
// are not proposed by anyone: Track derives them from the changes the KV
// store made (a put with a lease attaches its key, a put without it or a
// delete detaches it), so they cannot disagree with the keys' lease field.
//
// The clock half (Promote, Demote, Renew, Expired, Due, TimeToLive) is
// local and only meaningful on the leader ("primary"): expiry times live in
// memory, a keep-alive moves one without going through raft, and expiry is
// acted on only by proposing a revocation, which every member then applies.
// A member that becomes leader gives every lease its remaining TTL again
// (the checkpointed remainder when there is one, otherwise the full TTL)
// plus an election timeout, as etcd does, so a leader change never expires
// a lease that was being kept alive. Checkpoints bound how much a long
// lease can gain that way: the leader periodically replicates each long
// lease's remaining TTL.
package lease
