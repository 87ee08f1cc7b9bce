package raftnode

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// recordingMachine is a state machine that remembers the index of every
// entry it was given, and fails the test on an index out of order.
type recordingMachine struct {
	t        *testing.T
	mu       sync.Mutex
	applied  uint64
	proposed int // entries with data (what the test proposed)
}

func (m *recordingMachine) Apply(ents []*pb.Entry) error {
	if len(ents) > 4 {
		// A large batch takes a while, so that more come up behind it
		// while it is applied.
		time.Sleep(2 * time.Millisecond)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range ents {
		if e.GetIndex() <= m.applied {
			continue
		}
		if e.GetIndex() != m.applied+1 {
			m.t.Errorf("entry %d applied after entry %d", e.GetIndex(), m.applied)
		}
		m.applied = e.GetIndex()
		if e.GetType() == pb.EntryType_EntryNormal && len(e.GetData()) > 0 {
			m.proposed++
		}
	}
	return nil
}

func (m *recordingMachine) AppliedIndex() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applied
}

func (m *recordingMachine) Restore() error { return nil }

type noTransport struct{}

func (noTransport) Send([]*pb.Message) {}

// Entries are applied once each and in order, one at a time and in
// batches, while compaction points come and go (every 50 entries here:
// the applier waits for the engine's flush of each and cuts the log).
func TestEntriesApplyInOrderAcrossCompactionPoints(t *testing.T) {
	sm := &recordingMachine{t: t}
	n, err := New(Config{
		ID:            1,
		Peers:         []raft.Peer{{ID: 1}},
		TickInterval:  10 * time.Millisecond,
		ElectionTicks: 10,
		SnapshotCount: 50,
		DataDir:       t.TempDir(),
		DB:            memDB(t),
		StateMachine:  sm,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Start(noTransport{})
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		changed := n.LeaderChanged()
		if n.Leader() == 1 {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatal("the only member did not become leader")
		}
	}
	propose := func(i int) {
		if err := n.Propose(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Errorf("propose %d: %v", i, err)
		}
	}
	const rounds, single, many = 5, 40, 200
	for round := 0; round < rounds; round++ {
		// One at a time: batches of one entry.
		for i := 0; i < single; i++ {
			propose(i)
			if err := n.WaitApplied(ctx, nil, n.commit.Load()); err != nil {
				t.Fatal(err)
			}
		}
		// Many at once: larger batches.
		var wg sync.WaitGroup
		for i := 0; i < many; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); propose(i) }()
		}
		wg.Wait()
	}
	for {
		sm.mu.Lock()
		got, applied := sm.proposed, sm.applied
		sm.mu.Unlock()
		if got == rounds*(single+many) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of the %d proposed entries applied (up to index %d)", got, rounds*(single+many), applied)
		case <-time.After(time.Millisecond):
		}
	}
	n.Stop()
	if n.snapIndex == 0 {
		t.Errorf("no compaction point in %d entries at --snapshot-count 50", sm.AppliedIndex())
	}
}
