package raftnode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// WALDir is where a member keeps its raft log and hard state, under its
// data dir: in etcd's write-ahead log format, written by etcd's own wal
// package, so etcd's tools read it. The state machine's engine keeps no
// log of its own (storage.OpenWithBudget): the raft log is the only
// record of a write until the engine flushes it, and the log is cut only
// behind a flush (see Node.maybeCompact).
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
	v, err := storage.Get(db, storage.HardStateKey)
	return v != nil, err
}

// walFile is the raft log's write-ahead log. Its writes go through save,
// saveSnapshot and release, from the Ready loop and the applier; the wal
// package serializes them.
type walFile struct {
	w    *wal.WAL
	dir  string
	lg   *zap.Logger
	meta []byte // the log's metadata record (member and cluster ID)
	// snap is the newest snapshot record: a reopened log starts there.
	snap *walpb.Snapshot
	// onDiskFull, if set, waits until the disk has room again; a write
	// that failed for want of space is retried once after it.
	onDiskFull func()
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
// it is written beside dir and renamed, so dir exists only with the first
// raft state in it (Bootstrapped relies on that).
func createWAL(dir string, meta []byte, snap *walpb.Snapshot, hs *pb.HardState, ents []*pb.Entry, lg *zap.Logger) (*walFile, error) {
	stage := dir + ".new"
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
		err = os.Rename(stage, dir)
	}
	if err == nil {
		err = syncDir(filepath.Dir(dir))
	}
	if err != nil {
		os.RemoveAll(stage)
		return nil, fmt.Errorf("create raft log %s: %w", dir, err)
	}
	f, _, _, err := openWAL(dir, meta, lg)
	return f, err
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
	return f.retry(func() error { return f.w.Save(hs, ents) })
}

// saveSnapshot records a compaction point or an installed snapshot (the
// state up to it must be durable already) and lets go of the log files
// wholly before it, which purge then removes.
func (f *walFile) saveSnapshot(meta *pb.SnapshotMetadata) error {
	snap := &walpb.Snapshot{
		Index:     proto.Uint64(meta.GetIndex()),
		Term:      proto.Uint64(meta.GetTerm()),
		ConfState: meta.GetConfState(),
	}
	if err := f.retry(func() error { return f.w.SaveSnapshot(snap) }); err != nil {
		return err
	}
	f.snap = snap
	return f.w.ReleaseLockTo(meta.GetIndex())
}

// retry runs a write; if it failed for want of disk space, it waits for
// space (onDiskFull) and runs it once more on the log reopened. The wal
// package gives up on a log whose next file it could not preallocate, so
// the log must be reopened; a half-written record at its end is cut off
// then, and writing the same entries again is harmless (a later entry
// replaces an earlier one with its index).
func (f *walFile) retry(write func() error) error {
	err := write()
	if err == nil || f.onDiskFull == nil || !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	f.lg.Warn("raft log write found the disk full; waiting for space", zap.Error(err))
	f.onDiskFull()
	f.w.Close()
	g, _, _, oerr := openWAL(f.dir, f.meta, f.lg)
	if oerr != nil {
		return fmt.Errorf("%w (and reopening the raft log after it: %v)", err, oerr)
	}
	f.w = g.w
	f.snap = g.snap
	return write()
}

func (f *walFile) close() error {
	if f == nil || f.w == nil {
		return nil
	}
	return f.w.Close()
}
