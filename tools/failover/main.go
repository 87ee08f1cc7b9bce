// Command failover kills a cluster's leader while puts are in flight and
// reports what the clients saw: whether the put in flight at the kill
// failed, how many puts failed until the cluster took writes again, and the
// time from the kill to the first put that was committed after it. It works
// against Kvorum and etcd alike; scripts/bench-failover.sh runs it in a loop
// and restarts the killed member between rounds.
//
//	failover --members=http://127.0.0.1:2379=1234,http://127.0.0.1:2381=1235,...
//
// Two writers run at once, each with one put in flight at any time:
//
//   - follower: its client knows only one follower, so a put it sends while
//     the leader dies has to be carried to the next leader by the server;
//   - leader: its client knows the leader first and the followers after it;
//     on an error it sends the next put to the next endpoint in the list, as
//     a client that fails over would.
//
// The first committed put after the kill is the first successful put that
// was sent after the kill: a put in flight at the kill may have been
// committed just before it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	members := flag.String("members", "", "comma-separated endpoint=pid of every member")
	timeout := flag.Duration("timeout", 5*time.Second, "client timeout of one put")
	retryWait := flag.Duration("retry-wait", 20*time.Millisecond, "pause after a failed put before the next")
	warmup := flag.Duration("warmup", time.Second, "writing before the kill")
	deadline := flag.Duration("deadline", 30*time.Second, "give up waiting for a committed put this long after the kill")
	prefix := flag.String("key-prefix", "failover/", "prefix of the keys written")
	flag.Parse()
	if err := run(*members, *timeout, *retryWait, *warmup, *deadline, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

type member struct {
	endpoint string
	pid      int
	client   *clientv3.Client
}

// attempt is one put as the client saw it.
type attempt struct {
	start, end time.Time
	endpoint   string
	err        error
}

// writer sends puts one at a time, to endpoints[cur], moving on to the next
// endpoint after an error.
type writer struct {
	name    string
	members []*member
	timeout time.Duration
	wait    time.Duration
	prefix  string

	mu       sync.Mutex
	attempts []attempt
	killAt   time.Time
	done     chan struct{} // closed at the first success sent after killAt
}

func (w *writer) loop(ctx context.Context) {
	cur := 0
	for seq := 0; ctx.Err() == nil; seq++ {
		m := w.members[cur]
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, w.timeout)
		_, err := m.client.Put(pctx, fmt.Sprintf("%s%s/%d", w.prefix, w.name, seq), start.Format(time.RFC3339Nano))
		cancel()
		end := time.Now()
		if ctx.Err() != nil && err != nil {
			// stopped by us, not a failure; keep it only if it began before the kill
			// (then it is the put in flight, still unanswered)
			err = errStopped
		}
		w.mu.Lock()
		w.attempts = append(w.attempts, attempt{start: start, end: end, endpoint: m.endpoint, err: err})
		if err == nil && !w.killAt.IsZero() && start.After(w.killAt) && w.done != nil {
			close(w.done)
			w.done = nil
		}
		w.mu.Unlock()
		if err != nil {
			cur = (cur + 1) % len(w.members)
			select {
			case <-ctx.Done():
			case <-time.After(w.wait):
			}
		}
	}
}

var errStopped = errors.New("stopped by the tool while in flight")

