// Package testcluster runs Kvorum clusters inside one test process: every
// member is started with member.Start from flags parsed by config.Parse, as
// cmd/kvorum starts it, and listens on real loopback sockets. Tests drive
// the cluster with go.etcd.io/etcd/client/v3 and stop or restart members
// from their data dirs.
//
// Every member a cluster starts is stopped when the test ends. Member logs
// go to one buffer per cluster that is printed only if the test failed, or
// always if the environment variable KVORUM_TEST_LOGS is set.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/member"
)

// Timing used by every cluster unless Options says otherwise: short enough
// that elections cost well under a second, long enough that a loaded
// two-core machine running with -race does not start spurious ones.
const (
	DefaultHeartbeatMillis = 50
	DefaultElectionMillis  = 500
)

// Options shape a cluster. The zero value is a three-member cluster with
// the default timing.
type Options struct {
	Size int // number of members; 0 means 3
	// Args are extra flags given to every member, e.g.
	// {"--snapshot-count", "100"}.
	Args []string
	// Configure, if set, adjusts each member's parsed configuration: for
	// settings no flag reaches.
	Configure func(*config.Config)
}

// Cluster is a set of in-process members that were bootstrapped together.
type Cluster struct {
	t       testing.TB
	Members []*Member
	logs    *logSink
	opts    Options
	token   string
}

// Member is one member of a Cluster: its configuration and data dir stay
// the same across Stop and Restart.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string

	c      *Cluster
	args   []string
	conf   func(*config.Config)
	events *eventCounter

	mu      sync.Mutex
	id      uint64
	running *member.Member
	client  *clientv3.Client
}

// Start starts a cluster and returns once every member is serving client
// requests (not necessarily once a leader is elected; see WaitLeader).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Size == 0 {
		opts.Size = 3
	}
	c := &Cluster{t: t, logs: &logSink{}, opts: opts}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("KVORUM_TEST_LOGS") != "" {
			t.Logf("member logs:\n%s", c.logs.String())
		}
	})
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		c.Members = c.newMembers(opts, attempt)
		lastErr = c.startAll()
		if lastErr == nil {
			t.Cleanup(c.StopAll)
			return c
		}
		c.StopAll()
		if !errors.Is(lastErr, syscall.EADDRINUSE) {
			break
		}
		// Another process took a port between picking and binding it:
		// pick new ones, with new data dirs (member IDs depend on peer URLs).
	}
	t.Fatalf("start cluster: %v", lastErr)
	return nil
}

func (c *Cluster) newMembers(opts Options, attempt int) []*Member {
	ports := freePorts(c.t, 2*opts.Size)
	token := fmt.Sprintf("%s-%d-%d", c.t.Name(), time.Now().UnixNano(), attempt)
	c.token = token
	ms := make([]*Member, opts.Size)
	var initial []string
	for i := range ms {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i+1),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			c:         c,
			events:    &eventCounter{n: map[string]int{}},
		}
		ms[i] = m
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range ms {
		m.args = append([]string{
			"--name", m.Name,
			"--data-dir", c.t.TempDir(),
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--heartbeat-interval", strconv.Itoa(DefaultHeartbeatMillis),
			"--election-timeout", strconv.Itoa(DefaultElectionMillis),
		}, opts.Args...)
		m.conf = opts.Configure
	}
	return ms
}

// NewMember prepares a member that is not in the cluster yet, to be added
// with MemberAdd and then started with Start: it gets free ports, a data
// dir of its own and the flags of a member joining the running cluster
// (--initial-cluster-state existing, --initial-cluster listing the
// cluster's members and itself). It is appended to Members and stopped
// with the cluster.
func (c *Cluster) NewMember(name string) *Member {
	ports := freePorts(c.t, 2)
	m := &Member{
		Name:      name,
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		c:         c,
		events:    &eventCounter{n: map[string]int{}},
		conf:      c.opts.Configure,
	}
	var initial []string
	for _, o := range c.Members {
		initial = append(initial, o.Name+"="+o.PeerURL)
	}
	initial = append(initial, m.Name+"="+m.PeerURL)
	m.args = append([]string{
		"--name", m.Name,
		"--data-dir", c.t.TempDir(),
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-state", "existing",
		"--initial-cluster-token", c.token,
		"--heartbeat-interval", strconv.Itoa(DefaultHeartbeatMillis),
		"--election-timeout", strconv.Itoa(DefaultElectionMillis),
	}, c.opts.Args...)
	c.Members = append(c.Members, m)
	return m
}

// Start starts a member prepared by NewMember (or stopped) and returns once
// it has opened its listeners; it serves clients once it has caught up and
// published itself.
func (m *Member) Start() error { return m.start() }

func (c *Cluster) startAll() error {
	for _, m := range c.Members {
		if err := m.start(); err != nil {
			return err
		}
	}
	return nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// All n are held open together so they are distinct.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// StopAll stops every running member.
func (c *Cluster) StopAll() {
	for _, m := range c.Members {
		m.Stop()
	}
}

// Running lists the members that are running now.
func (c *Cluster) Running() []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m.IsRunning() {
			out = append(out, m)
		}
	}
	return out
}

// ByID returns the member with the given ID, or nil.
func (c *Cluster) ByID(id uint64) *Member {
	for _, m := range c.Members {
		if m.ID() == id {
			return m
		}
	}
	return nil
}

