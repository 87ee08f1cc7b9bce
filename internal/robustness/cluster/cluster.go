// Package cluster runs a cluster of server processes (kvorum, or any binary
// taking etcd's flags) for multi-process tests (tests/robustness,
// tests/e2e), and injects faults into it: SIGKILL and restart from the data
// dir, SIGTERM, SIGSTOP/SIGCONT, and — when each member runs in its own
// network namespace — network partitions.
//
// In loopback mode the members listen on free 127.0.0.1 ports. In netns
// mode (root and iproute2 needed; see NetnsAvailable) each member runs in a
// network namespace of its own with one address, 10.213.X.i, on a veth
// linked to a bridge that lives in a further namespace; the test process
// reaches every member through one more veth into that bridge. Partitions
// drop traffic between member addresses with iptables inside the members'
// namespaces, so clients keep reaching every member, as in a real data
// center where the links between servers fail. Nothing changes in the
// host's own network namespace but one veth and its address.
package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kvorum/kvorum/internal/pki"
)

// Config describes a cluster to start.
type Config struct {
	Bin     string   // the server binary
	Members int      // how many members
	Dir     string   // data dirs and logs go here
	Netns   bool     // one network namespace per member (see the package doc)
	Flags   []string // extra server flags, for every member
	// Token is the --initial-cluster-token, random if empty. A data dir
	// keeps the token it was created with, and a server refuses to start
	// from it with another.
	Token string
	// DiskMB, if positive, gives each member a data dir of its own small
	// tmpfs of this size (root needed), for filling it up with FillDisk.
	DiskMB int
	// TLS runs mutual TLS on the client and the peer ports, as a
	// production cluster does: the pki package (kvorumctl pki init) makes a
	// CA and every member's server and peer certificates in Dir/pki, and
	// client certificates for the cluster's own clients (ClientName) and
	// for each of TLSClients. Members then take only clients and peers
	// with a certificate of that CA.
	TLS        bool
	TLSClients []string
}

// ClientName is the common name of the client certificate the cluster's
// own clients (Client, the health checks) present when Config.TLS is set.
const ClientName = "cluster-client"

// Cluster is a set of members, each running or not.
type Cluster struct {
	cfg     Config
	token   string
	Members []*Member
	net     *network        // nil in loopback mode
	pki     *pki.Layout     // nil without Config.TLS
	tls     *tls.Config     // what the cluster's own clients present; nil without Config.TLS
	https   *http.Transport // the health checks' transport with tls; nil without Config.TLS
}

// Member is one server of a cluster, with its current process if any.
type Member struct {
	Name      string
	IP        string
	ClientURL string
	PeerURL   string
	DataDir   string
	LogPath   string
	c         *Cluster
	ns        string // network namespace, "" in loopback mode
	args      []string
	mounted   bool // DataDir is a tmpfs of its own

	mu     sync.Mutex
	proc   *proc
	paused bool
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error
}

