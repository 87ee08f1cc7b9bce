// Package api serves etcd's v3 gRPC services (etcdserverpb) on top of a
// server.Server: it validates requests as etcd does, forwards them, and
// maps every internal error to etcd's rpctypes error in one place
// (errors.go), so real etcd clients react to Kvorum's errors exactly as to
// etcd's.
package api
