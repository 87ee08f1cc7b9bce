package snapshot

import (
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
)

// BenchmarkBuild measures building and copying out the snapshot of a
// store of 100,000 changes (50,000 keys of 256-byte values, each written
// twice), the way Maintenance.Snapshot does.
func BenchmarkBuild(b *testing.B) {
	eng, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	kv, err := mvcc.Open(eng.DB)
	if err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 256)
	for range 2 {
		for start := 0; start < 50_000; start += 1000 {
			w := kv.NewWriter(eng.DB.NewIndexedBatch())
			for i := start; i < start+1000; i++ {
				if _, err := w.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "key/%06d", i), Value: val}); err != nil {
					b.Fatal(err)
				}
			}
			if err := kv.Commit(w, pebble.NoSync); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for range b.N {
		path := filepath.Join(b.TempDir(), "db")
		snap := eng.DB.NewSnapshot()
		if err := Build(path, snap, BuildOptions{}); err != nil {
			b.Fatal(err)
		}
		snap.Close()
		n, err := WriteTo(io.Discard, path)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/1e6, "MB")
	}
}
