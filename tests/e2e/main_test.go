package e2e

import (
	"context"
	"flag"
	"fmt"
	"log"
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
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: multi-process tests skipped in -short mode")
		return 0
	}
	dir, err := os.MkdirTemp("", "kvorum-e2e-bin-")
	if err != nil {
		log.Print(err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Under go test -race the servers are race-built too, and a race they
	// report fails the test (see checkNoPanic).
	var flags []string
	if raceEnabled {
		flags = append(flags, "-race")
	}
	kvorumBin, err = testbin.Go(ctx, dir, "github.com/kvorum/kvorum/cmd/kvorum", flags...)
	if err != nil {
		log.Printf("e2e: cannot build the kvorum server: %v", err)
		return 1
	}
	kvorumctlBin, err = testbin.Go(ctx, dir, "github.com/kvorum/kvorum/cmd/kvorumctl", flags...)
	if err != nil {
		log.Printf("e2e: cannot build kvorumctl: %v", err)
		return 1
	}
	return m.Run()
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
