package member

import (
	"net"
	"net/http"
	"time"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/server"
)

// listenMetrics opens the --listen-metrics-urls listeners, so that a port
// conflict fails the start like any other.
func (m *Member) listenMetrics(cfg *config.Config) ([]net.Listener, error) {
	var lns []net.Listener
	for _, u := range cfg.ListenMetricsURLs {
		ln, err := server.Listen(u.String())
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
		m.serveHTTP(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln)
	}
}
