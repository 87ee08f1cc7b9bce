// Package robustness runs Kvorum's robustness suite: clusters of the built
// kvorum binary driven by concurrent go.etcd.io/etcd/client/v3 clients while
// members are killed, paused, restarted and partitioned on a randomized
// schedule, followed by the checks of internal/robustness (linearizability
// with porcupine, revision order, the cluster's own revision history, no
// acknowledged write lost), the convergence of every member to the same
// revision and HashKV, and clean server logs.
//
// See docs/robustness.md. The short schedule runs with go test; the soak is
//
//	KVORUM_SOAK=30m go test -count=1 ./tests/robustness -run Soak -timeout 40m -v
package robustness
