package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
)

// Timing flags that keep elections short: a killed leader is replaced in
// about a second instead of etcd's default ten.
var fastRaft = []string{"--heartbeat-interval=50", "--election-timeout=500"}

// cluster is a set of server processes (kvorum, or any binary taking etcd's
// flags) on loopback ports, with their data dirs and logs in a temp dir. The
// processes are run by package internal/robustness/cluster; this wrapper
// fails the test where that package returns an error, and kills everything
// it started when the test ends.
type cluster struct {
	t       *testing.T
	procs   *rcluster.Cluster
	members []*member // procs.Members, in the same order
}

// member is one server of a cluster.
type member struct {
	*rcluster.Member
	c *cluster
}

// newCluster starts n members of bin with the given extra flags and waits
// until every member is healthy.
func newCluster(t *testing.T, bin string, n int, extra ...string) *cluster {
	t.Helper()
	c := newStoppedCluster(t, rcluster.Config{Bin: bin, Members: n, Flags: extra})
	for _, m := range c.members {
		m.start()
	}
	c.waitHealthy(c.members...)
	c.waitPublished()
	return c
}

// newStoppedCluster prepares the members cfg describes without starting
// them. Their data dirs and logs go to a temp dir of the test, fastRaft
// comes before cfg.Flags, and the cluster token is random unless cfg.Token
// is set.
func newStoppedCluster(t *testing.T, cfg rcluster.Config) *cluster {
	t.Helper()
	cfg.Dir = t.TempDir()
	cfg.Flags = append(slices.Clone(fastRaft), cfg.Flags...)
	if cfg.Token == "" {
		cfg.Token = fmt.Sprintf("e2e-%d", rand.Uint32())
	}
	procs, err := rcluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, procs: procs}
	for _, m := range procs.Members {
		c.members = append(c.members, &member{Member: m, c: c})
	}
	// Registered after t.TempDir, so it runs before the dir is removed.
	t.Cleanup(func() {
		procs.Close()
		if t.Failed() {
			for _, m := range procs.Members {
				t.Logf("----- %s log (%s), last 60 lines -----\n%s", m.Name, cfg.Bin, rcluster.Tail(m.LogText(), 60))
			}
		}
	})
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
			published := slices.ContainsFunc(listed, func(pm *pb.Member) bool {
				return pm.GetName() == m.Name && slices.Contains(pm.GetClientURLs(), m.ClientURL)
			})
			if !published {
				missing = append(missing, m.Name)
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

// freePorts finds n distinct free loopback ports (see rcluster.FreePorts).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := rcluster.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// procsOf returns the process-level members behind ms.
func procsOf(ms []*member) []*rcluster.Member {
	var out []*rcluster.Member
	for _, m := range ms {
		out = append(out, m.Member)
	}
	return out
}

// memberOf returns the member that wraps pm.
func (c *cluster) memberOf(pm *rcluster.Member) *member {
	for _, m := range c.members {
		if m.Member == pm {
			return m
		}
	}
	panic("e2e: " + pm.Name + " is not a member of this cluster")
}

// endpoints returns the client URLs of ms (all members if none).
func (c *cluster) endpoints(ms ...*member) []string {
	return c.procs.Endpoints(procsOf(ms)...)
}

// running lists the members with a live process.
func (c *cluster) running() []*member {
	var out []*member
	for _, m := range c.members {
		if m.Running() {
			out = append(out, m)
		}
	}
	return out
}

// start starts the member from its data dir (a new one the first time).
func (m *member) start() {
	m.c.t.Helper()
	if err := m.Start(); err != nil {
		m.c.t.Fatal(err)
	}
}

// kill kills the member with SIGKILL and waits until it is gone.
func (m *member) kill() {
	m.c.t.Helper()
	if !m.Running() {
		m.c.t.Fatalf("kill %s: not running", m.Name)
	}
	m.Kill()
}

// stop sends SIGTERM and waits for the process to exit; it fails the test
// if the member does not exit within 15s or exits with an error.
func (m *member) stop() {
	t := m.c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// An unclean exit is a failure to report, but the member is gone and the
	// test can go on; after any other error it is in an unknown state.
	var exit *exec.ExitError
	switch err := m.Stop(ctx); {
	case errors.As(err, &exit):
		t.Error(err)
	case err != nil:
		t.Fatal(err)
	}
}

// waitHealthy waits until each member answers GET /health with
// {"health":"true"} (a leader is known and a linearizable read succeeds),
// failing fast if a member's process exits.
func (c *cluster) waitHealthy(ms ...*member) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range ms {
		if err := c.procs.WaitHealthy(ctx, m.Member); err != nil {
			c.t.Fatalf("%v; log:\n%s", err, rcluster.Tail(m.LastRunLog(), 30))
		}
	}
}

// client returns a client for the given members (all if none), closed when
// the test ends.
func (c *cluster) client(ms ...*member) *clientv3.Client {
	c.t.Helper()
	cli, err := c.procs.Client(procsOf(ms)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// client is a client that talks to m only.
func (m *member) client() *clientv3.Client {
	return m.c.client(m)
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

// findLeader asks the running members once for the leader they agree on.
func (c *cluster) findLeader(cli *clientv3.Client) (*member, uint64, error) {
	pm, term, err := c.procs.AgreedLeader(context.Background(), cli)
	if err != nil {
		return nil, 0, err
	}
	return c.memberOf(pm), term, nil
}

// waitConverged waits until every member has applied everything the
// cluster committed and all report the same applied index and revision,
// and returns that revision.
func (c *cluster) waitConverged() int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := c.procs.WaitConverged(ctx)
	if err != nil {
		c.t.Fatalf("within 30s: %v", err)
	}
	return rev
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

// checkLogs fails the test if a member ever logged what a server never
// should: a Go panic or fatal error, a race the race detector found, or a
// corruption report (see rcluster.Cluster.LogProblems).
func (c *cluster) checkLogs() {
	c.t.Helper()
	for _, p := range c.procs.LogProblems() {
		c.t.Errorf("bad log line: %s", p)
	}
}

// checkSameHashKV checks that every member computes the same HashKV at
// revision rev (the hash of the whole key space's history).
func (c *cluster) checkSameHashKV(rev int64) {
	c.t.Helper()
	if _, err := c.procs.HashKV(context.Background(), rev); err != nil {
		c.t.Error(err)
	}
}
