package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kvorum/kvorum/internal/testbin"
)

// etcdVersion is the official release the compatibility tests compare with.
const etcdVersion = "v3.7.3"

// Binaries built once for the whole package.
var (
	kvorumBin    string // the server
	kvorumctlBin string // the CLI
)

func TestMain(m *testing.M) {
	// Under go test -race the servers are race-built too, and a race they
	// report fails the test (see checkLogs).
	testbin.Main(m, "e2e",
		testbin.Program{Pkg: "github.com/kvorum/kvorum/cmd/kvorum", Bin: &kvorumBin},
		testbin.Program{Pkg: "github.com/kvorum/kvorum/cmd/kvorumctl", Bin: &kvorumctlBin})
}

var etcdOnce struct {
	sync.Once
	etcd *testbin.Etcd
	err  error
}

// officialEtcd returns the official etcd and etcdctl binaries, building them
// on first use. Without them the test is skipped, or fails when
// KVORUM_E2E_REQUIRE_ETCD=1 (set it in CI so a broken proxy is noticed).
func officialEtcd(t *testing.T) *testbin.Etcd {
	t.Helper()
	etcdOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		etcdOnce.etcd, etcdOnce.err = testbin.OfficialEtcd(ctx, etcdVersion, func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
		})
	})
	if etcdOnce.err != nil {
		msg := fmt.Sprintf("official etcd %s is unavailable (set $%s to a directory with prebuilt etcd and etcdctl to use those): %v",
			etcdVersion, testbin.EtcdDirEnv, etcdOnce.err)
		if os.Getenv("KVORUM_E2E_REQUIRE_ETCD") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return etcdOnce.etcd
}
