// Package member runs one Kvorum member from a parsed configuration: it
// opens the listeners named by the config, serves the peer plane and the
// client plane (gRPC plus etcd's HTTP /health and /version on the same
// port), and stops them in order. cmd/kvorum and in-process cluster tests
// both start members through it.
package member

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sync"
	"time"

	"github.com/soheilhy/cmux"
	"google.golang.org/grpc"

	"github.com/kvorum/kvorum/internal/api"
	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/metrics"
	"github.com/kvorum/kvorum/internal/server"
	"github.com/kvorum/kvorum/internal/version"
)

// Member is a running member.
type Member struct {
	Server *server.Server
	lg     *slog.Logger

	grpc      *grpc.Server
	pprof     bool
	listeners []net.Listener
	wg        sync.WaitGroup
	stopOnce  sync.Once

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
		AdvertiseClientURLs:   urlStrings(cfg.AdvertiseClientURLs),
		AdvertisePeerURLs:     urlStrings(cfg.InitialAdvertisePeerURLs),
		NewCluster:            cfg.InitialClusterState != "existing",
		ClusterToken:          cfg.InitialClusterToken,
		HeartbeatInterval:     cfg.HeartbeatInterval,
		ElectionTimeout:       cfg.ElectionTimeout,
		SnapshotCount:         cfg.SnapshotCount,
		CatchUpEntries:        cfg.SnapshotCatchUpEntries,
		MaxRequestBytes:       int(cfg.MaxRequestBytes),
		MaxTxnOps:             int(cfg.MaxTxnOps),
		MaxLearners:           cfg.MaxLearners,
		QuotaBackendBytes:     cfg.QuotaBackendBytes,
		NoStrictReconfigCheck: !cfg.StrictReconfigCheck,
		Logger:                lg,

		WatchProgressNotifyInterval: cfg.WatchProgressNotifyInterval,
		LeaseCheckpointInterval:     cfg.LeaseCheckpointInterval,
		CorruptCheck: server.CorruptCheck{
			NoInitial:           !cfg.InitialCorruptCheck,
			NoCompactHash:       !cfg.CompactHashCheck,
			CompactHashInterval: cfg.CompactHashCheckTime,
		},
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
	sc := ServerConfig(cfg, lg)
	sc.Metrics = metrics.New(level)
	s, err := server.New(sc)
	if err != nil {
		return nil, err
	}
	m := &Member{Server: s, lg: lg, pprof: cfg.EnablePprof}
	defer func() {
		if err != nil {
			m.closeListeners()
			s.Stop()
		}
	}()
	var peerLns, clientLns []net.Listener
	for _, u := range cfg.ListenPeerURLs {
		ln, err := server.Listen(u.String())
		if err != nil {
			return nil, err
		}
		m.listeners = append(m.listeners, ln)
		peerLns = append(peerLns, ln)
	}
	for _, u := range cfg.ListenClientURLs {
		ln, err := server.Listen(u.String())
		if err != nil {
			return nil, err
		}
		m.listeners = append(m.listeners, ln)
		clientLns = append(clientLns, ln)
	}
	for _, ln := range peerLns {
		hs := &http.Server{Handler: s.PeerHandler(), ReadHeaderTimeout: 10 * time.Second}
		m.serveHTTP(hs, ln)
	}
	m.grpc = api.NewGRPCServer(s)
	s.Metrics().InitGRPC(m.grpc)
	metricsLns, err := m.listenMetrics(cfg)
	if err != nil {
		return nil, err
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
		for _, ln := range clientLns {
			m.serveClients(ln)
		}
		lg.Info("ready to serve client requests", "listen-client-urls", urlStrings(cfg.ListenClientURLs))
	}()
	s.Start()
	m.serveMetrics(metricsLns)
	return m, nil
}

// serveClients serves gRPC and etcd's HTTP endpoints on one client
// listener, told apart by cmux.
func (m *Member) serveClients(ln net.Listener) {
	mux := cmux.New(ln)
	grpcL := mux.Match(cmux.HTTP2())
	httpL := mux.Match(cmux.Any())
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return
	}
	m.muxes = append(m.muxes, mux)
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		if err := m.grpc.Serve(grpcL); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !isClosed(err) {
			m.lg.Debug("grpc serve ended", "err", err)
		}
	}()
	go func() {
		defer m.wg.Done()
		if err := mux.Serve(); err != nil && !isClosed(err) {
			m.lg.Debug("client listener ended", "err", err)
		}
	}()
	m.serveHTTPLocked(&http.Server{Handler: m.clientHTTP(m.pprof), ReadHeaderTimeout: 10 * time.Second}, httpL)
}

func (m *Member) serveHTTP(hs *http.Server, ln net.Listener) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.serveHTTPLocked(hs, ln)
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
