package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
	"github.com/kvorum/kvorum/internal/testcerts"
)

// tlsMember is one kvorum process of a TLS test cluster, started with
// https URLs. The processes are started and stopped here rather than by
// internal/robustness/cluster, whose members speak plain http.
type tlsMember struct {
	name, clientURL, peerURL, dataDir, logPath string
	args                                       []string
	bin                                        string // the server binary; kvorumBin if empty
	cmd                                        *exec.Cmd
	done                                       chan struct{}
}

type tlsCluster struct {
	t       *testing.T
	dir     string
	token   string
	members []*tlsMember
}

// newTLSCluster prepares n members with https client and peer URLs on free
// loopback ports; flags(i) gives the TLS flags of member i, common the
// flags of all.
func newTLSCluster(t *testing.T, dir string, n int, flags func(i int) []string, common ...string) *tlsCluster {
	t.Helper()
	ports, err := rcluster.FreePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	c := &tlsCluster{t: t, dir: dir, token: fmt.Sprintf("e2e-tls-%d", rand.Uint32())}
	var initial []string
	for i := range n {
		m := &tlsMember{
			name:      fmt.Sprintf("m%d", i+1),
			clientURL: fmt.Sprintf("https://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("https://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir = filepath.Join(dir, m.name+".data")
		m.logPath = filepath.Join(dir, m.name+".log")
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	for i, m := range c.members {
		m.args = append(append([]string{
			"--name=" + m.name, "--data-dir=" + m.dataDir,
			"--listen-client-urls=" + m.clientURL, "--advertise-client-urls=" + m.clientURL,
			"--listen-peer-urls=" + m.peerURL, "--initial-advertise-peer-urls=" + m.peerURL,
			"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=new",
			"--initial-cluster-token=" + c.token,
		}, fastRaft...), append(flags(i), common...)...)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			m.kill()
			if t.Failed() {
				b, _ := os.ReadFile(m.logPath)
				t.Logf("----- %s log, last 40 lines -----\n%s", m.name, rcluster.Tail(string(b), 40))
			}
		}
	})
	return c
}

func (m *tlsMember) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	bin := kvorumBin
	if m.bin != "" {
		bin = m.bin
	}
	m.cmd = exec.Command(bin, m.args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(m.cmd, m.done)
}

func (m *tlsMember) kill() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

func (m *tlsMember) log() string {
	b, _ := os.ReadFile(m.logPath)
	return string(b)
}

// waitHealthy waits until every member answers GET /health over TLS with
// health true, failing at once if a process exits.
func (c *tlsCluster) waitHealthy(tc *tls.Config) {
	c.t.Helper()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range c.members {
		for {
			if healthOK(hc, m.clientURL) {
				break
			}
			select {
			case <-m.done:
				c.t.Fatalf("%s exited; log:\n%s", m.name, rcluster.Tail(m.log(), 30))
			default:
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s not healthy within 30s; log:\n%s", m.name, rcluster.Tail(m.log(), 30))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func healthOK(hc *http.Client, url string) bool {
	resp, err := hc.Get(url + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct{ Health string }
	return json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

func (c *tlsCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// waitLog waits until m's log has a line containing every one of parts.
func waitLog(t *testing.T, m *tlsMember, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, line := range strings.Split(m.log(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s logged no line with %q within 15s; log:\n%s", m.name, parts, rcluster.Tail(m.log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tlsClientConfig(t *testing.T, caFile string, p *testcerts.Pair) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool}
	if p != nil {
		cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Always present it, as etcdctl does, even when the server asks
		// for another CA's certificates.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return tc
}

func newTLSClient(t *testing.T, eps []string, tc *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: tc, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// refused checks that a request with tc fails and that m logs the
// refusal with the reason.
func refused(t *testing.T, m *tlsMember, endpoint string, tc *tls.Config, reason string) {
	t.Helper()
	cli := newTLSClient(t, []string{endpoint}, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "refused", "x"); err == nil {
		t.Fatalf("put with a client that should be refused (%s) succeeded", reason)
	}
	waitLog(t, m, "rejected connection", `"plane":"client"`, "remote-addr", reason)
}

func TestMutualTLSOnBothPlanes(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "ca")
	other := testcerts.NewCA(t, dir, "other-ca")
	admin := ca.Issue(t, testcerts.Spec{Name: "admin", Client: true})
	revoked := ca.Issue(t, testcerts.Spec{Name: "revoked", Client: true})
	expired := ca.Issue(t, testcerts.Spec{Name: "expired", Client: true, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	foreign := other.Issue(t, testcerts.Spec{Name: "foreign", Client: true})
	crl := filepath.Join(dir, "crl.pem")
	ca.WriteCRL(t, crl, revoked)
	memberCert := func(name, cn string, by *testcerts.CA) testcerts.Pair {
		return by.Issue(t, testcerts.Spec{Name: name, CN: cn, Hosts: []string{"127.0.0.1", "localhost"}, Server: true, Client: true})
	}
	var certs []testcerts.Pair
	c := newTLSCluster(t, dir, 3, func(i int) []string {
		p := memberCert(fmt.Sprintf("m%d", i+1), fmt.Sprintf("m%d", i+1), ca)
		certs = append(certs, p)
		return []string{
			"--cert-file=" + p.CertFile, "--key-file=" + p.KeyFile, "--trusted-ca-file=" + ca.File,
			"--client-cert-auth", "--client-crl-file=" + crl,
			"--peer-cert-file=" + p.CertFile, "--peer-key-file=" + p.KeyFile, "--peer-trusted-ca-file=" + ca.File,
			"--peer-client-cert-auth",
		}
	})
	for _, m := range c.members {
		m.start(t)
	}
	adminTLS := tlsClientConfig(t, ca.File, &admin)
	c.waitHealthy(adminTLS)

	t.Run("client/v3 with a certificate", func(t *testing.T) {
		cli := newTLSClient(t, c.endpoints(), adminTLS)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Get(ctx, "k")
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
			t.Fatalf("get k = %v, %v; want v", resp, err)
		}
		ml, err := cli.MemberList(ctx)
		if err != nil || len(ml.Members) != 3 {
			t.Fatalf("member list = %v, %v", ml, err)
		}
		for _, pm := range ml.Members {
			if len(pm.ClientURLs) != 1 || !strings.HasPrefix(pm.ClientURLs[0], "https://") || !strings.HasPrefix(pm.PeerURLs[0], "https://") {
				t.Errorf("member %s has URLs %v / %v, want https", pm.Name, pm.ClientURLs, pm.PeerURLs)
			}
		}
	})

	tlsArgs := []string{"--cacert=" + ca.File, "--cert=" + admin.CertFile, "--key=" + admin.KeyFile}
	for _, ctl := range []struct{ name, bin string }{{"etcdctl", ""}, {"kvorumctl", kvorumctlBin}} {
		t.Run(ctl.name+" with certificates", func(t *testing.T) {
			bin := ctl.bin
			if bin == "" {
				bin = officialEtcd(t).Ctl
			}
			if r := runCtl(t, bin, c.endpoints(), "", append(tlsArgs, "put", "ctl", ctl.name)...); r.code != 0 || r.stdout != "OK\n" {
				t.Fatalf("put: %s", r)
			}
			if r := runCtl(t, bin, c.endpoints()[1:2], "", append(tlsArgs, "get", "ctl", "--print-value-only")...); r.code != 0 || r.stdout != ctl.name+"\n" {
				t.Fatalf("get: %s", r)
			}
			if r := runCtl(t, bin, c.endpoints()[:1], "", append(tlsArgs, "member", "list")...); r.code != 0 || strings.Count(r.stdout, "https://127.0.0.1") != 6 {
				t.Fatalf("member list: %s", r)
			}
			r := runCtl(t, bin, c.endpoints()[:1], "", append(tlsArgs, "endpoint", "health", "--cluster")...)
			if r.code != 0 || strings.Count(r.stdout, "is healthy") != 3 {
				t.Fatalf("endpoint health --cluster: %s", r)
			}
			// The same through etcdctl's environment variables.
			r = runCtlEnv(t, bin, []string{"ETCDCTL_CACERT=" + ca.File, "ETCDCTL_CERT=" + admin.CertFile, "ETCDCTL_KEY=" + admin.KeyFile,
				"ETCDCTL_ENDPOINTS=" + c.members[2].clientURL}, "get", "ctl", "--print-value-only")
			if r.code != 0 || r.stdout != ctl.name+"\n" {
				t.Fatalf("get with ETCDCTL_* variables: %s", r)
			}
			// Without a client certificate the server refuses.
			if r := runCtl(t, bin, c.endpoints()[:1], "", "--command-timeout=1s", "--cacert="+ca.File, "get", "ctl"); r.code == 0 {
				t.Fatalf("get without a client certificate succeeded: %s", r)
			}
		})
	}

	m1 := c.members[0]
	t.Run("refusals", func(t *testing.T) {
		refused(t, m1, m1.clientURL, tlsClientConfig(t, ca.File, nil), "client didn't provide a certificate")
		refused(t, m1, m1.clientURL, tlsClientConfig(t, ca.File, &foreign), "certificate signed by unknown authority")
		refused(t, m1, m1.clientURL, tlsClientConfig(t, ca.File, &expired), "expired")
		refused(t, m1, m1.clientURL, tlsClientConfig(t, ca.File, &revoked), "revoked")
		refused(t, m1, strings.Replace(m1.clientURL, "https://", "http://", 1), nil, "first record does not look like a TLS handshake")
		// Served the refused ones, the others go on being served.
		if hc := (&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: adminTLS}}); !healthOK(hc, m1.clientURL) {
			t.Fatal("member unhealthy after refusing clients")
		}
	})

	t.Run("foreign member cannot join", func(t *testing.T) {
		// Someone takes m3's place (its name, ports and cluster token, a
		// fresh data dir, the cluster's CA certificate, which is public)
		// with a certificate of another CA. Neither side may deliver a
		// single raft message to the other.
		m3 := c.members[2]
		m3.kill()
		p := memberCert("evil", "m3", other)
		evil := &tlsMember{name: "evil", logPath: filepath.Join(dir, "evil.log")}
		for _, a := range m3.args {
			switch {
			case strings.HasPrefix(a, "--data-dir="):
				a = "--data-dir=" + filepath.Join(dir, "evil.data")
			case strings.HasPrefix(a, "--cert-file="), strings.HasPrefix(a, "--peer-cert-file="):
				a = a[:strings.Index(a, "=")+1] + p.CertFile
			case strings.HasPrefix(a, "--key-file="), strings.HasPrefix(a, "--peer-key-file="):
				a = a[:strings.Index(a, "=")+1] + p.KeyFile
			}
			evil.args = append(evil.args, a)
		}
		evil.start(t)
		for _, m := range c.members[:2] {
			waitLog(t, m, "rejected connection", `"plane":"peer"`, "certificate signed by unknown authority")
		}
		waitLog(t, evil, "peer unreachable", "certificate")
		evil.kill()
		for _, bad := range []string{"leader elected", "ready to serve client requests", "published member attributes"} {
			if strings.Contains(evil.log(), bad) {
				t.Fatalf("the member with a foreign certificate logged %q, so it heard from the cluster; log:\n%s", bad, evil.log())
			}
		}
		m3.start(t)
		c.waitHealthy(adminTLS)
	})

	t.Run("rotation without restart", func(t *testing.T) {
		// New files in place: the next connections use them.
		rotated := memberCert("m1", "m1-rotated", ca)
		if rotated.CertFile != certs[0].CertFile {
			t.Fatalf("rotated certificate went to %s, not %s", rotated.CertFile, certs[0].CertFile)
		}
		conn, err := tls.Dial("tcp", strings.TrimPrefix(m1.clientURL, "https://"), adminTLS)
		if err != nil {
			t.Fatal(err)
		}
		cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName
		conn.Close()
		if cn != "m1-rotated" {
			t.Fatalf("after rotation the client port presents CN %q, want m1-rotated", cn)
		}
		// A CRL updated in place applies to the next connection too.
		ca.WriteCRL(t, crl, revoked, admin)
		refused(t, m1, m1.clientURL, adminTLS, "revoked")
	})
}

// runCtlEnv runs an etcdctl-compatible CLI with only the given
// environment (plus PATH and HOME).
func runCtlEnv(t *testing.T, bin string, env []string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := ctlResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAutoTLSCluster(t *testing.T) {
	c := newTLSCluster(t, t.TempDir(), 3, func(int) []string { return nil }, "--auto-tls", "--peer-auto-tls")
	for _, m := range c.members {
		m.start(t)
	}
	insecure := &tls.Config{InsecureSkipVerify: true}
	c.waitHealthy(insecure)
	cli := newTLSClient(t, c.endpoints(), insecure)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "auto", "tls"); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{officialEtcd(t).Ctl, kvorumctlBin} {
		r := runCtl(t, bin, c.endpoints(), "", "--insecure-skip-tls-verify", "endpoint", "health", "--cluster")
		if r.code != 0 || strings.Count(r.stdout, "is healthy") != 3 {
			t.Fatalf("%s endpoint health --cluster: %s", filepath.Base(bin), r)
		}
		// Without --insecure-skip-tls-verify the self-signed certificates
		// are not trusted.
		if r := runCtl(t, bin, c.endpoints()[:1], "", "--command-timeout=1s", "get", "auto"); r.code == 0 {
			t.Fatalf("%s trusted a self-signed certificate: %s", filepath.Base(bin), r)
		}
	}
	for _, m := range c.members {
		if _, err := os.Stat(filepath.Join(m.dataDir, "fixtures", "peer", "cert.pem")); err != nil {
			t.Errorf("%s: no auto TLS peer certificate: %v", m.name, err)
		}
	}
}

// TestClusterHelperRunsMutualTLS checks the mutual-TLS mode of the
// multi-process cluster helper (the one the kube-apiserver test uses):
// members formed a cluster over TLS peer links, the helper's own client
// and a further client certificate it made are served, and a client
// without a certificate is refused.
func TestClusterHelperRunsMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := rcluster.Start(ctx, rcluster.Config{Bin: kvorumBin, Members: 3, Dir: t.TempDir(), Flags: fastRaft, TLS: true, TLSClients: []string{"other-client"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range c.Members {
		if !strings.HasPrefix(m.ClientURL, "https://") || !strings.HasPrefix(m.PeerURL, "https://") {
			t.Fatalf("%s: client URL %s, peer URL %s; want https", m.Name, m.ClientURL, m.PeerURL)
		}
	}
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "name", "john"); err != nil {
		t.Fatalf("put with the helper's client certificate: %v", err)
	}

	caFile, certFile, keyFile, ok := c.ClientCertificate("other-client")
	if !ok {
		t.Fatal("no certificate for other-client")
	}
	other, err := (transport.TLSInfo{TrustedCAFile: caFile, CertFile: certFile, KeyFile: keyFile}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members {
		oc, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, TLS: other, DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := oc.Get(ctx, "name")
		oc.Close()
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "john" {
			t.Fatalf("get name from %s with other-client's certificate: %v %v; want john", m.Name, resp, err)
		}
	}

	noCert, err := (transport.TLSInfo{TrustedCAFile: caFile}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), TLS: noCert, DialTimeout: 2 * time.Second})
	if err == nil {
		short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
		_, err = nc.Get(short, "name")
		cancelShort()
		nc.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served by members started with --client-cert-auth")
	}
}
