package member

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/testcerts"
)

type certSet struct {
	ca            *testcerts.CA
	server, admin testcerts.Pair
}

func newCertSet(t *testing.T) certSet {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "ca")
	return certSet{
		ca:     ca,
		server: ca.Issue(t, testcerts.Spec{Name: "server", Hosts: []string{"127.0.0.1", "localhost"}, Server: true, Client: true}),
		admin:  ca.Issue(t, testcerts.Spec{Name: "admin", CN: "admin", Client: true}),
	}
}

func (cs certSet) clientTLS(t *testing.T, withCert bool) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(cs.ca.File)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	tc := &tls.Config{RootCAs: pool}
	if withCert {
		c, err := tls.LoadX509KeyPair(cs.admin.CertFile, cs.admin.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc
}

// TestGRPCHandlersSeeTheClientCertificate checks both ways Kvorum serves
// gRPC over TLS: on a port shared with HTTP (tlsSplit) and on a gRPC-only
// port (etcd's TLS listener). In both, a handler finds the verified client
// certificate in the peer info (handshakenTLS).
func TestGRPCHandlersSeeTheClientCertificate(t *testing.T) {
	cs := newCertSet(t)
	cfg := config.Default()
	cfg.ClientTLS = config.TLSInfo{CertFile: cs.server.CertFile, KeyFile: cs.server.KeyFile, TrustedCAFile: cs.ca.File, ClientCertAuth: true}
	info, err := tlsInfo(cfg, clientPlane, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 1)
	g := grpc.NewServer(grpc.Creds(handshakenTLS{}), grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		cn := "<no TLS peer info>"
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
				cn = ti.State.VerifiedChains[0][0].Subject.CommonName
			}
		}
		seen <- cn
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(g, healthServer{})
	defer g.Stop()

	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared port %v", shared), func(t *testing.T) {
			u := mustURL(t, "https://127.0.0.1:0")
			var ln net.Listener
			if shared {
				raw, err := listenRaw(u)
				if err != nil {
					t.Fatal(err)
				}
				split, err := newTLSSplit(raw, info, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				ln = split
				go g.Serve(split.GRPC)
			} else {
				if ln, err = listen(u, info, clientPlane); err != nil {
					t.Fatal(err)
				}
				go g.Serve(ln)
			}
			defer ln.Close()
			conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cs.clientTLS(t, true))))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			if cn := <-seen; cn != "admin" {
				t.Fatalf("handler saw client %q, want admin", cn)
			}
		})
	}
}

type healthServer struct {
	healthpb.UnimplementedHealthServer
}

func (healthServer) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func mustURL(t *testing.T, s string) url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return *u
}

