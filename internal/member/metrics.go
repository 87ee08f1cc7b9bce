package member

import (
	"net"
	"net/http"
	"time"

	etcdtransport "go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/kvorum/kvorum/internal/config"
)

// listenMetrics opens the --listen-metrics-urls listeners, so that a port
// conflict fails the start like any other.
func (m *Member) listenMetrics(cfg *config.Config, clientTLS *etcdtransport.TLSInfo) ([]net.Listener, error) {
	var lns []net.Listener
	for _, u := range cfg.ListenMetricsURLs {
		// An https metrics URL is served with the client plane's TLS
		// setup, as etcd serves it.
		ln, err := listen(u, clientTLS, clientPlane)
		if err != nil {
			return nil, err
		}
		m.listeners = append(m.listeners, ln)
		lns = append(lns, ln)
	}
	return lns, nil
}

// serveMetrics serves /metrics and the health endpoints on the
// --listen-metrics-urls listeners, from the start (unlike the client URLs,
// which wait for the member to join): a member that cannot reach a quorum
// is exactly when an operator looks at them.
func (m *Member) serveMetrics(lns []net.Listener) {
	for _, ln := range lns {
		mux := http.NewServeMux()
		m.registerObservability(mux)
		m.mu.Lock()
		m.serveHTTPLocked(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: httpErrorLog(m.lg, clientPlane)}, ln)
		m.mu.Unlock()
	}
}
