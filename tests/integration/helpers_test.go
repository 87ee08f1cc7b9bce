package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// waitTimeout bounds every wait for the cluster to reach a state (a leader,
// an applied index). Elections take about a second with the test timing.
const waitTimeout = 10 * time.Second

// ctxFor is a context ending after d or with the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// putKeys writes n keys prefix00000.. with value "v<i>" from workers
// goroutines, spreading them over clis, and fails the test on any error.
func putKeys(t *testing.T, clis []*clientv3.Client, prefix string, n, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	next := make(chan int)
	for w := range workers {
		cli := clis[w%len(clis)]
		wg.Go(func() {
			for i := range next {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				_, err := cli.Put(ctx, keyN(prefix, i), fmt.Sprintf("v%d", i))
				cancel()
				if err != nil {
					errc <- fmt.Errorf("put %s: %w", keyN(prefix, i), err)
					for range next {
					}
					return
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

func keyN(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i) }
