package raftnode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// WALDir is where a member keeps its raft log and hard state, under its
// data dir, unless --wal-dir names another directory: in etcd's
// write-ahead log format, written by etcd's own wal package, so etcd's
// tools read it. The state machine's engine keeps no log of its own
// (storage.OpenWithBudget): the raft log is the only record of a write
// until the engine flushes it, and the log is cut only behind a flush (see
// Node.maybeCompact).
const WALDir = "member/wal"

// WALPath is the directory of a member's raft log: walDir (etcd's
// --wal-dir) if set, else WALDir in dataDir.
func WALPath(dataDir, walDir string) string {
	if walDir != "" {
		return walDir
	}
	return filepath.Join(dataDir, WALDir)
}

// Bootstrapped reports whether a member holds raft state: its write-ahead
// log in dir, or the raft log an earlier version kept in the engine (moved
// into the write-ahead log when the node loads it).
func Bootstrapped(dir string, db *pebble.DB) (bool, error) {
	if wal.Exist(dir) {
		return true, nil
	}
	return engineHoldsLog(db)
}

// stageDir is where a new write-ahead log is written before its files
// move into the log's directory (see createWAL). It is inside that
// directory, so the move stays on one file system when the directory is
// a mount point (a --wal-dir on its own disk); wal's functions look only
// at the directory's own *.wal files.
const stageDir = "creating"

// walFile is the raft log's write-ahead log. The Ready loop (save) and the
// applier (saveSnapshot) write to it; mu keeps a write and its retry after
// a full disk (which reopens the log) whole.
type walFile struct {
	mu   sync.Mutex
	w    *wal.WAL
	dir  string
	lg   *zap.Logger
	meta []byte // the log's metadata record (member and cluster ID)
	// snap is the newest snapshot record: a reopened log starts there.
	snap *walpb.Snapshot
	// failed is the error of a write that left the log unusable; every
	// later write returns it (a record written after a torn one would
	// make the log unreadable, not merely cut short).
	failed error
	// onDiskFull, if set, waits until the disk has room again; a write
	// that failed for want of space is retried once after it. stop ends
	// that wait.
	onDiskFull func()
	stop       <-chan struct{}
}

// openWAL opens the write-ahead log in dir at its newest committed
// snapshot record and reads it: the hard state and the entries after that
// record. A record torn by a crash in the middle of a write is cut off,
// as etcd does: it was never synced, so nothing acknowledged is in it.
func openWAL(dir string, meta []byte, lg *zap.Logger) (f *walFile, hs *pb.HardState, ents []*pb.Entry, err error) {
	snaps, err := wal.ValidSnapshotEntries(lg, dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read raft log %s: %w", dir, err)
	}
	snap := &walpb.Snapshot{}
	if len(snaps) > 0 {
		snap = snaps[len(snaps)-1]
	}
	for repaired := false; ; repaired = true {
		w, err := wal.Open(lg, dir, snap)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("open raft log %s: %w", dir, err)
		}
		_, hs, ents, err = w.ReadAll()
		if err == nil {
			return &walFile{w: w, dir: dir, lg: lg, meta: meta, snap: snap}, hs, ents, nil
		}
		w.Close()
		if repaired || !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, nil, fmt.Errorf("raft log %s is corrupt: %w", dir, err)
		}
		if !wal.Repair(lg, dir) {
			return nil, nil, nil, fmt.Errorf("raft log %s ends in a torn record that could not be cut off: %w", dir, err)
		}
	}
}

// createWAL writes a new write-ahead log into dir holding snap (if not
// empty), hs and ents, and opens it. The log appears whole or not at all:
// it is written in a stage directory, synced, and its files are moved into
// dir last first, so dir holds the first file (which wal.Exist and so
// Bootstrapped look for) only once every file is there.
func createWAL(dir string, meta []byte, snap *walpb.Snapshot, hs *pb.HardState, ents []*pb.Entry, lg *zap.Logger) (*walFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft log directory %s: %w", dir, err)
	}
	stage := filepath.Join(dir, stageDir)
	if err := os.RemoveAll(stage); err != nil {
		return nil, err
	}
	w, err := wal.Create(lg, stage, meta)
	if err != nil {
		return nil, fmt.Errorf("create raft log %s: %w", stage, err)
	}
	err = func() error {
		if snap.GetIndex() > 0 {
			if err := w.SaveSnapshot(snap); err != nil {
				return err
			}
		}
		if hs == nil {
			hs = &pb.HardState{}
		}
		if err := w.Save(hs, ents); err != nil {
			return err
		}
		return w.Sync()
	}()
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = moveStaged(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("create raft log %s: %w", dir, err)
	}
	f, _, _, err := openWAL(dir, meta, lg)
	return f, err
}