// Start prepares and starts a cluster and waits until every member is
// healthy. Close it when done.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	for _, m := range c.Members {
		if err := m.Start(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitHealthy(ctx, c.Members...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// New prepares a cluster without starting it: it picks the members'
// addresses (free loopback ports, or network namespaces), their flags and,
// with Config.DiskMB, mounts their data dirs. Start the members with
// Member.Start; Close the cluster when done.
func New(cfg Config) (*Cluster, error) {
	c := &Cluster{cfg: cfg, token: cfg.Token}
	if c.token == "" {
		c.token = fmt.Sprintf("robustness-%d", rand.Uint32())
	}
	var ips []string
	var clientPort, peerPort []int
	if cfg.Netns {
		n, err := newNetwork(cfg.Members)
		if err != nil {
			return nil, err
		}
		c.net = n
		ips = n.memberIPs
		for range cfg.Members {
			clientPort, peerPort = append(clientPort, 2379), append(peerPort, 2380)
		}
	} else {
		ports, err := FreePorts(2 * cfg.Members)
		if err != nil {
			return nil, err
		}
		for i := range cfg.Members {
			ips = append(ips, "127.0.0.1")
			clientPort, peerPort = append(clientPort, ports[2*i]), append(peerPort, ports[2*i+1])
		}
	}
	scheme := "http"
	if cfg.TLS {
		scheme = "https"
	}
	var initial []string
	for i := range cfg.Members {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i+1),
			IP:        ips[i],
			ClientURL: fmt.Sprintf("%s://%s:%d", scheme, ips[i], clientPort[i]),
			PeerURL:   fmt.Sprintf("%s://%s:%d", scheme, ips[i], peerPort[i]),
			c:         c,
		}
		if c.net != nil {
			m.ns = c.net.memberNS[i]
		}
		m.DataDir = filepath.Join(cfg.Dir, m.Name+".data")
		m.LogPath = filepath.Join(cfg.Dir, m.Name+".log")
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = append([]string{
			"--name=" + m.Name,
			"--data-dir=" + m.DataDir,
			"--listen-client-urls=" + m.ClientURL,
			"--advertise-client-urls=" + m.ClientURL,
			"--listen-peer-urls=" + m.PeerURL,
			"--initial-advertise-peer-urls=" + m.PeerURL,
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-state=new",
			"--initial-cluster-token=" + c.token,
		}, cfg.Flags...)
	}
	if cfg.TLS {
		if err := c.makeCertificates(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if cfg.DiskMB > 0 {
		for _, m := range c.Members {
			if err := m.mountDisk(cfg.DiskMB); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	return c, nil
}

// Close kills every member and removes the network namespaces. Data dirs
// and logs stay in Config.Dir.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		m.Kill()
		if m.mounted {
			run("umount", m.DataDir)
		}
	}
	if c.net != nil {
		c.net.close()
	}
	if c.https != nil {
		c.https.CloseIdleConnections()
	}
}

// Endpoints returns the client URLs of ms (all members if none).
func (c *Cluster) Endpoints(ms ...*Member) []string {
	if len(ms) == 0 {
		ms = c.Members
	}
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns a client of ms (all members if none); close it.
func (c *Cluster) Client(ms ...*Member) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(ms...),
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		TLS:         c.tls,
	})
}

// makeCertificates creates the CA and certificates of Config.TLS and adds
// the TLS flags to every member's command line.
func (c *Cluster) makeCertificates() error {
	l := pki.Layout{Dir: filepath.Join(c.cfg.Dir, "pki")}
	plan := pki.Plan{CAName: "cluster-test-ca", Validity: pki.DefaultValidity, Clients: append([]string{ClientName}, c.cfg.TLSClients...)}
	for _, m := range c.Members {
		plan.Members = append(plan.Members, pki.Member{Name: m.Name, IPs: []net.IP{net.ParseIP(m.IP)}})
	}
	if _, err := l.Init(plan, time.Now()); err != nil {
		return fmt.Errorf("certificates for the cluster: %w", err)
	}
	caFile, _ := l.CA()
	certFile, keyFile := l.Client(ClientName)
	cfg, err := (transport.TLSInfo{TrustedCAFile: caFile, CertFile: certFile, KeyFile: keyFile}).ClientConfig()
	if err != nil {
		return fmt.Errorf("client TLS of the cluster: %w", err)
	}
	c.pki, c.tls = &l, cfg
	c.https = &http.Transport{TLSClientConfig: cfg, IdleConnTimeout: 10 * time.Second}
	for _, m := range c.Members {
		serverCert, serverKey := l.Member(m.Name, pki.Server)
		peerCert, peerKey := l.Member(m.Name, pki.Peer)
		m.args = append(m.args,
			"--cert-file="+serverCert, "--key-file="+serverKey,
			"--trusted-ca-file="+caFile, "--client-cert-auth",
			"--peer-cert-file="+peerCert, "--peer-key-file="+peerKey,
			"--peer-trusted-ca-file="+caFile, "--peer-client-cert-auth")
	}
	return nil
}

// ClientCertificate returns the CA file and the certificate and key files
// of the client name (ClientName or one of Config.TLSClients), for a
// client the test starts itself; ok is false without Config.TLS.
func (c *Cluster) ClientCertificate(name string) (caFile, certFile, keyFile string, ok bool) {
	if c.pki == nil {
		return "", "", "", false
	}
	caFile, _ = c.pki.CA()
	certFile, keyFile = c.pki.Client(name)
	return caFile, certFile, keyFile, true
}

