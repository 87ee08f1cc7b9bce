// Package kubernetes runs a real kube-apiserver on a 3-member Kvorum
// cluster with mutual TLS on its client and peer ports (certificates from
// the pki package, as kvorumctl pki init makes them, the layout an etcd HA
// guide sets up by hand) and drives it with kubectl: namespaces, ConfigMaps, Secrets,
// coordination.k8s.io Leases, a CustomResourceDefinition and its objects,
// paginated lists, watches, optimistic-concurrency conflicts, and the loss
// of the Kvorum leader under a serving apiserver.
//
// The test is opt-in, because its first run builds kube-apiserver and
// kubectl from the Go module proxy (see internal/testbin.Kubernetes; about
// 10 minutes on 2 cores, then cached in ~/.cache/kvorum-test):
//
//	KVORUM_KUBE=1 go test ./tests/kubernetes/ -v -timeout 60m
//
// KVORUM_KUBE_BACKEND=etcd runs the same test against 3 official etcd
// members instead, to tell a Kvorum bug from a test bug.
// KVORUM_TEST_KUBE_DIR names a directory with prebuilt kube-apiserver and
// kubectl binaries to use instead of building them.
package kubernetes
