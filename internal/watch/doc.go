// Package watch is Kvorum's watch hub: it turns the changes the apply loop
// commits into the streams of etcd's Watch API, for watchers that follow
// the present (synced) and for watchers that replay the past from storage
// (unsynced) until they reach the present.
//
// # Driving it
//
// Create one Hub per member with New, on the member's mvcc store (Source)
// and its current revision. The apply loop calls Hub.Notify after every
// commit with the revision reached and the changes made (mvcc.Writer.Events);
// after a raft snapshot replaced the key space it calls Hub.Restored. Run the
// catch-up worker with Hub.Run. Each client stream is a Stream (Hub.NewStream):
// the API layer feeds it the client's requests (Watch, Cancel,
// RequestProgress), drains its responses with Next, ticks progress
// notifications with RunProgress, and calls Close at the end.
//
// Nothing here blocks the apply loop: Notify never waits for a client and
// never reads storage. Tests drive the hub without goroutines or clocks:
// Notify, SyncOnce (one catch-up round), ProgressTick and TryNext.
//
// # Guarantees
//
// For every watcher, the events it is sent are:
//
//   - ordered: by revision, then by position inside the revision, never
//     going backwards;
//   - reliable: every change of its keys from its start revision on, with no
//     gap and no duplicate, whether it is served from the apply loop, from
//     the recent-changes buffer or from storage, and across the hand-over
//     from replay to live delivery;
//   - atomic: all events of one revision (a txn, a range delete) are in the
//     same response; a response may hold several whole revisions;
//   - resumable: a response's header revision never exceeds what the
//     watcher has been sent, so a watch re-created (on any member) with
//     start_revision = last seen revision + 1 continues exactly;
//   - bookmarkable: a progress notification with revision R is queued after
//     every event up to R, so R+1 is a safe place to resume from.
//
// A watcher whose stream does not drain its queue in time is not waited
// for: it leaves the synced set and later replays what it missed from
// storage, in bounded rounds, while writes and other watchers go on. Each
// stream's queue is bounded (Config.MaxQueuedEvents, MaxQueuedBytes), as is
// the buffer of recent changes (Config.RecentBytes), so memory stays bounded
// whatever clients do. A watcher that falls so far behind that the history
// it needs is compacted is canceled with the compact revision set, exactly
// as etcd cancels a watch on a compacted revision; clients restart from
// there.
//
// Semantics follow etcd 3.7: watch IDs, the responses to invalid or
// duplicate creates, filters, prev_kv, which watchers a progress request
// answers for (only when every watcher of the stream is synced, with watch
// ID -1), and periodic progress notifications only for idle watchers.
package watch
