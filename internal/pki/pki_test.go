package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// testPlan is three members (m1 with localhost names) and two clients.
func testPlan(t *testing.T) Plan {
	t.Helper()
	var members []Member
	for _, s := range []string{"m1=10.0.1.11,m1.example", "m2=10.0.1.12,m2.example", "m3=m3.example,fd00::13"} {
		m, err := ParseMember(s)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
	}
	members[0] = members[0].WithLocalhost()
	return Plan{CAName: "test-ca", Members: members, Clients: []string{"kube-apiserver-etcd-client", "admin"}, Validity: DefaultValidity}
}

func initLayout(t *testing.T) (Layout, Plan) {
	t.Helper()
	l := Layout{Dir: filepath.Join(t.TempDir(), "pki")}
	plan := testPlan(t)
	if _, err := l.Init(plan, testNow); err != nil {
		t.Fatal(err)
	}
	return l, plan
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(certs) != 1 {
		t.Fatalf("%s holds %d certificates, want 1", path, len(certs))
	}
	return certs[0]
}

func roots(t *testing.T, l Layout) *x509.CertPool {
	t.Helper()
	caCert, _ := l.CA()
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, caCert))
	return pool
}

// verifies reports whether c chains to the pool for usage u at testNow.
func verifies(c *x509.Certificate, pool *x509.CertPool, u x509.ExtKeyUsage) error {
	_, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{u}})
	return err
}

func TestInitIssuesChainWithUsagesAndSANsPerProfile(t *testing.T) {
	l, plan := initLayout(t)
	pool := roots(t, l)
	caCert, _ := l.CA()
	ca := readCert(t, caCert)
	if !ca.IsCA || ca.Subject.CommonName != "test-ca" || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v, CN %q, key usage %b; want a CA named test-ca that signs certificates", ca.IsCA, ca.Subject.CommonName, ca.KeyUsage)
	}
	for _, m := range plan.Members {
		var wantSANs []string
		wantSANs = append(wantSANs, m.DNSNames...)
		for _, ip := range m.IPs {
			wantSANs = append(wantSANs, ip.String())
		}
		for _, p := range []Profile{Server, Peer} {
			path, _ := l.Member(m.Name, p)
			c := readCert(t, path)
			if c.Subject.CommonName != m.Name || c.IsCA {
				t.Errorf("%s: CN %q, IsCA %v; want CN %q, not a CA", path, c.Subject.CommonName, c.IsCA, m.Name)
			}
			if got := Describe(c).SANs; !slices.Equal(got, wantSANs) {
				t.Errorf("%s: SANs %q, want %q", path, got, wantSANs)
			}
			for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if err := verifies(c, pool, u); err != nil {
					t.Errorf("%s does not verify for usage %d: %v", path, u, err)
				}
			}
			if err := c.VerifyHostname(m.DNSNames[0]); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
	}
	m1, _ := l.Member("m1", Server)
	for _, h := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := readCert(t, m1).VerifyHostname(h); err != nil {
			t.Errorf("m1 was given localhost names: %v", err)
		}
	}
	m2, _ := l.Member("m2", Peer)
	if err := readCert(t, m2).VerifyHostname("127.0.0.1"); err == nil {
		t.Errorf("m2 was not given localhost names, but its certificate is valid for 127.0.0.1")
	}
	for _, name := range plan.Clients {
		path, _ := l.Client(name)
		c := readCert(t, path)
		if c.Subject.CommonName != name || len(Describe(c).SANs) != 0 {
			t.Errorf("%s: CN %q, SANs %q; want CN %q and no SANs", path, c.Subject.CommonName, Describe(c).SANs, name)
		}
		if err := verifies(c, pool, x509.ExtKeyUsageClientAuth); err != nil {
			t.Errorf("%s does not verify as a client certificate: %v", path, err)
		}
		if err := verifies(c, pool, x509.ExtKeyUsageServerAuth); err == nil {
			t.Errorf("%s verifies as a server certificate; a client certificate must not", path)
		}
	}
}

