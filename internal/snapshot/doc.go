// Package snapshot reads and writes backups in etcd's snapshot format, so
// that a Kvorum backup and an etcd v3.6 backup are the same kind of file.
//
// A snapshot file is a bbolt database laid out as etcd's backend lays out
// its own (the buckets, keys and encodings of etcd's storage schema; see
// format.go for why they are restated, and format_test.go, which checks
// them against etcd's own packages), followed by the sha256 of the
// database bytes.
//
// # Writing
//
// Build writes the database from one consistent Pebble view of a member's
// state machine (a Pebble snapshot): every change retained after the
// compaction point under its revision, the compact revision, the leases
// with their TTL and checkpointed remaining TTL, the members, the cluster
// version and the auth state. WriteTo then copies the database out with its checksum.
//
// # Reading
//
// Open checks a file before anything reads it: a wrong checksum, a
// truncated file and a file that is not a bbolt database are each refused
// with their own error (ErrChecksum, ErrTruncated, ErrNotSnapshot); a
// database without checksum (copied from an etcd data dir) is accepted only
// when the caller skips the hash check, as etcdutl's --skip-hash-check.
// Status summarises a file as etcdutl snapshot status does; Restore
// imports one, written by Kvorum or by etcd 3.5 and later, into a new
// Kvorum data dir.
//
// Both ways carry the auth state in etcd's auth buckets: the switch, the
// revision, the users (bcrypt hashes) and the roles. A restored cluster is
// as closed as the one its backup came from, whether that was etcd or
// Kvorum.
package snapshot
