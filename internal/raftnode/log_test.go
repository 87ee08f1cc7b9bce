package raftnode

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

func ents(term uint64, from, to uint64) []*pb.Entry {
	var out []*pb.Entry
	for i := from; i <= to; i++ {
		out = append(out, &pb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(term), Data: []byte{byte(i)}})
	}
	return out
}

func TestRaftLogSurvivesReloadIncludingOverwrittenTail(t *testing.T) {
	db := memDB(t)
	l, fresh, err := loadRaftLog(db)
	if err != nil || !fresh {
		t.Fatalf("new engine: fresh=%v err=%v", fresh, err)
	}
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(3)}, ents(1, 1, 10), true); err != nil {
		t.Fatal(err)
	}
	// A new leader in term 2 overwrites entries from 6 on with a shorter tail.
	if err := l.save(&pb.HardState{Term: proto.Uint64(2), Vote: proto.Uint64(7), Commit: proto.Uint64(5)}, ents(2, 6, 7), true); err != nil {
		t.Fatal(err)
	}
	r, fresh, err := loadRaftLog(db)
	if err != nil || fresh {
		t.Fatalf("reload: fresh=%v err=%v", fresh, err)
	}
	last, _ := r.mem.LastIndex()
	if last != 7 {
		t.Fatalf("last index after reload = %d, want 7 (stale tail 8..10 must be gone)", last)
	}
	for i, want := range map[uint64]uint64{5: 1, 6: 2, 7: 2} {
		if term, err := r.mem.Term(i); err != nil || term != want {
			t.Fatalf("term(%d) = %d, %v; want %d", i, term, err, want)
		}
	}
	hs, _, _ := r.mem.InitialState()
	if hs.GetTerm() != 2 || hs.GetVote() != 7 || hs.GetCommit() != 5 {
		t.Fatalf("hard state after reload = %v", hs)
	}
}

func TestCompactedRaftLogReloadsFromCompactionPoint(t *testing.T) {
	db := memDB(t)
	l, _, _ := loadRaftLog(db)
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(100)}, ents(1, 1, 100), true); err != nil {
		t.Fatal(err)
	}
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	if err := l.compact(80, cs, 60); err != nil {
		t.Fatal(err)
	}
	r, _, err := loadRaftLog(db)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := r.mem.FirstIndex()
	last, _ := r.mem.LastIndex()
	if first != 81 || last != 100 {
		t.Fatalf("reloaded log spans %d..%d, want 81..100", first, last)
	}
	snap, _ := r.mem.Snapshot()
	if snap.GetMetadata().GetIndex() != 80 || len(snap.GetMetadata().GetConfState().GetVoters()) != 3 {
		t.Fatalf("reloaded snapshot metadata = %v", snap.GetMetadata())
	}
}

// The byte count of the in-memory log (a memory metric) follows every way
// entries come and go: appends, an overwritten tail, compaction, reload and
// an installed snapshot.
func TestRaftLogBytesFollowEntriesHeld(t *testing.T) {
	held := func(l *raftLog) int64 {
		first, _ := l.mem.FirstIndex()
		last, _ := l.mem.LastIndex()
		if last < first {
			return 0
		}
		es, err := l.mem.Entries(first, last+1, ^uint64(0))
		if err != nil {
			t.Fatal(err)
		}
		return entriesSize(es)
	}
	check := func(l *raftLog, step string) {
		t.Helper()
		if got, want := l.bytes.Load(), held(l); got != want || want < 0 {
			t.Fatalf("after %s: counted %d bytes, entries held take %d", step, got, want)
		}
	}
	db := memDB(t)
	l, _, _ := loadRaftLog(db)
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(3)}, ents(1, 1, 10), true); err != nil {
		t.Fatal(err)
	}
	check(l, "append")
	if l.bytes.Load() == 0 {
		t.Fatal("ten entries counted as 0 bytes")
	}
	if err := l.save(&pb.HardState{Term: proto.Uint64(2), Commit: proto.Uint64(5)}, ents(2, 6, 7), true); err != nil {
		t.Fatal(err)
	}
	check(l, "overwritten tail")
	if err := l.save(nil, ents(2, 8, 40), true); err != nil {
		t.Fatal(err)
	}
	if err := l.compact(30, &pb.ConfState{Voters: []uint64{1}}, 20); err != nil {
		t.Fatal(err)
	}
	check(l, "compaction")
	r, _, err := loadRaftLog(db)
	if err != nil {
		t.Fatal(err)
	}
	check(r, "reload")
	snap := &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: proto.Uint64(50), Term: proto.Uint64(2), ConfState: &pb.ConfState{Voters: []uint64{1}}}}
	if err := r.applySnapshot(snap); err != nil {
		t.Fatal(err)
	}
	check(r, "snapshot")
	if r.bytes.Load() != 0 {
		t.Fatalf("after a snapshot %d bytes counted, want 0", r.bytes.Load())
	}
}

