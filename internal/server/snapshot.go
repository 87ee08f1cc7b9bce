package server

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kvorum/kvorum/internal/snapshot"
)

// BuildSnapshot writes a backup database in etcd's format (see package
// snapshot) from one Pebble snapshot of the state machine: writes go on
// meanwhile, and the backup holds exactly the state at one applied index.
// The database lives in a temporary directory under the data dir; call
// cleanup when done with it.
func (s *Server) BuildSnapshot() (dbPath string, cleanup func(), err error) {
	dir, err := os.MkdirTemp(filepath.Join(s.cfg.DataDir, "member"), "snapshot-")
	if err != nil {
		return "", nil, fmt.Errorf("create temporary snapshot dir: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	snap := s.db.NewSnapshot()
	defer snap.Close()
	dbPath = filepath.Join(dir, "db")
	if err := snapshot.Build(dbPath, snap, snapshot.BuildOptions{Term: s.Term()}); err != nil {
		cleanup()
		return "", nil, err
	}
	return dbPath, cleanup, nil
}
