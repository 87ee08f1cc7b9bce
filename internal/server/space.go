package server

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/storage/wal"

	"github.com/kvorum/kvorum/internal/alarm"
	"github.com/kvorum/kvorum/internal/storage"
)

// DefaultQuotaBytes is the space quota when --quota-backend-bytes is 0:
// etcd's default, 2 GiB.
const DefaultQuotaBytes = 2 << 30

// spaceCheckInterval is how often the engine's size and the free disk
// space are measured; a request is compared with the last measurement.
// It is short because a disk that someone else fills must be noticed
// before the engine needs a new page of it.
const spaceCheckInterval = 100 * time.Millisecond

// space keeps the engine's measured size for the quota check, and the
// state of the disk beside it.
type space struct {
	quota int64 // bytes; 0 means no quota
	size  atomic.Int64
	inUse atomic.Int64

	reserve *storage.Reserve
	free    atomic.Int64 // bytes left on the data dir's file system beside the reserve
	// diskLow is set while the reserve is released or the space beside
	// it is below its size: what grows the store is refused.
	diskLow atomic.Bool
	// raisedForDisk is set when this member raised NOSPACE because of
	// its disk, and unset when it raises it for its quota: an alarm for
	// the disk is cleared by the member once space returns, one for the
	// quota stays until disarmed. It is not unset when the alarm is
	// cleared (a restarted member may not have applied its alarm yet);
	// the next raise decides again. The reserve keeps a record of it
	// across restarts; markMu orders changes of the two.
	raisedForDisk atomic.Bool
	markMu        sync.Mutex

	// logApart is the raft log's directory when --wal-dir puts it on
	// another file system than the data dir's ("" otherwise): that file
	// system's free space is watched too.
	logApart string

	// disk tells whether someone besides the member is filling the disk;
	// only the space monitor's goroutine uses it and waitedForOthers.
	disk            diskSampler
	waitedForOthers bool // the last check kept the reserve because others were filling the disk
}

func newSpace(quotaFlag int64, reserve *storage.Reserve) *space {
	sp := &space{reserve: reserve}
	sp.raisedForDisk.Store(reserve.DiskAlarm())
	switch {
	case quotaFlag == 0:
		sp.quota = DefaultQuotaBytes
	case quotaFlag > 0:
		sp.quota = quotaFlag
	}
	return sp
}

// measure reads the member's size: every file of the state's engine on
// disk (what Status reports as the DB size), and the part in use, which is
// what the quota counts: the live tables (keys with their retained
// history, leases, members) and the engine's small bookkeeping files, not
// the tables that compactions replaced (deleted moments later, or once a
// reader that still uses them is done) nor a compaction's output being
// written, nor the values in blob files that no key references any more
// (storage.SeparateValuesFrom). Counting those, a delete, compaction and
// defrag could leave the quota exceeded for a while after the space was
// given back.
//
// What the memtables hold counts once they are flushed: at the latest at
// the next raft log compaction (every --snapshot-count entries), or when
// one is full. The raft log's files (member/wal) do not count, as etcd's
// do not: they are preallocated (64 MB each) and --max-wals of them are
// kept whatever the data, so counting them could leave a small quota
// exceeded for good.
func (s *Server) measure() {
	m := s.db.Metrics()
	size := storage.DiskUsage(m)
	s.space.size.Store(size)
	replaced := m.Table.Local.ObsoleteSize + m.Table.Local.ZombieSize + m.BlobFiles.Local.ObsoleteSize + m.BlobFiles.Local.ZombieSize
	s.space.inUse.Store(max(0, size-int64(replaced)-m.Compact.InProgressBytes-storage.UnreferencedValueBytes(m)))
}

