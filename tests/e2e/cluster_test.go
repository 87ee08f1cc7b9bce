package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Timing flags that keep elections short: a killed leader is replaced in
// about a second instead of etcd's default ten.
var fastRaft = []string{"--heartbeat-interval=50", "--election-timeout=500"}

// cluster is a set of server processes (kvorum, or any binary taking etcd's
// flags) on loopback ports, with their data dirs and logs in a temp dir.
// Everything it started is killed when the test ends.
type cluster struct {
	t       *testing.T
	bin     string
	token   string
	members []*member
}

// member is one server of a cluster: its addresses, data dir and log, and
// its current process, if any.
type member struct {
	c         *cluster
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	args      []string // every flag but the --initial-cluster-token, which may be overridden
	proc      *proc
}

// proc is one run of a member.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the exit status, once done is closed
}

// newCluster starts n members of bin with the given extra flags and waits
// until every member is healthy.
func newCluster(t *testing.T, bin string, n int, extra ...string) *cluster {
	t.Helper()
	c := newStoppedCluster(t, bin, n, extra...)
	for _, m := range c.members {
		m.start()
	}
	c.waitHealthy(c.members...)
	c.waitPublished()
	return c
}

// waitPublished waits until the member list names every member with its
// client URL. A Kvorum member serves clients (and /health) before it has
// published its attributes, unlike etcd, which serves only afterwards; until
// then `etcdctl endpoint status --cluster` does not list it.
func (c *cluster) waitPublished() {
	c.t.Helper()
	cli := c.client()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := cli.MemberList(ctx)
		cancel()
		var listed []*pb.Member
		if err == nil {
			listed = resp.Members
		}
		missing := []string{}
		for _, m := range c.members {
			published := false
			for _, pm := range listed {
				if pm.GetName() == m.name && slices.Contains(pm.GetClientURLs(), m.clientURL) {
					published = true
				}
			}
			if !published {
				missing = append(missing, m.name)
			}
		}
		if err == nil && len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("members %v did not publish their name and client URL within 20s (member list: %v, err %v)", missing, listed, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newStoppedCluster prepares n members without starting them.
func newStoppedCluster(t *testing.T, bin string, n int, extra ...string) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, bin: bin, token: fmt.Sprintf("e2e-%d", rand.Uint32())}
	ports := freePorts(t, 2*n)
	var initial []string
	for i := range n {
		m := &member{
			c:         c,
			name:      fmt.Sprintf("m%d", i+1),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir = filepath.Join(dir, m.name+".data")
		m.logPath = filepath.Join(dir, m.name+".log")
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	for _, m := range c.members {
		m.args = append([]string{
			"--name=" + m.name,
			"--data-dir=" + m.dataDir,
			"--listen-client-urls=" + m.clientURL,
			"--advertise-client-urls=" + m.clientURL,
			"--listen-peer-urls=" + m.peerURL,
			"--initial-advertise-peer-urls=" + m.peerURL,
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-state=new",
		}, fastRaft...)
		m.args = append(m.args, extra...)
	}
	// Registered after t.TempDir, so it runs before the dir is removed.
	t.Cleanup(func() {
		for _, m := range c.members {
			m.killIfRunning()
		}
		if t.Failed() {
			for _, m := range c.members {
				t.Logf("----- %s log (%s), last 60 lines -----\n%s", m.name, c.bin, tail(m.logText(), 60))
			}
		}
	})
	return c
}

// freePorts finds n distinct free TCP ports on 127.0.0.1 in 10000-29999,
// below the kernel's ephemeral range, so outgoing connections of other
// processes do not take them between the check and the server's bind.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatal("no free loopback ports in 10000-29999")
		}
		p := 10000 + rand.IntN(20000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	return ports
}

func (c *cluster) endpoints(ms ...*member) []string {
	if len(ms) == 0 {
		ms = c.members
	}
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// running lists the members with a live process.
func (c *cluster) running() []*member {
	var out []*member
	for _, m := range c.members {
		if m.isRunning() {
			out = append(out, m)
		}
	}
	return out
}

// start starts the member from its data dir (a new one the first time),
// with its cluster's token unless args override it.
func (m *member) start(args ...string) {
	t := m.c.t
	t.Helper()
	if m.isRunning() {
		t.Fatalf("%s is already running", m.name)
	}
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	all := append(append([]string{}, m.args...), "--initial-cluster-token="+m.c.token)
	all = append(all, args...)
	fmt.Fprintf(log, "===== e2e: %s %s\n", m.c.bin, strings.Join(all, " "))
	cmd := exec.Command(m.c.bin, all...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", m.name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.proc = p
}

func (m *member) isRunning() bool {
	if m.proc == nil {
		return false
	}
	select {
	case <-m.proc.done:
		return false
	default:
		return true
	}
}

// kill kills the member with SIGKILL and waits until it is gone.
func (m *member) kill() {
	m.c.t.Helper()
	if !m.isRunning() {
		m.c.t.Fatalf("kill %s: not running", m.name)
	}
	m.killIfRunning()
}

func (m *member) killIfRunning() {
	if m.isRunning() {
		m.proc.cmd.Process.Signal(syscall.SIGKILL)
		<-m.proc.done
	}
}

// stop sends SIGTERM and waits for the process to exit; it fails the test
// if the member does not exit within 15s or exits with an error.
func (m *member) stop() {
	t := m.c.t
	t.Helper()
	if !m.isRunning() {
		t.Fatalf("stop %s: not running", m.name)
	}
	m.proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.proc.done:
	case <-time.After(15 * time.Second):
		m.killIfRunning()
		t.Fatalf("%s did not exit within 15s of SIGTERM", m.name)
	}
	if m.proc.err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want a clean exit", m.name, m.proc.err)
	}
}

// logText is everything the member has logged in all its runs.
func (m *member) logText() string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// lastRunLog is what the member logged in its latest run.
func (m *member) lastRunLog() string {
	s := m.logText()
	if i := strings.LastIndex(s, "===== e2e: "); i >= 0 {
		return s[i:]
	}
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHealthy waits until each member answers GET /health with
// {"health":"true"} (a leader is known and a linearizable read succeeds),
// failing fast if a member's process exits.
func (c *cluster) waitHealthy(ms ...*member) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for _, m := range ms {
		for {
			if !m.isRunning() {
				c.t.Fatalf("%s exited while waiting for it to become healthy (%v); log:\n%s", m.name, m.proc.err, tail(m.lastRunLog(), 30))
			}
			if healthy(hc, m.clientURL) {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s not healthy after 30s; log:\n%s", m.name, tail(m.lastRunLog(), 30))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func healthy(hc *http.Client, clientURL string) bool {
	resp, err := hc.Get(clientURL + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

// client returns a client for the given members (all if none), closed when
// the test ends.
func (c *cluster) client(ms ...*member) *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.endpoints(ms...),
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// status asks one member for its status.
func (m *member) status(ctx context.Context, cli *clientv3.Client) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := cli.Status(ctx, m.clientURL)
	if err != nil {
		return nil, err
	}
	return (*pb.StatusResponse)(resp), nil
}

// leader waits until the running members agree on a leader among them and
// returns it with its term.
func (c *cluster) leader() (*member, uint64) {
	c.t.Helper()
	cli := c.client()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m, term, err := c.findLeader(cli); err == nil {
			return m, term
		} else if time.Now().After(deadline) {
			c.t.Fatalf("no agreed leader after 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) findLeader(cli *clientv3.Client) (*member, uint64, error) {
	byID := map[uint64]*member{}
	var lead, term uint64
	for _, m := range c.running() {
		st, err := m.status(context.Background(), cli)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", m.name, err)
		}
		byID[st.GetHeader().GetMemberId()] = m
		if st.GetLeader() == 0 || (lead != 0 && st.GetLeader() != lead) {
			return nil, 0, fmt.Errorf("%s sees leader %x, others %x", m.name, st.GetLeader(), lead)
		}
		lead, term = st.GetLeader(), max(term, st.GetRaftTerm())
	}
	if m := byID[lead]; m != nil {
		return m, term, nil
	}
	return nil, 0, fmt.Errorf("leader %x is not a running member", lead)
}

// waitConverged waits until every running member has applied everything
// the cluster committed and all report the same applied index and revision,
// and returns that revision.
func (c *cluster) waitConverged() int64 {
	c.t.Helper()
	cli := c.client()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var applied, commit []uint64
		var revs []int64
		ok := true
		for _, m := range c.running() {
			st, err := m.status(context.Background(), cli)
			if err != nil {
				last, ok = fmt.Sprintf("%s: %v", m.name, err), false
				break
			}
			applied = append(applied, st.GetRaftAppliedIndex())
			commit = append(commit, st.GetRaftIndex())
			revs = append(revs, st.GetHeader().GetRevision())
		}
		if ok {
			last = fmt.Sprintf("applied %v, committed %v, revisions %v", applied, commit, revs)
			if allEqual(applied) && allEqual(revs) && applied[0] >= maxOf(commit) {
				return revs[0]
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("members did not converge within 30s: %s", last)
	return 0
}

func allEqual[T comparable](s []T) bool {
	for _, v := range s {
		if v != s[0] {
			return false
		}
	}
	return len(s) > 0
}

func maxOf(s []uint64) uint64 {
	var m uint64
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// readAll reads every key under prefix from one member, serializably (its
// local state, without asking the leader).
func (m *member) readAll(cli *clientv3.Client, prefix string) (map[string]*kv, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, 0, err
	}
	out := make(map[string]*kv, len(resp.Kvs))
	for _, k := range resp.Kvs {
		out[string(k.Key)] = &kv{value: string(k.Value), modRev: k.ModRevision, createRev: k.CreateRevision, version: k.Version}
	}
	if resp.More {
		return nil, 0, errors.New("range answered with more=true without a limit")
	}
	return out, resp.Header.GetRevision(), nil
}

type kv struct {
	value             string
	modRev, createRev int64
	version           int64
}

// memberClient is a client that talks to m only.
func (m *member) client() *clientv3.Client {
	return m.c.client(m)
}

// checkNoPanic fails the test if a member ever logged a Go panic or fatal
// runtime error.
func (c *cluster) checkNoPanic() {
	c.t.Helper()
	for _, m := range c.members {
		log := m.logText()
		for _, bad := range []string{"panic", "fatal error:", "DATA RACE"} {
			if i := strings.Index(log, bad); i >= 0 {
				c.t.Errorf("%s log contains %q:\n%s", m.name, bad, log[max(0, i-200):min(len(log), i+2000)])
			}
		}
	}
}

// checkSameHashKV checks that every running member computes the same
// HashKV at revision rev (the hash of the whole key space's history).
func (c *cluster) checkSameHashKV(rev int64) {
	c.t.Helper()
	var first uint32
	var firstName string
	for _, m := range c.running() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := m.client().HashKV(ctx, m.clientURL, rev)
		cancel()
		if err != nil {
			c.t.Errorf("HashKV at revision %d on %s: %v", rev, m.name, err)
			return
		}
		if firstName == "" {
			first, firstName = resp.Hash, m.name
			continue
		}
		if resp.Hash != first {
			c.t.Errorf("HashKV at revision %d: %s has %08x, %s has %08x", rev, firstName, first, m.name, resp.Hash)
		}
	}
}
