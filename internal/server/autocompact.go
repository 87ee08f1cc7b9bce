package server

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/mvcc"
)

// AutoCompaction is --auto-compaction-mode with --auto-compaction-retention.
// The zero value compacts nothing.
type AutoCompaction struct {
	// Retention keeps at least this much history (periodic mode).
	Retention time.Duration
	// Revisions keeps at least this many revisions (revision mode).
	Revisions int64
	// Interval is how often the leader compacts: 0 means etcd's, an hour
	// or the retention if shorter (periodic), 5 minutes (revision).
	Interval time.Duration
}

const (
	// revisionCompactionInterval is etcd's period in revision mode.
	revisionCompactionInterval = 5 * time.Minute
	// maxPeriodicCompactionInterval caps the period in periodic mode.
	maxPeriodicCompactionInterval = time.Hour
)

// revSample is the revision the key space had at a time.
type revSample struct {
	at  time.Time
	rev int64
}

// runAutoCompaction compacts the key space while this member leads, as
// etcd's compactor does: in revision mode to the current revision minus
// the revisions to keep; in periodic mode to the revision the key space had
// one retention ago (sampled ten times per interval), so at least the
// retention's worth of history stays.
func (s *Server) runAutoCompaction() {
	ac := s.cfg.AutoCompaction
	if ac.Retention <= 0 && ac.Revisions <= 0 {
		return
	}
	interval := ac.Interval
	if interval <= 0 {
		interval = revisionCompactionInterval
		if ac.Retention > 0 {
			interval = min(ac.Retention, maxPeriodicCompactionInterval)
		}
	}
	step := interval
	if ac.Retention > 0 {
		step = max(interval/10, 10*time.Millisecond)
	}
	t := time.NewTicker(step)
	defer t.Stop()
	var samples []revSample
	last := time.Now()
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		now := time.Now()
		if s.node.Leader() != s.memberID {
			samples, last = nil, now // a new leader starts its own record
			continue
		}
		kv := s.kvStore()
		var target int64
		if ac.Revisions > 0 {
			target = kv.Rev() - ac.Revisions
		} else {
			samples = append(samples, revSample{now, kv.Rev()})
			i := len(samples) - 1
			for i >= 0 && now.Sub(samples[i].at) < ac.Retention {
				i--
			}
			if i < 0 {
				continue // not a retention's worth of record yet
			}
			target = samples[i].rev
			samples = samples[i:]
		}
		if now.Sub(last) < interval || target <= kv.CompactRev() {
			continue
		}
		last = now
		ctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
		_, err := s.Compact(ctx, &pb.CompactionRequest{Revision: target})
		cancel()
		switch {
		case err == nil:
			s.lg.Info("auto-compacted the key space", "revision", target)
		case errors.Is(err, mvcc.ErrCompacted):
		default:
			s.lg.Warn("auto-compaction failed; will retry", "revision", target, "err", err)
		}
	}
}
