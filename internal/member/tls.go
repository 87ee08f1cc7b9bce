package member

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"

	"go.etcd.io/etcd/client/pkg/v3/tlsutil"
	etcdtransport "go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"

	"github.com/kvorum/kvorum/internal/config"
)

// Both planes use etcd's own TLS code (go.etcd.io/etcd/client/pkg/v3/transport),
// so certificates, CRLs, allowed CNs and host names and the peer SAN check
// behave exactly as in etcd: the certificate and key files are read again
// on every handshake (rotation without restart), the CA bundle once at start,
// the CRL file on every connection.

// plane names a plane in logs and in the directory of auto TLS certificates.
type plane string

const (
	clientPlane plane = "client"
	peerPlane   plane = "peer"
)

// tlsInfo returns the TLS setup of one plane, or nil when the plane has no
// TLS (no certificate files and no auto TLS). With auto TLS and no files it
// generates (once, then reuses) a self-signed certificate under the data
// dir, as etcd does, valid for the hosts the plane listens on; the client
// certificate checks of the plane still apply.
func tlsInfo(cfg *config.Config, p plane, lg *slog.Logger) (*etcdtransport.TLSInfo, error) {
	t, hosts := cfg.ClientTLS, append(urlHosts(cfg.ListenClientURLs), urlHosts(cfg.ListenClientHTTPURLs)...)
	certFlags := "--cert-file/--key-file"
	if p == peerPlane {
		t, hosts = cfg.PeerTLS, urlHosts(cfg.ListenPeerURLs)
		certFlags = "--peer-cert-file/--peer-key-file"
	}
	if t.CertFile == "" && !t.AutoTLS {
		return nil, nil
	}
	info := &etcdtransport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile}
	if t.CertFile == "" {
		dir := filepath.Join(cfg.DataDir, "fixtures", string(p))
		self, err := etcdtransport.SelfCert(zap.NewNop(), dir, hosts, cfg.SelfSignedCertValidity)
		if err != nil {
			return nil, fmt.Errorf("auto TLS for the %s plane: cannot create a certificate in %s: %v", p, dir, err)
		}
		info = &self
		certFlags = "auto TLS certificate in " + dir
		lg.Info("using a self-signed certificate (auto TLS)", "plane", string(p), "cert-file", info.CertFile)
	}
	info.TrustedCAFile = t.TrustedCAFile
	info.ClientCertAuth = t.ClientCertAuth
	info.CRLFile = t.CRLFile
	info.AllowedCNs = t.AllowedCNs
	info.AllowedHostnames = t.AllowedHostnames
	info.SkipClientSANVerify = t.SkipClientSANVerify
	if t.ClientCertFile != "" {
		info.ClientCertFile, info.ClientKeyFile = t.ClientCertFile, t.ClientKeyFile
	}
	var err error
	if len(cfg.CipherSuites) > 0 {
		if info.CipherSuites, err = tlsutil.GetCipherSuites(cfg.CipherSuites); err != nil {
			return nil, fmt.Errorf("--cipher-suites: %v", err)
		}
	}
	if info.MinVersion, err = tlsutil.GetTLSVersion(cfg.TLSMinVersion); err != nil {
		return nil, fmt.Errorf("--tls-min-version: %v", err)
	}
	if info.MaxVersion, err = tlsutil.GetTLSVersion(cfg.TLSMaxVersion); err != nil {
		return nil, fmt.Errorf("--tls-max-version: %v", err)
	}
	info.Logger = zap.NewNop()
	info.HandshakeFailure = func(c *tls.Conn, err error) {
		lg.Warn("rejected connection", "plane", string(p), "remote-addr", c.RemoteAddr().String(),
			"server-name", c.ConnectionState().ServerName, "error", err.Error())
	}
	// Fail at start, not at the first handshake, on files that are
	// missing or do not hold a certificate and its key.
	if _, err := info.ServerConfig(); err != nil {
		return nil, fmt.Errorf("TLS of the %s plane (%s): %v", p, certFlags, err)
	}
	if p == peerPlane {
		if _, err := info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("TLS of the peer plane (%s): %v", certFlags, err)
		}
	}
	return info, nil
}

func urlHosts(us []url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Host
	}
	return out
}

// listen opens the listener of one URL. For https and unixs it hands out
// connections whose TLS handshake and checks (CRL, and for peers etcd's
// check that a client certificate's SANs name the address it connects from)
// succeeded; a refused connection is logged through info.HandshakeFailure.
func listen(u url.URL, info *etcdtransport.TLSInfo, p plane) (net.Listener, error) {
	secure := u.Scheme == "https" || u.Scheme == "unixs"
	if secure && info == nil {
		return nil, fmt.Errorf("listen on %s: the URL needs TLS but the %s plane has no certificate", u.String(), p)
	}
	if p == peerPlane && u.Scheme == "https" {
		// etcd's listener adds the SAN check unless it is turned off.
		ln, err := etcdtransport.NewListenerWithOpts(u.Host, u.Scheme, etcdtransport.WithTLSInfo(info))
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", u.String(), err)
		}
		return ln, nil
	}
	ln, err := listenRaw(u)
	if err != nil {
		return nil, err
	}
	if !secure {
		return ln, nil
	}
	tl, err := etcdtransport.NewTLSListener(ln, info)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", u.String(), err)
	}
	return tl, nil
}

// listenRaw opens the plain socket of a URL: TCP for http(s), a Unix
// socket named by host and path (as etcd names it) for unix(s).
func listenRaw(u url.URL) (net.Listener, error) {
	network, addr := "tcp", u.Host
	switch u.Scheme {
	case "http", "https":
	case "unix", "unixs":
		network, addr = "unix", u.Host+u.Path
	default:
		return nil, fmt.Errorf("listen on %s: scheme %q; want http, https, unix or unixs", u.String(), u.Scheme)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", u.String(), err)
	}
	return ln, nil
}

// handshakenTLS is the gRPC transport credentials of connections whose TLS
// handshake the listener already did (see listen): it does no handshake of
// its own and hands the connection's TLS state to gRPC, so handlers find
// the client's certificate in peer.FromContext(ctx).AuthInfo as a
// credentials.TLSInfo. Plain connections pass through without AuthInfo.
type handshakenTLS struct{}

var errNotAClient = errors.New("handshakenTLS is for servers only")

func (handshakenTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errNotAClient
}

func (handshakenTLS) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if tc, ok := c.(*tls.Conn); ok {
		return c, credentials.TLSInfo{State: tc.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c, plainAuth{}, nil
}

func (handshakenTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (handshakenTLS) Clone() credentials.TransportCredentials { return handshakenTLS{} }

func (handshakenTLS) OverrideServerName(string) error { return nil }

// plainAuth is the AuthInfo of a connection without TLS.
type plainAuth struct{}

func (plainAuth) AuthType() string { return "insecure" }

func (plainAuth) GetCommonAuthInfo() credentials.CommonAuthInfo {
	return credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}
}

// httpErrorLog sends what an http.Server logs (failed requests on
// established connections) to lg at warn level.
func httpErrorLog(lg *slog.Logger, p plane) *log.Logger {
	return slog.NewLogLogger(lg.With("plane", string(p)).Handler(), slog.LevelWarn)
}
