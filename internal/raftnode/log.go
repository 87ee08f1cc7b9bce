package raftnode

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// raftLog keeps the raft log in the engine and mirrors the part since the
// last compaction point in a raft.MemoryStorage, which raft reads from.
type raftLog struct {
	db   *pebble.DB
	mem  *raft.MemoryStorage
	last uint64 // index of the last entry written to the engine
	// observer, if set, hears how long each synced write took.
	observer Observer
	// savedCommit is the commit index of the last hard state written to
	// the engine. The Ready loop writes it; the applier reads it, because a
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

// loadRaftLog rebuilds the in-memory log from the engine. fresh reports
// that the engine holds no raft state at all (a new member).
func loadRaftLog(db *pebble.DB) (l *raftLog, fresh bool, err error) {
	l = &raftLog{db: db, mem: raft.NewMemoryStorage()}
	hsBytes, err := storage.Get(db, storage.HardStateKey)
	if err != nil {
		return nil, false, err
	}
	metaBytes, err := storage.Get(db, storage.SnapshotMetaKey)
	if err != nil {
		return nil, false, err
	}
	if hsBytes == nil && metaBytes == nil {
		return l, true, nil
	}
	if metaBytes != nil {
		meta := &pb.SnapshotMetadata{}
		if err := proto.Unmarshal(metaBytes, meta); err != nil {
			return nil, false, fmt.Errorf("raft snapshot metadata is corrupt: %w", err)
		}
		if err := l.mem.ApplySnapshot(&pb.Snapshot{Metadata: meta}); err != nil {
			return nil, false, fmt.Errorf("load raft snapshot metadata: %w", err)
		}
		l.last = meta.GetIndex()
	}
	first, _ := l.mem.FirstIndex()
	iter, err := db.NewIter(&pebble.IterOptions{
		LowerBound: storage.EntryKey(first),
		UpperBound: storage.EntryKey(^uint64(0)),
	})
	if err != nil {
		return nil, false, err
	}
	defer iter.Close()
	var ents []*pb.Entry
	for iter.First(); iter.Valid(); iter.Next() {
		idx, err := storage.EntryKeyIndex(iter.Key())
		if err != nil {
			return nil, false, err
		}
		e := &pb.Entry{}
		if err := proto.Unmarshal(iter.Value(), e); err != nil {
			return nil, false, fmt.Errorf("raft log entry %d is corrupt: %w", idx, err)
		}
		if e.GetIndex() != idx || (len(ents) > 0 && idx != ents[len(ents)-1].GetIndex()+1) {
			return nil, false, fmt.Errorf("raft log is corrupt: entry key %d holds index %d", idx, e.GetIndex())
		}
		ents = append(ents, e)
	}
	if err := iter.Error(); err != nil {
		return nil, false, err
	}
	if len(ents) > 0 {
		if ents[0].GetIndex() != first {
			return nil, false, fmt.Errorf("raft log is corrupt: first entry %d, expected %d", ents[0].GetIndex(), first)
		}
		if err := l.mem.Append(ents); err != nil {
			return nil, false, fmt.Errorf("load raft log: %w", err)
		}
		l.last = ents[len(ents)-1].GetIndex()
		l.bytes.Store(entriesSize(ents))
	}
	if hsBytes != nil {
		hs := &pb.HardState{}
		if err := proto.Unmarshal(hsBytes, hs); err != nil {
			return nil, false, fmt.Errorf("raft hard state is corrupt: %w", err)
		}
		if snap, _ := l.mem.Snapshot(); hs.GetCommit() < snap.GetMetadata().GetIndex() {
			// Written by a version that could compact past the stored
			// commit index (see savedCommit). The compaction point was
			// applied, so it is committed: raise the commit index to it.
			hs.Commit = proto.Uint64(snap.GetMetadata().GetIndex())
		}
		if err := l.mem.SetHardState(hs); err != nil {
			return nil, false, err
		}
		l.savedCommit.Store(hs.GetCommit())
	}
	return l, false, nil
}

// save persists hard state and entries (truncating a conflicting tail) in
// one batch, synced when sync is set, then mirrors them in memory.
func (l *raftLog) save(hs *pb.HardState, ents []*pb.Entry, sync bool) error {
	if (hs == nil || raft.IsEmptyHardState(hs)) && len(ents) == 0 {
		return nil
	}
	b := l.db.NewBatch()
	defer b.Close()
	if hs != nil && !raft.IsEmptyHardState(hs) {
		v, err := proto.Marshal(hs)
		if err != nil {
			return err
		}
		if err := b.Set(storage.HardStateKey, v, nil); err != nil {
			return err
		}
	}
	newLast := l.last
	first, _ := l.mem.FirstIndex()
	added := int64(0) // encoded size of the entries mem will hold
	var key, v []byte // reused: the batch copies what it is given
	for _, e := range ents {
		var err error
		if v, err = (proto.MarshalOptions{}).MarshalAppend(v[:0], e); err != nil {
			return err
		}
		key = storage.AppendEntryKey(key[:0], e.GetIndex())
		if err := b.Set(key, v, nil); err != nil {
			return err
		}
		if e.GetIndex() >= first {
			added += int64(len(v))
		}
		newLast = e.GetIndex()
	}
	if len(ents) > 0 && newLast < l.last {
		// A new leader overwrote our tail: drop the entries past it.
		if err := b.DeleteRange(storage.EntryKey(newLast+1), storage.EntryKey(l.last+1), nil); err != nil {
			return err
		}
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	start := time.Now()
	if err := b.Commit(opts); err != nil {
		return fmt.Errorf("persist raft log: %w", err)
	}
	if sync && l.observer != nil {
		l.observer.Synced(time.Since(start))
	}
	if len(ents) > 0 {
		// Entries at or after the first new one are replaced; those below
		// the first index mem keeps are not stored by Append.
		if lo := max(ents[0].GetIndex(), first); lo <= l.last {
			if old, err := l.mem.Entries(lo, l.last+1, math.MaxUint64); err == nil {
				l.bytes.Add(-entriesSize(old))
			}
		}
		l.last = newLast
		if err := l.mem.Append(ents); err != nil {
			return err
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

// applySnapshot records an installed snapshot's metadata and drops every
// log entry it covers.
func (l *raftLog) applySnapshot(snap *pb.Snapshot) error {
	meta := snap.GetMetadata()
	if err := l.trimEngine(meta, pebble.Sync); err != nil {
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
// ones kept serve followers that are a little behind, and every entry up to
// index from the engine: a member restarts with its log starting after its
// compaction point, so the engine never reads them again.
func (l *raftLog) compact(index uint64, cs *pb.ConfState, keepFrom uint64) error {
	snap, err := l.mem.CreateSnapshot(index, cs, nil)
	if err != nil {
		return err
	}
	if err := l.trimEngine(snap.GetMetadata(), pebble.NoSync); err != nil {
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

// trimEngine records meta as the engine's compaction point (or installed
// snapshot) and deletes the engine's entries up to it; the in-memory log is
// left as it is. The state up to meta's index must already be durable: a
// restart begins there.
func (l *raftLog) trimEngine(meta *pb.SnapshotMetadata, opts *pebble.WriteOptions) error {
	v, err := proto.Marshal(meta)
	if err != nil {
		return err
	}
	b := l.db.NewBatch()
	defer b.Close()
	if err := b.Set(storage.SnapshotMetaKey, v, nil); err != nil {
		return err
	}
	if err := b.DeleteRange(storage.EntryKey(0), storage.EntryKey(meta.GetIndex()+1), nil); err != nil {
		return err
	}
	return b.Commit(opts)
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
