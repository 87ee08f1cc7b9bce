package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metric reads the single sample of a counter or gauge family from m's
// /metrics on its client URL.
func (m *member) metric(name string) float64 {
	t := m.c.t
	t.Helper()
	resp, err := http.Get(m.ClientURL + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", m.Name, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics of %s: %v", m.Name, err)
	}
	f := fams[name]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: %s: want one sample, got %v", m.Name, name, f)
	}
	if f.GetType() == dto.MetricType_COUNTER {
		return f.GetMetric()[0].GetCounter().GetValue()
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

// TestMetricsMoveLikeEtcds runs the same scenario against the official
// etcd and Kvorum: puts move the proposal and mvcc counters on every
// member, and SIGKILL of the leader bumps etcd_server_leader_changes_seen_total
// on the survivors.
func TestMetricsMoveLikeEtcds(t *testing.T) {
	bins := map[string]string{"etcd": officialEtcd(t).Server, "kvorum": kvorumBin}
	for _, impl := range []string{"etcd", "kvorum"} {
		t.Run(impl, func(t *testing.T) {
			c := newCluster(t, bins[impl], 3)
			leader, _ := c.leader()
			committed := make(map[*member]float64)
			puts := make(map[*member]float64)
			changes := make(map[*member]float64)
			for _, m := range c.members {
				committed[m] = m.metric("etcd_server_proposals_committed_total")
				puts[m] = m.metric("etcd_mvcc_put_total")
				changes[m] = m.metric("etcd_server_leader_changes_seen_total")
			}
			const n = 10
			cli := leader.client()
			for i := range n {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := cli.Put(ctx, "metrics/k", fmt.Sprint(i))
				cancel()
				if err != nil {
					t.Fatal(err)
				}
			}
			c.waitConverged()
			for _, m := range c.members {
				if d := m.metric("etcd_server_proposals_committed_total") - committed[m]; d < n {
					t.Errorf("%s: etcd_server_proposals_committed_total grew by %v after %d puts", m.Name, d, n)
				}
				if d := m.metric("etcd_mvcc_put_total") - puts[m]; d != n {
					t.Errorf("%s: etcd_mvcc_put_total grew by %v after %d puts", m.Name, d, n)
				}
			}

			leader.kill()
			newLeader, _ := c.leader()
			for _, m := range c.running() {
				if got := m.metric("etcd_server_leader_changes_seen_total"); got <= changes[m] {
					t.Errorf("%s: etcd_server_leader_changes_seen_total = %v after the leader was killed, was %v", m.Name, got, changes[m])
				}
				if got := m.metric("etcd_server_is_leader"); (got == 1) != (m == newLeader) {
					t.Errorf("%s: etcd_server_is_leader = %v, the leader is %s", m.Name, got, newLeader.Name)
				}
			}
		})
	}
}