// httpClient is what the cluster asks the members' HTTP endpoints
// (/health) with.
func (c *Cluster) httpClient() *http.Client {
	hc := &http.Client{Timeout: time.Second}
	if c.https != nil {
		hc.Transport = c.https
	}
	return hc
}

// startMarker begins the line Member.Start writes to the log before each
// run, with the command line after it.
const startMarker = "===== start: "

// Start starts the member from its data dir (a new one the first time).
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runningLocked() {
		return fmt.Errorf("%s is already running", m.Name)
	}
	log, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	argv := append([]string{m.c.cfg.Bin}, m.args...)
	if m.ns != "" {
		// ip netns exec execs the server in place: same pid, so signals
		// reach the server itself.
		argv = append([]string{"ip", "netns", "exec", m.ns}, argv...)
	}
	fmt.Fprintf(log, "%s%s\n", startMarker, strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = ChildAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.proc, m.paused = p, false
	return nil
}

// Replace prepares a stopped member to come back as a new member with the
// same name and URLs, as an operator replaces a failed machine: its data
// dir is emptied and it starts with --initial-cluster-state existing, so it
// joins the cluster once it was added with member add.
func (m *Member) Replace() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runningLocked() {
		return fmt.Errorf("replace %s: it is running", m.Name)
	}
	entries, err := os.ReadDir(m.DataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(m.DataDir, e.Name())); err != nil {
			return err
		}
	}
	for i, a := range m.args {
		if a == "--initial-cluster-state=new" {
			m.args[i] = "--initial-cluster-state=existing"
		}
	}
	return nil
}

func (m *Member) runningLocked() bool {
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

// Running tells whether the member has a live process (paused or not).
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runningLocked()
}

// Paused tells whether the member is stopped with SIGSTOP.
func (m *Member) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused && m.runningLocked()
}

// ExitedOnItsOwn reports a process that exited although nobody killed it.
func (m *Member) ExitedOnItsOwn() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil || m.runningLocked() {
		return nil
	}
	return fmt.Errorf("%s exited: %v", m.Name, m.proc.err)
}

// Kill sends SIGKILL and waits until the process is gone.
func (m *Member) Kill() {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	m.mu.Lock()
	m.proc, m.paused = nil, false
	m.mu.Unlock()
}

// Stop asks the member to shut down with SIGTERM (resuming it if paused)
// and waits until it has exited. It returns an error if the member was not
// running, if it still runs when ctx ends (it is then killed), or if it
// exits with a non-zero status (the error then wraps an *exec.ExitError).
func (m *Member) Stop(ctx context.Context) error {
	m.mu.Lock()
	if !m.runningLocked() {
		m.mu.Unlock()
		return fmt.Errorf("stop %s: not running", m.Name)
	}
	p := m.proc
	err := p.cmd.Process.Signal(syscall.SIGTERM)
	if err == nil && m.paused {
		err = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("stop %s: %w", m.Name, err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		m.Kill()
		return fmt.Errorf("%s still running after SIGTERM (%w); killed it", m.Name, ctx.Err())
	}
	m.mu.Lock()
	if m.proc == p {
		m.proc, m.paused = nil, false
	}
	m.mu.Unlock()
	if p.err != nil {
		return fmt.Errorf("%s exited with %w after SIGTERM, want a clean exit", m.Name, p.err)
	}
	return nil
}

// Pause stops the process with SIGSTOP and returns once every thread of
// it has stopped: the signal is delivered asynchronously, and a member
// still running for a moment could finish a request the caller meant to
// reach a paused one.
func (m *Member) Pause() error {
	if err := m.signal(syscall.SIGSTOP, true); err != nil {
		return err
	}
	m.mu.Lock()
	if m.proc == nil {
		m.mu.Unlock()
		return nil
	}
	pid := m.proc.cmd.Process.Pid
	m.mu.Unlock()
	for deadline := time.Now().Add(2 * time.Second); !allStopped(pid); {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: threads still running 2s after SIGSTOP", m.Name)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// allStopped reports whether every thread of process pid is stopped
// (state T or t in /proc/PID/task/TID/stat), or the process is gone.
func allStopped(pid int) bool {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return true
	}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		// The state follows the command name, which is in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		if st := b[i+2]; st != 'T' && st != 't' && st != 'Z' && st != 'X' {
			return false
		}
	}
	return true
}

