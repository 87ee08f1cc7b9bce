package raftnode

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
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
