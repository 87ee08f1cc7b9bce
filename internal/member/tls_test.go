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
// gRPC over TLS: through the HTTP server of a shared port (grpcOrHTTP) and
// natively on a gRPC-only port (handshakenTLS over the TLS listener). In
// both, a handler finds the verified client certificate in the peer info.
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
			ln, err := listen(u, info, clientPlane)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if shared {
				hs := &http.Server{Handler: grpcOrHTTP(g, http.NotFoundHandler()), TLSConfig: &tls.Config{NextProtos: []string{"h2", "http/1.1"}}}
				go hs.Serve(ln)
				defer hs.Close()
			} else {
				go g.Serve(ln)
			}
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
	get := func(h2 bool, url string) (int, string, error) {
		tr := &http.Transport{TLSClientConfig: tc.Clone()}
		var rt http.RoundTripper = tr
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
	health := func(t *testing.T, h2 bool, url string) {
		t.Helper()
		proto, body, err := get(h2, url+"/health")
		if err != nil {
			t.Fatalf("GET %s/health (h2 %v): %v", url, h2, err)
		}
		var h struct{ Health string }
		if json.Unmarshal([]byte(body), &h) != nil || h.Health != "true" {
			t.Fatalf("GET %s/health = %q", url, body)
		}
		if want := map[bool]int{true: 2, false: 1}[h2]; proto != want {
			t.Fatalf("GET %s/health answered with HTTP/%d, want HTTP/%d", url, proto, want)
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
		health(t, false, client)
		health(t, true, client)
	})
	t.Run("separate HTTP URL", func(t *testing.T) {
		m := start("--listen-client-http-urls=" + httpOnly)
		defer m.Stop()
		put(t, client)
		health(t, false, httpOnly)
		health(t, true, httpOnly)
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
