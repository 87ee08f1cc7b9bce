// Command watchcount runs the fan-out shape of etcd's `benchmark watch`
// (many watchers of one key, concurrent puts to it) with client/v3 and
// reports what the benchmark does not: how many watch responses carried
// the events, and how the events were spread over response sizes. It works
// against Kvorum and etcd alike; docs/benchmarks.md uses it to explain the
// watch fan-out figures.
//
//	go run ./tools/watchcount --endpoints=http://127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func main() {
	endpoints := flag.String("endpoints", "http://127.0.0.1:2379", "comma-separated client URLs")
	streams := flag.Int("streams", 10, "watch streams (one client each)")
	perStream := flag.Int("watch-per-stream", 100, "watchers per stream, all of one key")
	puts := flag.Int("put-total", 3000, "puts to the watched key")
	putters := flag.Int("putters", 10, "concurrent put loops (one client each)")
	key := flag.String("key", "watchcount", "the watched key")
	flag.Parse()
	if err := run(strings.Split(*endpoints, ","), *streams, *perStream, *puts, *putters, *key); err != nil {
		fmt.Fprintln(os.Stderr, "watchcount:", err)
		os.Exit(1)
	}
}

func run(eps []string, streams, perStream, puts, putters int, key string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newClient := func() (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	}
	var chans []clientv3.WatchChan
	for range streams {
		c, err := newClient()
		if err != nil {
			return err
		}
		defer c.Close()
		for range perStream {
			chans = append(chans, c.Watch(ctx, key))
		}
	}
	time.Sleep(time.Second) // let every watch be created
	want := int64(puts) * int64(len(chans))

	// As the benchmark does: every event passes through one small channel
	// to one consumer.
	perEvent := make(chan struct{}, 16)
	consumed := make(chan struct{})
	go func() {
		for range perEvent {
		}
		close(consumed)
	}()
	var left atomic.Int64
	left.Store(want)
	var mu sync.Mutex
	sizes := map[int]int64{} // events per response -> responses
	var wg sync.WaitGroup
	for _, wc := range chans {
		wg.Go(func() {
			for r := range wc {
				mu.Lock()
				sizes[len(r.Events)]++
				mu.Unlock()
				for range r.Events {
					perEvent <- struct{}{}
					if left.Add(-1) == 0 {
						cancel()
					}
				}
			}
		})
	}

	start := time.Now()
	next := make(chan struct{})
	for range putters {
		c, err := newClient()
		if err != nil {
			return err
		}
		defer c.Close()
		go func() {
			for range next {
				if _, err := c.Put(context.Background(), key, "data"); err != nil {
					fmt.Fprintln(os.Stderr, "watchcount: put:", err)
				}
			}
		}()
	}
	for range puts {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	close(perEvent)
	<-consumed
	elapsed := time.Since(start)

	var msgs, events int64
	bounds := []int{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}
	byBucket := make([]int64, len(bounds)+1)
	for n, count := range sizes {
		msgs += count
		events += int64(n) * count
		b := 0
		for b < len(bounds) && n > bounds[b] {
			b++
		}
		byBucket[b] += int64(n) * count
	}
	if events != want {
		return fmt.Errorf("received %d events, want %d", events, want)
	}
	fmt.Printf("%d events in %d responses (%.1f events each) in %v: %.0f events/s\n",
		events, msgs, float64(events)/float64(max(msgs, 1)), elapsed.Round(time.Millisecond), float64(events)/elapsed.Seconds())
	fmt.Print("share of events by response size:")
	lo := 1
	for b, hi := range bounds {
		fmt.Printf(" %d-%d:%.0f%%", lo, hi, 100*float64(byBucket[b])/float64(events))
		lo = hi + 1
	}
	fmt.Printf(" >%d:%.0f%%\n", bounds[len(bounds)-1], 100*float64(byBucket[len(bounds)])/float64(events))
	return nil
}