// keepWithin keeps the newest entries up to applied that fit in the limit.
func TestKeepWithinKeepsNewestEntriesThatFit(t *testing.T) {
	l, _, _ := loadRaftLog(memDB(t))
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(20)}, ents(1, 1, 20), true); err != nil {
		t.Fatal(err)
	}
	one := int64(proto.Size(ents(1, 1, 1)[0]))
	for _, tc := range []struct {
		limit int64
		want  uint64
	}{
		{limit: 1 << 20, want: 5},  // everything from keepFrom fits
		{limit: 3 * one, want: 8},  // entries 8, 9, 10
		{limit: one / 2, want: 11}, // not even applied itself
	} {
		if got := l.keepWithin(5, 10, tc.limit); got != tc.want {
			t.Errorf("keepWithin(5, 10, %d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

// engineEntries lists the indexes of the raft entries stored in the engine.
func engineEntries(t *testing.T, db *pebble.DB) []uint64 {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: storage.EntryKey(0), UpperBound: storage.EntryKey(^uint64(0))})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []uint64
	for it.First(); it.Valid(); it.Next() {
		idx, err := storage.EntryKeyIndex(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, idx)
	}
	return out
}

// A compaction keeps its catch-up entries in memory only: the engine drops
// every entry up to the compaction point, since a reload starts after it.
func TestCompactionKeepsCatchUpEntriesInMemoryOnly(t *testing.T) {
	db := memDB(t)
	l, _, _ := loadRaftLog(db)
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(100)}, ents(1, 1, 100), true); err != nil {
		t.Fatal(err)
	}
	if err := l.compact(80, &pb.ConfState{Voters: []uint64{1}}, 60); err != nil {
		t.Fatal(err)
	}
	if first, _ := l.mem.FirstIndex(); first != 60 {
		t.Fatalf("in-memory log starts at %d, want 60 (the catch-up entries)", first)
	}
	if got := engineEntries(t, db); len(got) != 20 || got[0] != 81 {
		t.Fatalf("engine holds entries %v, want 81..100", got)
	}
}

// Trimming the engine leaves the in-memory log whole, and a reload starts
// after the trimmed point with the conf state recorded there.
func TestTrimEngineLeavesMemoryAndReloadsFromTrimPoint(t *testing.T) {
	db := memDB(t)
	l, _, _ := loadRaftLog(db)
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(100)}, ents(1, 1, 100), true); err != nil {
		t.Fatal(err)
	}
	meta := &pb.SnapshotMetadata{Index: proto.Uint64(90), Term: proto.Uint64(1), ConfState: &pb.ConfState{Voters: []uint64{1, 2}}}
	if err := l.trimEngine(meta, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if first, _ := l.mem.FirstIndex(); first != 1 {
		t.Fatalf("in-memory log starts at %d after an engine trim, want 1", first)
	}
	if got := engineEntries(t, db); len(got) != 10 || got[0] != 91 {
		t.Fatalf("engine holds entries %v, want 91..100", got)
	}
	r, _, err := loadRaftLog(db)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := r.mem.FirstIndex()
	last, _ := r.mem.LastIndex()
	snap, _ := r.mem.Snapshot()
	if first != 91 || last != 100 || snap.GetMetadata().GetIndex() != 90 || len(snap.GetMetadata().GetConfState().GetVoters()) != 2 {
		t.Fatalf("reloaded log %d..%d with snapshot metadata %v, want 91..100 after index 90 with 2 voters", first, last, snap.GetMetadata())
	}
}

// A compaction point past the stored commit index (entries are applied
// while the hard state committing them is written, and an earlier version
// could compact in that window) reloads with the commit index raised to
// it; raft would refuse to start on the stored one.
func TestReloadRaisesCommitToCompactionPoint(t *testing.T) {
	db := memDB(t)
	l, _, _ := loadRaftLog(db)
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(50)}, ents(1, 1, 100), true); err != nil {
		t.Fatal(err)
	}
	if got := l.savedCommit.Load(); got != 50 {
		t.Fatalf("savedCommit = %d after saving commit 50", got)
	}
	if err := l.compact(80, &pb.ConfState{Voters: []uint64{1}}, 81); err != nil {
		t.Fatal(err)
	}
	r, _, err := loadRaftLog(db)
	if err != nil {
		t.Fatal(err)
	}
	hs, _, _ := r.mem.InitialState()
	if hs.GetCommit() != 80 || r.savedCommit.Load() != 80 {
		t.Fatalf("reloaded commit %d (savedCommit %d), want 80", hs.GetCommit(), r.savedCommit.Load())
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: r.mem, MaxInflightMsgs: 16, Applied: 80})
	if err != nil || rn == nil {
		t.Fatalf("raft refuses the reloaded log: %v", err)
	}
}
