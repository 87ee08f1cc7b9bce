// Package member runs one Kvorum member from a parsed configuration: it
// opens the listeners named by the config, serves the peer plane and the
// client plane (gRPC plus etcd's HTTP /health and /version on the same
// port), and stops them in order. cmd/kvorum and in-process cluster tests
// both start members through it.
package member

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/soheilhy/cmux"
	etcdtransport "go.etcd.io/etcd/client/pkg/v3/transport"
	"google.golang.org/grpc"

	"github.com/kvorum/kvorum/internal/api"
	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/membudget"
	"github.com/kvorum/kvorum/internal/metrics"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/server"
	"github.com/kvorum/kvorum/internal/version"
)

// Member is a running member.
type Member struct {
	Server *server.Server
	lg     *slog.Logger

	grpc      *grpc.Server
	pprof     bool
	gw        *gateway // nil with --enable-grpc-gateway=false
	listeners []net.Listener
	wg        sync.WaitGroup
	stopOnce  sync.Once

	certExpiry atomic.Int64 // Unix seconds of the earliest certificate expiry; 0 for none
	certFiles  []string     // the TLS files of both planes, for the status page

	backups server.Backups // scheduled backups as configured

	stopBackups func() // stops scheduled backups and waits for one under way

	mu       sync.Mutex // guards what serving goroutines add while Stop runs
	stopping bool
	httpSrvs []*http.Server
	muxes    []cmux.CMux
}

// ServerConfig translates the parsed flags into the server's config.
func ServerConfig(cfg *config.Config, lg *slog.Logger) server.Config {
	sc := server.Config{
		Name:                  cfg.Name,
		DataDir:               cfg.DataDir,
		WALDir:                cfg.WALDir,
		AdvertiseClientURLs:   urlStrings(cfg.AdvertiseClientURLs),
		AdvertisePeerURLs:     urlStrings(cfg.InitialAdvertisePeerURLs),
		NewCluster:            cfg.InitialClusterState != "existing",
		ClusterToken:          cfg.InitialClusterToken,
		HeartbeatInterval:     cfg.HeartbeatInterval,
		ElectionTimeout:       cfg.ElectionTimeout,
		SnapshotCount:         cfg.SnapshotCount,
		MaxWALs:               cfg.MaxWALs,
		CatchUpEntries:        cfg.SnapshotCatchUpEntries,
		MaxRequestBytes:       int(cfg.MaxRequestBytes),
		MaxTxnOps:             int(cfg.MaxTxnOps),
		MaxLearners:           cfg.MaxLearners,
		QuotaBackendBytes:     cfg.QuotaBackendBytes,
		DiskReserveBytes:      cfg.DiskReserveBytes,
		BcryptCost:            cfg.BcryptCost,
		AuthToken:             cfg.AuthToken,
		AuthTokenTTL:          cfg.AuthTokenTTL,
		NoStrictReconfigCheck: !cfg.StrictReconfigCheck,
		Logger:                lg,
		Memory:                membudget.Split(cfg.MemoryBudgetBytes),

		WatchProgressNotifyInterval: cfg.WatchProgressNotifyInterval,
		LeaseCheckpointInterval:     cfg.LeaseCheckpointInterval,
		CorruptCheck: server.CorruptCheck{
			NoInitial:           !cfg.InitialCorruptCheck,
			NoCompactHash:       !cfg.CompactHashCheck,
			CompactHashInterval: cfg.CompactHashCheckTime,
		},
		CompactionPace: mvcc.Pace{Records: cfg.CompactionBatchLimit, Sleep: cfg.CompactionSleepInterval},
		AutoCompaction: server.AutoCompaction{
			Retention: cfg.AutoCompactionRetention,
			Revisions: cfg.AutoCompactionRevisions,
			Interval:  cfg.AutoCompactionInterval,
		},
	}
	for _, m := range cfg.InitialCluster {
		sc.InitialCluster = append(sc.InitialCluster, server.InitialMember{Name: m.Name, PeerURLs: urlStrings(m.PeerURLs)})
	}
	return sc
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i := range us {
		out[i] = us[i].String()
	}
	return out
}

