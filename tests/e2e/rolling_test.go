package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
	"github.com/kvorum/kvorum/internal/testbin"
	"github.com/kvorum/kvorum/internal/testcerts"
)

// TestRollingRestartUnderLoad restarts the members of a mutual-TLS cluster
// one by one, as docs/operations.md tells an operator to, while clients
// write and read through all of them: not one request may fail beyond what
// client/v3 retries by itself.
func TestRollingRestartUnderLoad(t *testing.T) {
	rollingRestart(t, "")
}

// TestRollingUpgradeUnderLoad is the same with a binary swap: each member
// comes back from another kvorum executable, stamped with another version.
// It is the same code built twice, so this checks the procedure (stop,
// replace the file, start from the same data dir and flags), not
// compatibility between two real releases.
func TestRollingUpgradeUnderLoad(t *testing.T) {
	rollingRestart(t, upgradedKvorum(t))
}

// upgradeVersion is the version the second kvorum binary reports.
const upgradeVersion = "0.1.0-rolling-upgrade"

var upgradeOnce struct {
	sync.Once
	bin string
	err error
}

// upgradedKvorum builds kvorum a second time, next to kvorumBin, with its
// version stamped as upgradeVersion.
func upgradedKvorum(t *testing.T) string {
	t.Helper()
	upgradeOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(kvorumBin), "upgrade")
		flags := []string{"-ldflags=-X github.com/kvorum/kvorum/internal/version.Version=" + upgradeVersion}
		if testbin.RaceEnabled() {
			flags = append(flags, "-race")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		upgradeOnce.bin, upgradeOnce.err = testbin.Go(ctx, dir, "github.com/kvorum/kvorum/cmd/kvorum", flags...)
	})
	if upgradeOnce.err != nil {
		t.Fatalf("build the upgraded kvorum: %v", upgradeOnce.err)
	}
	return upgradeOnce.bin
}

func rollingRestart(t *testing.T, newBin string) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "ca")
	admin := ca.Issue(t, testcerts.Spec{Name: "admin", Client: true})
	c := newTLSCluster(t, dir, 3, func(i int) []string {
		name := fmt.Sprintf("m%d", i+1)
		p := ca.Issue(t, testcerts.Spec{Name: name, Hosts: []string{"127.0.0.1", "localhost"}, Server: true, Client: true})
		return []string{
			"--cert-file=" + p.CertFile, "--key-file=" + p.KeyFile, "--trusted-ca-file=" + ca.File, "--client-cert-auth",
			"--peer-cert-file=" + p.CertFile, "--peer-key-file=" + p.KeyFile, "--peer-trusted-ca-file=" + ca.File, "--peer-client-cert-auth",
		}
	})
	for _, m := range c.members {
		m.start(t)
	}
	tc := tlsClientConfig(t, ca.File, &admin)
	c.waitHealthy(tc)

	load := startLoad(t, c.endpoints(), tc, 4)
	load.waitProgress(t, 50)

	// Followers first, the leader last: leadership changes once, by the
	// handoff of a graceful stop.
	order := slices.Clone(c.members)
	leader := c.tlsLeader(t, tc)
	order = slices.DeleteFunc(order, func(m *tlsMember) bool { return m == leader })
	order = append(order, leader)
	for _, m := range order {
		id := c.memberID(t, tc, m)
		m.stopGracefully(t)
		if m == leader {
			if now := c.tlsLeader(t, tc); now == m {
				t.Fatalf("%s still leads after it stopped", m.name)
			}
			if log := m.log(); !strings.Contains(log, "transferring leadership before stopping") ||
				strings.Contains(log, "leadership transfer before stop did not finish") {
				t.Errorf("%s stopped without handing off its leadership; log:\n%s", m.name, rcluster.Tail(log, 20))
			}
		}
		if newBin != "" {
			m.bin = newBin
		}
		m.start(t)
		c.waitMemberHealthy(t, tc, m, id)
		// The load must go on across every step, not only at the end.
		load.waitProgress(t, 50)
	}
	failures, acked := load.stop()

	what := "restart"
	if newBin != "" {
		what = "upgrade"
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the rolling %s; the first ones:\n%s",
			len(failures), load.requests(), what, strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if t.Failed() {
		t.Logf("failed attempts:\n%s", strings.Join(load.attempts, "\n"))
	}
	t.Logf("%d puts acknowledged, %d requests in all, %d failed", len(acked), load.requests(), len(failures))

	cli := quietClient(t, c.endpoints(), tc)
	rev := checkAcked(t, cli, acked)
	c.checkHashKV(t, cli, rev)
	if newBin != "" {
		for _, m := range c.members {
			if v := kvorumVersion(t, tc, m); v != upgradeVersion {
				t.Errorf("%s reports kvorum version %q after the upgrade, want %q", m.name, v, upgradeVersion)
			}
		}
	}
	for _, m := range c.members {
		if line := badLogLine(m.log()); line != "" {
			t.Errorf("%s logged: %s", m.name, line)
		}
	}
}

