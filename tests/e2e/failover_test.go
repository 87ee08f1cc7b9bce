package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ack is a write the cluster acknowledged: the key must exist with this
// value and modification revision on every member from then on.
type ack struct {
	key, value string
	rev        int64
	at         time.Time
}

func TestKillLeaderDuringWriteLoadLosesNoAcknowledgedWrite(t *testing.T) {
	const (
		writers  = 8
		loadTime = 5 * time.Second
	)
	c := newCluster(t, kvorumBin, 3)
	var clients []*clientv3.Client
	for _, m := range c.members {
		clients = append(clients, m.client())
	}

	ctx, cancel := context.WithTimeout(context.Background(), loadTime)
	defer cancel()
	acks := make([][]ack, writers)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := clients[w%len(clients)]
			for seq := 0; ctx.Err() == nil; seq++ {
				key := fmt.Sprintf("load/w%d/%06d", w, seq)
				value := fmt.Sprintf("%s=%x", key, rand.Uint64())
				pctx, pcancel := context.WithTimeout(context.Background(), 3*time.Second)
				resp, err := cli.Put(pctx, key, value)
				pcancel()
				if err != nil {
					failed.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				acks[w] = append(acks[w], ack{key: key, value: value, rev: resp.Header.GetRevision(), at: time.Now()})
			}
		}()
	}

	time.Sleep(loadTime * 2 / 5)
	leader, term := c.leader()
	killedAt := time.Now()
	leader.kill()
	t.Logf("killed leader %s (term %d) under load", leader.Name, term)
	time.Sleep(time.Second)
	leader.start()
	wg.Wait()

	var all []ack
	afterKill := 0
	for _, a := range acks {
		all = append(all, a...)
		for _, x := range a {
			if x.at.After(killedAt) {
				afterKill++
			}
		}
	}
	t.Logf("%d writes acknowledged (%d after the kill), %d failed", len(all), afterKill, failed.Load())
	if afterKill == 0 {
		t.Fatal("no write was acknowledged after the leader was killed: the cluster did not recover under load")
	}

	c.waitHealthy(c.members...)
	rev := c.waitConverged()
	var first map[string]*kv
	for _, m := range c.members {
		got, mrev, err := m.readAll(m.client(), "load/")
		if err != nil {
			t.Fatalf("serializable range on %s: %v", m.Name, err)
		}
		if mrev != rev {
			t.Errorf("%s answered at revision %d, the cluster converged at %d", m.Name, mrev, rev)
		}
		lost := 0
		for _, a := range all {
			k := got[a.key]
			switch {
			case k == nil:
				lost++
				if lost <= 10 {
					t.Errorf("%s lost acknowledged write %s (revision %d)", m.Name, a.key, a.rev)
				}
			case k.value != a.value || k.modRev != a.rev || k.version != 1:
				t.Errorf("%s has %s = %q (mod revision %d, version %d), acknowledged %q at revision %d, version 1",
					m.Name, a.key, k.value, k.modRev, k.version, a.value, a.rev)
			}
		}
		if lost > 0 {
			t.Errorf("%s lost %d of %d acknowledged writes", m.Name, lost, len(all))
		}
		if first == nil {
			first = got
			continue
		}
		if d := diffKVs(first, got); d != "" {
			t.Errorf("%s and %s hold different data: %s", c.members[0].Name, m.Name, d)
		}
	}
	c.checkSameHashKV(rev)
	c.checkLogs()
}

// diffKVs describes the first few differences between two members' data.
func diffKVs(a, b map[string]*kv) string {
	var d []string
	for k, va := range a {
		if vb := b[k]; vb == nil {
			d = append(d, fmt.Sprintf("%s only on the first", k))
		} else if *va != *vb {
			d = append(d, fmt.Sprintf("%s: %+v vs %+v", k, *va, *vb))
		}
	}
	for k := range b {
		if a[k] == nil {
			d = append(d, fmt.Sprintf("%s only on the second", k))
		}
	}
	if len(d) > 10 {
		d = append(d[:10], fmt.Sprintf("... %d differences in all", len(d)))
	}
	return strings.Join(d, "; ")
}

func TestSIGTERMOnLeaderHandsLeadershipOver(t *testing.T) {
	c := newCluster(t, kvorumBin, 3)
	putMany(t, c.client(), "before/", 50, 4)
	leader, term := c.leader()
	leader.stop()

	// Leadership moved before the process exited. Without a hand-over the
	// others would notice the loss only after an election timeout (500ms)
	// and elect after that; so a leader seen at once was handed over.
	rest := c.running()
	cli := c.client(rest...)
	var newLeader *member
	var newTerm uint64
	var err error
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if newLeader, newTerm, err = c.findLeader(cli); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no leader among the remaining members right after the leader %s stopped: %v (no hand-over?)", leader.Name, err)
	}
	if newTerm <= term {
		t.Errorf("new leader %s has term %d, want above the old term %d", newLeader.Name, newTerm, term)
	}
	log := leader.LastRunLog()
	if !strings.Contains(log, "transferring leadership") {
		t.Errorf("%s's log does not show a leadership transfer", leader.Name)
	}
	if strings.Contains(log, "leadership transfer before stop did not finish") {
		t.Errorf("%s's log shows an unfinished leadership transfer", leader.Name)
	}

	// The remaining two are a quorum and serve writes and linearizable reads.
	want := putMany(t, cli, "after/", 50, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "after/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("linearizable read after the hand-over: %v", err)
	}
	if len(resp.Kvs) != len(want) {
		t.Errorf("read %d keys after the hand-over, wrote %d", len(resp.Kvs), len(want))
	}
	c.checkLogs()
}

// putMany writes n keys under prefix with the given number of concurrent
// writers and returns what it wrote; any failed write fails the test.
func putMany(t *testing.T, cli *clientv3.Client, prefix string, n, concurrency int) map[string]string {
	t.Helper()
	want := make(map[string]string, n)
	for i := range n {
		want[fmt.Sprintf("%s%06d", prefix, i)] = fmt.Sprintf("value-%d-%x", i, rand.Uint32())
	}
	keys := make(chan string, n)
	for k := range want {
		keys <- k
	}
	close(keys)
	errs := make(chan error, concurrency)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cli.Put(ctx, k, want[k])
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put %s: %w", k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return want
}
