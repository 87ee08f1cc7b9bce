package metrics

import (
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

// Level is --metrics: basic, or extensive, which adds gRPC latency
// histograms (grpc_server_handling_seconds).
type Level string

// The values of --metrics.
const (
	Basic     Level = "basic"
	Extensive Level = "extensive"
)

// ParseLevel checks a --metrics value; "" means basic.
func ParseLevel(s string) (Level, error) {
	switch Level(s) {
	case "", Basic:
		return Basic, nil
	case Extensive:
		return Extensive, nil
	}
	return "", fmt.Errorf("--metrics %q: use basic or extensive", s)
}

// etcd's buckets: disk latencies from 1ms doubling to 8s, peer round trips
// from 0.1ms doubling to about 0.8s.
var (
	diskBuckets = prometheus.ExponentialBuckets(0.001, 2, 14)
	rttBuckets  = prometheus.ExponentialBuckets(0.0001, 2, 14)
)

// SlowApply is how long applying one batch of committed entries may take
// before it counts in etcd_server_slow_apply_total (etcd's warning
// threshold for one apply).
const SlowApply = 100 * time.Millisecond

// Metrics is one member's registry and the collectors that are fed as
// things happen (the rest are read at scrape time from Sources).
type Metrics struct {
	reg *prometheus.Registry

	walFsync        prometheus.Histogram
	backendCommit   prometheus.Histogram
	proposalsFailed prometheus.Counter
	proposalsRetry  prometheus.Counter
	slowApply       prometheus.Counter
	peerRTT         *prometheus.HistogramVec
	peerSent        *prometheus.CounterVec
	peerReceived    *prometheus.CounterVec
	// peerCounters holds each peer's sent and received counters: the
	// transport counts every message, and looking a series up by its
	// label (formatting the ID, hashing it) cost more than the count.
	peerCounters   sync.Map // uint64 -> *peerCounters
	clientSent     prometheus.Counter
	clientReceived prometheus.Counter

	grpc   *grpcprom.ServerMetrics
	health healthMetrics
	act    *activity
}

// New makes a member's registry with the process and Go runtime
// collectors and every series that is fed by hooks.
func New(level Level) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.walFsync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "etcd_disk_wal_fsync_duration_seconds",
		Help:    "Time taken by each synced write of the raft log (Kvorum's WAL).",
		Buckets: diskBuckets,
	})
	m.backendCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "etcd_disk_backend_commit_duration_seconds",
		Help:    "Time taken by each commit of a batch of applied entries to the storage engine.",
		Buckets: diskBuckets,
	})
	m.proposalsFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "etcd_server_proposals_failed_total",
		Help: "Proposals made on this member that were dropped or did not apply in time.",
	})
	m.proposalsRetry = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kvorum_server_proposals_retried_total",
		Help: "Proposals made on this member again after a change of leader lost them (each applies once).",
	})
	m.slowApply = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "etcd_server_slow_apply_total",
		Help: "Batches of committed entries that took longer than 100ms to apply.",
	})
	m.peerRTT = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "etcd_network_peer_round_trip_time_seconds",
		Help:    "Round trip time of a probe request to each peer.",
		Buckets: rttBuckets,
	}, []string{"To"})
	m.peerSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "etcd_network_peer_sent_bytes_total",
		Help: "Bytes of raft messages sent to each peer.",
	}, []string{"To"})
	m.peerReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "etcd_network_peer_received_bytes_total",
		Help: "Bytes of raft messages received from each peer.",
	}, []string{"From"})
	m.clientSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "etcd_network_client_grpc_sent_bytes_total",
		Help: "Bytes of gRPC messages sent to clients.",
	})
	m.clientReceived = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "etcd_network_client_grpc_received_bytes_total",
		Help: "Bytes of gRPC messages received from clients.",
	})
	var opts []grpcprom.ServerMetricsOption
	if level == Extensive {
		opts = append(opts, grpcprom.WithServerHandlingTimeHistogram())
	}
	m.grpc = grpcprom.NewServerMetrics(opts...)
	m.health = newHealthMetrics()
	m.act = newActivity()
	m.reg.MustRegister(m.act.collectors()...)
	m.reg.MustRegister(newFDCollector())
	m.reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.walFsync, m.backendCommit, m.proposalsFailed, m.proposalsRetry, m.slowApply,
		m.peerRTT, m.peerSent, m.peerReceived, m.clientSent, m.clientReceived,
		m.grpc, m.health.success, m.health.failures, m.health.check, m.health.checks,
	)
	return m
}

// Handler serves the registry in Prometheus' text format, with the
// series etcd's wal package keeps itself (see walSeries).
func (m *Metrics) Handler() http.Handler {
	all := prometheus.Gatherers{m.reg, walSeries}
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(all, promhttp.HandlerOpts{Registry: m.reg}))
}

// walSeries gathers etcd_disk_wal_write_bytes_total and
// etcd_disk_wal_write_duration_seconds, which etcd's wal package (the raft
// log's writer) keeps in Prometheus' default registry as it writes
// records: the same series as etcd's, for the whole process
// (one member per process, except in tests). The package's fsync histogram
// is not taken from there: the member's own etcd_disk_wal_fsync_duration_seconds
// times each synced write of its log.
// What else is in the default registry is no concern of the member's, nor
// are its errors: a family that could not be gathered is simply left out.
var walSeries = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
	fams, _ := prometheus.DefaultGatherer.Gather()
	var out []*dto.MetricFamily
	for _, f := range fams {
		if n := f.GetName(); n == "etcd_disk_wal_write_bytes_total" || n == "etcd_disk_wal_write_duration_seconds" {
			out = append(out, f)
		}
	}
	return out, nil
})

