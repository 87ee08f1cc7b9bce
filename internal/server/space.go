package server

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/alarm"
	"github.com/kvorum/kvorum/internal/storage"
)

// DefaultQuotaBytes is the space quota when --quota-backend-bytes is 0:
// etcd's default, 2 GiB.
const DefaultQuotaBytes = 2 << 30

// spaceCheckInterval is how often the engine's size is measured for the
// quota; a request is compared with the last measurement.
const spaceCheckInterval = 250 * time.Millisecond

// space keeps the engine's measured size for the quota check.
type space struct {
	quota int64 // bytes; 0 means no quota
	size  atomic.Int64
	inUse atomic.Int64
}

func newSpace(quotaFlag int64) *space {
	switch {
	case quotaFlag == 0:
		return &space{quota: DefaultQuotaBytes}
	case quotaFlag < 0:
		return &space{}
	default:
		return &space{quota: quotaFlag}
	}
}

// measure reads the engine's size: everything it holds on disk (state,
// raft log and write-ahead log, which is what the quota counts), and the
// part of it in use, which excludes table files that compactions made
// obsolete and that are waiting to be deleted.
func (s *Server) measure() {
	m := s.db.Metrics()
	size := int64(m.DiskSpaceUsage())
	s.space.size.Store(size)
	s.space.inUse.Store(max(0, size-int64(m.Table.ObsoleteSize+m.Table.ZombieSize)))
}

// runSpaceMonitor measures the engine's size until the server stops.
func (s *Server) runSpaceMonitor() {
	t := time.NewTicker(spaceCheckInterval)
	defer t.Stop()
	for {
		s.measure()
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
	}
}

// AllowGrowth is admission's quota stage: a request that adds cost bytes
// is refused while the space alarm is active, or when it would take the
// store past its quota, which raises the alarm (as etcd does).
func (s *Server) AllowGrowth(cost int) error {
	if s.alarms.Active(pb.AlarmType_NOSPACE) {
		return alarm.ErrNoSpace
	}
	if s.space.quota == 0 || s.space.size.Load()+int64(cost) <= s.space.quota {
		return nil
	}
	s.lg.Warn("space quota exceeded; raising the NOSPACE alarm", "quota-bytes", s.space.quota, "size-bytes", s.space.size.Load())
	s.raiseAlarm(pb.AlarmType_NOSPACE, s.memberID)
	return alarm.ErrNoSpace
}

// raiseAlarm replicates an alarm of type t for member in the background,
// retrying until it is applied or the server stops (a member that found
// its data corrupt at start may not know a leader yet); while one such
// proposal is under way, more calls are dropped.
func (s *Server) raiseAlarm(t pb.AlarmType, member uint64) {
	key := fmt.Sprintf("%d/%x", t, member)
	if _, busy := s.raising.LoadOrStore(key, true); busy {
		return
	}
	go func() {
		defer s.raising.Delete(key)
		req := &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: member, Alarm: t}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
			_, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: req})
			cancel()
			if err == nil {
				return
			}
			s.lg.Warn("raising an alarm failed; retrying", "alarm", t.String(), "member-id", fmt.Sprintf("%x", member), "err", err)
			select {
			case <-s.stopped:
				return
			case <-time.After(s.cfg.ElectionTimeout):
			}
		}
	}()
}

// Alarm lists, raises or clears alarms. Listing reads this member's copy
// after a linearizable barrier; changes are replicated.
func (s *Server) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if r.GetAction() == pb.AlarmRequest_GET {
		if err := s.linearizableBarrier(ctx); err != nil {
			return nil, err
		}
		return &pb.AlarmResponse{Header: s.header(nil), Alarms: s.alarms.List()}, nil
	}
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{Action: r.GetAction(), MemberID: r.GetMemberID(), Alarm: r.GetAlarm()}})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.AlarmResponse)
	out.Header = s.header(nil)
	if r.GetAction() == pb.AlarmRequest_DEACTIVATE && len(out.GetAlarms()) > 0 {
		s.lg.Info("alarm disarmed", "alarm", r.GetAlarm().String(), "member-id", fmt.Sprintf("%x", r.GetMemberID()))
	}
	return out, nil
}

// alarmErrors lists the active alarms as etcd's Status does.
func (s *Server) alarmErrors() []string {
	var out []string
	for _, a := range s.alarms.List() {
		out = append(out, "memberID:"+strconv.FormatUint(a.GetMemberID(), 10)+" alarm:"+a.GetAlarm().String()+" ")
	}
	return out
}

// Defragment reclaims the space of deleted and compacted data now: it
// flushes the memtables and compacts the state machine's key span. Pebble
// does this in the background anyway; writes and reads go on meanwhile.
func (s *Server) Defragment(ctx context.Context) error {
	start := time.Now()
	if err := s.db.Flush(); err != nil {
		return err
	}
	if err := s.db.Compact(ctx, storage.StateMachineStart, storage.StateMachineEnd, true); err != nil {
		return err
	}
	before := s.space.size.Load()
	s.measure()
	s.lg.Info("defragmented", "took", time.Since(start).String(), "size-before-bytes", before, "size-after-bytes", s.space.size.Load())
	return nil
}
