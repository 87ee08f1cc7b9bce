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

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/member"
	"github.com/kvorum/kvorum/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := config.ParseEnviron(args, os.Environ())
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(os.Stdout, config.Usage())
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
	lg := newLogger(cfg.LogLevel)
	lg.Info("starting kvorum", "version", version.Version, "etcd-api-version", version.APIVersion)
	for _, f := range cfg.Ignored {
		lg.Warn("flag accepted for etcd compatibility but has no effect in Kvorum", "flag", f)
	}
	for _, w := range cfg.Warnings {
		lg.Warn(w)
	}
	m, err := member.Start(cfg, lg)
	if err != nil {
		lg.Error("cannot start member", "err", err)
		fmt.Fprintf(os.Stderr, "kvorum: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
		lg.Info("received signal, stopping", "name", cfg.Name)
		m.Stop()
		return 0
	case <-m.Done():
		lg.Error("member stopped on its own (see errors above)")
		m.Stop()
		return 1
	}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error", "panic", "fatal":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
