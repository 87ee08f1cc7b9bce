// Package config turns the server's command line, environment and config
// file into one validated Config, accepting everything etcd accepts.
//
// Kvorum is a drop-in replacement for etcd, so this package takes etcd's
// flags (--name, --initial-cluster, the TLS flags, ...), etcd's environment
// variables (ETCD_<FLAG>, and KVORUM_<FLAG> before them) and etcd's YAML
// config file keys, with etcd's defaults and precedence. Every flag etcd 3.5,
// 3.6 or 3.7 accepts is accepted, so an existing systemd unit or static pod
// manifest starts unchanged; the flags Kvorum does not act on yet are listed
// in Config.Ignored for the server to warn about, rather than refused.
//
// Parse (or ParseEnviron, which also sees unknown variables) is the only
// entry point; it returns either a Config that Validate accepts or an error
// of one line that names the input at fault and what to do about it. The
// package does no I/O beyond reading the config file, and keeps no state.
//
// Where Kvorum departs from etcd it does so on purpose:
//
//   - the default data directory is ${name}.kvorum, not ${name}.etcd, since
//     the data format differs;
//   - an unknown key in the config file is an error (etcd skips it);
//   - a flag given together with its environment variable is a warning
//     (etcd refuses to start);
//   - bootstrap by discovery (--discovery-srv, --discovery-endpoints) and the
//     v2 proxy are refused, because ignoring them would bootstrap a
//     one-member cluster instead;
//   - without --initial-cluster, the cluster is this member alone under any
//     --name and --initial-advertise-peer-urls (etcd does this only for a
//     non-default name);
//   - the initial cluster is checked against the advertised peer URLs as
//     written, without DNS lookups.
package config
