// Package robustness checks histories of operations that concurrent clients
// ran against an etcd-v3 key space while the cluster was being crashed,
// paused and partitioned.
//
// A [History] is what the clients saw: each operation with its invocation
// and completion time, and its response or the fact that its outcome is
// unknown (a timeout, a lost connection, an Unavailable error). [Check]
// demands three things of it:
//
//   - Linearizability against a model of the key space that includes
//     revisions (porcupine): every response, header revision included, is
//     what a single copy of the store would have answered at one instant
//     between the operation's invocation and completion.
//   - Revision order: an operation that started after another completed
//     never sees an older revision, and writes that do not overlap take
//     increasing revisions. This is implied by the first check but cheap
//     and gives a precise message.
//   - Agreement with the cluster's own revision history (see [Change]):
//     every acknowledged write is at the revision it was acknowledged with,
//     and every revision was written by some client.
//
// An operation whose outcome is unknown may or may not have taken effect,
// and in the model it may take effect at any instant after its invocation
// (its completion time is infinite, in porcupine's terms). Each put carries
// a value no other put uses, so an unknown put or compare-and-swap that took
// effect is found in the revision history at exactly one revision;
// [Resolve] pins it there, or marks it not applied when its value is in no
// revision — which is the same as letting the model choose "not applied",
// only without making the checker search for it. Unknown deletes are
// matched to the deletions no acknowledged delete explains. This is what
// etcd's own robustness suite does with the revisions its watchers saw.
// An unknown read constrains nothing and is not given to the checker.
package robustness
