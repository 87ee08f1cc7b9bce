package mvcc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
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

// TestCompactorAlongsideWriterKeepsAnswers runs the compaction steps in
// the background (RunCompactor) while a writer puts, deletes and compacts
// and readers range at every revision still readable: each answer must be
// the state of its revision. In the end the store must hold what a store
// that compacted in the apply holds (equal HashKV).
func TestCompactorAlongsideWriterKeepsAnswers(t *testing.T) {
	db, s := newTestStore(t)
	const commits = 600
	var mu sync.Mutex
	states := []map[string]string{{}, {}} // by revision; 0 and 1 are empty
	stateAt := func(rev int64) map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return states[rev]
	}
	ctx, cancel := context.WithCancel(context.Background())
	compactorDone := make(chan struct{})
	go func() {
		defer close(compactorDone)
		s.RunCompactor(ctx, Pace{Records: 50, Sleep: time.Millisecond}, func(err error) { t.Error(err) })
	}()
	done := make(chan struct{})
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(r), 7))
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.Lock()
				hi := int64(len(states) - 1) // the revisions with a known state
				mu.Unlock()
				lo := max(s.CompactRev(), 1)
				if lo > hi {
					continue
				}
				rev := lo + rnd.Int64N(hi-lo+1)
				resp, err := s.Range(&etcdserverpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
				if errors.Is(err, ErrCompacted) {
					continue // compacted meanwhile
				}
				if err != nil {
					errs <- err
					return
				}
				got := map[string]string{}
				for _, kv := range resp.Kvs {
					got[string(kv.Key)] = string(kv.Value)
				}
				if want := stateAt(rev); !maps.Equal(got, want) {
					errs <- fmt.Errorf("range at %d (compacted at %d): %v, want %v", rev, s.CompactRev(), got, want)
					return
				}
			}
		}()
	}
	ops := func(i int, w *Writer) {
		k := fmt.Sprintf("k%d", i%10)
		v := fmt.Sprintf("v%d", w.Rev()+1)
		mustPut(t, w, put(k, v))
		if i%7 == 3 {
			if _, err := w.DeleteRange(&etcdserverpb.DeleteRangeRequest{Key: []byte(fmt.Sprintf("k%d", (i+3)%10))}); err != nil {
				t.Fatal(err)
			}
		}
		if i%50 == 49 {
			if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: w.Rev() - 10}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range commits {
		w := apply(t, db, s, func(w *Writer) { ops(i, w) })
		mu.Lock()
		for len(states) <= int(w.Rev()) {
			next := maps.Clone(states[len(states)-1])
			rev := int64(len(states))
			for _, ev := range w.Events() {
				if ev.Kv.ModRevision != rev {
					continue
				}
				if ev.Type == mvccpb.Event_DELETE {
					delete(next, string(ev.Kv.Key))
				} else {
					next[string(ev.Kv.Key)] = string(ev.Kv.Value)
				}
			}
			states = append(states, next)
		}
		mu.Unlock()
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithTimeout(context.Background(), time.Minute)
	defer hcancel()
	got, _, _, err := s.HashKV(hctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-compactorDone

	db2, s2 := newTestStore(t)
	for i := range commits {
		apply(t, db2, s2, func(w *Writer) { ops(i, w) })
		if err := s2.FinishCompaction(); err != nil {
			t.Fatal(err)
		}
	}
	want, _, _, err := s2.HashKV(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("HashKV %d after background compaction, %d after compaction in the apply", got, want)
	}
}
