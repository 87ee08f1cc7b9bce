package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// activity holds the series that count or time things as they happen, other
// than the raft log's, the peers' and the client bytes (see New): leases,
// watch sends, maintenance, reads and requests. Names, types, labels and
// buckets are etcd's.
type activity struct {
	leaseGranted, leaseRevoked, leaseRenewed, leaseExpired prometheus.Counter
	leaseTTL                                               prometheus.Histogram

	watchEvents                                 prometheus.Counter
	sendEvents, sendPerEvent, sendCtl, sendProg prometheus.Histogram
	defrag, snapshotSend, hash, hashRev         prometheus.Histogram
	defragInflight                              prometheus.Gauge
	readIndexFailed, slowRead                   prometheus.Counter
	promoted                                    prometheus.Counter
	promoteFailed                               *prometheus.CounterVec

	// The labeled series of the request path, looked up by a label value
	// in a map that is replaced, never changed (see seriesByValue):
	// looking a series up by its labels (hashing them) on every request
	// cost more than the observation.
	clientRequests *prometheus.CounterVec
	unaryClients   seriesByValue[prometheus.Counter] // client_api_version -> counter
	streamClients  seriesByValue[prometheus.Counter]
	clientSeries   int // series of unaryClients and streamClients, under clientsMu
	clientsMu      sync.Mutex
	request        *prometheus.HistogramVec
	requestByType  seriesByValue[*[2]prometheus.Observer] // type -> observers for success false, true
	apply          *prometheus.HistogramVec
	applyByOp      seriesByValue[*[2]prometheus.Observer] // op -> observers for success false, true
	rangeDur       *prometheus.HistogramVec
	rangeBySuccess [2]prometheus.Observer

	snapDBSave, snapDBFsync prometheus.Histogram

	compactionPause, compactionTotal prometheus.Histogram
	compactionLast                   prometheus.Gauge
	compactionKeys                   prometheus.Counter
}

// maxClientVersions bounds the series of etcd_server_client_requests_total
// (pairs of kind and client_api_version): the version comes from the
// client, and etcd keeps a series for every value it is sent. Past the
// bound, requests of a new pair count under the version "other".
const maxClientVersions = 32

func newActivity() *activity {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	histogram := func(name, help string, b []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: b})
	}
	exp := prometheus.ExponentialBuckets
	return (&activity{
		leaseGranted: counter("etcd_debugging_lease_granted_total", "Leases granted (applied on this member)."),
		leaseRevoked: counter("etcd_debugging_lease_revoked_total", "Leases revoked, by a client or on expiry (applied on this member)."),
		leaseRenewed: counter("etcd_debugging_lease_renewed_total", "Lease keep-alives this member renewed as leader."),
		leaseExpired: counter("etcd_debugging_server_lease_expired_total", "Expired leases this member revoked as leader."),
		leaseTTL:     histogram("etcd_debugging_lease_ttl_total", "TTLs of the leases granted, in seconds.", exp(1, 2, 24)),

		watchEvents:  counter("etcd_debugging_mvcc_events_total", "Events sent to watch clients."),
		sendEvents:   histogram("etcd_debugging_server_watch_send_loop_watch_stream_duration_seconds", "Time to send one watch response with events.", exp(0.001, 2, 14)),
		sendPerEvent: histogram("etcd_debugging_server_watch_send_loop_watch_stream_duration_per_event_seconds", "Time to send one watch response with events, divided by its events.", exp(0.001, 2, 14)),
		sendCtl:      histogram("etcd_debugging_server_watch_send_loop_control_stream_duration_seconds", "Time to send one watch control response (created, canceled).", exp(0.001, 2, 14)),
		sendProg:     histogram("etcd_debugging_server_watch_send_loop_progress_duration_seconds", "Time to send one watch progress notification.", exp(0.001, 2, 14)),

		defrag:         histogram("etcd_disk_backend_defrag_duration_seconds", "Time taken by each defragment (the storage engine's full compaction).", exp(0.1, 2, 13)),
		defragInflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "etcd_disk_defrag_inflight", Help: "1 while a defragment runs on this member, 0 otherwise."}),
		snapshotSend:   histogram("etcd_disk_backend_snapshot_duration_seconds", "Time taken by each snapshot sent to a client (Maintenance.Snapshot).", exp(0.01, 2, 17)),
		hash:           histogram("etcd_mvcc_hash_duration_seconds", "Time taken by each Maintenance.Hash.", exp(0.01, 2, 15)),
		hashRev:        histogram("etcd_mvcc_hash_rev_duration_seconds", "Time taken by each Maintenance.HashKV.", exp(0.01, 2, 15)),

		readIndexFailed: counter("etcd_server_read_indexes_failed_total", "Linearizable reads whose read index could not be confirmed (no leader, lost leadership, timeout)."),
		slowRead:        counter("etcd_server_slow_read_indexes_total", "Linearizable reads that waited past the request timeout for their read index."),
		promoted:        counter("etcd_server_learner_promote_successes", "Learners promoted while this member was leader."),
		promoteFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_server_learner_promote_failures", Help: "Promotions refused while this member was leader, by reason.",
		}, []string{"Reason"}),

		clientRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_server_client_requests_total", Help: "Client requests (unary calls and streams), by the client's API version.",
		}, []string{"type", "client_api_version"}),
		request: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "etcd_server_request_duration_seconds", Help: "Time from receiving a KV request to its answer, by type and outcome.",
			Buckets: exp(0.001, 2, 14),
		}, []string{"type", "success"}),
		apply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "etcd_server_apply_duration_seconds", Help: "Time taken to apply each committed request, by operation and outcome.",
			Buckets: exp(0.0001, 2, 20),
		}, []string{"version", "op", "success"}),
		rangeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "etcd_server_range_duration_seconds", Help: "Time taken by each read of the key space (a range, or the reads of a read-only txn).",
			Buckets: exp(0.0001, 2, 20),
		}, []string{"success"}),

		snapDBSave:  histogram("etcd_snap_db_save_total_duration_seconds", "Time taken to receive and store each snapshot from the leader.", exp(0.1, 2, 10)),
		snapDBFsync: histogram("etcd_snap_db_fsync_duration_seconds", "Time taken by the sync of each snapshot from the leader.", exp(0.001, 2, 14)),

		compactionPause: histogram("etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds", "Time taken by each step of a compaction, in milliseconds (requests go on meanwhile).", exp(1, 2, 13)),
		compactionTotal: histogram("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds", "Time from a compaction's first step to the end of its last, in milliseconds.", exp(100, 2, 14)),
		compactionLast:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "etcd_debugging_mvcc_db_compaction_last", Help: "Unix time at which the last compaction's steps ended."}),
		compactionKeys:  counter("etcd_debugging_mvcc_db_compaction_keys_total", "Deletions the compaction steps made (a range deletion of many records counts once)."),
	}).init()
}

