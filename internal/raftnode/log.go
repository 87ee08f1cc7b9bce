package raftnode

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// raftLog keeps the raft log in its write-ahead log (walFile) and mirrors
// the part since the last compaction point in a raft.MemoryStorage, which
// raft reads from.
type raftLog struct {
	f  *walFile   // nil until a new member saves its first raft state
	db *pebble.DB // the engine, which records that the log exists (storage.RaftLogKey)
	// created is closed once f is set.
	created chan struct{}
	dir     string // the write-ahead log's directory
	// meta is the write-ahead log's metadata record, and lg and onDiskFull
	// are handed to it (see walFile).
	meta       []byte
	lg         *zap.Logger
	onDiskFull func()
	stop       <-chan struct{}

	mem  *raft.MemoryStorage
	last uint64 // index of the last entry written to the log
	// observer, if set, hears how long each synced write took.
	observer Observer
	// savedCommit is the commit index of the last hard state written to
	// the log. The Ready loop writes it; the applier reads it, because a
	// compaction point must not pass it: committed entries are applied while
	// the hard state that commits them is still being written, and a
	// restart with a compaction point past the stored commit index would
	// make raft refuse the log.
	savedCommit atomic.Uint64
	// bytes is the encoded size of the entries mem holds, for the memory
	// metrics. The Ready loop (save) and the applier (compact) change it
	// for disjoint index ranges: compaction never passes the applied
	// index, and a new leader only overwrites uncommitted entries.
	bytes atomic.Int64
}

// logConfig is where a member's raft log lives and what its write-ahead
// log is told.
type logConfig struct {
	dir        string     // the write-ahead log's directory
	db         *pebble.DB // the engine, which held the raft log before WALDir
	meta       []byte
	lg         *zap.Logger
	onDiskFull func()
	stop       <-chan struct{} // ends a wait for disk space
}

// loadRaftLog reads the raft log into memory. fresh reports that there is
// no raft state at all (a new member). A raft log an earlier version kept
// in the engine is moved into the write-ahead log first.
func loadRaftLog(c logConfig) (l *raftLog, fresh bool, err error) {
	if c.lg == nil {
		c.lg = zap.NewNop()
	}
	l = &raftLog{db: c.db, dir: c.dir, meta: c.meta, lg: c.lg, onDiskFull: c.onDiskFull, stop: c.stop, mem: raft.NewMemoryStorage(), created: make(chan struct{})}
	inEngine, err := engineHoldsLog(c.db)
	if err != nil {
		return nil, false, err
	}
	switch {
	case wal.Exist(l.dir) && inEngine:
		// A crash while an earlier version's log moved out of the engine
		// left the engine's copy: it must not come back later as raft
		// state (an old term and vote) if this log went missing.
		if err := retireEngineLog(c.db, l.dir); err != nil {
			return nil, false, err
		}
	case !wal.Exist(l.dir) && inEngine:
		old, err := loadEngineLog(c.db)
		if err != nil {
			return nil, false, err
		}
		if err := moveEngineLog(c, l.dir, old); err != nil {
			return nil, false, err
		}
	case !wal.Exist(l.dir):
		return l, true, nil
	}
	f, hs, ents, err := openWAL(l.dir, l.meta, l.lg)
	if err != nil {
		return nil, false, err
	}
	f.onDiskFull, f.stop = l.onDiskFull, l.stop
	l.f = f
	close(l.created)
	if f.snap.GetIndex() == 0 && len(ents) == 0 && (hs == nil || raft.IsEmptyHardState(hs)) {
		// A log holds its first state from the moment it exists
		// (createWAL); one without any was emptied (repaired down to
		// nothing, say): no raft state, as for a new member.
		return l, true, nil
	}
	if v, err := storage.Get(c.db, storage.RaftLogKey); err != nil {
		return nil, false, err
	} else if v == nil { // a crash came right after the log was created
		if err := retireEngineLog(c.db, l.dir); err != nil {
			return nil, false, err
		}
	}
	if idx := f.snap.GetIndex(); idx > 0 {
		meta := &pb.SnapshotMetadata{Index: proto.Uint64(idx), Term: proto.Uint64(f.snap.GetTerm()), ConfState: f.snap.GetConfState()}
		if err := l.mem.ApplySnapshot(&pb.Snapshot{Metadata: meta}); err != nil {
			return nil, false, fmt.Errorf("load raft log compaction point: %w", err)
		}
		l.last = idx
	}
	if len(ents) > 0 {
		if err := l.mem.Append(ents); err != nil {
			return nil, false, fmt.Errorf("load raft log: %w", err)
		}
		l.last = ents[len(ents)-1].GetIndex()
		l.bytes.Store(entriesSize(ents))
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		if err := l.mem.SetHardState(hs); err != nil {
			return nil, false, err
		}
		l.savedCommit.Store(hs.GetCommit())
	}
	return l, false, nil
}

