package mvcc

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestRangeDuringCommitsSeesHeaderMatchingData commits txns that each set
// keys x and y to the revision they write, while readers range over both:
// every answer must hold both keys at exactly its header revision.
func TestRangeDuringCommitsSeesHeaderMatchingData(t *testing.T) {
	db, s := newTestStore(t)
	const commits = 300
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := s.Range(&etcdserverpb.RangeRequest{Key: []byte("x"), RangeEnd: []byte("z")})
				if err != nil {
					errs <- err
					return
				}
				rev := resp.Header.Revision
				if rev == 1 {
					if resp.Count != 0 {
						errs <- fmt.Errorf("revision 1 with %d keys", resp.Count)
						return
					}
					continue
				}
				for _, kv := range resp.Kvs {
					if kv.ModRevision != rev || string(kv.Value) != strconv.FormatInt(rev, 10) {
						errs <- fmt.Errorf("header revision %d with %v", rev, kv)
						return
					}
				}
				if resp.Count != 2 {
					errs <- fmt.Errorf("header revision %d with %d keys", rev, resp.Count)
					return
				}
			}
		}()
	}
	for i := range commits {
		apply(t, db, s, func(w *Writer) {
			v := []byte(strconv.FormatInt(w.Rev()+1, 10))
			if _, err := w.Txn(&etcdserverpb.TxnRequest{Success: []*etcdserverpb.RequestOp{
				{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte("x"), Value: v}}},
				{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte("y"), Value: v}}},
			}}); err != nil {
				t.Fatal(err)
			}
			if i%50 == 49 {
				if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: w.Rev() - 1}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s.Rev() != commits+1 {
		t.Fatalf("Rev %d, want %d", s.Rev(), commits+1)
	}
}
