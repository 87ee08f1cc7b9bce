package testbin

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"testing"
	"time"
)

// A Program is a main package that Main builds before the tests run.
type Program struct {
	Pkg string  // import path of the main package
	Bin *string // set to the built binary's path
}

// Main is the TestMain of a package of multi-process tests, named suite in
// what it prints. It skips every test under -short; otherwise it builds
// progs into a temporary directory, runs the tests and exits with their
// status. Under go test -race the programs are race-built too, so that a
// race in a server shows in its log.
func Main(m *testing.M, suite string, progs ...Program) {
	os.Exit(runMain(m, suite, progs))
}

func runMain(m *testing.M, suite string, progs []Program) int {
	flag.Parse()
	if testing.Short() {
		fmt.Printf("%s: multi-process tests skipped in -short mode\n", suite)
		return 0
	}
	dir, err := os.MkdirTemp("", "kvorum-"+suite+"-bin-")
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
	for _, p := range progs {
		if *p.Bin, err = Go(ctx, dir, p.Pkg, flags...); err != nil {
			log.Printf("%s: cannot build %s: %v", suite, p.Pkg, err)
			return 1
		}
	}
	return m.Run()
}

// RaceEnabled tells whether the test binary was built with the race
// detector, so a test that builds a server of its own can build it the
// way Main built the others.
func RaceEnabled() bool { return raceEnabled }
