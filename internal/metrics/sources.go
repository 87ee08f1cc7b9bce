package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sources are the member's numbers that are read when scraped. Every
// function must be safe to call at any time from any goroutine.
type Sources struct {
	MemberID       uint64
	ServerVersion  string // the etcd API version the member reports
	ClusterVersion func() string

	Leader        func() uint64 // 0 when none is known
	IsLearner     func() bool
	LeaderChanges func() uint64 // changes to a new known leader
	Committed     func() uint64 // raft commit index
	Applied       func() uint64 // applied index
	Pending       func() int    // proposals waiting to be applied

	DBSize     func() int64 // bytes on disk
	DBInUse    func() int64 // bytes the key space takes
	QuotaBytes int64        // 0: none

	Puts, Deletes, Ranges, Txns func() uint64
	Rev, CompactRev             func() int64 // key space revisions
	CompactedRev                func() int64 // history physically compacted up to

	// Keys is the number of live keys; ok is false while it is being
	// counted (after a start or a snapshot install), and the series is
	// left out meanwhile.
	Keys func() (n int64, ok bool)
	// PutBytes sums the size of the keys and values put.
	PutBytes func() uint64
	// OpenReads is the number of reads of the key space under way.
	OpenReads func() int64
	// Watch counts the watch streams and watchers.
	Watch func() WatchStats
	// AuthRevision is the revision of the users, roles and auth switch.
	AuthRevision func() uint64
	// Installing tells whether a snapshot from the leader is being
	// installed.
	Installing func() bool
	// KnownPeers lists the members this member knows, itself included
	// (as etcd's etcd_network_known_peers does).
	KnownPeers func() []uint64
	// HeartbeatsLate counts the heartbeats this member as leader sent
	// more than two heartbeat intervals after the previous one.
	HeartbeatsLate func() uint64

	// Cluster describes the voting members as this member sees them.
	Cluster func() Cluster
	// Peers describes this member's raft streams to the other members.
	Peers func() []Peer
}

// WatchStats counts the watch streams and their watchers.
type WatchStats struct {
	Streams, Watchers int
	Slow              int // watchers catching up from the recent buffer or storage
	Pending           int // events queued for clients that have not taken them
}

// Peer is the state of the raft stream to one other member.
type Peer struct {
	ID        uint64
	Connected bool
	Dropped   uint64 // messages that could not be sent
}

// Cluster is the quorum arithmetic of the voting members.
type Cluster struct {
	Voters    int // voting members
	Quorum    int // voters needed to commit
	Reachable int // voters this member knows to be up, itself included
	// Tolerated is how many more voters may fail before writes stop:
	// Reachable - Quorum, and 0 without a leader.
	Tolerated int
}

