// Package admission decides whether a client request may go on to be
// proposed or read. It is the one way in: the client plane's gRPC server
// passes every unary request, and every message a client sends inside a
// stream (watch creation and cancellation, lease keep-alives, snapshot
// requests), to Controller.Admit before any handler acts on it.
//
// Admit runs stages in a fixed order and stops at the first refusal:
//
//  1. validate: the checks etcd makes before proposing (a key is required,
//     txn size and duplicate keys, sort options, ignore_value/ignore_lease
//     misuse, lease TTL bounds), with etcd's errors;
//  2. authenticate and authorize, once access control exists (issue 10):
//     they plug in here and nowhere else;
//  3. quota: a request that grows the store (put, txn with a put, lease
//     grant) is refused with etcd's "database space exceeded" while the
//     NOSPACE alarm is active or when it would pass the quota (Config.Quota).
//
// Guarantee: a request whose type has no rule is refused (fail closed), so
// an RPC added to the API cannot skip admission by being forgotten; a test
// walks every method of every service the client plane registers and
// demands a rule for its request type.
package admission
