package robustness

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/robustness"
	"github.com/kvorum/kvorum/internal/robustness/cluster"
)

// watchRecorder keeps what watchers saw during a round: one watcher on a
// client of all members (it moves to another member when its member dies,
// resuming from the next revision) and one per member. Faults make watches
// break and resume; the check demands that each watcher saw exactly the
// revision history, in order, with no gap and no duplicate.
type watchRecorder struct {
	cancel  context.CancelFunc
	clients []*clientv3.Client
	wg      sync.WaitGroup

	mu      sync.Mutex
	names   []string
	events  [][]robustness.Change
	lastRev []int64
	ended   []error
}

func startWatchers(c *cluster.Cluster, fromRev int64) (*watchRecorder, error) {
	ctx, cancel := context.WithCancel(context.Background())
	wr := &watchRecorder{cancel: cancel}
	targets := [][]*cluster.Member{nil}
	for _, m := range c.Members {
		targets = append(targets, []*cluster.Member{m})
	}
	for i, ms := range targets {
		cli, err := c.Client(ms...)
		if err != nil {
			wr.stop()
			return nil, err
		}
		wr.clients = append(wr.clients, cli)
		name := "all members"
		if len(ms) == 1 {
			name = ms[0].Name
		}
		wr.names = append(wr.names, name)
		wr.events = append(wr.events, nil)
		wr.lastRev = append(wr.lastRev, 0)
		wr.ended = append(wr.ended, nil)
		wch := cli.Watch(ctx, keyPrefix, clientv3.WithRange(keyEnd), clientv3.WithRev(fromRev))
		wr.wg.Add(1)
		go func() {
			defer wr.wg.Done()
			for resp := range wch {
				wr.mu.Lock()
				if err := resp.Err(); err != nil && ctx.Err() == nil {
					wr.ended[i] = err
				}
				for _, ev := range resp.Events {
					ch := robustness.Change{Rev: ev.Kv.ModRevision, Key: string(ev.Kv.Key)}
					if ev.Type == clientv3.EventTypeDelete {
						ch.Delete = true
					} else {
						ch.Value = string(ev.Kv.Value)
					}
					wr.events[i] = append(wr.events[i], ch)
					wr.lastRev[i] = ch.Rev
				}
				wr.mu.Unlock()
			}
		}()
	}
	return wr, nil
}

// waitFor waits until every watcher has seen an event at rev or later (or
// the timeout passes; check then reports what is missing).
func (wr *watchRecorder) waitFor(rev int64, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		wr.mu.Lock()
		done := true
		for _, r := range wr.lastRev {
			if r < rev {
				done = false
			}
		}
		wr.mu.Unlock()
		if done {
			return
		}
	}
}

func (wr *watchRecorder) stop() {
	wr.cancel()
	for _, cli := range wr.clients {
		cli.Close()
	}
	wr.wg.Wait()
}

// check compares what each watcher saw with the revision history.
func (wr *watchRecorder) check(changes []robustness.Change) (problems []string, events int) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	for i, got := range wr.events {
		events += len(got)
		if wr.ended[i] != nil {
			problems = append(problems, fmt.Sprintf("watcher on %s ended: %v", wr.names[i], wr.ended[i]))
			continue
		}
		for j := 0; j < len(got) || j < len(changes); j++ {
			switch {
			case j >= len(got):
				problems = append(problems, fmt.Sprintf("watcher on %s missed %d events from %s on", wr.names[i], len(changes)-j, changes[j]))
			case j >= len(changes):
				problems = append(problems, fmt.Sprintf("watcher on %s saw %d events past the history, from %s", wr.names[i], len(got)-j, got[j]))
			case got[j] != changes[j]:
				problems = append(problems, fmt.Sprintf("watcher on %s: event %d is %s, the history has %s (gap, duplicate or reorder)", wr.names[i], j, got[j], changes[j]))
			default:
				continue
			}
			break
		}
	}
	return problems, events
}

func TestWatchCheckFindsGapsDuplicatesAndReorders(t *testing.T) {
	history := []robustness.Change{
		{Rev: 2, Key: "k/01", Value: "a"},
		{Rev: 3, Key: "k/02", Value: "b"},
		{Rev: 4, Key: "k/01", Delete: true},
	}
	cases := map[string][]robustness.Change{
		"gap":       {history[0], history[2]},
		"duplicate": {history[0], history[1], history[1], history[2]},
		"reorder":   {history[1], history[0], history[2]},
		"missing":   {history[0], history[1]},
		"wrong":     {history[0], {Rev: 3, Key: "k/02", Value: "x"}, history[2]},
	}
	for name, seen := range cases {
		wr := &watchRecorder{names: []string{"m1"}, events: [][]robustness.Change{seen}, lastRev: []int64{0}, ended: []error{nil}}
		if problems, _ := wr.check(history); len(problems) == 0 {
			t.Errorf("%s: the check accepted %v against %v", name, seen, history)
		}
	}
	wr := &watchRecorder{names: []string{"m1"}, events: [][]robustness.Change{history}, lastRev: []int64{4}, ended: []error{nil}}
	if problems, _ := wr.check(history); len(problems) != 0 {
		t.Errorf("the exact history was refused: %v", problems)
	}
}
