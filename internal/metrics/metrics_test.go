package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/member"
	"github.com/kvorum/kvorum/internal/testcluster"
)

// scrape reads and parses a member's /metrics.
func scrape(t *testing.T, baseURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s: %s", baseURL, resp.Status, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics of %s: %v", baseURL, err)
	}
	return fams
}

// value is the value of the only sample of a counter or gauge family.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: want one sample, got %v", name, f)
	}
	m := f.GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// labeled is the value of the counter sample of family name that carries
// the given labels.
func labeled(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	for _, m := range fams[name].GetMetric() {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match == len(labels) {
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("%s: no sample with labels %v", name, labels)
	return 0
}

// etcdTypes reads testdata/etcd-types.txt.
func etcdTypes(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/etcd-types.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	types := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, typ, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("etcd-types.txt: bad line %q", line)
		}
		types[name] = typ
	}
	return types
}

type mixinExpr struct{ name, expr string }

// mixinExprs reads testdata/etcd-mixin.txt.
func mixinExprs(t *testing.T) []mixinExpr {
	t.Helper()
	data, err := os.ReadFile("testdata/etcd-mixin.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []mixinExpr
	for _, block := range strings.Split(string(data), "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 || strings.HasPrefix(lines[0], "#") {
			continue
		}
		out = append(out, mixinExpr{name: lines[0], expr: strings.Join(lines[1:], "\n")})
	}
	if len(out) < 20 {
		t.Fatalf("etcd-mixin.txt holds %d expressions; the file is damaged", len(out))
	}
	return out
}

var (
	seriesRe  = regexp.MustCompile(`\b((?:etcd|grpc_server|process)_[a-zA-Z0-9_]+)(\{[^}]*\})?`)
	matcherRe = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
)

// family maps a series name to its family: a histogram's _bucket, _sum and
// _count series belong to the histogram.
func family(series string, types map[string]string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok && types[base] == "histogram" {
			return base
		}
	}
	return series
}

func hasLabel(f *dto.MetricFamily, label string) bool {
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				return true
			}
		}
	}
	return false
}

// TestEtcdMixinSeriesExist checks that every series the etcd-mixin's
// alerts and dashboard read is on a Kvorum member's /metrics with etcd's
// type and the labels the expressions match on, and that every etcd_*
// family Kvorum exports has the name and type of one etcd exports.
func TestEtcdMixinSeriesExist(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--metrics", "extensive"}})
	leader, _ := c.WaitLeader(10 * time.Second)
	cli := leader.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Traffic of every kind the expressions break down: unary calls, a
	// watch stream and a lease keep-alive stream.
	wch := cli.Watch(ctx, "k")
	for i := range 5 {
		if _, err := cli.Put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	<-wch
	if _, err := cli.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.KeepAliveOnce(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}

	types := etcdTypes(t)
	// Peers are probed every few seconds; wait for the first round trip.
	var fams map[string]*dto.MetricFamily
	for {
		fams = scrape(t, leader.ClientURL)
		if f := fams["etcd_network_peer_round_trip_time_seconds"]; f != nil && len(f.GetMetric()) == len(c.Members)-1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no round trip time to every peer on /metrics: %v", fams["etcd_network_peer_round_trip_time_seconds"])
		case <-time.After(200 * time.Millisecond):
		}
	}

	checked := 0
	for _, e := range mixinExprs(t) {
		for _, m := range seriesRe.FindAllStringSubmatch(e.expr, -1) {
			series, matchers := m[1], m[2]
			name := family(series, types)
			want, known := types[name]
			if !known {
				t.Errorf("%s reads %s, which testdata/etcd-types.txt does not know", e.name, series)
				continue
			}
			f := fams[name]
			if f == nil {
				t.Errorf("%s reads %s: family %s is not on /metrics", e.name, series, name)
				continue
			}
			if got := strings.ToLower(f.GetType().String()); got != want {
				t.Errorf("%s reads %s: family %s is a %s, etcd's is a %s", e.name, series, name, got, want)
			}
			for _, lm := range matcherRe.FindAllStringSubmatch(matchers, -1) {
				if label := lm[1]; label != "job" && !hasLabel(f, label) {
					t.Errorf("%s matches label %s of %s, which no sample carries", e.name, label, name)
				}
			}
			checked++
		}
	}
	if checked < 30 {
		t.Errorf("only %d series references found in the mixin's expressions", checked)
	}

	for name, f := range fams {
		if !strings.HasPrefix(name, "etcd_") && !strings.HasPrefix(name, "grpc_server_") {
			continue
		}
		want, ok := types[name]
		if !ok {
			t.Errorf("Kvorum exports %s, which etcd does not: Kvorum-only series are named kvorum_*", name)
			continue
		}
		if got := strings.ToLower(f.GetType().String()); got != want {
			t.Errorf("%s is a %s, etcd's is a %s", name, got, want)
		}
	}
	// etcd's buckets, so that dashboards' quantiles mean the same.
	for name, first := range map[string]float64{
		"etcd_disk_wal_fsync_duration_seconds":      0.001,
		"etcd_disk_backend_commit_duration_seconds": 0.001,
		"etcd_network_peer_round_trip_time_seconds": 0.0001,
		"grpc_server_handling_seconds":              0.005,
	} {
		b := fams[name].GetMetric()[0].GetHistogram().GetBucket()
		if len(b) == 0 || b[0].GetUpperBound() != first {
			t.Errorf("%s: first bucket %v, want etcd's %v", name, b, first)
		}
	}
}