// Registry is the member's registry, for tests and additional collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// WALSync records one synced raft log write.
func (m *Metrics) WALSync(d time.Duration) { m.walFsync.Observe(d.Seconds()) }

// BackendCommit records one commit of applied entries.
func (m *Metrics) BackendCommit(d time.Duration) { m.backendCommit.Observe(d.Seconds()) }

// ProposalFailed counts a proposal that was dropped or timed out.
func (m *Metrics) ProposalFailed() { m.proposalsFailed.Inc() }

// ProposalRetried counts a proposal made again after a change of leader.
func (m *Metrics) ProposalRetried() { m.proposalsRetry.Inc() }

// Applied records how long applying one batch of entries took.
func (m *Metrics) Applied(d time.Duration) {
	if d > SlowApply {
		m.slowApply.Inc()
	}
}

// PeerRoundTrip records a probe round trip to peer id.
func (m *Metrics) PeerRoundTrip(id uint64, d time.Duration) {
	m.peerRTT.WithLabelValues(hexID(id)).Observe(d.Seconds())
}

type peerCounters struct{ sent, received prometheus.Counter }

func (m *Metrics) peer(id uint64) *peerCounters {
	if c, ok := m.peerCounters.Load(id); ok {
		return c.(*peerCounters)
	}
	c := &peerCounters{sent: m.peerSent.WithLabelValues(hexID(id)), received: m.peerReceived.WithLabelValues(hexID(id))}
	got, _ := m.peerCounters.LoadOrStore(id, c)
	return got.(*peerCounters)
}

// PeerSent counts n bytes sent to peer id.
func (m *Metrics) PeerSent(id uint64, n int) { m.peer(id).sent.Add(float64(n)) }

// PeerReceived counts n bytes received from peer id.
func (m *Metrics) PeerReceived(id uint64, n int) { m.peer(id).received.Add(float64(n)) }

// RemovePeer forgets the per-peer series of a removed member.
func (m *Metrics) RemovePeer(id uint64) {
	m.peerCounters.Delete(id)
	m.peerRTT.DeleteLabelValues(hexID(id))
	m.peerSent.DeleteLabelValues(hexID(id))
	m.peerReceived.DeleteLabelValues(hexID(id))
}

func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

// UnaryInterceptor and StreamInterceptor produce etcd's grpc_server_*
// series (grpc-ecosystem's interceptors, as etcd uses). Like etcd's, they
// belong after the require-leader check and before everything else, so
// that admission's refusals (NOSPACE, too many ops, ...) are counted with
// their codes.
func (m *Metrics) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return m.grpc.UnaryServerInterceptor()
}

// StreamInterceptor: see UnaryInterceptor.
func (m *Metrics) StreamInterceptor() grpc.StreamServerInterceptor {
	return m.grpc.StreamServerInterceptor()
}

// InitGRPC creates the grpc_server_* series of every method g serves at
// zero, as etcd does, so that rates and alerts have data from the start.
func (m *Metrics) InitGRPC(g *grpc.Server) { m.grpc.InitializeMetrics(g) }

// ClientBytesSent counts n bytes of a message sent to a client
// (etcd_network_client_grpc_sent_bytes_total).
func (m *Metrics) ClientBytesSent(n int) { m.clientSent.Add(float64(n)) }

// ClientBytesReceived counts n bytes of a message received from a client
// (etcd_network_client_grpc_received_bytes_total).
func (m *Metrics) ClientBytesReceived(n int) { m.clientReceived.Add(float64(n)) }

// goVersion is the Go release the binary was built with.
var goVersion = runtime.Version()

// healthMetrics are etcd's counters of /health answers and the results
// of the /livez and /readyz checks.
type healthMetrics struct {
	success, failures prometheus.Counter
	check             *prometheus.GaugeVec
	checks            *prometheus.CounterVec
}

func newHealthMetrics() healthMetrics {
	return healthMetrics{
		success: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_health_success", Help: "Answers of /health that said healthy.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_health_failures", Help: "Answers of /health that said unhealthy.",
		}),
		check: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcd_server_healthcheck", Help: "Last result of each /livez and /readyz check: 1 passed, 0 failed.",
		}, []string{"type", "name"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_server_healthchecks_total", Help: "Runs of each /livez and /readyz check, by outcome.",
		}, []string{"type", "name", "status"}),
	}
}

// Health counts one answer of /health.
func (m *Metrics) Health(ok bool) {
	if ok {
		m.health.success.Inc()
	} else {
		m.health.failures.Inc()
	}
}

// HealthCheck records one run of check name of /livez or /readyz (kind).
func (m *Metrics) HealthCheck(kind, name string, ok bool) {
	v, status := 0.0, "error"
	if ok {
		v, status = 1, "success"
	}
	m.health.check.WithLabelValues(kind, name).Set(v)
	m.health.checks.WithLabelValues(kind, name, status).Inc()
}
