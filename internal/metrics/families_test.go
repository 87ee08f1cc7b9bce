package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/testcluster"
)

// etcdAbsent reads testdata/etcd-absent.txt: the etcd families Kvorum
// leaves out, with the reason.
func etcdAbsent(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/etcd-absent.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	absent := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, reason, ok := strings.Cut(line, " ")
		if !ok || reason == "" {
			t.Fatalf("etcd-absent.txt: a line without a reason: %q", line)
		}
		absent[name] = reason
	}
	return absent
}

// TestEveryEtcdFamilyIsExported runs a little of everything on a cluster
// (puts, a range, a read-only txn, a watch, leases granted, renewed and
// revoked, a compaction, a defragment, a hash, a snapshot) and checks that
// every family etcd exports (testdata/etcd-types.txt) is on /metrics with
// etcd's type, except those testdata/etcd-absent.txt names with a reason,
// and that the new series count what happened.
func TestEveryEtcdFamilyIsExported(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--metrics", "extensive"}})
	leader, _ := c.WaitLeader(10 * time.Second)
	cli := leader.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := cli.Watch(wctx, "k", clientv3.WithPrefix())
	const keys = 7
	for i := range keys {
		for v := range 3 {
			if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), fmt.Sprint(v)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := cli.Put(ctx, "gone", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 3*keys; {
		wr := <-wch
		if err := wr.Err(); err != nil {
			t.Fatal(err)
		}
		got += len(wr.Events)
	}
	if _, err := cli.Get(ctx, "k", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpGet("k0")).Commit(); err != nil {
		t.Fatal(err)
	}
	short, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	long, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.KeepAliveOnce(ctx, long.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, long.ID); err != nil {
		t.Fatal(err)
	}
	st, err := cli.Status(ctx, leader.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, st.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Defragment(ctx, leader.ClientURL); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.HashKV(ctx, leader.ClientURL, 0); err != nil {
		t.Fatal(err)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// The short lease expires and the leader revokes it; some families
	// appear only later: the key count once the count after the start has
	// run, the peers' round trip times after the first probe (every 5 s).
	types, absent := etcdTypes(t), etcdAbsent(t)
	var fams map[string]*dto.MetricFamily
	for {
		fams = scrape(t, leader.ClientURL)
		missing := 0
		for name := range types {
			if _, ok := absent[name]; !ok && fams[name] == nil {
				missing++
			}
		}
		if missing == 0 && counter(fams, "etcd_debugging_server_lease_expired_total") >= 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Errorf("lease %x expired: %v; families still missing: %d (listed below)", short.ID, fams["etcd_debugging_server_lease_expired_total"], missing)
		case <-time.After(200 * time.Millisecond):
			continue
		}
		break
	}

	for name, typ := range types {
		f := fams[name]
		if _, ok := absent[name]; ok {
			if f != nil {
				t.Errorf("%s is on /metrics, but etcd-absent.txt says Kvorum leaves it out", name)
			}
			continue
		}
		if f == nil {
			t.Errorf("etcd exports %s, Kvorum does not (and etcd-absent.txt gives no reason)", name)
			continue
		}
		if got := strings.ToLower(f.GetType().String()); got != typ {
			t.Errorf("%s is a %s, etcd's is a %s", name, got, typ)
		}
	}
	for name := range absent {
		if _, ok := types[name]; !ok {
			t.Errorf("etcd-absent.txt names %s, which etcd-types.txt does not know", name)
		}
	}

	// The new series count what the test did. Leases: two granted, one
	// renewed, two revoked (one on request, one on expiry).
	for name, want := range map[string]float64{
		"etcd_debugging_lease_granted_total":           2,
		"etcd_debugging_lease_revoked_total":           2,
		"etcd_debugging_lease_renewed_total":           1,
		"etcd_debugging_server_lease_expired_total":    1,
		"etcd_debugging_mvcc_keys_total":               keys,
		"etcd_debugging_mvcc_watch_stream_total":       1,
		"etcd_debugging_mvcc_watcher_total":            1,
		"etcd_disk_defrag_inflight":                    0,
		"etcd_server_snapshot_apply_in_progress_total": 0,
	} {
		if got := counter(fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]uint64{
		"etcd_disk_backend_defrag_duration_seconds":                     1,
		"etcd_mvcc_hash_rev_duration_seconds":                           1,
		"etcd_disk_backend_snapshot_duration_seconds":                   1,
		"etcd_debugging_lease_ttl_total":                                2,
		"etcd_debugging_mvcc_db_compaction_total_duration_milliseconds": 1,
	} {
		// The member's own corruption checks may hash too.
		if got := histogramCount(fams, name); got < want || (got > want && name != "etcd_mvcc_hash_rev_duration_seconds") {
			t.Errorf("%s counted %d, want %d", name, got, want)
		}
	}
	if got := counter(fams, "etcd_mvcc_db_open_read_transactions"); got < 0 {
		t.Errorf("etcd_mvcc_db_open_read_transactions = %v", got)
	}
	if got := counter(fams, "etcd_debugging_mvcc_events_total"); got < 3*keys {
		t.Errorf("etcd_debugging_mvcc_events_total = %v, want at least the %d events the watch got", got, 3*keys)
	}
	if got := counter(fams, "etcd_debugging_mvcc_db_compaction_keys_total"); got < 1 {
		t.Errorf("etcd_debugging_mvcc_db_compaction_keys_total = %v after compacting 14 overwritten versions", got)
	}
	if got := counter(fams, "etcd_network_known_peers"); got != 1 {
		t.Errorf("etcd_network_known_peers: the first sample is %v, want 1", got)
	}
	if n := len(fams["etcd_network_known_peers"].GetMetric()); n != len(c.Members) {
		t.Errorf("etcd_network_known_peers has %d samples, want one per member (%d)", n, len(c.Members))
	}
	if got := counter(fams, "os_fd_used"); got < 10 || got > counter(fams, "os_fd_limit") {
		t.Errorf("os_fd_used = %v, os_fd_limit = %v", got, counter(fams, "os_fd_limit"))
	}
	// The puts of 2-byte keys and 1-byte values, and the one of "gone".
	if got := counter(fams, "etcd_debugging_mvcc_total_put_size_in_bytes"); got != 3*3*keys+5 {
		t.Errorf("etcd_debugging_mvcc_total_put_size_in_bytes = %v after %d puts", got, 3*keys)
	}
	for _, s := range []struct {
		family string
		labels map[string]string
		min    uint64
	}{
		{"etcd_server_request_duration_seconds", map[string]string{"type": "Put", "success": "true"}, 3 * keys},
		{"etcd_server_request_duration_seconds", map[string]string{"type": "Range", "success": "true"}, 1},
		{"etcd_server_request_duration_seconds", map[string]string{"type": "ReadonlyTxn", "success": "true"}, 1},
		{"etcd_server_request_duration_seconds", map[string]string{"type": "LeaseGrant", "success": "true"}, 2},
		{"etcd_server_apply_duration_seconds", map[string]string{"version": "v3", "op": "Put", "success": "true"}, 3 * keys},
		{"etcd_server_apply_duration_seconds", map[string]string{"version": "v3", "op": "Compaction", "success": "true"}, 1},
		{"etcd_server_range_duration_seconds", map[string]string{"success": "true"}, 2},
		{"etcd_server_client_requests_total", map[string]string{"type": "unary", "client_api_version": "3.7"}, 3 * keys},
		{"etcd_server_client_requests_total", map[string]string{"type": "stream", "client_api_version": "3.7"}, 1},
	} {
		if got := sampleCount(fams, s.family, s.labels); got < s.min {
			t.Errorf("%s%v counted %d, want at least %d", s.family, s.labels, got, s.min)
		}
	}
}

// counter is the value of the first sample of a counter or gauge family,
// -1 if there is none.
func counter(fams map[string]*dto.MetricFamily, name string) float64 {
	f := fams[name]
	if f == nil || len(f.GetMetric()) == 0 {
		return -1
	}
	m := f.GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// histogramCount is the observation count of the first sample of a
// histogram family.
func histogramCount(fams map[string]*dto.MetricFamily, name string) uint64 {
	f := fams[name]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0
	}
	return f.GetMetric()[0].GetHistogram().GetSampleCount()
}

// sampleCount is the count of the sample of family name with the given
// labels: a histogram's observations or a counter's value.
func sampleCount(fams map[string]*dto.MetricFamily, name string, labels map[string]string) uint64 {
	for _, m := range fams[name].GetMetric() {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match != len(labels) {
			continue
		}
		if h := m.GetHistogram(); h != nil {
			return h.GetSampleCount()
		}
		return uint64(m.GetCounter().GetValue())
	}
	return 0
}