// TestTLSMemberServesGRPCAndHTTPOnOnePort starts a member from flags with
// a https client URL, a separate HTTP URL and a unix socket, and checks
// what each serves.
func TestTLSMemberServesGRPCAndHTTPOnOnePort(t *testing.T) {
	cs := newCertSet(t)
	dir := t.TempDir()
	ports := freeTCPPorts(t, 3)
	client := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	httpOnly := fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	// clientv3 verifies a unixs endpoint's certificate for the socket
	// file's name.
	sock := "unixs://" + filepath.Join(dir, "localhost")
	args := []string{
		"--name=m", "--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + client + "," + sock, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=m=" + peerURL,
		"--cert-file=" + cs.server.CertFile, "--key-file=" + cs.server.KeyFile,
		"--trusted-ca-file=" + cs.ca.File, "--client-cert-auth",
		"--peer-cert-file=" + cs.server.CertFile, "--peer-key-file=" + cs.server.KeyFile,
		"--peer-trusted-ca-file=" + cs.ca.File, "--peer-client-cert-auth",
	}
	start := func(extra ...string) *Member {
		cfg, err := config.Parse(append(args, extra...), nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Start(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-m.Server.ReadyNotify():
		case <-time.After(20 * time.Second):
			t.Fatal("member not ready within 20s")
		}
		return m
	}
	tc := cs.clientTLS(t, true)
	// h2 false: a client offering HTTP/1.1 and HTTP/2 (curl, Go's default
	// transport); true: one that speaks only HTTP/2.
	get := func(h2 bool, url string) (int, string, error) {
		var rt http.RoundTripper = &http.Transport{TLSClientConfig: tc.Clone(), ForceAttemptHTTP2: true}
		if h2 {
			rt = &http2.Transport{TLSClientConfig: tc.Clone()}
		}
		resp, err := (&http.Client{Transport: rt, Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.ProtoMajor, string(b), nil
	}
	health := func(t *testing.T, h2 bool, url string, wantProto int) {
		t.Helper()
		proto, body, err := get(h2, url+"/health")
		if err != nil {
			t.Fatalf("GET %s/health (h2 %v): %v", url, h2, err)
		}
		var h struct{ Health string }
		if json.Unmarshal([]byte(body), &h) != nil || h.Health != "true" {
			t.Fatalf("GET %s/health = %q", url, body)
		}
		if proto != wantProto {
			t.Fatalf("GET %s/health answered with HTTP/%d, want HTTP/%d", url, proto, wantProto)
		}
	}
	put := func(t *testing.T, ep string) {
		t.Helper()
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: tc.Clone(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, "k", "v"); err != nil {
			t.Fatalf("put through %s: %v", ep, err)
		}
	}

	t.Run("shared port", func(t *testing.T) {
		m := start()
		defer m.Stop()
		put(t, client)
		put(t, sock)
		// The shared port answers HTTP with HTTP/1.1 and keeps HTTP/2 for
		// gRPC (see tlsSplit).
		health(t, false, client, 1)
	})
	t.Run("separate HTTP URL", func(t *testing.T) {
		m := start("--listen-client-http-urls=" + httpOnly)
		defer m.Stop()
		put(t, client)
		health(t, false, httpOnly, 2)
		health(t, true, httpOnly, 2)
		if _, body, err := get(false, client+"/health"); err == nil && strings.Contains(body, `"health"`) {
			t.Fatalf("the gRPC-only client URL answered /health: %s", body)
		}
	})
}

func freeTCPPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// TestTLSListenerRefusesCertificatesByName checks the name rules of both
// planes on the listener: allowed common names and host names, and on the
// peer plane etcd's check that a member certificate names the IP it
// connects from. Each refusal is logged with its reason.
func TestTLSListenerRefusesCertificatesByName(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "ca")
	server := ca.Issue(t, testcerts.Spec{Name: "server", Hosts: []string{"127.0.0.1"}, Server: true, Client: true})
	m1 := ca.Issue(t, testcerts.Spec{Name: "m1", Hosts: []string{"127.0.0.1", "m1.example"}, Client: true})
	m2 := ca.Issue(t, testcerts.Spec{Name: "m2", Hosts: []string{"127.0.0.1"}, Client: true})
	elsewhere := ca.Issue(t, testcerts.Spec{Name: "elsewhere", CN: "m1", Hosts: []string{"10.9.9.9"}, Client: true})
	for _, tc := range []struct {
		name   string
		p      plane
		set    func(*config.TLSInfo)
		client testcerts.Pair
		reason string // "" if accepted
	}{
		{"allowed CN", peerPlane, func(i *config.TLSInfo) { i.AllowedCNs = []string{"m1"} }, m1, ""},
		{"CN not allowed", peerPlane, func(i *config.TLSInfo) { i.AllowedCNs = []string{"m1"} }, m2, "client certificate authentication failed"},
		{"allowed host name", clientPlane, func(i *config.TLSInfo) { i.AllowedHostnames = []string{"m1.example"} }, m1, ""},
		{"host name not allowed", clientPlane, func(i *config.TLSInfo) { i.AllowedHostnames = []string{"m1.example"} }, m2, "client certificate authentication failed"},
		{"peer SAN names another IP", peerPlane, func(*config.TLSInfo) {}, elsewhere, "certificate is valid for 10.9.9.9, not 127.0.0.1"},
		{"peer SAN check skipped", peerPlane, func(i *config.TLSInfo) { i.SkipClientSANVerify = true }, elsewhere, ""},
		{"client plane has no SAN check", clientPlane, func(*config.TLSInfo) {}, elsewhere, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			ti := config.TLSInfo{CertFile: server.CertFile, KeyFile: server.KeyFile, TrustedCAFile: ca.File, ClientCertAuth: true}
			tc.set(&ti)
			cfg.ClientTLS, cfg.PeerTLS = ti, ti
			logs := &lockedWriter{}
			info, err := tlsInfo(cfg, tc.p, slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := listen(mustURL(t, "https://127.0.0.1:0"), info, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
			go hs.Serve(ln)
			defer hs.Close()
			cs := certSet{ca: ca, admin: tc.client}
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cs.clientTLS(t, true)}}
			resp, err := hc.Get("https://" + ln.Addr().String() + "/")
			if err == nil {
				resp.Body.Close()
			}
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v (log: %s)", err, logs.String())
				}
				return
			}
			if err == nil {
				t.Fatal("accepted a certificate that should be refused")
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), tc.reason) {
				if time.Now().After(deadline) {
					t.Fatalf("no log line with %q; log: %s", tc.reason, logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !strings.Contains(logs.String(), "rejected connection") || !strings.Contains(logs.String(), "remote-addr=127.0.0.1:") {
				t.Fatalf("refusal log does not name the remote address: %s", logs.String())
			}
		})
	}
}

// lockedWriter serializes writes from the listener's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  strings.Builder
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestPlainURLRefusesTLSClients checks the reverse of a plain-text client
// on a TLS port: a TLS client on a plain member's client and peer URLs is
// refused and logged, and plain clients are served as before.
func TestPlainURLRefusesTLSClients(t *testing.T) {
	dir := t.TempDir()
	ports := freeTCPPorts(t, 2)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cfg, err := config.Parse([]string{
		"--name=m", "--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=m=" + peerURL,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedWriter{}
	m, err := Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	select {
	case <-m.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("member not ready within 20s")
	}
	for _, tc := range []struct {
		url string
		p   plane
	}{{client, clientPlane}, {peerURL, peerPlane}} {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(tc.url, "http://"), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			t.Fatalf("TLS handshake with plain %s succeeded", tc.url)
		}
		want := fmt.Sprintf("plane=%s remote-addr=127.0.0.1:", tc.p)
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(logs.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no refusal logged with %q; log:\n%s", want, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	resp, err := http.Get(client + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
}
