package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/snapshot"
)

// Backups is --backup-dir, --backup-interval and --backup-retention.
type Backups struct {
	Dir       string
	Interval  time.Duration // 0: no scheduled backups
	Retention int           // verified backups kept; 0 keeps all
}

// A SavedBackup is one verified backup file.
type SavedBackup struct {
	Path     string
	Revision int64
	Size     int64
}

// Backup file names: kvorum-<UTC time>-rev<revision>.db, the time fixed
// width so that names sort by age.
const (
	backupPrefix     = "kvorum-"
	backupSuffix     = ".db"
	backupTimeFormat = "20060102T150405.000Z"
	backupTempPrefix = ".kvorum-backup-"
)

// RunBackups saves a verified backup into b.Dir every b.Interval while this
// member leads (so a cluster takes one per interval, not one per member),
// then deletes the oldest beyond b.Retention. It returns when the server
// stops or stop is closed; it does nothing when b.Interval is 0.
func (s *Server) RunBackups(b Backups, stop <-chan struct{}) {
	if b.Interval <= 0 || b.Dir == "" {
		return
	}
	m := s.metrics.Backups()
	t := time.NewTicker(b.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopped:
			return
		case <-stop:
			return
		case <-t.C:
		}
		if s.node.Leader() != s.memberID {
			continue
		}
		removeStaleBackupTemps(b.Dir, time.Now().Add(-staleBackupTemp))
		start := time.Now()
		saved, err := s.SaveBackup(b.Dir)
		if errors.Is(err, ErrStopped) {
			return
		}
		s.backups.set(BackupOutcome{At: time.Now(), Saved: saved, Err: err})
		if err != nil {
			m.Failed()
			s.lg.Warn("scheduled backup failed; older backups kept", "dir", b.Dir, "error", err)
			continue
		}
		m.Succeeded(time.Now())
		s.lg.Info("scheduled backup saved", "path", saved.Path, "revision", saved.Revision,
			"size", saved.Size, "took", time.Since(start).String())
		if err := PruneBackups(b.Dir, b.Retention); err != nil {
			s.lg.Warn("could not delete old backups", "dir", b.Dir, "error", err)
		}
	}
}

// SaveBackup writes a backup of this member's state into dir and verifies
// it before giving it its final name: the file's checksum and integrity,
// then its hash against this member's HashKV at the backup's revision. A
// backup that fails any step leaves nothing behind in dir.
func (s *Server) SaveBackup(dir string) (SavedBackup, error) {
	select {
	case <-s.stopped:
		return SavedBackup{}, ErrStopped
	default:
	}
	parent := filepath.Join(s.cfg.DataDir, "member")
	removeStaleSnapshots(parent)
	work, err := os.MkdirTemp(parent, "snapshot-")
	if err != nil {
		return SavedBackup{}, fmt.Errorf("create temporary snapshot dir: %w", err)
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	go func() {
		select {
		case <-s.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	snap, err := s.kvStore().SettledSnapshot(ctx)
	if err != nil {
		return SavedBackup{}, fmt.Errorf("wait for the compaction in progress: %w", err)
	}
	rev, _, err := mvcc.StoredRevs(snap)
	if err != nil {
		snap.Close()
		return SavedBackup{}, err
	}
	dbPath := filepath.Join(work, "db")
	err = snapshot.Build(dbPath, snap, snapshot.BuildOptions{Term: s.Term(), Abort: s.stopped})
	snap.Close()
	if errors.Is(err, snapshot.ErrAborted) {
		return SavedBackup{}, ErrStopped
	}
	if err != nil {
		return SavedBackup{}, err
	}
	return saveVerified(dir, rev, time.Now(),
		func(w io.Writer) (int64, error) { return snapshot.WriteTo(w, dbPath) },
		func(path string) error { return s.verifyBackup(path, rev) })
}

// saveVerified writes a backup of revision rev taken at time at into dir
// under a temporary name, has verify check it, and only then gives it its
// final name (never replacing a file). On any error the temporary file is
// removed and dir is as before.
func saveVerified(dir string, rev int64, at time.Time, write func(io.Writer) (int64, error), verify func(path string) error) (_ SavedBackup, err error) {
	tmp, err := os.CreateTemp(dir, backupTempPrefix+"*")
	if err != nil {
		return SavedBackup{}, fmt.Errorf("create a file in backup dir %s (check it exists and is writable): %w", dir, err)
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath) // after a success, only its other name remains
	size, err := write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return SavedBackup{}, fmt.Errorf("write backup %s: %w", tmpPath, err)
	}
	if err := verify(tmpPath); err != nil {
		return SavedBackup{}, err
	}
	final := filepath.Join(dir, fmt.Sprintf("%s%s-rev%d%s", backupPrefix, at.UTC().Format(backupTimeFormat), rev, backupSuffix))
	// A link, unlike a rename, never replaces an existing file.
	if err := os.Link(tmpPath, final); err != nil {
		return SavedBackup{}, fmt.Errorf("name verified backup %s: %w", final, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return SavedBackup{Path: final, Revision: rev, Size: size}, nil
}

// verifyBackup checks the file at path: its sha256 and the integrity of its
// database, then that its hash is the hash this member reports for its
// history at rev, the revision the backup was taken at.
func (s *Server) verifyBackup(path string, rev int64) error {
	f, err := snapshot.Open(path, false)
	if err != nil {
		return fmt.Errorf("verify backup: %w", err)
	}
	defer f.Close()
	if _, err := f.Status(); err != nil {
		return fmt.Errorf("verify backup: %w", err)
	}
	got, fileRev, _, err := f.HashKV()
	if err != nil {
		return fmt.Errorf("verify backup: %w", err)
	}
	if fileRev > rev {
		return fmt.Errorf("verify backup %s: it holds revision %d, beyond the revision %d it was taken at", path, fileRev, rev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want, _, compactRev, err := s.kvStore().HashKV(ctx, rev)
	if err != nil {
		return fmt.Errorf("verify backup %s: the member's hash at revision %d: %w", path, rev, err)
	}
	if got != want {
		return fmt.Errorf("verify backup %s: its hash %d differs from the member's %d at revision %d (compacted meanwhile to %d?)", path, got, want, rev, compactRev)
	}
	return nil
}

// PruneBackups deletes the oldest backups in dir so that keep remain
// (keep <= 0 keeps all). Only files named as RunBackups names them count.
func PruneBackups(dir string, keep int) error {
	if keep <= 0 {
		return nil
	}
	names, err := ListBackups(dir)
	if err != nil {
		return err
	}
	var errs []error
	for len(names) > keep {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			errs = append(errs, err)
		}
		names = names[1:]
	}
	return errors.Join(errs...)
}

// staleBackupTemp is how long a temporary backup file may go unmodified
// before it counts as left behind by a crash (one being written or
// verified is touched far more often).
const staleBackupTemp = time.Hour

// removeStaleBackupTemps removes the temporary backup files in dir last
// modified before cutoff: a member that crashed while saving left them.
func removeStaleBackupTemps(dir string, cutoff time.Time) {
	stale, _ := filepath.Glob(filepath.Join(dir, backupTempPrefix+"*"))
	for _, p := range stale {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
			os.Remove(p)
		}
	}
}

// ListBackups lists the names of the backups in dir, oldest first.
func ListBackups(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, backupPrefix) && strings.HasSuffix(n, backupSuffix) && strings.Contains(n, "-rev") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}