// WaitLeader waits until every running member reports the same leader and
// term through Maintenance.Status, and the leader is one of them. It
// returns the leader and the term.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Member, uint64) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		lead, term, why := c.agreedLeader()
		if why == "" {
			return lead, term
		}
		last = why
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no agreed leader after %v: %s", timeout, last)
	return nil, 0
}

func (c *Cluster) agreedLeader() (*Member, uint64, string) {
	var leader, term uint64
	running := c.Running()
	if len(running) == 0 {
		return nil, 0, "no member is running"
	}
	for i, m := range running {
		st, err := m.Status()
		if err != nil {
			return nil, 0, fmt.Sprintf("%s: status: %v", m.Name, err)
		}
		if st.Leader == 0 {
			return nil, 0, fmt.Sprintf("%s knows no leader (term %d)", m.Name, st.RaftTerm)
		}
		if i == 0 {
			leader, term = st.Leader, st.RaftTerm
		} else if st.Leader != leader || st.RaftTerm != term {
			return nil, 0, fmt.Sprintf("%s sees leader %x in term %d, %s sees %x in term %d",
				running[0].Name, leader, term, m.Name, st.Leader, st.RaftTerm)
		}
	}
	lead := c.ByID(leader)
	if lead == nil || !lead.IsRunning() {
		return nil, 0, fmt.Sprintf("leader %x is not a running member", leader)
	}
	return lead, term, ""
}

// WaitApplied waits until every running member has applied at least what
// the leader has committed now.
func (c *Cluster) WaitApplied(timeout time.Duration) {
	c.t.Helper()
	lead, _ := c.WaitLeader(timeout)
	st, err := lead.Status()
	if err != nil {
		c.t.Fatalf("status of leader %s: %v", lead.Name, err)
	}
	// The leader's commit index, not its applied index: a follower may
	// apply an entry before the leader does (a put through it returns
	// then), and waiting for the leader's applied index would miss it.
	for _, m := range c.Running() {
		m.WaitAppliedIndex(st.RaftIndex, timeout)
	}
}

// Followers returns the running members other than leader.
func (c *Cluster) Followers(leader *Member) []*Member {
	var out []*Member
	for _, m := range c.Running() {
		if m != leader {
			out = append(out, m)
		}
	}
	return out
}

func (m *Member) start() error {
	cfg, err := config.Parse(m.args, func(string) string { return "" })
	if err != nil {
		return fmt.Errorf("%s: parse flags %q: %w", m.Name, m.args, err)
	}
	if m.conf != nil {
		m.conf(cfg)
	}
	rm, err := member.Start(cfg, m.c.logs.logger(m.Name, m.events))
	if err != nil {
		return fmt.Errorf("%s: %w", m.Name, err)
	}
	m.mu.Lock()
	m.running = rm
	m.id = rm.Server.MemberID()
	m.mu.Unlock()
	return nil
}

// Stop stops the member (a no-op if it is not running). Its client stays
// usable and reconnects after Restart.
func (m *Member) Stop() {
	m.mu.Lock()
	rm := m.running
	m.running = nil
	m.mu.Unlock()
	if rm != nil {
		rm.Stop()
	}
}

// Restart starts a stopped member again from its data dir with the same
// flags, retrying for a while if its ports are briefly taken.
func (m *Member) Restart() {
	m.c.t.Helper()
	if m.IsRunning() {
		m.c.t.Fatalf("restart %s: it is running", m.Name)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := m.start()
		if err == nil {
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			m.c.t.Fatalf("restart %s: %v", m.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// IsRunning reports whether the member is started and not stopped.
func (m *Member) IsRunning() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running != nil
}

// ID is the member's ID. It stays the same across restarts.
func (m *Member) ID() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// Client is a client connected to this member only. It is created once and
// closed when the test ends.
func (m *Member) Client() *clientv3.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client != nil {
		return m.client
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{m.ClientURL},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		m.c.t.Fatalf("client for %s: %v", m.Name, err)
	}
	m.client = cli
	m.c.t.Cleanup(func() { cli.Close() })
	return cli
}

// Status is Maintenance.Status from this member, with a short timeout.
func (m *Member) Status() (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return m.Client().Status(ctx, m.ClientURL)
}

// WaitAppliedIndex waits until the member's raft applied index reaches idx.
func (m *Member) WaitAppliedIndex(idx uint64, timeout time.Duration) {
	m.c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		st, err := m.Status()
		if err == nil && st.RaftAppliedIndex >= idx {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("applied %d", st.RaftAppliedIndex)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.c.t.Fatalf("%s did not apply index %d within %v: %s", m.Name, idx, timeout, last)
}

// LogCount is how many records with exactly this message the member logged
// so far, across restarts.
func (m *Member) LogCount(msg string) int { return m.events.count(msg) }

// Done is closed when the running member stopped by itself (for example
// after applying its own removal); nil if it is not running.
func (m *Member) Done() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running == nil {
		return nil
	}
	return m.running.Done()
}

// StartErr starts a stopped member and returns why it could not start,
// for tests of refused starts.
func (m *Member) StartErr() error { return m.start() }

// DataDir is the member's --data-dir.
func (m *Member) DataDir() string {
	for i, a := range m.args {
		if a == "--data-dir" && i+1 < len(m.args) {
			return m.args[i+1]
		}
	}
	return ""
}
