// Package version holds the version strings that Kvorum's binaries report.
//
// The server and kvorumctl both read them from here so that a release
// changes one file.
package version

// Version is the Kvorum release. It is a variable so that a build can stamp
// another one: go build -ldflags "-X github.com/kvorum/kvorum/internal/version.Version=0.2.0".
var Version = "0.1.0"

const (

	// APIVersion is the etcd v3 API version Kvorum implements and reports
	// to clients (for example in the Status RPC's version field).
	APIVersion = "3.7.0"

	// StorageVersion is reported in the Status RPC's storage version field,
	// which etcd clients display; Kvorum reports the etcd storage schema
	// its data model corresponds to.
	StorageVersion = "3.6.0"
)