// Watch registers the series read from src.
func (m *Metrics) Watch(src Sources) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	boolean := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	info := func(name, help, label, value string) prometheus.Collector {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{label})
		g.WithLabelValues(value).Set(1)
		return g
	}
	m.reg.MustRegister(
		info("etcd_server_version", "The etcd API version this member serves, as label server_version.", "server_version", src.ServerVersion),
		info("etcd_server_go_version", "The Go version this member was built with, as label server_go_version.", "server_go_version", goVersion),
		info("etcd_server_id", "This member's ID in hexadecimal, as label server_id.", "server_id", hexID(src.MemberID)),
		gauge("etcd_server_has_leader", "1 if this member knows a leader, 0 if not.", func() float64 { return boolean(src.Leader() != 0) }),
		gauge("etcd_server_is_leader", "1 if this member is the leader, 0 if not.", func() float64 { return boolean(src.Leader() == src.MemberID) }),
		gauge("etcd_server_is_learner", "1 if this member is a learner, 0 if not.", func() float64 { return boolean(src.IsLearner()) }),
		counter("etcd_server_leader_changes_seen_total", "Leader changes this member has seen.", src.LeaderChanges),
		// etcd exports these two as gauges despite their _total names:
		// they are the raft indexes, not counts since the start.
		gauge("etcd_server_proposals_committed_total", "The raft commit index of this member.", func() float64 { return float64(src.Committed()) }),
		gauge("etcd_server_proposals_applied_total", "The applied index of this member.", func() float64 { return float64(src.Applied()) }),
		gauge("etcd_server_proposals_pending", "Proposals made on this member that are not applied yet.", func() float64 { return float64(src.Pending()) }),
		gauge("etcd_server_quota_backend_bytes", "The space quota in bytes (--quota-backend-bytes); 0 means none.", func() float64 { return float64(src.QuotaBytes) }),
		gauge("etcd_mvcc_db_total_size_in_bytes", "Bytes the storage engine takes on disk (what the quota counts).", func() float64 { return float64(src.DBSize()) }),
		gauge("etcd_mvcc_db_total_size_in_use_in_bytes", "Bytes the key space takes in the storage engine.", func() float64 { return float64(src.DBInUse()) }),
		counter("etcd_mvcc_put_total", "Puts applied or served by this member, txn ops included.", src.Puts),
		counter("etcd_mvcc_delete_total", "Deletes applied by this member, txn ops included.", src.Deletes),
		counter("etcd_mvcc_range_total", "Ranges served or applied by this member, txn ops included.", src.Ranges),
		counter("etcd_mvcc_txn_total", "Txns of more than one op applied or served by this member.", src.Txns),
		gauge("etcd_debugging_mvcc_current_revision", "The key space's current revision.", func() float64 { return float64(src.Rev()) }),
		gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction (-1: none).", func() float64 { return float64(src.CompactRev()) }),
		gauge("kvorum_mvcc_compacted_revision", "The revision up to which this member has deleted the history compactions made unreadable; it trails etcd_debugging_mvcc_compact_revision while compaction steps run in the background.", func() float64 { return float64(src.CompactedRev()) }),
		gauge("etcd_debugging_mvcc_total_put_size_in_bytes", "Bytes of the keys and values put on this member since it started.", func() float64 { return float64(src.PutBytes()) }),
		gauge("etcd_mvcc_db_open_read_transactions", "Reads of the key space under way.", func() float64 { return float64(src.OpenReads()) }),
		gauge("etcd_debugging_auth_revision", "The revision of the users, roles and the auth switch.", func() float64 { return float64(src.AuthRevision()) }),
		counter("etcd_server_heartbeat_send_failures_total", "Heartbeats this member as leader sent more than two heartbeat intervals after the previous one to the same peer (an overloaded member or a slow disk).", src.HeartbeatsLate),
		gauge("etcd_server_snapshot_apply_in_progress_total", "1 while this member installs a snapshot from the leader, 0 otherwise.", func() float64 { return boolean(src.Installing()) }),
		gauge("kvorum_cluster_voting_members", "Voting members of the cluster.", func() float64 { return float64(src.Cluster().Voters) }),
		gauge("kvorum_cluster_quorum_size", "Voting members needed to commit a write.", func() float64 { return float64(src.Cluster().Quorum) }),
		gauge("kvorum_cluster_reachable_voters", "Voting members this member knows to be up, itself included.", func() float64 { return float64(src.Cluster().Reachable) }),
		gauge("kvorum_cluster_failures_tolerated", "How many more voting members may fail before writes stop (0: the next failure stops them, or they stopped).", func() float64 { return float64(src.Cluster().Tolerated) }),
	)
	if src.Peers != nil {
		m.reg.MustRegister(peerCollector{f: src.Peers, local: hexID(src.MemberID),
			failures: prometheus.NewDesc("etcd_network_peer_sent_failures_total",
				"Raft messages to each peer that could not be sent.", []string{"To"}, nil),
			active: prometheus.NewDesc("etcd_network_active_peers",
				"1 for each peer whose raft stream is up.", []string{"Local", "Remote"}, nil),
		})
	}
	m.reg.MustRegister(newWatchCollector(src.Watch))
	m.reg.MustRegister(keysCollector{f: src.Keys, desc: prometheus.NewDesc("etcd_debugging_mvcc_keys_total",
		"Live keys in the key space (left out while they are being counted after a start or a snapshot install).", nil, nil)})
	m.reg.MustRegister(knownPeers{f: src.KnownPeers, local: hexID(src.MemberID), desc: prometheus.NewDesc("etcd_network_known_peers",
		"1 for each member this member knows, itself included.", []string{"Local", "Remote"}, nil)})
	if src.ClusterVersion != nil {
		m.reg.MustRegister(clusterVersion{f: src.ClusterVersion, desc: prometheus.NewDesc("etcd_cluster_version",
			"The cluster's version, as label cluster_version.", []string{"cluster_version"}, nil)})
	}
}