func (a *activity) init() *activity {
	a.rangeBySuccess = *successes(a.rangeDur)()
	return a
}

func (a *activity) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		a.leaseGranted, a.leaseRevoked, a.leaseRenewed, a.leaseExpired, a.leaseTTL,
		a.watchEvents, a.sendEvents, a.sendPerEvent, a.sendCtl, a.sendProg,
		a.defrag, a.defragInflight, a.snapshotSend, a.hash, a.hashRev,
		a.readIndexFailed, a.slowRead, a.promoted, a.promoteFailed,
		a.clientRequests, a.request, a.apply, a.rangeDur,
		a.snapDBSave, a.snapDBFsync,
		a.compactionPause, a.compactionTotal, a.compactionLast, a.compactionKeys,
	}
}

// LeaseGranted counts a lease granted with ttl seconds.
func (m *Metrics) LeaseGranted(ttl int64) {
	m.act.leaseGranted.Inc()
	m.act.leaseTTL.Observe(float64(ttl))
}

// LeaseRevoked counts a revoked lease.
func (m *Metrics) LeaseRevoked() { m.act.leaseRevoked.Inc() }

// LeaseRenewed counts a keep-alive renewed by the leader.
func (m *Metrics) LeaseRenewed() { m.act.leaseRenewed.Inc() }

// LeaseExpired counts an expired lease the leader revoked.
func (m *Metrics) LeaseExpired() { m.act.leaseExpired.Inc() }

// The kinds of watch response WatchSent times.
const (
	WatchEvents   = "events"
	WatchControl  = "control"
	WatchProgress = "progress"
)

// WatchSent records one watch response of kind sent in d with events
// events.
func (m *Metrics) WatchSent(kind string, events int, d time.Duration) {
	switch kind {
	case WatchEvents:
		m.act.watchEvents.Add(float64(events))
		m.act.sendEvents.Observe(d.Seconds())
		if events > 0 {
			m.act.sendPerEvent.Observe(d.Seconds() / float64(events))
		}
	case WatchProgress:
		m.act.sendProg.Observe(d.Seconds())
	default:
		m.act.sendCtl.Observe(d.Seconds())
	}
}

// DefragStarted marks a defragment as running; call the function it
// returns when it ends.
func (m *Metrics) DefragStarted() (done func()) {
	m.act.defragInflight.Inc()
	start := time.Now()
	return func() {
		m.act.defrag.Observe(time.Since(start).Seconds())
		m.act.defragInflight.Dec()
	}
}

// SnapshotSent records a snapshot sent to a client in d.
func (m *Metrics) SnapshotSent(d time.Duration) { m.act.snapshotSend.Observe(d.Seconds()) }

