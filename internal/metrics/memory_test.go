package metrics_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvorum/kvorum/internal/testcluster"
)

// A member given --memory-budget-bytes reports the budget, the limit of
// every part it bounds, and what the parts hold after some writes; no part
// the budget bounds by itself holds more than its limit.
func TestMemorySeries(t *testing.T) {
	const budget = 128 << 20
	c := testcluster.Start(t, testcluster.Options{Size: 1, Args: []string{"--memory-budget-bytes", fmt.Sprint(budget)}})
	m, _ := c.WaitLeader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	val := strings.Repeat("v", 1000)
	for i := range 200 {
		if _, err := m.Client().Put(ctx, fmt.Sprintf("k%03d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitApplied(10 * time.Second)
	fams := scrape(t, m.ClientURL)
	if got := value(t, fams, "kvorum_memory_budget_bytes"); got != budget {
		t.Errorf("kvorum_memory_budget_bytes = %v, want %d", got, budget)
	}
	if got := value(t, fams, "kvorum_memory_raft_log_entries"); got < 200 {
		t.Errorf("kvorum_memory_raft_log_entries = %v after 200 puts, want at least 200", got)
	}
	gauge := func(name, part string) float64 {
		t.Helper()
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "part" && l.GetValue() == part {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("%s: no sample with part=%q", name, part)
		return 0
	}
	used := func(part string) float64 { return gauge("kvorum_memory_used_bytes", part) }
	for _, part := range []string{"kv_latest_cache", "raft_log", "watch_recent"} {
		if used(part) < 200*1000 {
			t.Errorf("kvorum_memory_used_bytes{part=%q} = %v after 200 puts of 1000 bytes, want at least 200000", part, used(part))
		}
	}
	var limits float64
	for _, part := range []string{"block_cache", "memtables", "kv_latest_cache", "kv_key_filter", "watch_recent"} {
		limit := gauge("kvorum_memory_limit_bytes", part)
		if limit <= 0 {
			t.Errorf("kvorum_memory_limit_bytes{part=%q} = %v, want a positive limit", part, limit)
		}
		if u := used(part); u > limit {
			t.Errorf("kvorum_memory_used_bytes{part=%q} = %v, above its limit %v", part, u, limit)
		}
		limits += limit
	}
	if limits > budget {
		t.Errorf("the parts' limits add up to %v, more than the budget %d", limits, budget)
	}
}
