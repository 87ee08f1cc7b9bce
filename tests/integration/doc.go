// Package integration holds in-process cluster tests: three Kvorum members
// in one test process over loopback sockets, started through the same
// flags and member.Start as the server binary, driven by the etcd v3 Go
// client. The tests check what a user of an etcd-compatible cluster can
// see: leader election, linearizable reads and writes across members,
// durability over restarts, catch-up by snapshot, and the KV API's
// semantics and errors.
package integration
