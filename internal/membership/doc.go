// Package membership is the replicated member list of a Kvorum cluster and
// the identities derived from it.
//
// Member and cluster IDs are computed from the same inputs, with the same
// hash, as etcd computes them, so a cluster started with a given
// --initial-cluster and --initial-cluster-token shows the IDs etcd would
// show, and snapshot files carry members that both programs recognise.
//
// The Store is written only by the apply loop (conf changes carry a member
// record in their context; a member publishes its name and client URLs
// with a ClusterMemberAttrSet proposal) and read by everyone else through
// copies. Each record is stored under storage.MemberKey as a marshaled
// etcdserverpb.Member; this package is the only one that reads or writes
// those records.
package membership
