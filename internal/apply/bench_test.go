package apply

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/membership"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
)

// BenchmarkApplyPut applies batches of put entries shaped like the
// standard put benchmark's (8-byte keys out of 100,000, 256-byte values,
// 64 entries an apply) to an engine opened as a member opens it (on disk, not synced): the apply-side cost of one
// put (decode, previous version lookup, records, commit), per put.
func BenchmarkApplyPut(b *testing.B) {
	eng, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	db := eng.DB
	a, err := New(Config{DB: db, Leases: lease.New(time.Now), Members: &membership.Store{}, Logger: slog.New(slog.DiscardHandler), KVMemory: mvcc.Memory{LatestCache: 0}})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 64
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 256)
	entries := func(next uint64) []*raftpb.Entry {
		ents := make([]*raftpb.Entry, batch)
		for i := range ents {
			req := &pb.InternalRaftRequest{ID: next, Put: &pb.PutRequest{Key: fmt.Appendf(nil, "%08d", rng.IntN(100_000)), Value: value}}
			data, err := proto.Marshal(req)
			if err != nil {
				b.Fatal(err)
			}
			ents[i] = &raftpb.Entry{Index: proto.Uint64(next), Term: proto.Uint64(1), Data: data}
			next++
		}
		return ents
	}
	next := uint64(1)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		b.StopTimer()
		ents := entries(next)
		next += batch
		b.StartTimer()
		if _, err := a.Apply(ents); err != nil {
			b.Fatal(err)
		}
	}
}
