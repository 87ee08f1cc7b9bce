package metrics

import (
	"strconv"
	"sync"
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

	clientRequests *prometheus.CounterVec
	// clients holds the series of clientRequests by kind and version, and
	// the series of request, apply and rangeDur by label (see labeled):
	// looking a series up by its labels on every request (hashing them)
	// would cost more than the observation.
	clients        sync.Map // [2]string{kind, version} -> prometheus.Counter
	clientVersions int      // series in clients other than "other", under clientsMu
	clientsMu      sync.Mutex
	request        *prometheus.HistogramVec
	apply          *prometheus.HistogramVec
	rangeDur       *prometheus.HistogramVec
	observers      sync.Map // labelKey -> prometheus.Observer

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
	return &activity{
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
	}
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

// ReadIndexFailed counts a read index that could not be confirmed; slow
// tells that it had waited past the request timeout.
func (m *Metrics) ReadIndexFailed(slow bool) {
	m.act.readIndexFailed.Inc()
	if slow {
		m.act.slowRead.Inc()
	}
}

// LearnerPromoted counts a promotion made as leader.
func (m *Metrics) LearnerPromoted() { m.act.promoted.Inc() }

// LearnerPromoteFailed counts a promotion refused as leader.
func (m *Metrics) LearnerPromoteFailed(reason string) {
	m.act.promoteFailed.WithLabelValues(reason).Inc()
}

// ClientRequest counts a unary call or stream (kind "unary" or "stream")
// of a client that sent version as its client-api-version ("unknown"
// without one).
func (m *Metrics) ClientRequest(kind, version string) {
	a := m.act
	if c, ok := a.clients.Load([2]string{kind, version}); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	a.clientsMu.Lock()
	if a.clientVersions >= maxClientVersions {
		version = "other"
	}
	c, loaded := a.clients.LoadOrStore([2]string{kind, version}, a.clientRequests.WithLabelValues(kind, version))
	if !loaded && version != "other" {
		a.clientVersions++
	}
	a.clientsMu.Unlock()
	c.(prometheus.Counter).Inc()
}

// labelKey names one series of the request, apply and range histograms:
// the first n of its label values.
type labelKey struct {
	vec    *prometheus.HistogramVec
	n      int
	values [3]string
}

func (a *activity) labeled(k labelKey) prometheus.Observer {
	if o, ok := a.observers.Load(k); ok {
		return o.(prometheus.Observer)
	}
	o, _ := a.observers.LoadOrStore(k, k.vec.WithLabelValues(k.values[:k.n]...))
	return o.(prometheus.Observer)
}

// Request records a KV request of type typ (Range, Put, DeleteRange, Txn,
// ReadonlyTxn, Compact) answered in d.
func (m *Metrics) Request(typ string, ok bool, d time.Duration) {
	m.act.labeled(labelKey{vec: m.act.request, n: 2, values: [3]string{typ, strconv.FormatBool(ok)}}).Observe(d.Seconds())
}

// AppliedRequest records applying one committed request of operation op
// in d.
func (m *Metrics) AppliedRequest(op string, ok bool, d time.Duration) {
	m.act.labeled(labelKey{vec: m.act.apply, n: 3, values: [3]string{"v3", op, strconv.FormatBool(ok)}}).Observe(d.Seconds())
}

// Ranged records one read of the key space that took d.
func (m *Metrics) Ranged(ok bool, d time.Duration) {
	m.act.labeled(labelKey{vec: m.act.rangeDur, n: 1, values: [3]string{strconv.FormatBool(ok)}}).Observe(d.Seconds())
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
