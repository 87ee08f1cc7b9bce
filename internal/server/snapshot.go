package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kvorum/kvorum/internal/snapshot"
)

// processStart tells the temporary snapshot dirs of this process from
// those a crash of an earlier one left behind.
var processStart = time.Now()

// BuildSnapshot writes a backup database in etcd's format (see package
// snapshot) from one Pebble snapshot of the state machine: writes go on
// meanwhile, and the backup holds exactly the state at one applied index.
// The database lives in a temporary directory under the data dir; call
// cleanup when done with it. A build under way when the server stops
// fails rather than outlive the engine.
//
// The history it holds is compacted up to the compact revision; a build
// during a compaction waits for its steps until ctx ends.
func (s *Server) BuildSnapshot(ctx context.Context) (dbPath string, cleanup func(), err error) {
	parent := filepath.Join(s.cfg.DataDir, "member")
	removeStaleSnapshots(parent)
	dir, err := os.MkdirTemp(parent, "snapshot-")
	if err != nil {
		return "", nil, fmt.Errorf("create temporary snapshot dir: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	select {
	case <-s.stopped:
		cleanup()
		return "", nil, ErrStopped
	default:
	}
	snap, err := s.kvStore().SettledSnapshot(ctx)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	defer snap.Close()
	dbPath = filepath.Join(dir, "db")
	if err := snapshot.Build(dbPath, snap, snapshot.BuildOptions{Term: s.Term(), Abort: s.stopped}); err != nil {
		cleanup()
		if errors.Is(err, snapshot.ErrAborted) {
			return "", nil, ErrStopped
		}
		return "", nil, err
	}
	return dbPath, cleanup, nil
}

// removeStaleSnapshots removes the temporary snapshot dirs an earlier
// process left in parent (it crashed while sending a snapshot).
func removeStaleSnapshots(parent string) {
	stale, _ := filepath.Glob(filepath.Join(parent, "snapshot-*"))
	for _, d := range stale {
		if fi, err := os.Stat(d); err == nil && fi.ModTime().Before(processStart) {
			os.RemoveAll(d)
		}
	}
}