// moveEngineLog writes the raft log an earlier version kept in the engine
// (old) into a new write-ahead log in dir, then deletes it from the
// engine. A crash in between leaves both; the write-ahead log is used and
// the engine's copy deleted at the next start (see loadRaftLog).
func moveEngineLog(c logConfig, dir string, old *raftLog) error {
	snap, _ := old.mem.Snapshot()
	hs, _, _ := old.mem.InitialState()
	first, _ := old.mem.FirstIndex()
	ents, err := old.mem.Entries(first, old.last+1, math.MaxUint64)
	if err != nil && !errors.Is(err, raft.ErrCompacted) {
		return err
	}
	meta := snap.GetMetadata()
	ws := &walpb.Snapshot{Index: proto.Uint64(meta.GetIndex()), Term: proto.Uint64(meta.GetTerm()), ConfState: meta.GetConfState()}
	f, err := createWAL(dir, c.meta, ws, hs, ents, c.lg)
	if err != nil {
		return fmt.Errorf("move the raft log out of the engine: %w", err)
	}
	if err := f.close(); err != nil {
		return err
	}
	return retireEngineLog(c.db, dir)
}

// engineHoldsLog reports whether the engine holds a raft log an earlier
// version kept there.
func engineHoldsLog(db *pebble.DB) (bool, error) {
	hs, meta, err := engineLogState(db)
	return meta != nil || hs != nil && !bytes.Equal(hs, storage.LogMovedHardState), err
}

// engineLogState reads the hard state and compaction point an earlier
// version kept in the engine (nil where there is none).
func engineLogState(db *pebble.DB) (hs, meta []byte, err error) {
	if hs, err = storage.Get(db, storage.HardStateKey); err != nil {
		return nil, nil, err
	}
	meta, err = storage.Get(db, storage.SnapshotMetaKey)
	return hs, meta, err
}

