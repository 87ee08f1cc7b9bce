// Package e2e holds Kvorum's multi-process end-to-end tests: clusters of the
// built kvorum binary on loopback ports, driven by go.etcd.io/etcd/client/v3
// and by the official etcdctl, killed with SIGKILL, stopped with SIGTERM and
// restarted from their data dirs.
//
// The tests build kvorum and kvorumctl from this module, and the official
// etcd and etcdctl (see internal/testbin) from the Go module proxy on first
// use; tests that need etcd skip when it cannot be built, unless
// KVORUM_E2E_REQUIRE_ETCD=1. Run them with
//
//	go test ./tests/e2e/
//
// With -race the servers are built with the race detector too; -short skips
// the package. A failing test prints the tail of every member's log.
package e2e
