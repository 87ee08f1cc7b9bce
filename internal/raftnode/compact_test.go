package raftnode

import (
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// compactionPoints applies batches of 1..maxBatch entries up to index end
// and returns where a member with the given phase takes its compaction
// points (each at the applied index of the batch that made one due).
func compactionPoints(r *rand.Rand, every, phase, maxBatch, end uint64) []uint64 {
	var points []uint64
	var applied, last uint64
	for applied < end {
		applied += 1 + r.Uint64N(maxBatch)
		if compactionDue(applied, last, every, phase) {
			points = append(points, applied)
			last = applied
		}
	}
	return points
}

func TestMembersTakeTheirCompactionPointsAtDifferentTimes(t *testing.T) {
	const (
		every    = 10000
		maxBatch = 150
		end      = 200 * every
	)
	cs := &pb.ConfState{Voters: []uint64{0xfd422379fda50e48, 0x8e9e05c52164694d, 0x91bc3c398fb3c146}}
	r := rand.New(rand.NewPCG(1, 2))
	all := map[uint64][]uint64{}
	for _, id := range cs.Voters {
		points := compactionPoints(r, every, compactionPhase(cs, id, every), maxBatch, end)
		if n := len(points); n < end/every-1 || n > end/every {
			t.Errorf("member %x: %d compaction points in %d entries, want one every %d", id, n, end, every)
		}
		for i := 1; i < len(points); i++ {
			if gap := points[i] - points[i-1]; gap < every-maxBatch || gap > every+maxBatch {
				t.Fatalf("member %x: compaction points %d and %d are %d entries apart, want %d (± a batch)", id, points[i-1], points[i], gap, every)
			}
		}
		all[id] = points
	}
	// Every member's points fall a third of the interval from the others'.
	for a, pa := range all {
		for b, pb := range all {
			if a == b {
				continue
			}
			for _, x := range pa {
				for _, y := range pb {
					d := max(x, y) - min(x, y)
					if d < every/3-2*maxBatch {
						t.Fatalf("members %x and %x take compaction points %d entries apart (%d and %d), want about %d", a, b, d, x, y, every/3)
					}
				}
			}
		}
	}
}

func TestCompactionPhase(t *testing.T) {
	three := &pb.ConfState{Voters: []uint64{30, 10, 20}}
	withLearner := &pb.ConfState{Voters: []uint64{30, 10}, Learners: []uint64{20}}
	for _, c := range []struct {
		name string
		cs   *pb.ConfState
		id   uint64
		want uint64
	}{
		{"the lowest ID starts at the interval's start", three, 10, 0},
		{"the second of three a third along", three, 20, 3333},
		{"the third of three two thirds along", three, 30, 6666},
		{"a learner counts as a member", withLearner, 20, 3333},
		{"a voter after the learner", withLearner, 30, 6666},
		{"the only member", &pb.ConfState{Voters: []uint64{7}}, 7, 0},
		{"a member not (yet) in the list", three, 25, 0},
		{"no member list", nil, 25, 0},
	} {
		if got := compactionPhase(c.cs, c.id, 10000); got != c.want {
			t.Errorf("%s: phase %d, want %d", c.name, got, c.want)
		}
	}
	// Phase 0 keeps the points where they were: one every 10,000 entries.
	if compactionDue(9999, 0, 10000, 0) || !compactionDue(10000, 0, 10000, 0) || compactionDue(19999, 10000, 10000, 0) {
		t.Error("with phase 0 a compaction point is due exactly every 10,000 entries")
	}
	if compactionDue(1<<40, 0, 0, 0) {
		t.Error("--snapshot-count 0 never makes a compaction point due")
	}
}
