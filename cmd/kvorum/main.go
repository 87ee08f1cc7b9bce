// Command kvorum runs one member of a Kvorum cluster. It takes etcd's
// flags, config file and environment variables (KVORUM_* or ETCD_*).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"google.golang.org/grpc/grpclog"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/logging"
	"github.com/kvorum/kvorum/internal/member"
	"github.com/kvorum/kvorum/internal/membudget"
	"github.com/kvorum/kvorum/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// The server takes etcd's flags, none of which is a bare word, so a
	// first argument naming a subcommand cannot be a flag of the server.
	if len(args) > 0 && args[0] == "local-cluster" {
		return runLocalCluster(args[1:])
	}
	cfg, err := config.ParseEnviron(args, os.Environ())
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(os.Stdout, config.Usage())
		fmt.Fprint(os.Stdout, "\nSubcommand:\n  kvorum local-cluster [--members N]   run a local cluster of N members (see kvorum local-cluster --help)\n")
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvorum: %v\n", err)
		return 1
	}
	if cfg.PrintVersion {
		fmt.Printf("kvorum Version: %s\netcd API Version: %s\nGo Version: %s\n", version.Version, version.APIVersion, runtime.Version())
		return 0
	}
	lg, closeLog, err := logging.New(logging.Config{Level: cfg.LogLevel, Format: cfg.LogFormat, Outputs: cfg.LogOutputs})
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvorum: %v\n", err)
		return 1
	}
	defer closeLog()
	slog.SetDefault(lg)
	if gl, ok := logging.GRPCLogger(lg); ok {
		grpclog.SetLoggerV2(gl)
	}
	lg.Info("starting kvorum", "version", version.Version, "etcd-api-version", version.APIVersion)
	for _, f := range cfg.Ignored {
		lg.Warn("flag accepted for etcd compatibility but has no effect in Kvorum", "flag", f)
	}
	for _, w := range cfg.Warnings {
		lg.Warn(w)
	}
	// The Go heap's share of the memory budget becomes the runtime's soft
	// limit: one member per process here (tests and local-cluster run
	// several in one process and leave the limit alone).
	budget := membudget.Split(cfg.MemoryBudgetBytes)
	lg.Info("memory budget", "budget-bytes", budget.Total, "block-cache-bytes", budget.BlockCache,
		"memtable-bytes", budget.MemTable, "go-memory-limit-bytes", membudget.SetGoLimit(budget),
		"c-allocator-tuned", membudget.TrimAllocator())
	m, err := member.Start(cfg, lg)
	if err != nil {
		lg.Error("cannot start member", "err", err)
		fmt.Fprintf(os.Stderr, "kvorum: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	stopSystemd := notifySystemd(lg, m)
	select {
	case <-ctx.Done():
		lg.Info("received signal, stopping", "name", cfg.Name)
		stopSystemd()
		m.Stop()
		return 0
	case <-m.Done():
		lg.Error("member stopped on its own (see errors above)")
		stopSystemd()
		m.Stop()
		return 1
	}
}