// Resume continues a paused process with SIGCONT.
func (m *Member) Resume() error { return m.signal(syscall.SIGCONT, false) }

func (m *Member) signal(sig syscall.Signal, paused bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.runningLocked() {
		return fmt.Errorf("%s is not running", m.Name)
	}
	if err := m.proc.cmd.Process.Signal(sig); err != nil {
		return err
	}
	m.paused = paused
	return nil
}

// LogText is everything the member logged in all its runs.
func (m *Member) LogText() string {
	b, err := os.ReadFile(m.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// LastRunLog is what the member logged in its latest run, from the line
// that shows its command line.
func (m *Member) LastRunLog() string {
	s := m.LogText()
	if i := strings.LastIndex(s, startMarker); i >= 0 {
		return s[i:]
	}
	return s
}

// Tail returns the last n lines of s, for quoting a log in a failure
// message.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitHealthy waits until each of ms answers /health with true (a leader
// is known and a linearizable read succeeds).
func (c *Cluster) WaitHealthy(ctx context.Context, ms ...*Member) error {
	hc := c.httpClient()
	for _, m := range ms {
		for !healthy(hc, m.ClientURL) {
			if err := m.ExitedOnItsOwn(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not healthy: %w", m.Name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
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

// Status asks m for its status with a short timeout.
func (m *Member) Status(ctx context.Context, cli *clientv3.Client) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := cli.Status(ctx, m.ClientURL)
	if err != nil {
		return nil, err
	}
	return (*pb.StatusResponse)(resp), nil
}

// Leader returns the running, unpaused member that says it leads, with
// the highest term if several do; nil if none answers so.
func (c *Cluster) Leader(ctx context.Context, cli *clientv3.Client) *Member {
	var leader *Member
	var term uint64
	for _, m := range c.Members {
		if !m.Running() || m.Paused() {
			continue
		}
		st, err := m.Status(ctx, cli)
		if err != nil || st.GetLeader() != st.GetHeader().GetMemberId() {
			continue
		}
		if leader == nil || st.GetRaftTerm() > term {
			leader, term = m, st.GetRaftTerm()
		}
	}
	return leader
}

// AgreedLeader returns the leader that every running, unpaused member
// names, with the highest term any of them reports. It returns an error if
// one of them cannot answer, if one knows no leader or names another, or
// if the leader they name is not one of them.
func (c *Cluster) AgreedLeader(ctx context.Context, cli *clientv3.Client) (*Member, uint64, error) {
	byID := map[uint64]*Member{}
	var lead, term uint64
	for _, m := range c.Members {
		if !m.Running() || m.Paused() {
			continue
		}
		st, err := m.Status(ctx, cli)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", m.Name, err)
		}
		byID[st.GetHeader().GetMemberId()] = m
		if st.GetLeader() == 0 || (lead != 0 && st.GetLeader() != lead) {
			return nil, 0, fmt.Errorf("%s sees leader %x, others %x", m.Name, st.GetLeader(), lead)
		}
		lead, term = st.GetLeader(), max(term, st.GetRaftTerm())
	}
	if m := byID[lead]; m != nil {
		return m, term, nil
	}
	return nil, 0, fmt.Errorf("leader %x is not a running member", lead)
}

// WaitConverged waits until every member is running and all report the
// same applied index, at least their commit index, and the same revision,
// and returns that revision.
func (c *Cluster) WaitConverged(ctx context.Context) (int64, error) {
	cli, err := c.Client()
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	var last string
	for {
		var applied, commit []uint64
		var revs []int64
		ok := true
		for _, m := range c.Members {
			st, err := m.Status(ctx, cli)
			if err != nil {
				last, ok = fmt.Sprintf("%s: %v", m.Name, err), false
				break
			}
			applied = append(applied, st.GetRaftAppliedIndex())
			commit = append(commit, st.GetRaftIndex())
			revs = append(revs, st.GetHeader().GetRevision())
		}
		if ok {
			last = fmt.Sprintf("applied %v, committed %v, revisions %v", applied, commit, revs)
			if allEqual(applied) && allEqual(revs) && applied[0] >= slices.Max(commit) {
				return revs[0], nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("members did not converge: %s", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func allEqual[T comparable](s []T) bool {
	for _, v := range s {
		if v != s[0] {
			return false
		}
	}
	return len(s) > 0
}

// HashKV asks every member for its HashKV at rev and returns an error if
// they differ or one cannot answer.
func (c *Cluster) HashKV(ctx context.Context, rev int64) (uint32, error) {
	cli, err := c.Client()
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	var hashes []string
	var first uint32
	same := true
	for i, m := range c.Members {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cli.HashKV(hctx, m.ClientURL, rev)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("HashKV at revision %d on %s: %w", rev, m.Name, err)
		}
		if i == 0 {
			first = resp.Hash
		}
		same = same && resp.Hash == first
		hashes = append(hashes, fmt.Sprintf("%s=%08x", m.Name, resp.Hash))
	}
	if !same {
		return 0, fmt.Errorf("members disagree on HashKV at revision %d: %s", rev, strings.Join(hashes, " "))
	}
	return first, nil
}

// badLog matches what a server must never log: a Go panic or fatal
// runtime error, a race the race detector found, or a data-corruption
// report. allowed lines are excused (a member whose disk was filled may
// stop itself).
var badLog = regexp.MustCompile(`(?i)panic|fatal|DATA RACE|corrupt|stopped on its own`)

// logCaller is the source line a JSON log line names (etcd's "caller"
// field): a file name such as server/corrupt.go says nothing about the
// event, so badLog is not matched against it.
var logCaller = regexp.MustCompile(`"caller":"[^"]*"`)

// LogProblems returns the log lines of every member that match badLog and
// none of allowed.
func (c *Cluster) LogProblems(allowed ...*regexp.Regexp) []string {
	var out []string
	for _, m := range c.Members {
		lines := strings.Split(m.LogText(), "\n")
		for i, line := range lines {
			if !badLog.MatchString(logCaller.ReplaceAllString(line, "")) || strings.HasPrefix(line, startMarker) {
				continue
			}
			if slices.ContainsFunc(allowed, func(re *regexp.Regexp) bool { return re.MatchString(line) }) {
				continue
			}
			ctx := strings.Join(lines[i:min(len(lines), i+15)], "\n")
			out = append(out, fmt.Sprintf("%s (%s line %d):\n%s", m.Name, m.LogPath, i+1, ctx))
			break // one excerpt per member is enough
		}
	}
	return out
}

// FreePorts finds n distinct free TCP ports on 127.0.0.1 in 10000-29999,
// below the kernel's ephemeral range, so that outgoing connections of other
// processes do not take them between this check and a server's bind.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free loopback ports in 10000-29999")
		}
		p := 10000 + rand.IntN(20000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	return ports, nil
}

// Describe reports each member's process state and raft status, for
// failure messages.
func (c *Cluster) Describe(ctx context.Context) string {
	cli, err := c.Client()
	if err != nil {
		return err.Error()
	}
	defer cli.Close()
	hc := c.httpClient()
	var b strings.Builder
	for _, m := range c.Members {
		fmt.Fprintf(&b, "%s: running %v, paused %v, healthy %v", m.Name, m.Running(), m.Paused(), healthy(hc, m.ClientURL))
		if st, err := m.Status(ctx, cli); err != nil {
			fmt.Fprintf(&b, ", status: %v\n", err)
		} else {
			fmt.Fprintf(&b, ", id %x, leader %x, term %d, commit %d, applied %d, revision %d, errors %v\n",
				st.GetHeader().GetMemberId(), st.GetLeader(), st.GetRaftTerm(), st.GetRaftIndex(), st.GetRaftAppliedIndex(), st.GetHeader().GetRevision(), st.GetErrors())
		}
	}
	return b.String()
}

// DumpUnhealthy sends SIGQUIT to every running member that does not answer
// /health with true, so that the Go runtime writes all its goroutines'
// stacks to the member's log (and exits), and returns their names. Used
// when a cluster does not recover, to see where a member is stuck.
func (c *Cluster) DumpUnhealthy() []string {
	hc := c.httpClient()
	var dumped []string
	for _, m := range c.Members {
		if !m.Running() || healthy(hc, m.ClientURL) {
			continue
		}
		m.Resume()
		if m.signal(syscall.SIGQUIT, false) != nil {
			continue
		}
		m.mu.Lock()
		p := m.proc
		m.mu.Unlock()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		dumped = append(dumped, m.Name)
	}
	return dumped
}