// moveStaged moves the files of a log written in dir's stage directory
// into dir, the last one first, and removes the stage. A crash half-way
// leaves the first file in the stage, and the next createWAL starts over.
func moveStaged(dir string) error {
	stage := filepath.Join(dir, stageDir)
	names, err := filepath.Glob(filepath.Join(stage, "*.wal"))
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("no log file in %s", stage)
	}
	slices.Sort(names)
	for i := len(names) - 1; i >= 0; i-- {
		if err := os.Rename(names[i], filepath.Join(dir, filepath.Base(names[i]))); err != nil {
			return err
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return os.RemoveAll(stage)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// save appends ents and hs, synced when raft requires it (wal.Save follows
// the same rule as Ready.MustSync).
func (f *walFile) save(hs *pb.HardState, ents []*pb.Entry) error {
	if hs == nil {
		hs = &pb.HardState{}
	}
	return f.write(func(w *wal.WAL) error { return w.Save(hs, ents) })
}

// saveSnapshot records a compaction point or an installed snapshot (the
// state up to it must be durable already). With release, it also lets go
// of the log files wholly before it, which purge then removes; an
// installed snapshot's record counts only once a hard state committing it
// follows (wal.ValidSnapshotEntries), so the files holding the record
// before it stay until the next compaction.
func (f *walFile) saveSnapshot(meta *pb.SnapshotMetadata, release bool) error {
	snap := &walpb.Snapshot{
		Index:     proto.Uint64(meta.GetIndex()),
		Term:      proto.Uint64(meta.GetTerm()),
		ConfState: meta.GetConfState(),
	}
	return f.write(func(w *wal.WAL) error {
		if err := w.SaveSnapshot(snap); err != nil {
			return err
		}
		f.snap = snap
		if !release {
			return nil
		}
		return w.ReleaseLockTo(meta.GetIndex())
	})
}

// write runs a write of the log. If it failed for want of disk space, it
// waits until the log's file system has room for a new log file and runs
// it once more on the log reopened: the wal package gives up on a log
// whose next file it could not preallocate. A half-written record at its
// end is cut off then, and writing the same entries again is harmless (a
// later entry replaces an earlier one with its index). Any other failure,
// or a second one, leaves the log failed.
func (f *walFile) write(op func(*wal.WAL) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		return f.failed
	}
	err := op(f.w)
	if err != nil && f.onDiskFull != nil && errors.Is(err, syscall.ENOSPC) {
		f.lg.Warn("raft log write found the disk full; waiting for space", zap.Error(err))
		f.w.Close()
		f.w = nil
		if err = f.waitForSpace(err); err == nil {
			var g *walFile
			if g, _, _, err = openWAL(f.dir, f.meta, f.lg); err == nil {
				f.w, f.snap = g.w, g.snap
				err = op(f.w)
			}
		}
	}
	if err != nil {
		f.failed = fmt.Errorf("raft log %s: %w", f.dir, err)
	}
	return f.failed
}

// waitForSpace waits (onDiskFull, then polling) until the log's file
// system has room for a new log file, or the node stops (returning cause).
func (f *walFile) waitForSpace(cause error) error {
	for {
		f.onDiskFull()
		var st unix.Statfs_t
		if err := unix.Statfs(f.dir, &st); err != nil || int64(st.Bavail)*st.Bsize > wal.SegmentSizeBytes {
			return nil
		}
		select {
		case <-f.stop:
			return cause
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (f *walFile) close() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.w == nil {
		return nil
	}
	err := f.w.Close()
	f.w = nil
	if f.failed == nil {
		f.failed = errors.New("raft log closed")
	}
	return err
}