// Start opens the data dir and the listeners and starts the member. On
// error everything it opened is closed again.
func Start(cfg *config.Config, lg *slog.Logger) (_ *Member, err error) {
	level, err := metrics.ParseLevel(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	clientTLS, err := tlsInfo(cfg, clientPlane, lg)
	if err != nil {
		return nil, err
	}
	peerTLS, err := tlsInfo(cfg, peerPlane, lg)
	if err != nil {
		return nil, err
	}
	sc := ServerConfig(cfg, lg)
	if peerTLS != nil {
		if sc.PeerTLS, err = peerTLS.ClientConfig(); err != nil {
			return nil, fmt.Errorf("TLS of the peer plane: %v", err)
		}
	}
	sc.Metrics = metrics.New(level)
	s, err := server.New(sc)
	if err != nil {
		return nil, err
	}
	m := &Member{Server: s, lg: lg, pprof: cfg.EnablePprof,
		backups: server.Backups{Dir: cfg.BackupDir, Interval: cfg.BackupInterval, Retention: cfg.BackupRetention}}
	defer func() {
		if err != nil {
			m.closeListeners()
			s.Stop()
		}
	}()
	var certFiles []string
	for _, info := range []*etcdtransport.TLSInfo{clientTLS, peerTLS} {
		if info != nil {
			for _, f := range []string{info.CertFile, info.TrustedCAFile, info.ClientCertFile} {
				if f != "" {
					certFiles = append(certFiles, f)
				}
			}
		}
	}
	m.watchCertificates(certFiles)
	s.Metrics().CertificateExpiry(m.CertificatesExpire)
	open := func(u url.URL, info *etcdtransport.TLSInfo, p plane) (net.Listener, error) {
		ln, err := listen(u, info, p)
		if err == nil {
			m.listeners = append(m.listeners, ln)
		}
		return ln, err
	}
	var peerLns []net.Listener
	var clientLns, httpLns []clientListener
	for _, u := range cfg.ListenPeerURLs {
		ln, err := open(u, peerTLS, peerPlane)
		if err != nil {
			return nil, err
		}
		peerLns = append(peerLns, ln)
	}
	shared := len(cfg.ListenClientHTTPURLs) == 0
	for _, u := range cfg.ListenClientURLs {
		if isSecure(u) && shared {
			raw, err := listenRaw(u)
			if err != nil {
				return nil, err
			}
			split, err := newTLSSplit(raw, clientTLS, lg)
			if err != nil {
				raw.Close()
				return nil, fmt.Errorf("listen on %s: %w", u.String(), err)
			}
			m.listeners = append(m.listeners, split)
			clientLns = append(clientLns, clientListener{ln: split, secure: true, http: true, split: split})
			continue
		}
		ln, err := open(u, clientTLS, clientPlane)
		if err != nil {
			return nil, err
		}
		clientLns = append(clientLns, clientListener{ln: ln, secure: isSecure(u), http: shared})
	}
	for _, u := range cfg.ListenClientHTTPURLs {
		ln, err := open(u, clientTLS, clientPlane)
		if err != nil {
			return nil, err
		}
		httpLns = append(httpLns, clientListener{ln: ln, secure: isSecure(u), http: true})
	}
	for _, ln := range peerLns {
		hs := &http.Server{Handler: s.PeerHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: httpErrorLog(lg, peerPlane)}
		m.mu.Lock()
		m.serveHTTPLocked(hs, m.plainOnly(ln, peerPlane))
		m.mu.Unlock()
	}
	m.grpc = api.NewGRPCServer(s, grpc.Creds(handshakenTLS{}))
	s.Metrics().InitGRPC(m.grpc)
	metricsLns, err := m.listenMetrics(cfg, clientTLS)
	if err != nil {
		return nil, err
	}
	if cfg.EnableGRPCGateway && len(clientLns) > 0 {
		if m.gw, err = newGateway(clientLns[0].ln, clientLns[0].secure, clientTLS); err != nil {
			return nil, err
		}
	}
	// The client listeners are open already (a port conflict fails the
	// start), but, as with etcd, they are served only once the member has
	// joined a quorum and published itself.
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-s.ReadyNotify():
		case <-s.Done():
			return
		}
		for _, cl := range clientLns {
			m.serveClients(cl)
		}
		for _, cl := range httpLns {
			m.serveHTTPOnly(cl)
		}
		lg.Info("ready to serve client requests", "listen-client-urls", urlStrings(cfg.ListenClientURLs))
	}()
	s.Start()
	m.stopBackups = runBackups(s, m.backups)
	m.serveMetrics(metricsLns)
	return m, nil
}

// clientListener is an open client URL and what it serves.
type clientListener struct {
	ln     net.Listener
	secure bool      // TLS (https, unixs): ln hands out connections after the handshake
	http   bool      // serves etcd's HTTP endpoints besides gRPC (no --listen-client-http-urls)
	split  *tlsSplit // for secure and http: ln split by protocol
}

func isSecure(u url.URL) bool { return u.Scheme == "https" || u.Scheme == "unixs" }

// serveClients serves one client listener: gRPC alone when the HTTP
// endpoints have URLs of their own; otherwise gRPC and the HTTP endpoints
// on the same port, told apart by cmux on plain connections and by the
// protocol negotiated in the handshake on TLS ones (see tlsSplit). gRPC is
// always served by grpc-go's own transport.
func (m *Member) serveClients(cl clientListener) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return
	}
	ln := cl.ln
	switch {
	case cl.secure && cl.http:
		m.serveHTTPLocked(m.clientHTTPServer(true), cl.split.HTTP)
		ln = cl.split.GRPC
	case !cl.secure && cl.http:
		mux := m.plainMux(ln, clientPlane)
		ln = mux.Match(cmux.HTTP2())
		m.serveHTTPLocked(m.clientHTTPServer(false), mux.Match(cmux.Any()))
		m.serveMux(mux)
	case !cl.secure:
		ln = m.plainOnly(ln, clientPlane)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !isClosed(err) {
			m.lg.Debug("grpc serve ended", "err", err)
		}
	}()
}

