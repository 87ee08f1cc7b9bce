package server

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/watch"
)

// minWatchProgressInterval is the shortest progress notification period,
// as in etcd: shorter settings are raised to it with a warning.
const minWatchProgressInterval = 100 * time.Millisecond

// kvSource lets the watch hub read the key space the member serves now
// (a raft snapshot replaces the mvcc.Store).
type kvSource struct{ s *Server }

func (k kvSource) Events(r mvcc.EventsRequest) (mvcc.EventsResult, error) {
	return k.s.kvStore().Events(r)
}

func (k kvSource) CompactRev() int64 { return k.s.kvStore().CompactRev() }

func (s *Server) newWatchHub() *watch.Hub {
	interval := s.cfg.WatchProgressNotifyInterval
	if interval > 0 && interval < minWatchProgressInterval {
		s.lg.Warn("adjusting watch progress notify interval to minimum period",
			"min-watch-progress-notify-interval", minWatchProgressInterval.String())
		interval = minWatchProgressInterval
	}
	return watch.New(watch.Config{
		Source:           kvSource{s},
		Rev:              s.kvStore().Rev(),
		ProgressInterval: interval,
		RecentBytes:      int(s.cfg.Memory.WatchRecent),
		Logger:           s.lg,
	})
}

// startWatchHub runs the hub's catch-up worker until Stop; stopWatch
// returns once the worker has, so it reads no storage after that.
func (s *Server) startWatchHub() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopWatch = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		s.watch.Run(ctx)
	}()
}

// CloseWatches ends every watch stream, so that a stopping member does not
// wait for them (clients resume on other members).
func (s *Server) CloseWatches() { s.watch.Close() }

// WatchHub is the member's watch hub; the api package serves Watch streams
// from it.
func (s *Server) WatchHub() *watch.Hub { return s.watch }

// Header is a response header of this member for revision rev.
func (s *Server) Header(rev int64) *pb.ResponseHeader {
	return s.header(&pb.ResponseHeader{Revision: rev})
}

// CurrentHeader is a response header of this member at its current
// revision.
func (s *Server) CurrentHeader() *pb.ResponseHeader { return s.header(nil) }

// ElectionTimeout is the configured election timeout.
func (s *Server) ElectionTimeout() time.Duration { return s.cfg.ElectionTimeout }