func TestInitWritesKeysOwnerOnly(t *testing.T) {
	l, _ := initLayout(t)
	n := 0
	err := filepath.WalkDir(l.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o644)
		if strings.HasSuffix(p, ".key") {
			want = 0o600
			n++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 3*2 + 2; n != want {
		t.Errorf("found %d keys, want %d (CA, server and peer per member, clients)", n, want)
	}
}

func TestInitRefusesToOverwriteAndWritesNothing(t *testing.T) {
	l, plan := initLayout(t)
	_, caKey := l.CA()
	before, _ := os.ReadFile(caKey)
	if _, err := l.Init(plan, testNow); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second init: err %v, want 'already exists'", err)
	}
	if after, _ := os.ReadFile(caKey); !bytes.Equal(before, after) {
		t.Errorf("second init changed %s", caKey)
	}

	// One file in the way: nothing else is written either.
	l2 := Layout{Dir: t.TempDir()}
	admin, _ := l2.Client("admin")
	if err := os.MkdirAll(filepath.Dir(admin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(admin, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Init(plan, testNow); err == nil || !strings.Contains(err.Error(), admin) {
		t.Fatalf("init over an existing %s: err %v, want an error naming it", admin, err)
	}
	caCert2, _ := l2.CA()
	if _, err := os.Stat(caCert2); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("init refused, but wrote %s (stat: %v)", caCert2, err)
	}
}

func TestAddMemberSignsWithExistingCAAndRefusesExistingMember(t *testing.T) {
	l, _ := initLayout(t)
	m4, err := ParseMember("m4=10.0.1.14,m4.example")
	if err != nil {
		t.Fatal(err)
	}
	later := testNow.Add(30 * 24 * time.Hour)
	written, err := l.AddMember(m4, DefaultValidity.Leaf, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 4 {
		t.Errorf("add-member wrote %q, want server and peer certificate and key", written)
	}
	pool := roots(t, l)
	for _, p := range []Profile{Server, Peer} {
		path, _ := l.Member("m4", p)
		c := readCert(t, path)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: later, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s does not verify against the existing CA: %v", path, err)
		}
		if err := c.VerifyHostname("10.0.1.14"); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	if _, err := l.AddMember(m4, DefaultValidity.Leaf, later); err == nil {
		t.Errorf("adding m4 twice succeeded; it must refuse to overwrite")
	}
	if _, err := (Layout{Dir: t.TempDir()}).AddMember(m4, DefaultValidity.Leaf, later); err == nil || !strings.Contains(err.Error(), "pki init") {
		t.Errorf("add-member without a CA: err %v, want one pointing to pki init", err)
	}
}

func TestLeafNeverOutlivesItsCA(t *testing.T) {
	ca, err := NewCA("short", testNow, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(Request{Profile: Client, CommonName: "c", Validity: 365 * 24 * time.Hour}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCertificates(pair.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !certs[0].NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("leaf valid until %v, CA until %v; the leaf must stop with its CA", certs[0].NotAfter, ca.Cert.NotAfter)
	}
}

func TestParseMember(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ips     []string
		dns     []string
		wantErr bool
	}{
		{in: "m1=10.0.1.11,m1.example", ips: []string{"10.0.1.11"}, dns: []string{"m1.example"}},
		{in: "m1=fd00::1, m1.example,*.m1.example", ips: []string{"fd00::1"}, dns: []string{"m1.example", "*.m1.example"}},
		{in: "m1=10.0.1.11,10.0.1.11", ips: []string{"10.0.1.11"}},
		{in: "m1"},
		{in: "=10.0.1.11", wantErr: true},
		{in: "../m1=10.0.1.11", wantErr: true},
		{in: "m1=not a host", wantErr: true},
		{in: "m1=10.0.1.11,", wantErr: true},
	} {
		m, err := ParseMember(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseMember(%q): err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		var ips []string
		for _, ip := range m.IPs {
			ips = append(ips, ip.String())
		}
		if !slices.Equal(ips, tc.ips) || !slices.Equal(m.DNSNames, tc.dns) {
			t.Errorf("ParseMember(%q) = IPs %q, DNS %q; want %q, %q", tc.in, ips, m.DNSNames, tc.ips, tc.dns)
		}
	}
}

func TestOpensslVerifyAcceptsTheCertificates(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed; the chain is still checked with crypto/x509 by the other tests")
	}
	// openssl checks validity against the real clock: issue at the real
	// time, not testNow.
	plan := testPlan(t)
	l := Layout{Dir: filepath.Join(t.TempDir(), "pki")}
	if _, err := l.Init(plan, time.Now()); err != nil {
		t.Fatal(err)
	}
	caCert, _ := l.CA()
	check := func(purpose, path string) {
		out, err := exec.Command(openssl, "verify", "-CAfile", caCert, "-purpose", purpose, path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Errorf("openssl verify -purpose %s %s: %v\n%s", purpose, path, err, out)
		}
	}
	for _, m := range plan.Members {
		for _, p := range []Profile{Server, Peer} {
			path, _ := l.Member(m.Name, p)
			check("sslserver", path)
			check("sslclient", path)
		}
	}
	for _, c := range plan.Clients {
		path, _ := l.Client(c)
		check("sslclient", path)
	}
	// And it refuses a client certificate as a server's.
	admin, _ := l.Client("admin")
	if out, err := exec.Command(openssl, "verify", "-CAfile", caCert, "-purpose", "sslserver", admin).CombinedOutput(); err == nil && strings.Contains(string(out), ": OK") {
		t.Errorf("openssl accepts the admin client certificate as a server certificate:\n%s", out)
	}
}

// handshake runs one TLS handshake between a server presenting the given
// member's server certificate (requiring a client certificate signed by
// the layout's CA) and a client presenting clientCert; it returns the
// common name the server saw and the client's error. A server that accepts
// the client writes one byte, so the client learns the outcome by reading
// (in TLS 1.3 the client's handshake ends before the server checks it).
func handshake(t *testing.T, l Layout, member string, clientCert tls.Certificate) (string, error) {
	t.Helper()
	certFile, keyFile := l.Member(member, Server)
	srvCert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := roots(t, l)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			seen <- ""
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if tc.Handshake() != nil {
			seen <- ""
			return
		}
		seen <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
		_, _ = conn.Write([]byte("k"))
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}})
	if err == nil {
		var b [1]byte
		_, err = io.ReadFull(conn, b[:])
		conn.Close()
	}
	return <-seen, err
}

func TestMutualTLSHandshakeWithMemberAndAdminCertificates(t *testing.T) {
	l := Layout{Dir: filepath.Join(t.TempDir(), "pki")}
	if _, err := l.Init(testPlan(t), time.Now()); err != nil {
		t.Fatal(err)
	}
	adminCrt, adminKey := l.Client("admin")
	admin, err := tls.LoadX509KeyPair(adminCrt, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	cn, err := handshake(t, l, "m1", admin)
	if err != nil || cn != "admin" {
		t.Fatalf("mutual TLS between m1 and admin: client error %v, server saw CN %q; want success as admin", err, cn)
	}

	// A client certificate from another CA is refused.
	other := Layout{Dir: filepath.Join(t.TempDir(), "other")}
	if _, err := other.Init(testPlan(t), time.Now()); err != nil {
		t.Fatal(err)
	}
	foreignCrt, foreignKey := other.Client("admin")
	foreign, err := tls.LoadX509KeyPair(foreignCrt, foreignKey)
	if err != nil {
		t.Fatal(err)
	}
	if cn, err := handshake(t, l, "m1", foreign); err == nil || cn != "" {
		t.Errorf("a client certificate of another CA was accepted (client error %v, server saw %q)", err, cn)
	}
}

func TestScanReportsExpiredForeignAndMismatchedCertificates(t *testing.T) {
	l, _ := initLayout(t)
	entries, err := Scan(l.Dir, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1+3*2+2 {
		t.Fatalf("scan found %d certificates, want 9", len(entries))
	}
	for _, e := range entries {
		if len(e.Problems) != 0 {
			t.Errorf("%s: problems %q in a fresh layout", e.Path, e.Problems)
		}
	}
	if entries[0].Path != "ca.crt" || !entries[0].IsCA {
		t.Errorf("first entry %q (CA %v), want ca.crt", entries[0].Path, entries[0].IsCA)
	}

	// A year and a day later every leaf has expired, the CA has not.
	entries, err = Scan(l.Dir, testNow.Add(366*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		expired := slices.Contains(e.Problems, "expired")
		if expired == e.IsCA {
			t.Errorf("%s a year and a day later: problems %q", e.Path, e.Problems)
		}
	}

	// A certificate of another CA, and a key swapped for another.
	other, _ := initLayout(t)
	otherCrt, otherKey := other.Client("admin")
	data, _ := os.ReadFile(otherCrt)
	if err := os.WriteFile(filepath.Join(l.Dir, "clients", "stranger.crt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	keyData, _ := os.ReadFile(otherKey)
	_, adminKey := l.Client("admin")
	if err := os.WriteFile(adminKey, keyData, 0o600); err != nil {
		t.Fatal(err)
	}
	entries, err = Scan(l.Dir, testNow)
	if err != nil {
		t.Fatal(err)
	}
	problems := map[string]string{}
	for _, e := range entries {
		problems[e.Path] = strings.Join(e.Problems, "; ")
	}
	if p := problems[filepath.Join("clients", "stranger.crt")]; !strings.Contains(p, "not signed by ca.crt") {
		t.Errorf("stranger.crt: problems %q, want 'not signed by ca.crt'", p)
	}
	if p := problems[filepath.Join("clients", "admin.crt")]; !strings.Contains(p, "admin.key") {
		t.Errorf("admin.crt with a foreign key: problems %q, want one naming admin.key", p)
	}

	// A key others may read.
	serverKey := filepath.Join(l.Dir, "members", "m1", "server.key")
	if err := os.Chmod(serverKey, 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err = Scan(l.Dir, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Path == filepath.Join("members", "m1", "server.crt") && !strings.Contains(strings.Join(e.Problems, ";"), "server.key: mode -rw-r--r--") {
			t.Errorf("server.key with mode 0644: problems %q, want one about its mode", e.Problems)
		}
	}
}
