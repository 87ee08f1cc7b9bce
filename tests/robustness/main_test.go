package robustness

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"github.com/kvorum/kvorum/internal/testbin"
)

// kvorumBin is the server, built once for the package.
var kvorumBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("robustness: multi-process tests skipped in -short mode")
		return 0
	}
	dir, err := os.MkdirTemp("", "kvorum-robustness-bin-")
	if err != nil {
		log.Print(err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var flags []string
	if raceEnabled {
		flags = append(flags, "-race")
	}
	kvorumBin, err = testbin.Go(ctx, dir, "github.com/kvorum/kvorum/cmd/kvorum", flags...)
	if err != nil {
		log.Printf("robustness: cannot build the kvorum server: %v", err)
		return 1
	}
	return m.Run()
}