// retireEngineLog records in the engine, durably, that the raft log lives
// in dir: it deletes any raft log an earlier version kept there, and puts
// storage.LogMovedHardState where such a version looks for its hard state,
// so that it refuses the data dir.
func retireEngineLog(db *pebble.DB, dir string) error {
	b := db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(storage.EntryKey(0), storage.EntryKey(math.MaxUint64), nil); err != nil {
		return err
	}
	if err := b.Delete(storage.SnapshotMetaKey, nil); err != nil {
		return err
	}
	if err := b.Set(storage.HardStateKey, storage.LogMovedHardState, nil); err != nil {
		return err
	}
	if err := b.Set(storage.RaftLogKey, []byte(dir), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return db.Flush()
}

// loadEngineLog reads the raft log an earlier version kept in the engine
// (engineHoldsLog).
func loadEngineLog(db *pebble.DB) (l *raftLog, err error) {
	l = &raftLog{mem: raft.NewMemoryStorage()}
	hsBytes, metaBytes, err := engineLogState(db)
	if err != nil {
		return nil, err
	}
	if metaBytes != nil {
		meta := &pb.SnapshotMetadata{}
		if err := proto.Unmarshal(metaBytes, meta); err != nil {
			return nil, fmt.Errorf("raft snapshot metadata is corrupt: %w", err)
		}
		if err := l.mem.ApplySnapshot(&pb.Snapshot{Metadata: meta}); err != nil {
			return nil, fmt.Errorf("load raft snapshot metadata: %w", err)
		}
		l.last = meta.GetIndex()
	}
	first, _ := l.mem.FirstIndex()
	iter, err := db.NewIter(&pebble.IterOptions{
		LowerBound: storage.EntryKey(first),
		UpperBound: storage.EntryKey(^uint64(0)),
	})
	if err != nil {
		return nil, err
	}
	defer iter.Close()
	var ents []*pb.Entry
	for iter.First(); iter.Valid(); iter.Next() {
		idx, err := storage.EntryKeyIndex(iter.Key())
		if err != nil {
			return nil, err
		}
		e := &pb.Entry{}
		if err := proto.Unmarshal(iter.Value(), e); err != nil {
			return nil, fmt.Errorf("raft log entry %d is corrupt: %w", idx, err)
		}
		if e.GetIndex() != idx || (len(ents) > 0 && idx != ents[len(ents)-1].GetIndex()+1) {
			return nil, fmt.Errorf("raft log is corrupt: entry key %d holds index %d", idx, e.GetIndex())
		}
		ents = append(ents, e)
	}
	if err := iter.Error(); err != nil {
		return nil, err
	}
	if len(ents) > 0 {
		if ents[0].GetIndex() != first {
			return nil, fmt.Errorf("raft log is corrupt: first entry %d, expected %d", ents[0].GetIndex(), first)
		}
		if err := l.mem.Append(ents); err != nil {
			return nil, fmt.Errorf("load raft log: %w", err)
		}
		l.last = ents[len(ents)-1].GetIndex()
	}
	if hsBytes != nil {
		hs := &pb.HardState{}
		if err := proto.Unmarshal(hsBytes, hs); err != nil {
			return nil, fmt.Errorf("raft hard state is corrupt: %w", err)
		}
		if snap, _ := l.mem.Snapshot(); hs.GetCommit() < snap.GetMetadata().GetIndex() {
			// Written by a version that could compact past the stored
			// commit index (see savedCommit). The compaction point was
			// applied, so it is committed: raise the commit index to it.
			hs.Commit = proto.Uint64(snap.GetMetadata().GetIndex())
		}
		if err := l.mem.SetHardState(hs); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// save persists hard state and entries (a later entry replaces an earlier
// one with its index, so a conflicting tail is overwritten), synced when
// raft requires it, then mirrors them in memory.
func (l *raftLog) save(hs *pb.HardState, ents []*pb.Entry, sync bool) error {
	if (hs == nil || raft.IsEmptyHardState(hs)) && len(ents) == 0 {
		return nil
	}
	start := time.Now()
	if l.f == nil {
		if err := l.create(nil, hs, ents); err != nil {
			return err
		}
	} else if err := l.f.save(hs, ents); err != nil {
		return fmt.Errorf("persist raft log: %w", err)
	}
	if sync && l.observer != nil {
		l.observer.Synced(time.Since(start))
	}
	if len(ents) > 0 {
		// Entries at or after the first new one are replaced; those below
		// the first index mem keeps are not stored by Append.
		first, _ := l.mem.FirstIndex()
		if lo := max(ents[0].GetIndex(), first); lo <= l.last {
			if old, err := l.mem.Entries(lo, l.last+1, math.MaxUint64); err == nil {
				l.bytes.Add(-entriesSize(old))
			}
		}
		l.last = ents[len(ents)-1].GetIndex()
		if err := l.mem.Append(ents); err != nil {
			return err
		}
		var added int64
		for _, e := range ents {
			if e.GetIndex() >= first {
				added += int64(proto.Size(e))
			}
		}
		l.bytes.Add(added)
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		if err := l.mem.SetHardState(hs); err != nil {
			return err
		}
		l.savedCommit.Store(hs.GetCommit())
	}
	return nil
}

// create writes a new member's first raft state: the write-ahead log
// appears with it (see createWAL).
func (l *raftLog) create(meta *pb.SnapshotMetadata, hs *pb.HardState, ents []*pb.Entry) error {
	ws := &walpb.Snapshot{Index: proto.Uint64(meta.GetIndex()), Term: proto.Uint64(meta.GetTerm()), ConfState: meta.GetConfState()}
	f, err := createWAL(l.dir, l.meta, ws, hs, ents, l.lg)
	if err != nil {
		return err
	}
	f.onDiskFull, f.stop = l.onDiskFull, l.stop
	l.f = f
	close(l.created)
	// The engine records that the log exists, durably: from now on a
	// start that finds no log refuses instead of beginning an empty one.
	return retireEngineLog(l.db, l.dir)
}

// applySnapshot records an installed snapshot (whose state is durable
// already) and drops every log entry it covers.
func (l *raftLog) applySnapshot(snap *pb.Snapshot) error {
	meta := snap.GetMetadata()
	if l.f == nil {
		if err := l.create(meta, nil, nil); err != nil {
			return err
		}
	} else if err := l.f.saveSnapshot(meta, false); err != nil {
		return err
	}
	if err := l.mem.ApplySnapshot(snap); err != nil {
		return err
	}
	l.bytes.Store(0) // a snapshot replaces every entry
	if l.last < meta.GetIndex() {
		l.last = meta.GetIndex()
	}
	return nil
}

// compact records a compaction point at index (whose state must already be
// durable). It removes the entries below keepFrom from memory, where the
// ones kept serve followers that are a little behind; the write-ahead log
// lets go of its files wholly before index (purge removes them).
func (l *raftLog) compact(index uint64, cs *pb.ConfState, keepFrom uint64) error {
	snap, err := l.mem.CreateSnapshot(index, cs, nil)
	if err != nil {
		return err
	}
	if err := l.f.saveSnapshot(snap.GetMetadata(), true); err != nil {
		return err
	}
	if keepFrom > 1 {
		var dropped int64
		if first, _ := l.mem.FirstIndex(); first < keepFrom {
			if old, err := l.mem.Entries(first, keepFrom, math.MaxUint64); err == nil {
				dropped = entriesSize(old)
			}
		}
		if err := l.mem.Compact(keepFrom - 1); err != nil && err != raft.ErrCompacted {
			return err
		}
		l.bytes.Add(-dropped)
	}
	return nil
}

// keepWithin moves keepFrom up so that the entries kept for followers,
// keepFrom..applied, take at most limit bytes. A follower that needs an
// entry before it gets a snapshot instead. Only the applier calls it: the
// entries up to applied are committed and no longer change.
func (l *raftLog) keepWithin(keepFrom, applied uint64, limit int64) uint64 {
	if keepFrom > applied {
		return keepFrom
	}
	ents, err := l.mem.Entries(keepFrom, applied+1, math.MaxUint64)
	if err != nil {
		return keepFrom
	}
	var kept int64
	for i := len(ents) - 1; i >= 0; i-- {
		kept += int64(proto.Size(ents[i]))
		if kept > limit {
			return ents[i].GetIndex() + 1
		}
	}
	return keepFrom
}

// entriesSize is the encoded size of ents.
func entriesSize(ents []*pb.Entry) int64 {
	var n int64
	for _, e := range ents {
		n += int64(proto.Size(e))
	}
	return n
}
