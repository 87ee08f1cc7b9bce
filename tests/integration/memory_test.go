package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/membudget"
	"github.com/kvorum/kvorum/internal/testcluster"
)

// memoryUsed reads kvorum_memory_used_bytes{part="part"} from a member.
func memoryUsed(t *testing.T, m *testcluster.Member, part string) float64 {
	t.Helper()
	resp, err := http.Get(m.ClientURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	prefix := fmt.Sprintf("kvorum_memory_used_bytes{part=%q} ", part)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s serves no %s", m.Name, prefix)
	return 0
}

// Large entries make the raft log reach its share of the memory budget
// long before --snapshot-count entries are applied: the log is compacted
// early and stays near its bound, and a follower that missed those entries
// still catches up (by snapshot) to the same key space.
func TestRaftLogBoundedByMemoryBudget(t *testing.T) {
	const budget = membudget.Min // raft log share: 8 MiB
	share := membudget.Split(budget).RaftLog
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--memory-budget-bytes", fmt.Sprint(budget)}})
	lead, _ := c.WaitLeader(waitTimeout)
	behind := c.Followers(lead)[0]
	behind.Stop()
	c.WaitLeader(waitTimeout)

	val := strings.Repeat("x", 256<<10)
	const puts = 120 // 30 MiB of log, under the default --snapshot-count
	for i := range puts {
		if _, err := lead.Client().Put(ctxFor(t, waitTimeout), keyN("big/", i), val); err != nil {
			t.Fatal(err)
		}
	}
	// The bound is checked after each apply: the log may exceed it by what
	// arrived since (a quarter of it, plus a batch of entries).
	if used := memoryUsed(t, lead, "raft_log"); used > float64(share)*1.25+float64(4*len(val)) {
		t.Errorf("leader's raft log holds %.0f bytes, want about %d at most", used, share)
	}

	behind.Restart()
	st, err := lead.Status()
	if err != nil {
		t.Fatal(err)
	}
	// Streaming and installing 30 MiB of state takes a while on a loaded
	// machine (and under -race).
	behind.WaitAppliedIndex(st.RaftAppliedIndex, 6*waitTimeout)
	if n := behind.LogCount("snapshot installed"); n == 0 {
		t.Errorf("%s caught up without a snapshot, though the leader kept only %d bytes of log", behind.Name, share/2)
	}
	want, err := lead.Client().Get(ctxFor(t, waitTimeout), "big/", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	got, err := behind.Client().Get(ctxFor(t, waitTimeout), "big/", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Kvs) != puts {
		t.Fatalf("leader has %d keys, want %d", len(want.Kvs), puts)
	}
	assertSameKVs(t, behind.Name, got.Kvs, want.Kvs)
}
