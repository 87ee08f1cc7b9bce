package raftnode

import (
	"math/rand/v2"
	"slices"
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

// TestLargeEntriesGetCompactionPointsAtDifferentTimesToo simulates three
// members applying the same entries of 8, 20 and 100 KB (±10%), whose
// raft log reaches its byte bound (32 MiB) long before 10,000 entries, and
// takes each member's compaction points as maybeCompact does (a point keeps
// up to 5,000 catch-up entries within half the bound). On the grid that
// sizedInterval scales, few points fall within a sixth of an interval of
// another member's (none at this writing), and the byte bound itself never
// has to step in; with the byte bound alone (sized false), 14%, 100% and 72%
// did.
func TestLargeEntriesGetCompactionPointsAtDifferentTimesToo(t *testing.T) {
	const (
		every    = 10000
		catchUp  = 5000
		maxBytes = 32 << 20
		end      = 150000
	)
	cs := &pb.ConfState{Voters: []uint64{0xfd422379fda50e48, 0x8e9e05c52164694d, 0x91bc3c398fb3c146}}
	type member struct {
		snap, entries, interval uint64
		held, after             int64
		points                  []uint64
		byBoundAlone            int
	}
	simulate := func(size int64, sized bool) (clash float64, boundPoints int) {
		r := rand.New(rand.NewPCG(uint64(size), 7))
		ms := make([]member, len(cs.Voters))
		maxBatch := min(150, (1<<20)/size)
		var applied uint64
		for applied < end {
			b := 1 + r.Uint64N(uint64(maxBatch))
			var batch int64
			for range b {
				batch += size*9/10 + r.Int64N(size/5)
			}
			applied += b
			for i, id := range cs.Voters {
				m := &ms[i]
				m.held += batch
				m.entries += b
				e := uint64(every)
				if sized {
					m.interval = sizedInterval(m.interval, every, m.held, m.entries, maxBytes)
					e = m.interval
				}
				due := compactionDue(applied, m.snap, e, compactionPhase(cs, id, e))
				if !due && m.held > maxBytes && m.held > m.after+maxBytes/4 {
					due = true
					m.byBoundAlone++
				}
				if !due {
					continue
				}
				avg := m.held / int64(m.entries)
				kept := min(uint64(catchUp), uint64(maxBytes/2/avg), applied)
				m.entries, m.held, m.after, m.snap = kept, int64(kept)*avg, int64(kept)*avg, applied
				m.points = append(m.points, applied)
			}
		}
		interval := uint64(maxBytes / 2 / size)
		var near, all int
		for i := range ms {
			boundPoints += ms[i].byBoundAlone
			for _, x := range ms[i].points {
				all++
				for j := range ms {
					if j == i {
						continue
					}
					if slices.ContainsFunc(ms[j].points, func(y uint64) bool { return max(x, y)-min(x, y) < interval/6 }) {
						near++
						break
					}
				}
			}
		}
		return float64(near) / float64(all), boundPoints
	}
	for _, size := range []int64{8 << 10, 20 << 10, 100 << 10} {
		clash, bound := simulate(size, true)
		if clash > 0.10 || bound > 0 {
			t.Errorf("%d-byte entries on the sized grid: %.0f%% of the points near another member's, %d points taken by the byte bound; want under 10%% and none", size, 100*clash, bound)
		}
		old, _ := simulate(size, false)
		t.Logf("%d-byte entries: %.0f%% near on the grid, %.0f%% with the byte bound alone", size, 100*clash, 100*old)
		if size == 20<<10 && old < 0.5 {
			t.Errorf("%d-byte entries with the byte bound alone: %.0f%% of the points near another member's; the simulation no longer shows what the grid is for", size, 100*old)
		}
	}
}

func TestSizedInterval(t *testing.T) {
	for _, c := range []struct {
		name    string
		held    int64
		entries uint64
		want    uint64
	}{
		{"small entries keep --snapshot-count", 300 * 1000, 1000, 10000},
		{"no entries held", 0, 0, 10000},
		{"3.3 KB entries just fit", 3300 * 1000, 1000, 10000},
		{"4 KB entries: every second point", 4096 * 1000, 1000, 5000},
		{"8 KB entries: a third", 8192 * 1000, 1000, 3333},
		{"entries larger than half the bound: every entry", 20 << 20, 1, 1},
	} {
		if got := sizedInterval(0, 10000, c.held, c.entries, 64<<20); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	// An interval in use is kept while its entries take a quarter to a
	// half of the bound, and replaced outside that.
	for _, c := range []struct {
		name string
		prev uint64
		held int64
		want uint64
	}{
		{"kept: 2,500 entries of 8 KB take 20 MB", 2500, 8192 * 1000, 2500},
		{"too many bytes: 5,000 entries of 8 KB", 5000, 8192 * 1000, 3333},
		{"too few bytes: 1,000 entries of 8 KB", 1000, 8192 * 1000, 3333},
		{"--snapshot-count kept for small entries", 10000, 300 * 1000, 10000},
	} {
		if got := sizedInterval(c.prev, 10000, c.held, 1000, 64<<20); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	if got := sizedInterval(2500, 10000, 0, 0, 64<<20); got != 2500 {
		t.Errorf("an empty log: %d, want the interval in use (2500)", got)
	}
	if got := sizedInterval(0, 0, 1<<30, 1, 64<<20); got != 0 {
		t.Errorf("--snapshot-count 0: %d, want 0 (never)", got)
	}
}
