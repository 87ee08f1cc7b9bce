package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
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

// probe GETs path on m's client URL and returns the status code and a
// comparable form of the body: for kube-style answers the sorted check
// lines with the reasons of failed checks cut (etcd lists its checks in
// map order and words its errors its own way), without Kvorum's quorum
// report.
func (m *member) probe(path string) string {
	t := m.c.t
	t.Helper()
	hc := &http.Client{Timeout: 20 * time.Second}
	resp, err := hc.Get(m.ClientURL + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", m.Name, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		switch {
		case strings.HasPrefix(l, "[+]quorum "):
			continue
		case strings.HasPrefix(l, "[-]"):
			l, _, _ = strings.Cut(l, " failed: ")
			l += " failed"
		}
		lines = append(lines, l)
	}
	slices.Sort(lines)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.Join(lines, "|"))
}

// TestHealthEndpointsAnswerLikeEtcds compares /health, /livez and /readyz
// (with ?verbose, ?exclude and single checks) of the official etcd and
// Kvorum, in a healthy cluster and on a member whose peers are all gone.
func TestHealthEndpointsAnswerLikeEtcds(t *testing.T) {
	paths := []string{"/health", "/health?serializable=true", "/livez", "/livez?verbose", "/readyz", "/readyz?verbose",
		"/readyz?verbose&exclude=linearizable_read", "/readyz/linearizable_read", "/livez/serializable_read", "/readyz/nothing"}
	bins := map[string]string{"etcd": officialEtcd(t).Server, "kvorum": kvorumBin}
	answers := make(map[string][]string)
	for _, impl := range []string{"etcd", "kvorum"} {
		t.Run(impl, func(t *testing.T) {
			c := newCluster(t, bins[impl], 3)
			leader, _ := c.leader()
			var out []string
			for _, p := range paths {
				out = append(out, "healthy "+p+": "+leader.probe(p))
			}
			for _, m := range c.members {
				if m != leader {
					m.kill()
				}
			}
			// Wait until the survivor has lost its leader (check-quorum).
			deadline := time.Now().Add(20 * time.Second)
			for !strings.HasPrefix(leader.probe("/health"), "503") {
				if time.Now().After(deadline) {
					t.Fatal("/health still healthy on a member whose peers were killed")
				}
				time.Sleep(100 * time.Millisecond)
			}
			for _, p := range paths {
				out = append(out, "alone "+p+": "+leader.probe(p))
			}
			answers[impl] = out
		})
	}
	if len(answers) == 2 && !slices.Equal(answers["etcd"], answers["kvorum"]) {
		t.Errorf("answers differ:\netcd:\n%s\nkvorum:\n%s", strings.Join(answers["etcd"], "\n"), strings.Join(answers["kvorum"], "\n"))
	}
}
