package raftnode

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// testLog is a member's raft log in dir, beside engine db.
func testLog(t *testing.T, dir string, db *pebble.DB) (*raftLog, bool, error) {
	t.Helper()
	l, fresh, err := loadRaftLog(logConfig{dir: WALPath(dir, ""), db: db})
	if err == nil {
		t.Cleanup(func() { l.f.close() })
	}
	return l, fresh, err
}

func TestRaftLogSurvivesReloadIncludingOverwrittenTail(t *testing.T) {
	db, dir := memDB(t), t.TempDir()
	l, fresh, err := testLog(t, dir, db)
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
	l.f.close()
	r, fresh, err := testLog(t, dir, db)
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
	db, dir := memDB(t), t.TempDir()
	l, _, _ := testLog(t, dir, db)
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(100)}, ents(1, 1, 100), true); err != nil {
		t.Fatal(err)
	}
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	if err := l.compact(80, cs, 60); err != nil {
		t.Fatal(err)
	}
	l.f.close()
	r, _, err := testLog(t, dir, db)
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
	db, dir := memDB(t), t.TempDir()
	l, _, _ := testLog(t, dir, db)
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
	l.f.close()
	r, _, err := testLog(t, dir, db)
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
	l, _, _ := testLog(t, t.TempDir(), memDB(t))
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

// A raft log an earlier version kept in the engine moves into the
// write-ahead log when a member loads it, and leaves the engine; a
// compaction point that version recorded past the stored commit index
// (entries are applied while the hard state committing them is written)
// comes back with the commit index raised to it, which raft requires.
func TestEngineRaftLogMovesIntoTheWriteAheadLog(t *testing.T) {
	db, dir := memDB(t), t.TempDir()
	hs, _ := proto.Marshal(&pb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(2), Commit: proto.Uint64(50)})
	meta, _ := proto.Marshal(&pb.SnapshotMetadata{Index: proto.Uint64(80), Term: proto.Uint64(1), ConfState: &pb.ConfState{Voters: []uint64{1, 2}}})
	b := db.NewBatch()
	b.Set(storage.HardStateKey, hs, nil)
	b.Set(storage.SnapshotMetaKey, meta, nil)
	for _, e := range ents(1, 81, 100) {
		v, _ := proto.Marshal(e)
		b.Set(storage.EntryKey(e.GetIndex()), v, nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if ok, err := Bootstrapped(WALPath(dir, ""), db); !ok || err != nil {
		t.Fatalf("Bootstrapped on an engine holding a raft log = %v, %v", ok, err)
	}
	l, fresh, err := testLog(t, dir, db)
	if err != nil || fresh {
		t.Fatalf("load: fresh=%v err=%v", fresh, err)
	}
	l.f.close()
	if got := engineEntries(t, db); len(got) != 0 {
		t.Fatalf("engine still holds raft entries %v", got)
	}
	if v, _ := storage.Get(db, storage.SnapshotMetaKey); v != nil {
		t.Fatal("engine still holds the compaction point")
	}
	// Where a build from before the move looks for its hard state, it
	// finds something it cannot parse, and refuses the data dir.
	if v, _ := storage.Get(db, storage.HardStateKey); !bytes.Equal(v, storage.LogMovedHardState) {
		t.Fatalf("engine's hard state key holds %q, want the moved marker", v)
	}
	if err := proto.Unmarshal(storage.LogMovedHardState, &pb.HardState{}); err == nil {
		t.Fatal("the moved marker parses as a hard state: an older build would start on it")
	}
	r, fresh, err := testLog(t, dir, db) // now from the write-ahead log alone
	if err != nil || fresh {
		t.Fatalf("reload: fresh=%v err=%v", fresh, err)
	}
	first, _ := r.mem.FirstIndex()
	last, _ := r.mem.LastIndex()
	snap, _ := r.mem.Snapshot()
	if first != 81 || last != 100 || snap.GetMetadata().GetIndex() != 80 || len(snap.GetMetadata().GetConfState().GetVoters()) != 2 {
		t.Fatalf("moved log %d..%d after %v, want 81..100 after index 80 with 2 voters", first, last, snap.GetMetadata())
	}
	got, _, _ := r.mem.InitialState()
	if got.GetTerm() != 1 || got.GetVote() != 2 || got.GetCommit() != 80 || r.savedCommit.Load() != 80 {
		t.Fatalf("moved hard state %v (savedCommit %d), want term 1, vote 2, commit 80", got, r.savedCommit.Load())
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: r.mem, MaxInflightMsgs: 16, Applied: 80})
	if err != nil || rn == nil {
		t.Fatalf("raft refuses the moved log: %v", err)
	}
}