// TestMetricsMove checks that the counters the etcd-mixin alerts on move
// when they should: writes move the proposal and mvcc counters on every
// member, and killing the leader bumps etcd_server_leader_changes_seen_total
// on the members that saw the new leader.
func TestMetricsMove(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader, _ := c.WaitLeader(10 * time.Second)
	c.WaitApplied(10 * time.Second)
	before := make(map[string]map[string]*dto.MetricFamily)
	for _, m := range c.Members {
		before[m.Name] = scrape(t, m.ClientURL)
	}
	leaders := 0
	for _, m := range c.Members {
		if value(t, before[m.Name], "etcd_server_has_leader") != 1 {
			t.Errorf("%s: etcd_server_has_leader is not 1", m.Name)
		}
		leaders += int(value(t, before[m.Name], "etcd_server_is_leader"))
	}
	if leaders != 1 {
		t.Errorf("etcd_server_is_leader is 1 on %d members, want 1", leaders)
	}

	const puts = 10
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range puts {
		if _, err := leader.Client().Put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A request admission refuses is counted with its code, as in etcd
	// (where the same check runs inside the handler).
	refused := func() float64 {
		return labeled(t, scrape(t, leader.ClientURL), "grpc_server_handled_total", map[string]string{"grpc_method": "Put", "grpc_code": "InvalidArgument"})
	}
	was := refused()
	if _, err := leader.Client().Put(ctx, "", "v"); err == nil {
		t.Fatal("a put with an empty key succeeded")
	}
	if got := refused(); got != was+1 {
		t.Errorf("grpc_server_handled_total{grpc_method=Put,grpc_code=InvalidArgument} went from %v to %v after a refused put", was, got)
	}
	// Each put sent its key and 1-byte value and got a response header
	// back (over 20 bytes each way).
	afterPuts := scrape(t, leader.ClientURL)
	for _, name := range []string{"etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total"} {
		if d := value(t, afterPuts, name) - value(t, before[leader.Name], name); d < 4*puts {
			t.Errorf("%s: %s grew by %v bytes after %d puts", leader.Name, name, d, puts)
		}
	}
	// The raft log's writer counts what it wrote: each put's entry, on
	// every member (all three count into one series here, as they run in
	// one process).
	if d := value(t, afterPuts, "etcd_disk_wal_write_bytes_total") - value(t, before[leader.Name], "etcd_disk_wal_write_bytes_total"); d < 20*puts {
		t.Errorf("%s: etcd_disk_wal_write_bytes_total grew by %v bytes after %d puts", leader.Name, d, puts)
	}
	c.WaitApplied(10 * time.Second)
	for _, m := range c.Members {
		after := scrape(t, m.ClientURL)
		for _, name := range []string{"etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total", "etcd_mvcc_put_total"} {
			if d := value(t, after, name) - value(t, before[m.Name], name); d < puts {
				t.Errorf("%s: %s grew by %v after %d puts", m.Name, name, d, puts)
			}
		}
		if got := value(t, after, "kvorum_cluster_voting_members"); got != 3 {
			t.Errorf("%s: kvorum_cluster_voting_members = %v, want 3", m.Name, got)
		}
	}

	for _, m := range c.Members {
		waitValue(t, m.ClientURL, "kvorum_cluster_failures_tolerated", 1)
	}

	followers := c.Followers(leader)
	leader.Stop()
	newLeader, _ := c.WaitLeader(10 * time.Second)
	if newLeader == leader {
		t.Fatal("the stopped member still leads")
	}
	// Two of three voters left: the cluster still commits, and the next
	// failure stops it.
	waitValue(t, newLeader.ClientURL, "kvorum_cluster_reachable_voters", 2)
	waitValue(t, newLeader.ClientURL, "kvorum_cluster_failures_tolerated", 0)
	for _, f := range followers {
		got := value(t, scrape(t, f.ClientURL), "etcd_server_leader_changes_seen_total")
		if was := value(t, before[f.Name], "etcd_server_leader_changes_seen_total"); got <= was {
			t.Errorf("%s: etcd_server_leader_changes_seen_total = %v after the leader was killed, was %v", f.Name, got, was)
		}
	}
}

// waitValue waits until the member at baseURL reports want for the
// single-sample family name: stream state changes reach the transport
// within a few keepalive intervals.
func waitValue(t *testing.T, baseURL, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := value(t, scrape(t, baseURL), name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %v, want %v", baseURL, name, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeURL is a loopback URL on a port that was free a moment ago.
func freeURL(t *testing.T) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: ln.Addr().String()}
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestHealthEndpoints checks /livez, /readyz and /health, on the client
// URL and on --listen-metrics-urls, in a healthy cluster and on a member
// that lost its quorum.
func TestHealthEndpoints(t *testing.T) {
	metricsURLs := make(map[string]string)
	c := testcluster.Start(t, testcluster.Options{Configure: func(cfg *config.Config) {
		u := freeURL(t)
		cfg.ListenMetricsURLs = []url.URL{u}
		metricsURLs[cfg.Name] = u.String()
	}})
	leader, _ := c.WaitLeader(10 * time.Second)
	m := c.Followers(leader)[0]
	for _, base := range []string{m.ClientURL, metricsURLs[m.Name]} {
		if code, body := get(t, base+"/readyz"); code != 200 || body != "ok\n" {
			t.Errorf("%s/readyz = %d %q, want 200 ok", base, code, body)
		}
		code, body := get(t, base+"/readyz?verbose")
		want := "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\n[+]quorum ok: voting members 3, quorum 2, reachable 3, failures tolerated 1\nok\n"
		if code != 200 || body != want {
			t.Errorf("%s/readyz?verbose = %d\n%s\nwant 200\n%s", base, code, body, want)
		}
		if code, body := get(t, base+"/livez?verbose"); code != 200 || body != "[+]serializable_read ok\nok\n" {
			t.Errorf("%s/livez?verbose = %d %q", base, code, body)
		}
		if code, body := get(t, base+"/health"); code != 200 || body != `{"health":"true","reason":""}` {
			t.Errorf("%s/health = %d %q", base, code, body)
		}
		if code, _ := get(t, base+"/metrics"); code != 200 {
			t.Errorf("%s/metrics = %d", base, code)
		}
	}

	for _, o := range c.Members {
		if o != m {
			o.Stop()
		}
	}
	base := metricsURLs[m.Name]
	// The member notices the lost leader within an election timeout.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := get(t, base+"/health")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/health still answers 200 on a member whose peers all stopped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := get(t, base+"/health"); code != 503 || body != `{"health":"false","reason":"RAFT NO LEADER"}` {
		t.Errorf("/health without a leader = %d %q", code, body)
	}
	if code, _ := get(t, base+"/health?serializable=true"); code != 200 {
		t.Errorf("/health?serializable=true without a leader = %d, want 200", code)
	}
	code, body := get(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "[-]linearizable_read failed: ") || !strings.Contains(body, "[+]serializable_read ok\n") {
		t.Errorf("/readyz without a leader = %d\n%s", code, body)
	}
	if code, body := get(t, base+"/readyz/linearizable_read"); code != 503 || !strings.HasPrefix(body, "[-]linearizable_read failed: ") {
		t.Errorf("/readyz/linearizable_read without a leader = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz?exclude=linearizable_read&verbose"); code != 200 || !strings.Contains(body, "failures tolerated 0") || strings.Contains(body, "linearizable_read") {
		t.Errorf("/readyz?exclude=linearizable_read without a leader = %d\n%s", code, body)
	}
	if code, _ := get(t, base+"/livez"); code != 200 {
		t.Errorf("/livez without a leader = %d, want 200 (the process serves)", code)
	}
	fams := scrape(t, base)
	if v := value(t, fams, "etcd_server_has_leader"); v != 0 {
		t.Errorf("etcd_server_has_leader = %v without a leader", v)
	}
	if v := value(t, fams, "kvorum_cluster_failures_tolerated"); v != 0 {
		t.Errorf("kvorum_cluster_failures_tolerated = %v without a leader", v)
	}
}

// TestLearnerIsNotReady checks that a learner says so on /readyz and in
// etcd_server_is_learner, and does not count as a voter.
func TestLearnerIsNotReady(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader, _ := c.WaitLeader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := c.NewMember("m4")
	if _, err := leader.Client().MemberAddAsLearner(ctx, []string{l.PeerURL}); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	// The learner serves its client URL once it has caught up and
	// published itself.
	var code int
	var body string
	for {
		resp, err := http.Get(l.ClientURL + "/readyz?verbose")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the learner never served its client URL: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]non_learner failed: ") {
		t.Errorf("/readyz?verbose on a learner = %d\n%s", code, body)
	}
	if v := value(t, scrape(t, l.ClientURL), "etcd_server_is_learner"); v != 1 {
		t.Errorf("etcd_server_is_learner = %v on a learner", v)
	}
	if v := value(t, scrape(t, leader.ClientURL), "kvorum_cluster_voting_members"); v != 3 {
		t.Errorf("kvorum_cluster_voting_members = %v with three voters and a learner", v)
	}
}

// TestMetricsURLServesBeforeQuorum checks that --listen-metrics-urls
// answers while the member waits for the rest of its cluster: /metrics
// says there is no leader, /readyz fails, /livez passes.
func TestMetricsURLServesBeforeQuorum(t *testing.T) {
	metricsURL, client, peer := freeURL(t), freeURL(t), freeURL(t)
	others := []url.URL{freeURL(t), freeURL(t)}
	cfg, err := config.Parse([]string{
		"--name", "m1", "--data-dir", t.TempDir(),
		"--listen-client-urls", client.String(), "--advertise-client-urls", client.String(),
		"--listen-peer-urls", peer.String(), "--initial-advertise-peer-urls", peer.String(),
		"--initial-cluster", fmt.Sprintf("m1=%s,m2=%s,m3=%s", peer.String(), others[0].String(), others[1].String()),
		"--listen-metrics-urls", metricsURL.String(),
		"--heartbeat-interval", "50", "--election-timeout", "500",
	}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m, err := member.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	base := metricsURL.String()
	fams := scrape(t, base)
	if v := value(t, fams, "etcd_server_has_leader"); v != 0 {
		t.Errorf("etcd_server_has_leader = %v on a member alone in a cluster of three", v)
	}
	if v := value(t, fams, "kvorum_cluster_voting_members"); v != 3 {
		t.Errorf("kvorum_cluster_voting_members = %v before the cluster formed, want 3 from --initial-cluster", v)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]linearizable_read failed: ") {
		t.Errorf("/readyz before quorum = %d\n%s", code, body)
	}
	if code, body := get(t, base+"/livez"); code != http.StatusOK {
		t.Errorf("/livez before quorum = %d\n%s", code, body)
	}
}
