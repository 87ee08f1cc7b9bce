// Package version holds the version strings that Kvorum's binaries report.
//
// The server and kvorumctl both read them from here so that a release
// changes one file.
package version

const (
	// Version is the Kvorum release.
	Version = "0.1.0"

	// APIVersion is the etcd v3 API version Kvorum implements and reports
	// to clients (for example in the Status RPC's version field).
	APIVersion = "3.7.0"

	// StorageVersion is reported in the Status RPC's storage version field,
	// which etcd clients display; Kvorum reports the etcd storage schema
	// its data model corresponds to.
	StorageVersion = "3.6.0"
)
