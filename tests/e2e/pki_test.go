package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
)

// pkiCluster is a cluster started with mutual TLS on the client and the
// peer port, from a `kvorumctl pki init` directory. The server binary takes
// etcd's flags: the official etcd or Kvorum.
type pkiCluster struct {
	dir       string // the pki directory
	endpoints []string
}

// pkiInit runs `kvorumctl pki init` for members m1..mN on 127.0.0.1 and
// returns the directory.
func pkiInit(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	args := []string{"pki", "init", "--dir", dir, "--localhost"}
	for i := 1; i <= n; i++ {
		args = append(args, "--member", fmt.Sprintf("m%d=127.0.0.1,m%d.example", i, i))
	}
	if r := runCtl(t, kvorumctlBin, nil, "", args...); r.code != 0 {
		t.Fatalf("pki init: %v", r)
	}
	return dir
}

// startPKICluster starts n members of bin with the certificates in dir and
// waits until the cluster answers an authenticated health check.
func startPKICluster(t *testing.T, bin, ctl, dir string, n int) *pkiCluster {
	t.Helper()
	ports := freePorts(t, 2*n)
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=https://127.0.0.1:%d", i+1, ports[2*i+1]))
	}
	tc := &pkiCluster{dir: dir}
	for i := range n {
		name := fmt.Sprintf("m%d", i+1)
		client := fmt.Sprintf("https://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("https://127.0.0.1:%d", ports[2*i+1])
		tc.endpoints = append(tc.endpoints, client)
		md := filepath.Join(dir, "members", name)
		args := append([]string{
			"--name", name, "--data-dir", filepath.Join(t.TempDir(), name),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "pki-e2e",
			"--cert-file", filepath.Join(md, "server.crt"), "--key-file", filepath.Join(md, "server.key"),
			"--trusted-ca-file", filepath.Join(dir, "ca.crt"), "--client-cert-auth",
			"--peer-cert-file", filepath.Join(md, "peer.crt"), "--peer-key-file", filepath.Join(md, "peer.key"),
			"--peer-trusted-ca-file", filepath.Join(dir, "ca.crt"), "--peer-client-cert-auth",
		}, fastRaft...)
		logPath := filepath.Join(t.TempDir(), name+".log")
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = rcluster.ChildAttr()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logFile.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("----- %s log, last 30 lines -----\n%s", name, rcluster.Tail(string(b), 30))
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := tc.ctl(t, ctl, "admin", "endpoint", "health", "--cluster")
		if r.code == 0 {
			return tc
		}
		if time.Now().After(deadline) {
			t.Fatalf("the TLS cluster did not become healthy within 30s: %v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ctl runs a CLI with the CA and the given client's certificate ("" for
// none) from dir.
func (tc *pkiCluster) ctl(t *testing.T, bin, client string, args ...string) ctlResult {
	t.Helper()
	return ctlWithCerts(t, bin, tc.endpoints, tc.dir, client, args...)
}

func ctlWithCerts(t *testing.T, bin string, endpoints []string, dir, client string, args ...string) ctlResult {
	t.Helper()
	all := []string{"--cacert", filepath.Join(dir, "ca.crt")}
	if client != "" {
		all = append(all, "--cert", filepath.Join(dir, "clients", client+".crt"), "--key", filepath.Join(dir, "clients", client+".key"))
	}
	return runCtl(t, bin, endpoints, "", append(all, args...)...)
}

// TestPKICertificatesRunAMutualTLSCluster checks that what `pki init` makes
// is what a cluster with mutual TLS on both planes needs, real etcd's and
// Kvorum's alike: the
// members find each other over TLS with their peer certificates, the admin
// and kube-apiserver client certificates are let in through both CLIs,
// and a client without a certificate or with one from another CA is not.
func TestPKICertificatesRunAMutualTLSCluster(t *testing.T) {
	etcd := officialEtcd(t)
	for _, srv := range []struct{ name, bin, ctl string }{{"etcd", etcd.Server, etcd.Ctl}, {"kvorum", kvorumBin, kvorumctlBin}} {
		t.Run(srv.name, func(t *testing.T) { pkiClusterServes(t, etcd.Ctl, srv.bin, srv.ctl) })
	}
}

func pkiClusterServes(t *testing.T, etcdctl, server, ctl string) {
	dir := pkiInit(t, 3)
	tc := startPKICluster(t, server, ctl, dir, 3)
	for _, cli := range []struct{ name, bin string }{{"etcdctl", etcdctl}, {"kvorumctl", kvorumctlBin}} {
		t.Run(cli.name, func(t *testing.T) {
			for _, client := range []string{"admin", "kube-apiserver-etcd-client"} {
				if r := tc.ctl(t, cli.bin, client, "put", "k-"+client, "v"); r.code != 0 || r.stdout != "OK\n" {
					t.Errorf("put with the %s certificate: %v", client, r)
				}
			}
			if r := tc.ctl(t, cli.bin, "admin", "get", "k-admin", "--print-value-only"); r.code != 0 || r.stdout != "v\n" {
				t.Errorf("get with the admin certificate: %v", r)
			}
			r := tc.ctl(t, cli.bin, "admin", "endpoint", "health", "--cluster")
			if r.code != 0 || strings.Count(r.stdout, "is healthy") != 3 {
				t.Errorf("endpoint health --cluster: %v", r)
			}
			if r := tc.ctl(t, cli.bin, "", "--dial-timeout=1s", "--command-timeout=2s", "get", "k-admin"); r.code == 0 {
				t.Errorf("a client without a certificate was let in: %v", r)
			}
			other := pkiInit(t, 1)
			if r := ctlWithCerts(t, cli.bin, tc.endpoints, dir, "", "--cert", filepath.Join(other, "clients", "admin.crt"), "--key", filepath.Join(other, "clients", "admin.key"),
				"--dial-timeout=1s", "--command-timeout=2s", "get", "k-admin"); r.code == 0 {
				t.Errorf("a client certificate of another CA was let in: %v", r)
			}
		})
	}
}