// runSpaceMonitor measures the engine's size until the server stops.
func (s *Server) runSpaceMonitor() {
	t := time.NewTicker(spaceCheckInterval)
	defer t.Stop()
	for {
		s.measure()
		s.checkDisk()
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
	if s.space.diskLow.Load() {
		s.changeAlarm(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NOSPACE, s.memberID)
		return alarm.ErrNoSpace
	}
	if s.space.quota == 0 || s.space.inUse.Load()+int64(cost) <= s.space.quota {
		return nil
	}
	s.markDiskAlarm(false) // this one stays until disarmed, as in etcd
	s.lg.Warn("space quota exceeded; raising the NOSPACE alarm", "quota-bytes", s.space.quota, "size-in-use-bytes", s.space.inUse.Load())
	s.raiseAlarm(pb.AlarmType_NOSPACE, s.memberID)
	return alarm.ErrNoSpace
}

// othersWritingSlack is how much more the free disk space may shrink
// between two samples than the member's own files grew before the
// difference counts as someone else writing: the two are not measured at
// the same instant. Samples are at least spaceCheckInterval/2 apart, so a
// writer of more than about 5 MiB/s is seen; a slower one is not.
const othersWritingSlack = 256 << 10

// othersWriting reports whether a program other than the member took disk
// space between two samples: the free space fell by more than the
// member's own files grew (or by more than they shrank, when the engine
// deleted files meanwhile).
func othersWriting(lastFree, free, lastUse, use int64) bool {
	return lastFree-free > use-lastUse+othersWritingSlack
}

// diskSampler compares samples of the free space and of the member's own
// disk use to tell whether someone else is filling the disk.
type diskSampler struct {
	lastFree, lastUse int64
	lastAt            time.Time
	filling, known    bool
}

// sample takes a sample and reports whether someone else is filling the
// disk; until a second sample was compared with the first, it says so
// (the reserve is kept while that is unknown). A sample closer to the
// previous one than half the check interval (the monitor's ticker caught
// up after a stall) keeps the previous verdict: over so short a time a
// fast writer looks slow.
func (d *diskSampler) sample(free, use int64, now time.Time) (filling bool) {
	switch {
	case d.lastAt.IsZero():
	case now.Sub(d.lastAt) < spaceCheckInterval/2:
		return d.filling || !d.known
	default:
		d.filling, d.known = othersWriting(d.lastFree, free, d.lastUse, use), true
	}
	d.lastFree, d.lastUse, d.lastAt = free, use, now
	return d.filling || !d.known
}

// rebase moves the last sample's free space by delta: the member itself
// took or gave back that much (its reserve), which is nobody else.
func (d *diskSampler) rebase(delta int64) { d.lastFree += delta }

// checkDisk guards the disk (see storage.Reserve). Growth is refused, and
// NOSPACE raised for this member, while the free space beside the reserve
// is below what the engine needs to go on writing (its headroom) or the
// reserve is released. The reserve is released when the disk is nearly
// full and nobody else is still filling it (whoever fills a disk to the
// last byte would take the released reserve too), and taken again once
// there is room for it and the headroom. When space is back, a NOSPACE
// alarm this member raised for its disk is cleared again, unless the store
// is over its quota.
func (s *Server) checkDisk() {
	r := s.space.reserve
	if r == nil || r.Size == 0 {
		return
	}
	free, err := r.Free()
	if err != nil {
		return
	}
	headroom := s.headroom()
	held := r.Held()
	// Whether someone else is filling the disk matters only near the
	// release point; the member's files are counted (a walk of its data
	// dir) only then, from a little above it, so that a verdict is there
	// when the disk gets there.
	filling := true
	if held && free < r.Size/2 {
		use, err := r.MemberUse()
		if err != nil {
			return
		}
		filling = s.space.disk.sample(free, use, time.Now())
	} else {
		s.space.disk = diskSampler{}
	}
	waiting := held && free < r.Size/4 && filling
	if waiting && !s.space.waitedForOthers {
		s.lg.Warn("the disk is nearly full and another program is still filling it; keeping the disk reserve until it stops", "free-bytes", free, "reserve-bytes", r.Size)
	}
	s.space.waitedForOthers = waiting
	if held && free < r.Size/4 && !filling {
		if err := r.Release(); err != nil {
			s.lg.Warn("releasing the disk reserve failed", "path", s.cfg.DataDir, "err", err)
		} else {
			s.lg.Warn("the disk is nearly full; released the disk reserve so that the engine can go on writing", "free-bytes", free, "reserve-bytes", r.Size)
			held = false
		}
	}
	if !held && free >= r.Size+headroom {
		if err := r.Take(); err == nil {
			held = true
			free -= r.Size
			s.space.disk.rebase(-r.Size)
			s.lg.Info("took the disk reserve again", "free-bytes", free, "reserve-bytes", r.Size)
		}
	}
	s.space.free.Store(free)
	wasLow := s.space.diskLow.Load()
	logShort, logFree := s.raftLogShort(wasLow)
	low := !held || free < headroom || wasLow && free < headroom+headroom/8 || logShort
	s.space.diskLow.Store(low)
	switch {
	case low && !wasLow:
		fields := []any{"path", s.cfg.DataDir, "free-bytes", free, "needed-bytes", headroom, "reserve-bytes", r.Size, "reserve-held", held}
		if s.space.logApart != "" {
			fields = append(fields, "raft-log-path", s.space.logApart, "raft-log-free-bytes", logFree, "raft-log-needed-bytes", int64(wal.SegmentSizeBytes))
		}
		s.lg.Warn("free disk space is short; refusing writes that grow the store and raising the NOSPACE alarm", fields...)
		if !s.ownAlarm(pb.AlarmType_NOSPACE) {
			s.markDiskAlarm(true) // not when the quota raised it before: that one stays until disarmed
		}
		s.changeAlarm(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NOSPACE, s.memberID)
	case !low && wasLow:
		fields := []any{"path", s.cfg.DataDir, "free-bytes", free, "needed-bytes", headroom}
		if s.space.logApart != "" {
			fields = append(fields, "raft-log-path", s.space.logApart, "raft-log-free-bytes", logFree)
		}
		s.lg.Info("free disk space is sufficient again", fields...)
	}
	if !low && s.space.raisedForDisk.Load() && s.ownAlarm(pb.AlarmType_NOSPACE) &&
		(s.space.quota == 0 || s.space.inUse.Load() < s.space.quota) {
		s.changeAlarm(pb.AlarmRequest_DEACTIVATE, pb.AlarmType_NOSPACE, s.memberID)
	}
}

// headroom is the free space the data dir's file system must keep for the
// member to go on taking writes: the engine's (Engine.WriteHeadroom) and,
// unless --wal-dir put the raft log on another file system, room for the
// log's next file (wal.SegmentSizeBytes, 64 MB, which the wal package
// allocates before it is needed).
func (s *Server) headroom() int64 {
	h := s.engine.WriteHeadroom()
	if s.space.logApart == "" {
		h += wal.SegmentSizeBytes
	}
	return h
}

// raftLogShort tells whether the raft log's own file system (--wal-dir on
// another one) lacks room for the log's next file, and what it has free.
// Once short, it stays so until an eighth more is free. It is never short
// when the log shares the data dir's file system (headroom counts it
// there) or when its free space cannot be read.
func (s *Server) raftLogShort(wasLow bool) (short bool, free int64) {
	if s.space.logApart == "" {
		return false, 0
	}
	free, err := storage.FreeBytes(s.space.logApart)
	if err != nil {
		return false, 0
	}
	need := int64(wal.SegmentSizeBytes)
	return free < need || wasLow && free < need+need/8, free
}

// diskWriteGate is the free space the engine's disk-full handler waits
// for (see onEngineDiskFull); with a disk reserve, at most an eighth of it.
const diskWriteGate = 4 << 20

// onEngineDiskFull handles an engine write that found no free block: it
// waits until at least diskWriteGate bytes are free, and every engine
// write waits with it (the failed one is retried afterwards; see
// storage.OpenWithBudget). A disk filled to the last byte by another
// program leaves nothing free until the disk reserve is released, which
// happens only once that program has stopped writing; the engine would
// otherwise stop the process at its first write-ahead log write in that
// moment. Meanwhile the member is a slow one, which the cluster rides out.
// The handler releases the reserve itself under the same rule (the space
// monitor may be held up behind the engine). Without a reserve, only an
// operator makes room. It gives up when the server stops.
func (s *Server) onEngineDiskFull() {
	start := time.Now()
	s.lg.Warn("the disk is full; the storage engine's writes wait until there is space", "path", s.cfg.DataDir)
	var disk diskSampler
	for {
		r := s.reserve.Load()
		gate := int64(diskWriteGate)
		if r != nil && r.Size > 0 {
			gate = min(gate, r.Size/8)
		}
		free, err := storage.FreeBytes(s.cfg.DataDir)
		if err != nil || free >= gate {
			s.lg.Info("disk space is back; the storage engine writes again", "free-bytes", free, "waited", time.Since(start).String())
			return
		}
		if r != nil && r.Held() {
			if use, err := r.MemberUse(); err == nil && !disk.sample(free, use, time.Now()) {
				if err := r.Release(); err != nil {
					s.lg.Warn("releasing the disk reserve failed", "path", s.cfg.DataDir, "err", err)
				} else {
					s.lg.Warn("the disk is full and nobody else is filling it; released the disk reserve so that the engine can go on writing", "reserve-bytes", r.Size)
				}
				continue
			}
		}
		select {
		case <-s.stopped:
			s.lg.Warn("stopping while the disk is full: the storage engine's waiting write fails")
			return
		case <-time.After(spaceCheckInterval / 2):
		}
	}
}

// markDiskAlarm records whether this member's NOSPACE alarm was raised
// for its disk, in memory and in the reserve's record.
func (s *Server) markDiskAlarm(raised bool) {
	s.space.markMu.Lock()
	defer s.space.markMu.Unlock()
	if s.space.raisedForDisk.Swap(raised) == raised {
		return
	}
	if err := s.space.reserve.MarkDiskAlarm(raised); err != nil {
		s.lg.Warn("recording why the NOSPACE alarm was raised failed; after a restart the member may leave it to an operator", "err", err)
	}
}

// ownAlarm reports whether an alarm of type t is active for this member.
func (s *Server) ownAlarm(t pb.AlarmType) bool { return s.alarmActiveFor(t, s.memberID) }

// alarmActiveFor reports whether an alarm of type t is active for member.
func (s *Server) alarmActiveFor(t pb.AlarmType, member uint64) bool {
	return slices.ContainsFunc(s.alarms.List(), func(a *pb.AlarmMember) bool {
		return a.GetAlarm() == t && a.GetMemberID() == member
	})
}

// raiseAlarm replicates an alarm of type t for member in the background,
// retrying until it is applied or the server stops (a member that found
// its data corrupt at start may not know a leader yet); while one such
// proposal is under way, more calls are dropped.
func (s *Server) raiseAlarm(t pb.AlarmType, member uint64) {
	s.changeAlarm(pb.AlarmRequest_ACTIVATE, t, member)
}

// changeAlarm raises or clears an alarm as raiseAlarm describes.
func (s *Server) changeAlarm(action pb.AlarmRequest_AlarmAction, t pb.AlarmType, member uint64) {
	if action == pb.AlarmRequest_ACTIVATE && s.alarmActiveFor(t, member) {
		return
	}
	key := fmt.Sprintf("%d/%d/%x", action, t, member)
	if _, busy := s.raising.LoadOrStore(key, true); busy {
		return
	}
	go func() {
		defer s.raising.Delete(key)
		req := &pb.AlarmRequest{Action: action, MemberID: member, Alarm: t}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
			_, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: req})
			cancel()
			if err == nil {
				return
			}
			s.lg.Warn("replicating an alarm change failed; retrying", "action", action.String(), "alarm", t.String(), "member-id", fmt.Sprintf("%x", member), "err", err)
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
// waits for this member's compaction steps to reach the compact revision
// (they delete the compacted history in the background, and a defragment
// that ran before them found it all still there), then flushes the
// memtables and compacts the state machine's key span. Pebble does this in
// the background anyway; writes and reads go on meanwhile.
func (s *Server) Defragment(ctx context.Context) error {
	start := time.Now()
	defer s.metrics.DefragStarted()()
	if err := s.kvStore().WaitCompacted(ctx, 0); err != nil {
		return err
	}
	if err := s.engine.CompactAll(ctx, storage.StateMachineStart, storage.StateMachineEnd); err != nil {
		return err
	}
	before := s.space.size.Load()
	// The compaction's input tables are deleted in the background: wait
	// a little for them, so the size reported afterwards (as etcd's, after
	// its file was rewritten) is the space the member really holds.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if m := s.db.Metrics(); m.Table.Local.ObsoleteSize+m.Table.Local.ZombieSize+m.BlobFiles.Local.ObsoleteSize+m.BlobFiles.Local.ZombieSize == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.measure()
	s.lg.Info("defragmented", "took", time.Since(start).String(), "size-before-bytes", before, "size-after-bytes", s.space.size.Load())
	return nil
}