// quietClient is a client of eps that logs nothing: while members restart,
// client/v3 would log every attempt it retries.
func quietClient(t *testing.T, eps []string, tc *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: tc, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// stopGracefully sends SIGTERM, as systemd or the kubelet do, and waits for
// a clean exit.
func (m *tlsMember) stopGracefully(t *testing.T) {
	t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to %s: %v", m.name, err)
	}
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s still runs 15s after SIGTERM; log:\n%s", m.name, rcluster.Tail(m.log(), 30))
	}
	if st := m.cmd.ProcessState; !st.Success() {
		t.Errorf("%s exited with %v after SIGTERM, want a clean exit", m.name, st)
	}
	m.cmd = nil
}

// tlsLeader returns the member the running members agree leads.
func (c *tlsCluster) tlsLeader(t *testing.T, tc *tls.Config) *tlsMember {
	t.Helper()
	cli := quietClient(t, c.endpoints(), tc)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var leaders []uint64
		var who *tlsMember
		for _, m := range c.members {
			if m.cmd == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, m.clientURL)
			cancel()
			if err != nil {
				leaders = append(leaders, 0)
				continue
			}
			leaders = append(leaders, st.Leader)
			if st.Leader == st.Header.MemberId {
				who = m
			}
		}
		if who != nil && !slices.ContainsFunc(leaders, func(l uint64) bool { return l != leaders[0] }) {
			return who
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running members do not agree on a leader within 20s: %x", leaders)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memberID is m's member ID, from its own Status.
func (c *tlsCluster) memberID(t *testing.T, tc *tls.Config, m *tlsMember) uint64 {
	t.Helper()
	cli := quietClient(t, []string{m.clientURL}, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, m.clientURL)
	if err != nil {
		t.Fatalf("status of %s: %v", m.name, err)
	}
	return st.Header.MemberId
}

// waitMemberHealthy waits until m is back as the member it was (same ID),
// knows a leader and serves a linearizable read: what `endpoint health`
// checks.
func (c *tlsCluster) waitMemberHealthy(t *testing.T, tc *tls.Config, m *tlsMember, id uint64) {
	t.Helper()
	cli := quietClient(t, []string{m.clientURL}, tc)
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.clientURL)
		switch {
		case err != nil:
			last = err.Error()
		case st.Header.MemberId != id:
			t.Fatalf("%s came back as member %x, was %x", m.name, st.Header.MemberId, id)
		case st.Leader == 0:
			last = "no leader known"
		default:
			_, err = cli.Get(ctx, "health")
			if err == nil {
				cancel()
				return
			}
			last = "linearizable get: " + err.Error()
		}
		cancel()
		select {
		case <-m.done:
			t.Fatalf("%s exited after the restart; log:\n%s", m.name, rcluster.Tail(m.log(), 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within 30s of its restart (%s); log:\n%s", m.name, last, rcluster.Tail(m.log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAcked reads every acknowledged key linearizably and checks its
// value; it returns the revision it read at.
func checkAcked(t *testing.T, cli *clientv3.Client, acked map[string]string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, loadPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("read back the load's keys: %v", err)
	}
	got := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	var missing, wrong []string
	for k, v := range acked {
		switch g, ok := got[k]; {
		case !ok:
			missing = append(missing, k)
		case g != v:
			wrong = append(wrong, fmt.Sprintf("%s=%q want %q", k, g, v))
		}
	}
	if len(missing)+len(wrong) > 0 {
		t.Errorf("of %d acknowledged puts, %d are missing %s and %d have another value %s",
			len(acked), len(missing), head(missing), len(wrong), head(wrong))
	}
	return resp.Header.Revision
}

// checkHashKV checks that every member hashes its key space at rev the
// same, waiting for members that have not applied rev yet.
func (c *tlsCluster) checkHashKV(t *testing.T, cli *clientv3.Client, rev int64) {
	t.Helper()
	var hashes []uint32
	for _, m := range c.members {
		deadline := time.Now().Add(15 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := cli.HashKV(ctx, m.clientURL, rev)
			cancel()
			if err == nil {
				hashes = append(hashes, resp.Hash)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("HashKV at revision %d on %s: %v", rev, m.name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if slices.ContainsFunc(hashes, func(h uint32) bool { return h != hashes[0] }) {
		t.Errorf("members disagree on HashKV at revision %d: %08x", rev, hashes)
	}
}

// kvorumVersion is the Kvorum version m reports on /version.
func kvorumVersion(t *testing.T, tc *tls.Config, m *tlsMember) string {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(m.clientURL + "/version")
	if err != nil {
		t.Fatalf("GET /version on %s: %v", m.name, err)
	}
	defer resp.Body.Close()
	var v struct{ Kvorum string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET /version on %s: %v", m.name, err)
	}
	return v.Kvorum
}

// badLine matches what a server must never log (as rcluster.LogProblems),
// with etcd's "caller" field removed first: a file name is no event.
var (
	badLine   = regexp.MustCompile(`(?i)panic|fatal|DATA RACE|corrupt|stopped on its own`)
	callerRef = regexp.MustCompile(`"caller":"[^"]*"`)
)

func badLogLine(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if badLine.MatchString(callerRef.ReplaceAllString(line, "")) {
			return line
		}
	}
	return ""
}

// loadPrefix holds every key the load writes.
const loadPrefix = "rolling/"

// load is a set of clients that each put a new key and read it back
// linearizably, over and over, through all endpoints. Every request has a
// 5s timeout and client/v3's default retries; a request that still fails
// is a failure of the cluster.
type load struct {
	stopc chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	acked    map[string]string
	failures []string
	attempts []string // failed attempts, retried or not
	done     int      // requests finished, failed or not
	progress chan struct{}
}

func startLoad(t *testing.T, endpoints []string, tc *tls.Config, workers int) *load {
	t.Helper()
	l := &load{stopc: make(chan struct{}), acked: map[string]string{}, progress: make(chan struct{}, 1)}
	for w := range workers {
		cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tc, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
			DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(l.attemptLog)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		l.wg.Go(func() { l.run(cli, w) })
	}
	t.Cleanup(func() { l.stop() })
	return l
}

// attemptLog notes every failed attempt of a request (client/v3 may retry
// it) with the member it went to, to tell a failure's story.
func (l *load) attemptLog(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var p peer.Peer
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
	if err != nil {
		l.mu.Lock()
		l.attempts = append(l.attempts, fmt.Sprintf("%s %s to %v: %v (after %v)", start.Format("15:04:05.000"), method, p.Addr, err, time.Since(start).Round(time.Millisecond)))
		l.mu.Unlock()
	}
	return err
}

func (l *load) run(cli *clientv3.Client, w int) {
	for n := 0; ; n++ {
		select {
		case <-l.stopc:
			return
		default:
		}
		key, val := fmt.Sprintf("%sw%d/%06d", loadPrefix, w, n), fmt.Sprintf("value-%d-%d", w, n)
		// Not derived from stopc: stopping the load must not cancel a
		// request in flight and count it as failed.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := cli.Put(ctx, key, val)
		cancel()
		if err != nil {
			l.record(fmt.Sprintf("%s put %s: %v (after %v)", start.Format("15:04:05.000"), key, err, time.Since(start).Round(time.Millisecond)))
			continue
		}
		l.ack(key, val)
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		start = time.Now()
		resp, err := cli.Get(ctx, key)
		cancel()
		switch {
		case err != nil:
			l.record(fmt.Sprintf("%s get %s: %v (after %v)", start.Format("15:04:05.000"), key, err, time.Since(start).Round(time.Millisecond)))
		case len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != val:
			l.record(fmt.Sprintf("get %s right after its put returned %v, want %q", key, resp.Kvs, val))
		default:
			l.record("")
		}
	}
}

func (l *load) ack(key, val string) {
	l.mu.Lock()
	l.acked[key] = val
	l.done++
	l.mu.Unlock()
	l.notify()
}

// record counts a finished read; failure is empty if it succeeded.
func (l *load) record(failure string) {
	l.mu.Lock()
	if failure != "" {
		l.failures = append(l.failures, failure)
	}
	l.done++
	l.mu.Unlock()
	l.notify()
}

func (l *load) notify() {
	select {
	case l.progress <- struct{}{}:
	default:
	}
}

func (l *load) requests() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

// waitProgress waits until n more requests have succeeded.
func (l *load) waitProgress(t *testing.T, n int) {
	t.Helper()
	succeeded := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.done - len(l.failures)
	}
	want := succeeded() + n
	deadline := time.After(30 * time.Second)
	for succeeded() < want {
		select {
		case <-l.progress:
		case <-deadline:
			t.Fatalf("the load made no progress for 30s: %d more requests succeeded, want %d", succeeded()-(want-n), n)
		}
	}
}

// stop ends the load, waits for the requests in flight, and returns the
// failures and the acknowledged puts.
func (l *load) stop() ([]string, map[string]string) {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failures), l.acked
}