// Hashed records a Hash (byRev false) or HashKV (true) that took d.
func (m *Metrics) Hashed(byRev bool, d time.Duration) {
	if byRev {
		m.act.hashRev.Observe(d.Seconds())
	} else {
		m.act.hash.Observe(d.Seconds())
	}
}

// ReadIndexFailed counts a read index that could not be confirmed (no
// leader, leadership lost), as etcd does not counting a timeout or a stop.
func (m *Metrics) ReadIndexFailed() { m.act.readIndexFailed.Inc() }

// SlowReadIndex counts a read index that timed out.
func (m *Metrics) SlowReadIndex() { m.act.slowRead.Inc() }

// LearnerPromoted counts a promotion made as leader.
func (m *Metrics) LearnerPromoted() { m.act.promoted.Inc() }

// LearnerPromoteFailed counts a promotion refused as leader.
func (m *Metrics) LearnerPromoteFailed(reason string) {
	m.act.promoteFailed.WithLabelValues(reason).Inc()
}

// seriesByValue maps one label value to its series (a counter, or the
// observers for success false and true). Reads take no lock: the map is
// replaced whole when a value is added, which happens a few times in a
// member's life.
type seriesByValue[T any] struct {
	m  atomic.Pointer[map[string]T]
	mu sync.Mutex
}

// get returns the series of value v, made by mk on first use.
func (c *seriesByValue[T]) get(v string, mk func() T) T {
	if m := c.m.Load(); m != nil {
		if s, ok := (*m)[v]; ok {
			return s
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if s, ok := (*old)[v]; ok {
			return s
		}
	}
	next := make(map[string]T)
	if old != nil {
		maps.Copy(next, *old)
	}
	s := mk()
	next[v] = s
	c.m.Store(&next)
	return s
}

// successes makes the observers of vec for the given leading label values
// and success false and true.
func successes(vec *prometheus.HistogramVec, values ...string) func() *[2]prometheus.Observer {
	return func() *[2]prometheus.Observer {
		return &[2]prometheus.Observer{
			vec.WithLabelValues(append(values, "false")...),
			vec.WithLabelValues(append(values, "true")...),
		}
	}
}

func pick(s *[2]prometheus.Observer, ok bool) prometheus.Observer {
	if ok {
		return s[1]
	}
	return s[0]
}

// ClientRequest counts a unary call or stream (kind "unary" or "stream")
// of a client that sent version as its client-api-version ("unknown"
// without one).
func (m *Metrics) ClientRequest(kind, version string) {
	a := m.act
	c := &a.unaryClients
	if kind != "unary" {
		c = &a.streamClients
	}
	if m := c.m.Load(); m != nil {
		if s, ok := (*m)[version]; ok {
			s.Inc()
			return
		}
	}
	// A new version. The bound counts the series of both kinds; past it
	// the version is not remembered either (a client sending a new one
	// with every request must not grow the map).
	a.clientsMu.Lock()
	full := a.clientSeries >= maxClientVersions
	if !full {
		a.clientSeries++
	}
	a.clientsMu.Unlock()
	if full {
		a.clientRequests.WithLabelValues(kind, "other").Inc()
		return
	}
	c.get(version, func() prometheus.Counter { return a.clientRequests.WithLabelValues(kind, version) }).Inc()
}

// Request records a KV request of type typ (Range, Put, DeleteRange, Txn,
// ReadonlyTxn, Compact) answered in d.
func (m *Metrics) Request(typ string, ok bool, d time.Duration) {
	pick(m.act.requestByType.get(typ, successes(m.act.request, typ)), ok).Observe(d.Seconds())
}

// AppliedRequest records applying one committed request of operation op
// in d.
func (m *Metrics) AppliedRequest(op string, ok bool, d time.Duration) {
	pick(m.act.applyByOp.get(op, successes(m.act.apply, "v3", op)), ok).Observe(d.Seconds())
}

// Ranged records one read of the key space that took d.
func (m *Metrics) Ranged(ok bool, d time.Duration) {
	pick(&m.act.rangeBySuccess, ok).Observe(d.Seconds())
}

// CompactionStep records one compaction step that took took and made
// deletions deletions; for a compaction's last step, finished is set and
// total is the time since its first.
func (m *Metrics) CompactionStep(took time.Duration, deletions int, finished bool, total time.Duration) {
	a := m.act
	a.compactionPause.Observe(float64(took) / float64(time.Millisecond))
	a.compactionKeys.Add(float64(deletions))
	if finished {
		a.compactionTotal.Observe(float64(total) / float64(time.Millisecond))
		a.compactionLast.Set(float64(time.Now().Unix()))
	}
}

// SnapshotReceived records a snapshot from the leader stored in save, of
// which sync was its file's sync.
func (m *Metrics) SnapshotReceived(save, sync time.Duration) {
	m.act.snapDBSave.Observe(save.Seconds())
	m.act.snapDBFsync.Observe(sync.Seconds())
}
