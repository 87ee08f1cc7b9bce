package integration

import (
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/testcluster"
)

func TestConcurrentClientsLinearizableCounter(t *testing.T) {
	const (
		workers  = 8
		attempts = 40 // per worker
	)
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	if _, err := c.Members[0].Client().Put(ctxFor(t, 5*time.Second), "counter", "0"); err != nil {
		t.Fatal(err)
	}

	// Each worker reads the counter (linearizably, through its own member)
	// and writes value+1 only if nobody changed it since. A successful CAS
	// wins the value it wrote: no two may win the same one, and the final
	// value is the number of wins.
	var (
		mu   sync.Mutex
		won  = map[int]int{} // value -> worker that wrote it
		errs []error
		wg   sync.WaitGroup
	)
	for w := range workers {
		cli := c.Members[w%len(c.Members)].Client()
		wg.Go(func() {
			for range attempts {
				get, err := cli.Get(ctxFor(t, 5*time.Second), "counter")
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				kv := get.Kvs[0]
				n, err := strconv.Atoi(string(kv.Value))
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				txn, err := cli.Txn(ctxFor(t, 5*time.Second)).
					If(clientv3.Compare(clientv3.ModRevision("counter"), "=", kv.ModRevision)).
					Then(clientv3.OpPut("counter", strconv.Itoa(n+1))).
					Commit()
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				if !txn.Succeeded {
					continue
				}
				mu.Lock()
				if other, dup := won[n+1]; dup {
					t.Errorf("workers %d and %d both incremented the counter to %d", other, w, n+1)
				}
				won[n+1] = w
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(won) == 0 {
		t.Fatal("no CAS succeeded")
	}

	for _, m := range c.Members {
		get, err := m.Client().Get(ctxFor(t, 5*time.Second), "counter")
		if err != nil {
			t.Fatalf("final get via %s: %v", m.Name, err)
		}
		if got := string(get.Kvs[0].Value); got != strconv.Itoa(len(won)) {
			t.Errorf("via %s: counter is %s after %d successful increments", m.Name, got, len(won))
		}
		if v := get.Kvs[0].Version; v != int64(len(won))+1 {
			t.Errorf("via %s: counter has version %d, want %d (one put plus one per increment)", m.Name, v, len(won)+1)
		}
	}
	t.Logf("%d of %d CAS attempts succeeded", len(won), workers*attempts)
}
