// Command readwait measures how long a member takes to serve reads after
// it was (re)started: it polls one endpoint with a serializable Get, then
// with a linearizable one, and prints the seconds from --since (the Unix
// time in nanoseconds at which the member was launched) until each first
// succeeded. scripts/bench-restart.sh uses it against Kvorum and etcd alike.
//
//	readwait --endpoint=http://127.0.0.1:2379 --key=k --since=$(date +%s%N)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

func main() {
	endpoint := flag.String("endpoint", "http://127.0.0.1:2379", "client URL of the member")
	key := flag.String("key", "readwait", "key to read (it need not exist)")
	since := flag.Int64("since", 0, "Unix time in nanoseconds the durations are measured from (default: now)")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	attempt := flag.Duration("attempt-timeout", 500*time.Millisecond, "timeout of one Get")
	flag.Parse()
	start := time.Now()
	if *since > 0 {
		start = time.Unix(0, *since)
	}
	ser, lin, err := run(*endpoint, *key, start, *timeout, *attempt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "readwait:", err)
		os.Exit(1)
	}
	fmt.Printf("serializable_s=%.3f linearizable_s=%.3f\n", ser.Seconds(), lin.Seconds())
}

func run(endpoint, key string, start time.Time, timeout, attempt time.Duration) (ser, lin time.Duration, err error) {
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(timeout))
	defer cancel()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
		// gRPC waits a second and more between attempts to connect to a
		// server that is not listening yet; that wait would be measured as
		// the member's start-up time, so retry every few milliseconds.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 5 * time.Millisecond, Multiplier: 1.2, MaxDelay: 20 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("client for %s: %w", endpoint, err)
	}
	defer c.Close()
	poll := func(opts ...clientv3.OpOption) (time.Duration, error) {
		var last error
		for {
			actx, acancel := context.WithTimeout(ctx, attempt)
			_, err := c.Get(actx, key, opts...)
			acancel()
			if err == nil {
				return time.Since(start), nil
			}
			last = err
			select {
			case <-ctx.Done():
				return 0, errors.Join(fmt.Errorf("no read served by %s within %s", endpoint, timeout), last)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	if ser, err = poll(clientv3.WithSerializable()); err != nil {
		return 0, 0, err
	}
	if lin, err = poll(); err != nil {
		return 0, 0, err
	}
	return ser, lin, nil
}