// serveHTTPOnly serves etcd's HTTP endpoints alone on a
// --listen-client-http-urls listener.
func (m *Member) serveHTTPOnly(cl clientListener) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return
	}
	ln := cl.ln
	if !cl.secure {
		ln = m.plainOnly(ln, clientPlane)
	}
	m.serveHTTPLocked(m.clientHTTPServer(cl.secure), ln)
}

// plainMux splits a plain-text listener with cmux. Connections that open
// with a TLS handshake (a client or member configured for https talking to
// an http URL) are logged as refused and closed; the caller adds matchers
// for the rest and then calls serveMux. m.mu must be held.
func (m *Member) plainMux(ln net.Listener, p plane) cmux.CMux {
	mux := cmux.New(ln)
	// A connection that sends nothing is dropped instead of waiting for
	// its first bytes forever.
	mux.SetReadTimeout(10 * time.Second)
	tlsL := mux.Match(isTLSHandshake)
	m.muxes = append(m.muxes, mux)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := tlsL.Accept()
			if err != nil {
				return
			}
			m.lg.Warn("rejected connection", "plane", string(p), "remote-addr", c.RemoteAddr().String(),
				"error", "TLS handshake on a plain-text URL; use an http:// endpoint or give this member https:// URLs and certificates")
			c.Close()
		}
	}()
	return mux
}

// plainOnly is plainMux with everything that is not TLS going to the
// returned listener. m.mu must be held.
func (m *Member) plainOnly(ln net.Listener, p plane) net.Listener {
	mux := m.plainMux(ln, p)
	rest := mux.Match(cmux.Any())
	m.serveMux(mux)
	return rest
}

// serveMux runs mux once its matchers are in place. m.mu must be held.
func (m *Member) serveMux(mux cmux.CMux) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := mux.Serve(); err != nil && !isClosed(err) {
			m.lg.Debug("listener ended", "err", err)
		}
	}()
}

// isTLSHandshake matches a connection whose first bytes are a TLS
// handshake record (content type 22, major version 3).
func isTLSHandshake(r io.Reader) bool {
	var b [2]byte
	n, _ := io.ReadFull(r, b[:])
	return n == 2 && b[0] == 0x16 && b[1] == 0x03
}

// clientHTTPServer is the server of etcd's HTTP endpoints. On TLS
// listeners it speaks HTTP/2 as well (ALPN), which gRPC needs.
func (m *Member) clientHTTPServer(secure bool) *http.Server {
	hs := &http.Server{Handler: m.clientHTTP(m.pprof), ReadHeaderTimeout: 10 * time.Second, ErrorLog: httpErrorLog(m.lg, clientPlane)}
	if secure {
		hs.TLSConfig = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	}
	return hs
}

func (m *Member) serveHTTPLocked(hs *http.Server, ln net.Listener) {
	m.httpSrvs = append(m.httpSrvs, hs)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !isClosed(err) {
			m.lg.Debug("http serve ended", "err", err)
		}
	}()
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, cmux.ErrListenerClosed) || errors.Is(err, cmux.ErrServerClosed)
}

// clientHTTP serves etcd's plain HTTP endpoints on the client port, and
// Go's profiler under /debug/pprof/ with --enable-pprof.
func (m *Member) clientHTTP(pprofOn bool) http.Handler {
	mux := http.NewServeMux()
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"etcdserver": version.APIVersion, "etcdcluster": version.APIVersion, "storage": version.StorageVersion, "kvorum": version.Version})
	})
	m.registerObservability(mux)
	if m.gw != nil {
		mux.Handle("/v3/", m.gw.handler)
		mux.Handle("/v3beta/", m.gw.handler)
	}
	return mux
}

// Done is closed if the member's raft node stops on its own.
func (m *Member) Done() <-chan struct{} { return m.Server.Done() }

// Stop hands leadership away, stops serving clients and peers, and closes
// the data dir.
func (m *Member) Stop() {
	m.stopOnce.Do(func() {
		m.mu.Lock()
		m.stopping = true
		m.mu.Unlock()
		if m.stopBackups != nil {
			m.stopBackups()
		}
		m.Server.HandOffLeadership()
		// Watch streams never end by themselves; end them so that the
		// graceful stop below waits only for requests in flight.
		m.Server.CloseWatches()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped := make(chan struct{})
		go func() {
			m.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			m.grpc.Stop()
		}
		m.Server.Stop()
		for _, hs := range m.httpSrvs {
			hs.Close()
		}
		if m.gw != nil {
			m.gw.conn.Close()
		}
		m.closeListeners()
		m.wg.Wait()
	})
}

func (m *Member) closeListeners() {
	for _, mux := range m.muxes {
		mux.Close()
	}
	for _, ln := range m.listeners {
		ln.Close()
	}
}

// String names the member for logs and test failures.
func (m *Member) String() string { return fmt.Sprintf("member %x", m.Server.MemberID()) }
