package mvcc

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// BenchmarkCompactionSteps times the background steps of a compaction
// over revs revisions of puts cycling over 1000 keys (256-byte values), the
// shape of scripts/bench-stall.sh; ns/op is per revision compacted.
func BenchmarkCompactionSteps(b *testing.B) {
	const revs, keys, perBatch = 100000, 1000, 100
	val := make([]byte, 256)
	for b.Loop() {
		b.StopTimer()
		db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietLogger{}})
		if err != nil {
			b.Fatal(err)
		}
		s, err := Open(db)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < revs; i += perBatch {
			w := s.NewWriter(db.NewIndexedBatch())
			for j := range perBatch {
				if _, err := w.Put(&etcdserverpb.PutRequest{Key: fmt.Appendf(nil, "key%06d", (i+j)%keys), Value: val}); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Commit(w, pebble.NoSync); err != nil {
				b.Fatal(err)
			}
		}
		w := s.NewWriter(db.NewIndexedBatch())
		if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: s.Rev()}); err != nil {
			b.Fatal(err)
		}
		if err := s.Commit(w, pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.FinishCompaction(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*revs), "ns/rev")
}
