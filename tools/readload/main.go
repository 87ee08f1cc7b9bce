// Command readload reads at random from the keys the official benchmark
// tool writes with `put --sequential-keys` (key i is i as a varint in a
// --key-size byte key), for a while, from many clients: serializable point
// gets, and every --range-every-th request a range from its key to the end
// of the key space with a --limit (the response still counts every key to
// the end, as Kubernetes's paginated lists do). It prints what it did on
// one line. scripts/bench-memory.sh uses it to see what reads do to a
// member's memory, against Kvorum and etcd alike.
//
// With --range-every=1 every request is such a range: a Kubernetes list's
// first page (--limit=500), or with --count-only the count of its keys, or
// with --past-revision a later page, which Kubernetes reads at the revision
// of the first: readload takes the current revision, writes one key of its
// own (so that revision is no longer the newest) and reads every range at
// the revision before that write.
//
//	readload --endpoints=http://127.0.0.1:2379 --keys=1000000 --duration=30s
//	readload --keys=1000000 --range-every=1 --limit=500 --past-revision --clients=2 --duration=20s
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	endpoints := flag.String("endpoints", "http://127.0.0.1:2379", "client URLs, comma separated")
	keys := flag.Int("keys", 1000000, "keys the benchmark tool wrote (0 .. keys-1)")
	keySize := flag.Int("key-size", 12, "the benchmark tool's --key-size")
	clients := flag.Int("clients", 50, "concurrent readers")
	duration := flag.Duration("duration", 30*time.Second, "how long to read")
	rangeEvery := flag.Int("range-every", 20, "every n-th request of a reader is a counted range (0: none)")
	limit := flag.Int64("limit", 100, "the ranges' limit")
	countOnly := flag.Bool("count-only", false, "the ranges ask only for the count of their keys")
	pastRevision := flag.Bool("past-revision", false, "the ranges read at a past revision (readload writes the key "+markerKey+" to make one)")
	timeout := flag.Duration("timeout", time.Minute, "timeout of one request")
	flag.Parse()
	if *keys <= 0 || *keySize < binary.MaxVarintLen64 || *clients <= 0 || *rangeEvery < 0 {
		fmt.Fprintln(os.Stderr, "readload: --keys and --clients must be positive, --key-size at least 10, --range-every 0 or more")
		os.Exit(2)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "readload:", err)
		os.Exit(1)
	}
	defer cli.Close()
	var atRev int64
	if *pastRevision {
		if atRev, err = makePastRevision(cli, *timeout); err != nil {
			fmt.Fprintln(os.Stderr, "readload:", err)
			os.Exit(1)
		}
	}

	type result struct {
		gets, ranges, missing int
		lat                   []time.Duration
		err                   error
	}
	results := make([]result, *clients)
	start := time.Now()
	end := start.Add(*duration)
	var wg sync.WaitGroup
	for c := range results {
		wg.Go(func() {
			res := &results[c]
			key := make([]byte, *keySize)
			for n := 1; time.Now().Before(end); n++ {
				clear(key)
				binary.PutVarint(key, int64(rand.IntN(*keys)))
				opts := []clientv3.OpOption{clientv3.WithSerializable()}
				isRange := *rangeEvery > 0 && n%*rangeEvery == 0
				if isRange {
					opts = append(opts, clientv3.WithFromKey(), clientv3.WithLimit(*limit))
					if *countOnly {
						opts = append(opts, clientv3.WithCountOnly())
					}
					if atRev > 0 {
						opts = append(opts, clientv3.WithRev(atRev))
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				t0 := time.Now()
				resp, err := cli.Get(ctx, string(key), opts...)
				cancel()
				if err != nil {
					res.err = err
					return
				}
				res.lat = append(res.lat, time.Since(t0))
				if isRange {
					res.ranges++
				} else {
					res.gets++
					if len(resp.Kvs) == 0 {
						res.missing++
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start) // the requests in flight at the end finish after it
	var gets, ranges, missing int
	var lat []time.Duration
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintln(os.Stderr, "readload:", r.err)
			os.Exit(1)
		}
		gets, ranges, missing = gets+r.gets, ranges+r.ranges, missing+r.missing
		lat = append(lat, r.lat...)
	}
	if len(lat) == 0 {
		fmt.Fprintln(os.Stderr, "readload: no request completed")
		os.Exit(1)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Printf("gets=%d ranges=%d missing=%d reads_per_s=%.1f p50_ms=%.2f p99_ms=%.2f\n", gets, ranges, missing,
		float64(gets+ranges)/elapsed.Seconds(), ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]))
}

// markerKey is the key --past-revision writes. It is not one of the
// benchmark tool's keys (those are --key-size bytes, a varint padded with
// zeros), and the ranges, read at the revision before it was written, do
// not see it.
const markerKey = "\xff\xffreadload-past-revision"

// makePastRevision writes markerKey and returns the revision before that
// write: a revision every member has applied and that is no longer the
// newest.
func makePastRevision(cli *clientv3.Client, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := cli.Put(ctx, markerKey, "")
	if err != nil {
		return 0, fmt.Errorf("write %q for --past-revision: %w", markerKey, err)
	}
	return resp.Header.Revision - 1, nil
}