// report summarises the writer's attempts around the kill as key=value pairs.
func (w *writer) report() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var inflight *attempt
	failed, first := 0, time.Duration(-1)
	okBefore := 0
	for i := range w.attempts {
		a := &w.attempts[i]
		if a.end.Before(w.killAt) {
			if a.err == nil {
				okBefore++
			}
			continue
		}
		if a.start.Before(w.killAt) {
			inflight = a
		}
		if a.err != nil && a.err != errStopped {
			failed++
		}
		if a.err == nil && a.start.After(w.killAt) && first < 0 {
			first = a.end.Sub(w.killAt)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "series=%s target=%s ok_before_kill=%d", w.name, w.members[0].endpoint, okBefore)
	switch {
	case inflight == nil:
		b.WriteString(" inflight=none")
	case inflight.err == nil:
		fmt.Fprintf(&b, " inflight=ok inflight_ms=%.1f", ms(inflight.end.Sub(w.killAt)))
	case inflight.err == errStopped:
		fmt.Fprintf(&b, " inflight=unanswered inflight_ms=%.1f", ms(inflight.end.Sub(w.killAt)))
	default:
		fmt.Fprintf(&b, " inflight=failed inflight_ms=%.1f inflight_err=%s", ms(inflight.end.Sub(w.killAt)), oneWord(inflight.err))
	}
	fmt.Fprintf(&b, " failed=%d", failed)
	if first >= 0 {
		fmt.Fprintf(&b, " first_commit_ms=%.1f", ms(first))
	} else {
		b.WriteString(" first_commit_ms=none")
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// oneWord makes an error message safe for a key=value line.
func oneWord(err error) string {
	s := strings.Join(strings.Fields(err.Error()), "_")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

func run(spec string, timeout, retryWait, warmup, deadline time.Duration, prefix string) error {
	var ms []*member
	for _, e := range strings.Split(spec, ",") {
		i := strings.LastIndex(e, "=")
		if i < 0 {
			return fmt.Errorf("--members: %q is not endpoint=pid", e)
		}
		pid, err := strconv.Atoi(e[i+1:])
		if err != nil {
			return fmt.Errorf("--members: pid of %q: %w", e, err)
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{e[:i]}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("client for %s: %w", e[:i], err)
		}
		defer c.Close()
		ms = append(ms, &member{endpoint: e[:i], pid: pid, client: c})
	}
	if len(ms) < 3 {
		return fmt.Errorf("--members: need at least 3 members, got %d", len(ms))
	}

	// Find the leader: every member must name the same one.
	var leader *member
	var leaderID uint64
	for _, m := range ms {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := m.client.Status(ctx, m.endpoint)
		cancel()
		if err != nil {
			return fmt.Errorf("status of %s: %w", m.endpoint, err)
		}
		if leaderID != 0 && st.Leader != leaderID {
			return fmt.Errorf("members disagree on the leader (%x and %x)", leaderID, st.Leader)
		}
		leaderID = st.Leader
		if st.Header.MemberId == st.Leader {
			leader = m
		}
	}
	if leader == nil {
		return fmt.Errorf("no member is the leader (leader id %x)", leaderID)
	}
	var followers []*member
	for _, m := range ms {
		if m != leader {
			followers = append(followers, m)
		}
	}
	writers := []*writer{
		{name: "follower", members: followers[:1]},
		{name: "leader", members: append([]*member{leader}, followers...)},
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range writers {
		w.timeout, w.wait, w.prefix, w.done = timeout, retryWait, prefix, make(chan struct{})
		wg.Go(func() { w.loop(ctx) })
	}
	time.Sleep(warmup)

	for _, w := range writers {
		w.mu.Lock()
	}
	killAt := time.Now()
	for _, w := range writers {
		w.killAt = killAt
	}
	err := syscall.Kill(leader.pid, syscall.SIGKILL)
	for _, w := range writers {
		w.mu.Unlock()
	}
	if err != nil {
		stop()
		wg.Wait()
		return fmt.Errorf("kill -9 %d (leader %s): %w", leader.pid, leader.endpoint, err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), deadline)
	defer dcancel()
	for _, w := range writers {
		w.mu.Lock()
		done := w.done
		w.mu.Unlock()
		if done == nil {
			continue
		}
		select {
		case <-done:
		case <-dctx.Done():
		}
	}
	stop()
	wg.Wait()
	fmt.Printf("killed=%s pid=%d\n", leader.endpoint, leader.pid)
	for _, w := range writers {
		fmt.Println(w.report())
	}
	return nil
}
