// Package mvcc is Kvorum's revisioned key space: etcd v3's KV semantics
// (Range, Put, DeleteRange, Txn, Compact) kept in Pebble under the key
// layout of package storage.
//
// # Driving it
//
// Open a Store on the state machine's Pebble DB. The apply loop creates one
// Writer per batch (Store.NewWriter on db.NewIndexedBatch()), applies the
// committed requests through it in log order, then commits the batch (with
// anything else the apply wrote into it) through Store.Commit.
// Writer.Events lists the changes for the watch hub. Reads that need no
// raft ordering call Store.Range at any time, from any goroutine.
// CheckTxn, CheckPut, CheckRange and CheckDeleteRange are the stateless
// validations to make before proposing a request.
//
// # Guarantees
//
//   - Results equal etcd 3.7's for the same sequence of requests: revisions
//     (the first change of an empty store gets revision 2; every request
//     that changes something takes exactly one main revision, its changes
//     sub-revisions 0, 1, ...), create/mod revisions and versions, counts,
//     more, sort order including ties, and errors.
//   - A request refused with one of the package's sentinel errors has
//     written nothing.
//   - Store.Range reads data and header revision from one Pebble snapshot:
//     the revision always describes exactly the data returned.
//   - The current and compact revisions are written in the same batch as
//     the changes they describe, so a crash never separates them.
//   - Nothing is indexed in memory: every read goes to Pebble, and costs
//     what it touches. A range at the current revision reads the latest
//     records of the keys it returns and counts the rest in the history
//     index; at a past revision, it passes once over the history records of
//     the range (seeking past long histories) and loads the versions it
//     returns from the latest records or the event log; a compaction costs
//     a few seeks per change since the previous one.
//   - After Compact(r), ranges at revisions >= r answer exactly as before.
//   - Writer.Events carry PrevKv (the version replaced or deleted), so the
//     watch hub and the lessor need no extra reads; stored events do not.
//
// One deliberate difference: a txn that passed CheckTxn yet puts with
// ignore_value or ignore_lease a key it deleted earlier (possible with a
// from-key delete, which etcd's duplicate check ignores) crashes etcd's
// apply; here it is refused with ErrKeyNotFound before writing anything.
//
// Leases are not this package's: Store.SetLeaseCheck plugs in the lessor's
// existence check, which puts consult first, as in etcd.
//
// # Layout
//
// For a change of key k at revision (main, sub):
//
//   - storage.LatestKey(k) holds the live mvccpb.KeyValue (absent once
//     deleted), or, for a value of latestByRevisionFrom bytes or more, the
//     revision of its event, where reads find the key-value;
//   - storage.HistoryKey(k, rev) holds one byte: 'p' for a put, 't' for a
//     tombstone;
//   - storage.EventKey(rev) holds the mvccpb.Event (PUT with the full
//     key-value, DELETE with key and mod_revision), without prev_kv.
//
// Events above the compact revision are the complete change log (for watch
// replay). At or below it, only the events of versions that survived the
// compaction remain: they are where those versions' values are read from.
package mvcc
