// Package ctl is kvorumctl: the command-line client for Kvorum and any other
// etcd v3 server.
//
// Its commands, flags, environment variables (ETCDCTL_* and the equivalent
// KVORUMCTL_*), exit codes and output formats (-w simple|json|fields|table|
// protobuf) are those of the official etcdctl v3.7, so that scripts written
// for etcdctl keep working: the bytes written to stdout for the same command
// against the same server are the same. Help texts are our own.
//
// The package keeps no global state: every invocation builds its own command
// tree bound to the given streams, so it can run many times inside one
// process (tests do). The binary cmd/kvorumctl is a thin wrapper around
// [Main].
//
// Exit codes follow etcdctl: 0 success, 1 general error (also cobra's own
// usage errors), 2 cannot create a client, 3 invalid txn or watch -i input,
// 4 a valid flag with an unsupported value (for example an output format a
// command cannot print), 5 a watch ended by the server, 128 bad
// command-line arguments; "lock <name> <command>" exits with the command's
// exit code when the command fails.
package ctl