// clusterVersion reports a version label that may change at run time.
type clusterVersion struct {
	f    func() string
	desc *prometheus.Desc
}

func (c clusterVersion) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c clusterVersion) Collect(ch chan<- prometheus.Metric) {
	if v := c.f(); v != "" {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, v)
	}
}

// watchCollector reports the watch streams and watchers, reading them
// once a scrape.
type watchCollector struct {
	f                                func() WatchStats
	streams, watchers, slow, pending *prometheus.Desc
}

func newWatchCollector(f func() WatchStats) watchCollector {
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return watchCollector{f: f,
		streams:  desc("etcd_debugging_mvcc_watch_stream_total", "Open watch streams."),
		watchers: desc("etcd_debugging_mvcc_watcher_total", "Watchers on the open watch streams."),
		slow:     desc("etcd_debugging_mvcc_slow_watcher_total", "Watchers that catch up from the recent buffer or storage rather than get changes as they are applied."),
		pending:  desc("etcd_debugging_mvcc_pending_events_total", "Events queued on watch streams that their clients have not taken yet."),
	}
}

func (c watchCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.streams
	ch <- c.watchers
	ch <- c.slow
	ch <- c.pending
}

func (c watchCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.f()
	for _, s := range []struct {
		d *prometheus.Desc
		v int
	}{{c.streams, w.Streams}, {c.watchers, w.Watchers}, {c.slow, w.Slow}, {c.pending, w.Pending}} {
		ch <- prometheus.MustNewConstMetric(s.d, prometheus.GaugeValue, float64(s.v))
	}
}

// keysCollector reports the live key count once it is known.
type keysCollector struct {
	f    func() (int64, bool)
	desc *prometheus.Desc
}

func (c keysCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c keysCollector) Collect(ch chan<- prometheus.Metric) {
	if n, ok := c.f(); ok {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
	}
}

// knownPeers reports a 1 for each other member.
type knownPeers struct {
	f     func() []uint64
	local string
	desc  *prometheus.Desc
}

func (c knownPeers) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c knownPeers) Collect(ch chan<- prometheus.Metric) {
	for _, id := range c.f() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, c.local, hexID(id))
	}
}

// peerCollector reports the per-peer stream state read from the transport.
type peerCollector struct {
	f                func() []Peer
	local            string
	failures, active *prometheus.Desc
}

func (c peerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.failures; ch <- c.active }
func (c peerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.f() {
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(p.Dropped), hexID(p.ID))
		if p.Connected {
			ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, 1, c.local, hexID(p.ID))
		}
	}
}

// CertificateExpiry registers the Unix time at which the earliest of the
// member's TLS certificates expires (0 without certificate files), for
// alerts well before a cluster loses its TLS.
func (m *Metrics) CertificateExpiry(f func() time.Time) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kvorum_server_certificate_expiry_timestamp_seconds",
		Help: "Unix time at which the earliest of this member's certificates (own, CA, client) expires; 0 without certificate files.",
	}, func() float64 {
		if t := f(); !t.IsZero() {
			return float64(t.Unix())
		}
		return 0
	}))
}
