package server

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"

	"github.com/kvorum/kvorum/internal/metrics"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
	"github.com/kvorum/kvorum/internal/version"
)

// peerProbeInterval is how often each peer's round trip time is measured
// (etcd probes its peers every few seconds too).
const peerProbeInterval = 5 * time.Second

// Metrics is the member's metrics registry.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// observer feeds raft's and the transport's hooks into the metrics.
type observer struct{ m *metrics.Metrics }

func (o observer) Synced(d time.Duration)  { o.m.WALSync(d) }
func (o observer) Applied(d time.Duration) { o.m.Applied(d) }
func (o observer) SnapshotReceived(save, sync time.Duration) {
	o.m.SnapshotReceived(save, sync)
}
func (o observer) Sent(to uint64, n int)       { o.m.PeerSent(to, n) }
func (o observer) Received(from uint64, n int) { o.m.PeerReceived(from, n) }

// attachKVStats points the current key space at the member's counters;
// called whenever the applier opened the key space anew.
func (s *Server) attachKVStats() {
	s.kvStats.CommitDuration = s.metrics.BackendCommit
	s.kvStats.CompactStep = s.metrics.CompactionStep
	s.kvStore().SetStats(&s.kvStats)
}

// watchMetrics registers the series read from the member's state.
func (s *Server) watchMetrics() {
	s.watchMemory()
	st := &s.kvStats
	s.metrics.Watch(metrics.Sources{
		MemberID:       s.memberID,
		ServerVersion:  version.APIVersion,
		ClusterVersion: func() string { return clusterVersion(version.APIVersion) },
		Leader:         s.node.Leader,
		IsLearner:      s.isLearner,
		LeaderChanges:  s.node.LeaderChanges,
		Committed:      s.node.CommittedIndex,
		Applied:        s.node.AppliedIndex,
		Pending:        s.waiters.len,
		DBSize:         s.space.size.Load,
		DBInUse:        s.space.inUse.Load,
		QuotaBytes:     s.space.quota,
		Puts:           st.Puts.Load,
		Deletes:        st.Deletes.Load,
		Ranges:         st.Ranges.Load,
		Txns:           st.Txns.Load,
		Rev:            func() int64 { return s.kvStore().Rev() },
		CompactRev:     func() int64 { return s.kvStore().CompactRev() },
		CompactedRev:   func() int64 { return s.kvStore().CompactedRev() },
		Keys:           func() (int64, bool) { return s.kvStore().Keys() },
		PutBytes:       st.PutBytes.Load,
		OpenReads:      func() int64 { return s.kvStore().OpenReads() },
		Watch: func() metrics.WatchStats {
			w := s.watch.Stats()
			return metrics.WatchStats{Streams: w.Streams, Watchers: w.Watchers, Slow: w.Unsynced, Pending: w.QueuedEvents}
		},
		AuthRevision:   s.auth.Revision,
		Installing:     s.node.Installing,
		HeartbeatsLate: s.node.HeartbeatsLate,
		KnownPeers: func() []uint64 {
			var ids []uint64
			for _, m := range s.members.List() {
				ids = append(ids, m.GetID())
			}
			return ids
		},
		Cluster: s.Quorum,
		Peers: func() []metrics.Peer {
			var out []metrics.Peer
			for _, p := range s.transport.Peers() {
				out = append(out, metrics.Peer{ID: p.ID, Connected: p.Connected, Dropped: p.Dropped})
			}
			return out
		},
	})
}

// watchMemory registers the memory series: each part the memory budget
// bounds, and the events queued for watch clients (bounded per stream).
func (s *Server) watchMemory() {
	b := s.cfg.Memory
	engine := func(part func(storage.MemoryUse) int64) func() int64 {
		return func() int64 { return part(s.engine.MemoryUse()) }
	}
	kv := func(part func(mvcc.MemoryUse) int64) func() int64 {
		return func() int64 { return part(s.kvStore().MemoryUse()) }
	}
	s.metrics.WatchMemory(metrics.Memory{
		Budget: b.Total,
		Parts: []metrics.MemoryPart{
			// The engine's cache holds the blocks and the memtables'
			// reservations (storage.OpenWithBudget): blocks may use what
			// memtables leave of it.
			{Name: "block_cache", Limit: b.BlockCache + b.MemTableBytes(), Used: engine(func(u storage.MemoryUse) int64 { return u.BlockCache })},
			{Name: "memtables", Limit: b.MemTableBytes(), Used: engine(func(u storage.MemoryUse) int64 { return u.MemTables })},
			{Name: "kv_latest_cache", Limit: b.LatestCache, Used: kv(func(u mvcc.MemoryUse) int64 { return u.LatestCache })},
			{Name: "kv_key_filter", Limit: b.KeyFilter, Used: kv(func(u mvcc.MemoryUse) int64 { return u.KeyFilter })},
			{Name: "watch_recent", Limit: b.WatchRecent, Used: func() int64 { r, _ := s.watch.MemoryUse(); return r }},
			{Name: "watch_queued", Used: func() int64 { _, q := s.watch.MemoryUse(); return q }},
			{Name: "raft_log", Limit: b.RaftLog, Used: func() int64 { n, _ := s.node.LogMemory(); return n }},
		},
		RaftLogEntries: func() uint64 { _, e := s.node.LogMemory(); return e },
	})
}

// clusterVersion is the major.minor of an API version, as etcd labels it.
func clusterVersion(v string) string {
	dots := 0
	for i := range len(v) {
		if v[i] == '.' {
			if dots++; dots == 2 {
				return v[:i]
			}
		}
	}
	return v
}

func (w *waiters) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

// runPeerProbes measures the round trip time to every peer until the
// server stops.
func (s *Server) runPeerProbes() {
	t := time.NewTicker(peerProbeInterval)
	defer t.Stop()
	for {
		for _, p := range s.transport.Peers() {
			url := p.URL
			if url == "" && len(p.URLs) > 0 {
				url = p.URLs[0]
			}
			if url == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), peerProbeInterval)
			start := time.Now()
			_, err := s.transport.Probe(ctx, url)
			cancel()
			if err == nil {
				s.metrics.PeerRoundTrip(p.ID, time.Since(start))
			}
		}
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
	}
}

// Quorum is the quorum arithmetic of the voting members as this member
// sees them: a voter counts as reachable when this member's raft stream to
// it is up (or it is this member).
func (s *Server) Quorum() metrics.Cluster {
	up := make(map[uint64]bool)
	for _, p := range s.transport.Peers() {
		up[p.ID] = p.Connected
	}
	var c metrics.Cluster
	members := s.members.List()
	for _, m := range members {
		if m.GetIsLearner() {
			continue
		}
		c.Voters++
		if m.GetID() == s.memberID || up[m.GetID()] {
			c.Reachable++
		}
	}
	if len(members) == 0 {
		// Bootstrapping: the member list is not applied yet.
		c.Voters = len(s.cfg.InitialCluster)
		c.Reachable = 1
		for _, ok := range up {
			if ok {
				c.Reachable++
			}
		}
	}
	c.Quorum = c.Voters/2 + 1
	if s.node.Leader() != raft.None && c.Reachable > c.Quorum {
		c.Tolerated = c.Reachable - c.Quorum
	}
	return c
}

// Alarms lists the active alarms as this member knows them.
func (s *Server) Alarms() []*pb.AlarmMember { return s.alarms.List() }

// IsLearner reports whether this member is a learner.
func (s *Server) IsLearner() bool { return s.isLearner() }