// A new member has no write-ahead log until its first raft state is
// saved, and then one holding it: Bootstrapped tells the two apart.
func TestWriteAheadLogAppearsWithTheFirstState(t *testing.T) {
	db, dir := memDB(t), t.TempDir()
	l, fresh, err := testLog(t, dir, db)
	if err != nil || !fresh {
		t.Fatalf("new member: fresh=%v err=%v", fresh, err)
	}
	if ok, _ := Bootstrapped(WALPath(dir, ""), db); ok {
		t.Fatal("Bootstrapped before anything was saved")
	}
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(1)}, ents(1, 1, 1), true); err != nil {
		t.Fatal(err)
	}
	if ok, _ := Bootstrapped(WALPath(dir, ""), db); !ok {
		t.Fatal("not Bootstrapped after the first save")
	}
	if v, _ := storage.Get(db, storage.HardStateKey); !bytes.Equal(v, storage.LogMovedHardState) {
		t.Fatalf("a new member's engine does not turn older builds away: hard state key holds %q", v)
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

// A crash after an earlier version's raft log was written into the
// write-ahead log but before the engine's copy was deleted leaves both;
// the next load deletes the engine's copy, so it can never come back as
// raft state (an old term and vote) if the write-ahead log went missing.
func TestEngineCopyLeftByACrashedMoveIsDeleted(t *testing.T) {
	db, dir := memDB(t), t.TempDir()
	l, _, _ := testLog(t, dir, db)
	if err := l.save(&pb.HardState{Term: proto.Uint64(5), Vote: proto.Uint64(1), Commit: proto.Uint64(3)}, ents(5, 1, 3), true); err != nil {
		t.Fatal(err)
	}
	l.f.close()
	hs, _ := proto.Marshal(&pb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(2), Commit: proto.Uint64(1)})
	if err := db.Set(storage.HardStateKey, hs, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	r, fresh, err := testLog(t, dir, db)
	if err != nil || fresh {
		t.Fatalf("reload: fresh=%v err=%v", fresh, err)
	}
	if got, _, _ := r.mem.InitialState(); got.GetTerm() != 5 || got.GetVote() != 1 {
		t.Fatalf("hard state %v, want the write-ahead log's (term 5, vote 1)", got)
	}
	if v, _ := storage.Get(db, storage.HardStateKey); !bytes.Equal(v, storage.LogMovedHardState) {
		t.Fatalf("the engine's stale hard state is still there: %q", v)
	}
	if v, _ := storage.Get(db, storage.RaftLogKey); v == nil {
		t.Fatal("the engine does not record that the log exists")
	}
}

// A --wal-dir that exists and holds something else (lost+found on a disk
// of its own) takes the new log beside it; a stage left by a crash is
// started over.
func TestLogIsCreatedInAnExistingDirectory(t *testing.T) {
	db, walDir := memDB(t), filepath.Join(t.TempDir(), "wal")
	for _, d := range []string{filepath.Join(walDir, "lost+found"), filepath.Join(walDir, stageDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(walDir, stageDir, "0000000000000000-0000000000000000.wal"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, fresh, err := loadRaftLog(logConfig{dir: walDir, db: db})
	if err != nil || !fresh {
		t.Fatalf("new member: fresh=%v err=%v", fresh, err)
	}
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(2)}, ents(1, 1, 2), true); err != nil {
		t.Fatal(err)
	}
	l.f.close()
	if _, err := os.Stat(filepath.Join(walDir, stageDir)); !os.IsNotExist(err) {
		t.Fatalf("stage directory left behind: %v", err)
	}
	r, fresh, err := loadRaftLog(logConfig{dir: walDir, db: db})
	if err != nil || fresh {
		t.Fatalf("reload: fresh=%v err=%v", fresh, err)
	}
	defer r.f.close()
	if last, _ := r.mem.LastIndex(); last != 2 {
		t.Fatalf("reloaded log ends at %d, want 2", last)
	}
}

// After a write fails for good, the log takes no other write: a record
// written after a torn one would make the whole log unreadable.
func TestFailedLogTakesNoMoreWrites(t *testing.T) {
	l, _, _ := testLog(t, t.TempDir(), memDB(t))
	if err := l.save(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(1)}, ents(1, 1, 1), true); err != nil {
		t.Fatal(err)
	}
	l.f.failed = errors.New("disk gone")
	if err := l.save(nil, ents(1, 2, 2), true); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("save on a failed log: %v, want its failure", err)
	}
	if err := l.compact(1, &pb.ConfState{Voters: []uint64{1}}, 1); err == nil {
		t.Fatal("compaction on a failed log succeeded")
	}
}
