package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/notify"
	"github.com/kvorum/kvorum/internal/storage"
)

// StateMachine is what committed entries are applied to.
type StateMachine interface {
	// Apply applies committed entries in index order. It must skip entries
	// at or below AppliedIndex and record the index of the last entry it was
	// given in the same atomic write as their effects. Conf-change entries
	// have already been applied to raft when Apply sees them.
	Apply(ents []*pb.Entry) error
	// AppliedIndex is the index of the last entry whose effects are stored.
	AppliedIndex() uint64
	// Restore reloads all in-memory state from the engine after a raft
	// snapshot replaced the state machine span.
	Restore() error
}

// RestorePreparer is implemented by a StateMachine that must stop
// something (background writers of the state machine span) before a raft
// snapshot replaces the span; PrepareRestore is called then, before
// Restore.
type RestorePreparer interface {
	PrepareRestore()
}

// Transport sends raft messages to peers without blocking.
type Transport interface {
	Send(msgs []*pb.Message)
}

// Config describes a node.
type Config struct {
	ID uint64
	// Peers bootstraps a new cluster: every initial member, with its
	// membership record as Context. Ignored when the engine holds raft state.
	Peers []raft.Peer

	TickInterval   time.Duration // heartbeat interval
	ElectionTicks  int           // election timeout in ticks
	SnapshotCount  uint64        // applied entries between log compactions
	CatchUpEntries uint64        // entries kept after compaction for slow followers
	// MaxLogBytes, if set, also bounds the raft log kept in memory by
	// size: once its entries take more, the log is compacted before
	// SnapshotCount entries were applied, and a compaction keeps no more
	// than half of it in catch-up entries. Small entries never reach it;
	// it matters for large ones (10,000 entries of a 100-op txn would
	// otherwise hold hundreds of MB).
	MaxLogBytes int64

	DataDir string
	// WALDir is the raft log's directory (etcd's --wal-dir); empty means
	// WALDir in DataDir.
	WALDir       string
	DB           *pebble.DB
	StateMachine StateMachine
	Logger       *slog.Logger

	// WALMetadata is the metadata record of a new write-ahead log (etcd
	// writes its member and cluster ID there); WALLogger hears what the
	// wal package reports (slow syncs, new files; nil: nothing).
	WALMetadata []byte
	WALLogger   *zap.Logger
	// MaxWALs is etcd's --max-wals: 0 keeps every write-ahead log file;
	// otherwise the files wholly before the last compaction point are
	// removed (etcd keeps MaxWALs of them; see purgeWAL).
	MaxWALs uint
	// OnDiskFull, if set, waits until the disk has room again; a raft log
	// write that found the disk full is retried once after it.
	OnDiskFull func()

	// Observer, if set, is told how long raft's storage syncs and the
	// applies take (for metrics).
	Observer Observer
}

// Errors returned to callers.
var (
	ErrStopped  = errors.New("raft node stopped")
	ErrNoLeader = errors.New("no leader")
	ErrTimeout  = errors.New("timed out")
)

// Node runs one raft member.
type Node struct {
	cfg   Config
	log   *raftLog
	snaps *snapshotter
	raft  *rawNode
	tr    Transport
	lg    *slog.Logger

	confState *pb.ConfState
	snapIndex uint64 // index of the last log compaction point
	// bytesAfterCompact is what the in-memory log took right after the
	// last compaction; a compaction for size waits until the log has grown
	// by a quarter of MaxLogBytes past it, so entries not yet applied
	// (which no compaction can drop) do not cause one per apply.
	bytesAfterCompact int64
	// interval is the number of entries between compaction points when
	// the raft log is bounded by size (see sizedInterval).
	interval uint64
	// confChanged is set when a membership change was applied after the
	// last compaction point (see maybeCompact).
	confChanged bool
	// flush is the engine flush the next compaction point waits for. Only
	// the applier uses it.
	flush pendingFlush
	// notices are the commit notices held back; only the Ready loop uses
	// them.
	notices commitNotices

	lead          atomic.Uint64
	leaderChanges atomic.Uint64 // changes to a new known leader
	installing    atomic.Bool   // a snapshot from the leader is being installed
	// heartbeatSent is when the leader last sent each peer a heartbeat
	// (the Ready loop's own, cleared while it does not lead), and
	// heartbeatsLate counts those sent late (checkHeartbeats).
	heartbeatSent       map[uint64]time.Time
	heartbeatLateLogged time.Time
	heartbeatsLate      atomic.Uint64
	term                atomic.Uint64
	commit              atomic.Uint64
	applied             atomic.Uint64

	appliedChanged notify.Signal // whenever applied advances
	// appliedTerm is the term of the last applied entry (0 until one
	// was applied since the start); termChanged is notified whenever it
	// grows.
	appliedTerm atomic.Uint64
	// installed counts the snapshots installed from a leader since the
	// start.
	installed   atomic.Uint64
	termChanged notify.Signal

	// goneMu guards goneTerm, the last term in which ReportPeerGone
	// acted on a gone leader.
	goneMu   sync.Mutex
	goneTerm uint64

	leaderChanged notify.Signal // whenever the leader changes

	// transferring is set while this member hands its leadership away.
	// Raft drops every proposal a leader gets in that window, and a
	// dropped forwarded proposal would leave its client waiting for a
	// timeout, so the proposals followers forward meanwhile are held and
	// stepped once the transfer ended (see holdProposal).
	transferring atomic.Bool
	heldMu       sync.Mutex
	held         []*pb.Message

	reads *readIndexer

	// applyc carries committed entries from the Ready loop to the applier,
	// in order; applying runs while the Ready loop persists the next batch.
	applyc  chan applyJob
	failc   chan struct{} // closed when the applier failed
	failErr error         // set before failc is closed

	// startedc is closed by Start. The transport delivers messages and
	// reports from the moment it exists, before Start; its callbacks reach
	// raft only through started, so nothing is stepped before the Ready
	// loop runs.
	startedc chan struct{}
	stopc    chan struct{}
	donec    chan struct{}
	// applierDone is closed when the applier has returned: Stop waits for
	// it, so nothing is applied to a state machine its owner has closed.
	applierDone chan struct{}
	once        sync.Once
}

// New loads the node's persisted state. It does not start raft; the
// caller wires the transport (which needs the node) and then calls Start.
func New(cfg Config) (_ *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CatchUpEntries == 0 {
		cfg.CatchUpEntries = 5000
	}
	n := &Node{
		cfg:           cfg,
		lg:            cfg.Logger,
		applyc:        make(chan applyJob, 16),
		failc:         make(chan struct{}),
		startedc:      make(chan struct{}),
		stopc:         make(chan struct{}),
		donec:         make(chan struct{}),
		applierDone:   make(chan struct{}),
		heartbeatSent: make(map[uint64]time.Time),
	}
	snaps, err := newSnapshotter(cfg.DB, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	snaps.observer = cfg.Observer
	n.snaps = snaps
	resumed, err := snaps.resumePending()
	if err != nil {
		return nil, fmt.Errorf("finish interrupted snapshot installation: %w", err)
	}
	if resumed {
		if err := cfg.StateMachine.Restore(); err != nil {
			return nil, err
		}
		n.lg.Info("finished installing a snapshot interrupted by a crash")
	}
	l, fresh, err := loadRaftLog(logConfig{dir: WALPath(cfg.DataDir, cfg.WALDir), db: cfg.DB, meta: cfg.WALMetadata, lg: cfg.WALLogger, onDiskFull: cfg.OnDiskFull, stop: n.stopc})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.f.close() // lets go of the log's file locks
		}
	}()
	l.observer = cfg.Observer
	n.log = l
	snap, _ := l.mem.Snapshot()
	n.confState = proto.Clone(snap.GetMetadata().GetConfState()).(*pb.ConfState)
	if n.confState == nil {
		n.confState = &pb.ConfState{}
	}
	n.snapIndex = snap.GetMetadata().GetIndex()
	n.applied.Store(cfg.StateMachine.AppliedIndex())
	hadLog, err := storage.Get(cfg.DB, storage.RaftLogKey)
	if err != nil {
		return nil, err
	}
	if applied := n.applied.Load(); fresh && (applied > 0 || hadLog != nil) && !resumed {
		where := ""
		if hadLog != nil {
			where = " in " + string(hadLog)
		}
		return nil, fmt.Errorf("there is no raft log in %s (or one without entries), but this member wrote one%s and applied its entries up to index %d: was it deleted or damaged, or was --wal-dir changed or dropped since the last start? Start the member with the raft log it wrote, or replace the member", l.dir, where, applied)
	} else if applied < n.snapIndex {
		return nil, fmt.Errorf("the state machine's storage ends at entry %d, before the raft log's compaction point %d: entries in between are lost (the data dir is damaged; restore it from a backup or replace the member)", applied, n.snapIndex)
	}
	// Raft reports the hard state only when it changes, so a restarted
	// member that learns nothing new would otherwise claim term 0.
	if hs, _, err := l.mem.InitialState(); err == nil {
		n.term.Store(hs.GetTerm())
		n.commit.Store(hs.GetCommit())
	}
	if !fresh {
		n.cfg.Peers = nil
	}
	n.reads = newReadIndexer(n)
	if n.raft, err = n.newRaft(); err != nil {
		return nil, err
	}
	return n, nil
}

// Snapshots gives the transport access to outgoing and incoming snapshot
// data.
func (n *Node) Snapshots() *snapshotter { return n.snaps }

// maxSizePerMsg bounds the entries of one MsgApp (raft's MaxSizePerMsg,
// and coalesce's limit for merged ones).
const maxSizePerMsg = 1 << 20

// Start starts the Ready loop, the applier and the read index loop.
func (n *Node) Start(tr Transport) {
	n.tr = tr
	close(n.startedc)
	go n.run()
	go n.applier()
	go n.purgeWAL()
	go n.reads.run()
	go n.campaignIfAlone()
}

// newRaft creates raft on the loaded log (a new member's log gets the
// initial members, cfg.Peers).
func (n *Node) newRaft() (*rawNode, error) {
	c := &raft.Config{
		ID:                        n.cfg.ID,
		ElectionTick:              n.cfg.ElectionTicks,
		HeartbeatTick:             1,
		Storage:                   n.log.mem,
		Applied:                   n.snapIndex,
		MaxSizePerMsg:             maxSizePerMsg,
		MaxCommittedSizePerReady:  16 << 20,
		MaxUncommittedEntriesSize: 1 << 30,
		MaxInflightMsgs:           512,
		CheckQuorum:               true,
		PreVote:                   true,
		Logger:                    raftLogger{n.lg},
	}
	rn, err := newRawNode(c, n.cfg.Peers)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	return rn, nil
}

// campaignIfAlone has a member that is the only voter take leadership at
// once instead of after an election timeout (a restarted single-member
// cluster serves a second sooner). It looks at the member list only after
// every entry committed before the start is applied, so that no membership
// change in the log is missed.
func (n *Node) campaignIfAlone() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.donec:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := n.WaitApplied(ctx, nil, n.commit.Load()); err != nil {
		return
	}
	voters := n.raft.status().Config.Voters.IDs()
	if _, self := voters[n.cfg.ID]; len(voters) != 1 || !self || n.lead.Load() != raft.None {
		return
	}
	if err := n.raft.campaign(); err != nil {
		n.lg.Debug("campaign as the only voter failed", "err", err)
	}
}

// applyJob is one Ready's committed entries, a snapshot to install, or
// (neither) a barrier. done, if set, is closed once it and everything
// before it is done.
type applyJob struct {
	ents []*pb.Entry
	snap *pb.Snapshot
	done chan struct{}
}

func (n *Node) applier() {
	defer close(n.applierDone)
	for {
		select {
		case job := <-n.applyc:
			var err error
			switch {
			case job.snap != nil:
				err = n.installSnapshot(job.snap)
			case job.ents != nil:
				err = n.apply(job.ents)
			}
			if err != nil {
				n.failErr = err
				close(n.failc)
				return
			}
			if job.done != nil {
				close(job.done)
			}
		case <-n.flush.done:
			if err := n.maybeCompact(); err != nil {
				n.failErr = err
				close(n.failc)
				return
			}
		case <-n.stopc:
			return
		}
	}
}

// enqueueApply hands entries to the applier. With wait set it returns only
// once they are applied: conf changes must take effect before the Ready
// loop goes on (votes and quorums depend on them), and a snapshot may only
// replace the state machine when nothing is being applied to it.
func (n *Node) enqueueApply(ents []*pb.Entry, wait bool) error {
	return n.enqueue(applyJob{ents: ents}, wait)
}

// enqueue hands a job to the applier (see enqueueApply).
func (n *Node) enqueue(job applyJob, wait bool) error {
	if wait {
		job.done = make(chan struct{})
	}
	select {
	case n.applyc <- job:
	case <-n.failc:
		return n.failErr
	case <-n.stopc:
		return ErrStopped
	}
	if !wait {
		return nil
	}
	select {
	case <-job.done:
		return nil
	case <-n.failc:
		return n.failErr
	case <-n.stopc:
		return ErrStopped
	}
}

func hasConfChange(ents []*pb.Entry) bool {
	for _, e := range ents {
		if t := e.GetType(); t == pb.EntryType_EntryConfChange || t == pb.EntryType_EntryConfChangeV2 {
			return true
		}
	}
	return false
}

// Stop stops raft and waits for the loop to end. It may be called on a
// node that was never started (a member that failed to open its listeners).
func (n *Node) Stop() {
	n.once.Do(func() {
		close(n.stopc)
		if n.started() == nil {
			close(n.donec)
			n.log.f.close()
			return
		}
		<-n.donec
		<-n.applierDone
		if err := n.log.f.close(); err != nil {
			n.lg.Error("close raft log", "err", err)
		}
	})
}

// purgeWAL removes the write-ahead log files the log has let go of (the
// ones wholly before the last compaction point; see raftLog.compact) until
// the node stops, unless MaxWALs is 0. etcd keeps up to MaxWALs of them;
// a member never reads them again, and a restart reads every file left
// (wal.ValidSnapshotEntries): at 1M keys, keeping five took a restart from
// 0.66 to 1.2 s.
func (n *Node) purgeWAL() {
	if n.cfg.MaxWALs == 0 {
		return
	}
	select {
	case <-n.log.created: // a new member's log appears with its first state
	case <-n.stopc:
		return
	}
	lg := n.cfg.WALLogger
	if lg == nil {
		lg = zap.NewNop()
	}
	// With a limit of one, every file whose lock the log released goes
	// (the purge stops at the first file still locked). A failed pass ends
	// the purger (as in etcd, where the files then stay until a restart);
	// here it starts again after an interval, so a passing error (a full
	// or flaky disk) does not leave the log growing for good.
	for {
		done, errc := fileutil.PurgeFileWithDoneNotify(lg, n.log.dir, ".wal", 1, walPurgeInterval, n.stopc)
		<-done // it ends when the node stops or after an error, sent before
		select {
		case err := <-errc:
			n.lg.Warn("removing old raft log files failed; trying again later", "dir", n.log.dir, "err", err, "retry-in", walPurgeInterval.String())
		default:
			return
		}
		select {
		case <-time.After(walPurgeInterval):
		case <-n.stopc:
			return
		}
	}
}

// walPurgeInterval is how often old write-ahead log files are looked for
// (etcd's is 30 s).
const walPurgeInterval = 30 * time.Second

// Done is closed when the node has stopped.
func (n *Node) Done() <-chan struct{} { return n.donec }

func (n *Node) run() {
	defer close(n.donec)
	defer n.raft.stop()
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		if rd, ok := n.raft.ready(); ok {
			if err := n.handleReady(rd); err != nil {
				// A storage failure leaves raft's obligations unmet: the only
				// safe reaction is to stop taking part.
				n.lg.Error("raft node stopping: cannot persist or apply", "err", err)
				return
			}
			n.raft.advance(rd)
			// Under a steady load there is always another Ready: ticks
			// (heartbeats, elections) must not wait for a pause.
			select {
			case <-ticker.C:
				n.raft.tick()
			case <-n.failc:
				n.lg.Error("raft node stopping: cannot apply committed entries", "err", n.failErr)
				return
			case <-n.stopc:
				return
			default:
			}
			continue
		}
		select {
		case <-ticker.C:
			n.raft.tick()
		case <-n.notices.due:
			n.tr.Send(n.notices.flush())
		case <-n.raft.wake:
		case <-n.failc:
			n.lg.Error("raft node stopping: cannot apply committed entries", "err", n.failErr)
			return
		case <-n.stopc:
			return
		}
	}
}

func (n *Node) handleReady(rd raft.Ready) error {
	// Held commit notices whose delay is over go before anything of this
	// Ready (which may wait for the log): they are older than its messages.
	select {
	case <-n.notices.due:
		n.tr.Send(n.notices.flush())
	default:
	}
	if rd.SoftState != nil {
		n.observeLeader(rd.SoftState.Lead, rd.HardState)
	} else if rd.HardState != nil && rd.HardState.GetTerm() != 0 {
		n.term.Store(rd.HardState.GetTerm())
	}
	if len(rd.ReadStates) > 0 {
		n.reads.deliver(rd.ReadStates)
	}
	if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
		// The applier installs it once everything before it is applied,
		// and the Ready loop waits: the log must hold the snapshot before
		// this Ready's entries are added after it.
		if err := n.enqueue(applyJob{snap: rd.Snapshot}, true); err != nil {
			return err
		}
	}
	if rd.HardState != nil && rd.HardState.GetCommit() != 0 {
		n.commit.Store(rd.HardState.GetCommit())
	}
	// A new member's first raft state creates its log; nothing is applied
	// before it exists, so a member whose log could not be created (a bad
	// --wal-dir, a full disk) has applied nothing and starts afresh.
	saved := false
	if n.log.f == nil {
		if err := n.log.save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
			return err
		}
		saved = true
	}
	// Committed entries are applied while this Ready's entries are being
	// persisted: they are durable on a quorum already, and if this member
	// crashes first, its applied index may end up past its own log, which
	// the skip-at-or-below-applied rule makes harmless.
	if len(rd.CommittedEntries) > 0 {
		if err := n.enqueueApply(rd.CommittedEntries, hasConfChange(rd.CommittedEntries)); err != nil {
			return err
		}
	}
	isLeader := n.lead.Load() == n.cfg.ID
	msgs := coalesce(rd.Messages, maxSizePerMsg)
	if isLeader || len(n.notices.held) > 0 {
		var released bool
		if msgs, released = n.notices.route(msgs); released {
			msgs = coalesce(msgs, maxSizePerMsg)
		}
	}
	if isLeader {
		n.checkHeartbeats(msgs)
		n.tr.Send(msgs)
		// Sending readies the peers' writer goroutines (and enqueueApply
		// the applier) in the run queue of this goroutine's P, and the
		// save below holds that P in fdatasync. They wait there until
		// the other P is free to steal them or sysmon takes the P back
		// (after 20 µs to 10 ms): the appends often left only after the
		// leader's own sync, and a put took the leader's sync plus a
		// follower's round trip and sync instead of the longer of the
		// two. Yielding first lets them go out (docs/benchmarks.md:
		// 1.07-1.08x the put rate with 1 and 100 clients, p99 0.86x,
		// CPU 0.93x).
		if len(msgs) > 0 && len(rd.Entries) > 0 && !saved {
			runtime.Gosched()
		}
	}
	if !saved {
		if err := n.log.save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
			return err
		}
	}
	if !isLeader {
		clear(n.heartbeatSent)
		n.tr.Send(msgs)
	}
	return nil
}

// checkHeartbeats counts, as etcd does, the heartbeats the leader sends a
// peer more than two heartbeat intervals after the previous one: the Ready
// loop was held up (a slow disk, an overloaded machine) and the followers
// may soon start an election. Only the Ready loop calls it.
func (n *Node) checkHeartbeats(msgs []*pb.Message) {
	now := time.Now()
	for _, m := range msgs {
		if m.GetType() != pb.MessageType_MsgHeartbeat {
			continue
		}
		last, ok := n.heartbeatSent[m.GetTo()]
		n.heartbeatSent[m.GetTo()] = now
		if late := now.Sub(last) - 2*n.cfg.TickInterval; ok && late > 0 {
			total := n.heartbeatsLate.Add(1)
			// Logged at most every 10 seconds: a member that is late
			// once is usually late to every peer, many times.
			if now.Sub(n.heartbeatLateLogged) >= 10*time.Second {
				n.heartbeatLateLogged = now
				n.lg.Warn("leader sent a heartbeat late; the member is likely overloaded or its disk slow",
					"to", fmt.Sprintf("%x", m.GetTo()), "heartbeat-interval", n.cfg.TickInterval.String(),
					"late-by", late.String(), "late-heartbeats", total)
			}
		}
	}
}

// HeartbeatsLate counts the heartbeats this member as leader sent more
// than two heartbeat intervals after the previous one to the same peer.
func (n *Node) HeartbeatsLate() uint64 { return n.heartbeatsLate.Load() }

func (n *Node) observeLeader(lead uint64, hs *pb.HardState) {
	if hs != nil && hs.GetTerm() != 0 {
		n.term.Store(hs.GetTerm())
	}
	old := n.lead.Swap(lead)
	if old == lead {
		return
	}
	if lead != raft.None {
		n.leaderChanges.Add(1)
	}
	switch {
	case lead == raft.None:
		n.lg.Warn("leader lost", "previous", fmt.Sprintf("%x", old), "term", n.term.Load())
	case lead == n.cfg.ID:
		n.lg.Info("became leader", "member", fmt.Sprintf("%x", lead), "term", n.term.Load())
	default:
		n.lg.Info("leader elected", "leader", fmt.Sprintf("%x", lead), "term", n.term.Load())
	}
	n.leaderChanged.Notify()
}

func (n *Node) installSnapshot(snap *pb.Snapshot) error {
	n.installing.Store(true)
	defer n.installing.Store(false)
	meta := snap.GetMetadata()
	n.lg.Info("installing snapshot from leader", "index", meta.GetIndex(), "term", meta.GetTerm())
	if p, ok := n.cfg.StateMachine.(RestorePreparer); ok {
		p.PrepareRestore()
	}
	if err := n.snaps.install(meta); err != nil {
		return err
	}
	if err := n.cfg.StateMachine.Restore(); err != nil {
		return err
	}
	if err := n.log.applySnapshot(snap); err != nil {
		return err
	}
	if err := n.snaps.finish(meta); err != nil {
		return err
	}
	n.confState = proto.Clone(meta.GetConfState()).(*pb.ConfState)
	n.snapIndex = meta.GetIndex()
	n.flush = pendingFlush{} // its compaction point is behind the snapshot
	n.setApplied(n.cfg.StateMachine.AppliedIndex())
	n.installed.Add(1)
	n.setAppliedTerm(meta.GetTerm())
	n.lg.Info("snapshot installed", "index", meta.GetIndex(), "applied", n.applied.Load())
	return nil
}

func (n *Node) apply(ents []*pb.Entry) error {
	for _, e := range ents {
		var cc pb.ConfChangeI
		switch e.GetType() {
		case pb.EntryType_EntryConfChange:
			c := &pb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), c); err != nil {
				return fmt.Errorf("conf change entry %d is corrupt: %w", e.GetIndex(), err)
			}
			cc = c
		case pb.EntryType_EntryConfChangeV2:
			c := &pb.ConfChangeV2{}
			if err := proto.Unmarshal(e.GetData(), c); err != nil {
				return fmt.Errorf("conf change entry %d is corrupt: %w", e.GetIndex(), err)
			}
			cc = c
		default:
			continue
		}
		n.confState = n.raft.applyConfChange(cc)
		n.confChanged = true
	}
	start := time.Now()
	if err := n.cfg.StateMachine.Apply(ents); err != nil {
		return err
	}
	if o := n.cfg.Observer; o != nil {
		o.Applied(time.Since(start))
	}
	n.setApplied(n.cfg.StateMachine.AppliedIndex())
	if len(ents) > 0 {
		n.setAppliedTerm(ents[len(ents)-1].GetTerm())
	}
	return n.maybeCompact()
}

// setAppliedTerm records the term of the last applied entry.
func (n *Node) setAppliedTerm(term uint64) {
	if term <= n.appliedTerm.Load() {
		return
	}
	n.appliedTerm.Store(term)
	n.termChanged.Notify()
}

func (n *Node) setApplied(idx uint64) {
	n.applied.Store(idx)
	n.appliedChanged.Notify()
}

// maybeCompact trims the raft log every SnapshotCount applied entries (at
// this member's phase, see compactionPhase), keeping CatchUpEntries for
// followers that are a little behind (further behind ones get a snapshot).
//
// A membership change also moves the compaction point (keeping the same
// catch-up entries): the snapshot a leader sends must carry the member
// list the receiver belongs to. A member added after the last snapshot
// would otherwise be sent one from before its addition, which raft on the
// new member refuses, again and again.
//
// The state machine's engine writes no log of its own: what it applied is
// durable only once flushed, and until then the raft log is its only
// record. So a compaction point is chosen, the engine is asked to flush
// everything up to it, and the log is cut there once that flush ended
// (the applier calls maybeCompact again then); applying goes on meanwhile.
func (n *Node) maybeCompact() error {
	if n.flush.done != nil {
		select {
		case <-n.flush.done:
		default:
			return nil
		}
		at, cs := n.flush.at, n.flush.confState
		n.flush = pendingFlush{}
		return n.compact(at, cs)
	}
	applied := n.applied.Load()
	every := n.cfg.SnapshotCount
	if n.cfg.MaxLogBytes > 0 {
		first, _ := n.log.mem.FirstIndex()
		last, _ := n.log.mem.LastIndex()
		n.interval = sizedInterval(n.interval, every, n.log.bytes.Load(), last+1-first, n.cfg.MaxLogBytes)
		every = n.interval
	}
	due := compactionDue(applied, n.snapIndex, every, compactionPhase(n.confState, n.cfg.ID, every))
	if maxBytes := n.cfg.MaxLogBytes; maxBytes > 0 && applied > n.snapIndex {
		held := n.log.bytes.Load()
		due = due || held > maxBytes && held > n.bytesAfterCompact+maxBytes/4
	}
	if !due && !(n.confChanged && applied > n.snapIndex) {
		return nil
	}
	last, _ := n.log.mem.LastIndex()
	if applied > last || applied > n.log.savedCommit.Load() {
		// The state machine is ahead of the local log (a snapshot carried
		// newer state), or of the stored hard state (the entries were
		// applied while it was being written); compact once they caught up.
		return nil
	}
	done, err := n.cfg.DB.AsyncFlush()
	if err != nil {
		return fmt.Errorf("flush the state machine for a raft log compaction at %d: %w", applied, err)
	}
	n.flush = pendingFlush{done: done, at: applied, confState: proto.Clone(n.confState).(*pb.ConfState)}
	n.confChanged = false
	return nil
}

// compactionDue reports whether a compaction point is due at applied, the
// last one being at last: one every `every` entries, at the indexes that
// are a multiple of it once shifted by phase (see compactionPhase).
func compactionDue(applied, last, every, phase uint64) bool {
	return every > 0 && (applied+phase)/every > (last+phase)/every
}

// sizedInterval is the number of entries between two compaction points:
// every (--snapshot-count), or, when that many entries of the size the log
// holds on average (held bytes in entries) would take more than half of
// maxBytes, every divided by the smallest whole number that brings them
// within it. Large entries thus get compaction points on the same phased
// grid of raft indexes as small ones (compactionDue), only closer together.
// maxBytes stays the bound (maybeCompact), but is not reached: a point
// keeps at most half of it in catch-up entries, and an interval adds at
// most the other half. The interval in use (prev) is kept while its
// entries take between a quarter and a half of maxBytes, so that an
// average that wavers does not move the grid at every apply.
//
// A bound on bytes alone had members take their points, and flush their
// engines, at the same moment: all hold the same entries. Entries of 3.3 KB
// or more reach it before --snapshot-count at the defaults. In a simulation
// of three members applying entries of 8, 20 and 100 KB, 14%, 100% and 72%
// of the points fell within a sixth of an interval of another member's;
// on the grid, none (TestLargeEntriesGetCompactionPointsAtDifferentTimesToo).
func sizedInterval(prev, every uint64, held int64, entries uint64, maxBytes int64) uint64 {
	if every == 0 || maxBytes <= 0 {
		return every
	}
	if entries == 0 || held <= 0 { // nothing to measure: keep the interval in use
		if prev == 0 {
			return every
		}
		return prev
	}
	avg := float64(held) / float64(entries)
	half := float64(maxBytes / 2)
	if prev != 0 && float64(prev)*avg <= half && (prev == every || float64(prev)*avg >= half/2) {
		return prev
	}
	k := math.Ceil(float64(every) * avg / half)
	if k <= 1 {
		return every
	}
	return max(uint64(float64(every)/k), 1)
}

// compactionPhase spreads the members' compaction points over the interval
// between two of them: the member at position p (by ID) of n members takes
// them where the applied index plus p/n of the interval is a multiple of
// it, so each member's points fall 1/n of the interval from the next
// member's. Every member applies the same entries, so
// without it all of them would flush their engines (and compact the tables
// that produces) at the same moment, every SnapshotCount entries. A leader
// commits with the quickest quorum, so one follower's flush costs little;
// two at once (or the leader's beside them, on shared cores) hold up every
// commit until they end. Learners count as members here: they flush too.
func compactionPhase(cs *pb.ConfState, id, every uint64) uint64 {
	var below, members uint64
	found := false
	for _, ids := range [2][]uint64{cs.GetVoters(), cs.GetLearners()} {
		for _, m := range ids {
			members++
			found = found || m == id
			if m < id {
				below++
			}
		}
	}
	if !found {
		return 0
	}
	return every * below / members
}

// pendingFlush is a flush of the engine that a compaction point waits for.
type pendingFlush struct {
	done      <-chan struct{} // closed when the flush ended; nil: none
	at        uint64          // the compaction point
	confState *pb.ConfState   // the member list at it
}

// compact cuts the raft log at applied, whose state is durable.
func (n *Node) compact(applied uint64, cs *pb.ConfState) error {
	if applied <= n.snapIndex {
		return nil
	}
	keepFrom := uint64(1)
	if applied > n.cfg.CatchUpEntries {
		keepFrom = applied - n.cfg.CatchUpEntries
	}
	if first, _ := n.log.mem.FirstIndex(); keepFrom < first {
		keepFrom = first
	}
	if n.cfg.MaxLogBytes > 0 {
		keepFrom = n.log.keepWithin(keepFrom, applied, n.cfg.MaxLogBytes/2)
	}
	if err := n.log.compact(applied, cs, keepFrom); err != nil {
		return fmt.Errorf("compact raft log at %d: %w", applied, err)
	}
	n.bytesAfterCompact = n.log.bytes.Load()
	n.snapIndex = applied
	n.lg.Debug("raft log compacted", "index", applied, "kept-from", keepFrom)
	return nil
}

// Process steps a message received from a peer. It does not wait for
// anything but raft's lock: the transport steps each peer's messages in
// order, so a blocked message would hold up everything behind it on that
// stream.
//
// A proposal a follower forwarded (MsgProp) is held while this member hands
// off its leadership (see holdProposal). Otherwise raft takes it at once or
// drops it (no leader known: raft.ErrProposalDropped); the proposing
// client then sees a timeout, as for any proposal raft drops.
func (n *Node) Process(_ context.Context, m *pb.Message) error {
	rn := n.started()
	if rn == nil {
		return ErrStopped
	}
	if m.GetType() == pb.MessageType_MsgProp && n.holdProposal(m) {
		return nil
	}
	return rn.step(m)
}

// started is the raft node once Start has run, nil before.
func (n *Node) started() *rawNode {
	select {
	case <-n.startedc:
		return n.raft
	default:
		return nil
	}
}

// ReportUnreachable tells raft a peer could not be reached.
func (n *Node) ReportUnreachable(id uint64) {
	if rn := n.started(); rn != nil {
		rn.reportUnreachable(id)
	}
}

// ReportPeerGone hears from the transport that peer id's process is most
// likely gone (its address refuses connections and nothing streams from
// it). When id is the leader, this member need not wait out the election
// timeout: it campaigns at once, as if the leader had handed leadership to
// it (raft's MsgTimeoutNow, which skips pre-vote and the peers' leader
// lease). Voting still decides: a member whose log is behind loses and
// raft's ordinary timeout follows. To avoid split votes, the voters that
// heard the same news take turns by member ID, two heartbeats apart; a
// later one sees the term moved on and stands down. Once per term.
func (n *Node) ReportPeerGone(id uint64) {
	term := n.term.Load()
	if id == n.cfg.ID || id != n.lead.Load() {
		return
	}
	n.goneMu.Lock()
	if n.goneTerm == term {
		n.goneMu.Unlock()
		return
	}
	n.goneTerm = term
	n.goneMu.Unlock()
	go func() {
		rn := n.started()
		if rn == nil {
			return
		}
		var voters []uint64
		for v := range rn.status().Config.Voters.IDs() {
			if v != id {
				voters = append(voters, v)
			}
		}
		slices.Sort(voters)
		rank := slices.Index(voters, n.cfg.ID)
		if rank < 0 {
			return // a learner does not campaign
		}
		select {
		case <-time.After(time.Duration(rank) * 2 * n.cfg.TickInterval):
		case <-n.donec:
			return
		}
		if n.lead.Load() != id || n.term.Load() != term {
			return
		}
		n.lg.Info("the leader's process is gone (its peer address refuses connections); campaigning without waiting for the election timeout",
			"leader", fmt.Sprintf("%x", id), "term", term)
		_ = rn.step(&pb.Message{Type: pb.MessageType_MsgTimeoutNow.Enum(), From: proto.Uint64(id), To: proto.Uint64(n.cfg.ID), Term: proto.Uint64(term)})
	}()
}

// ReportSnapshot tells raft how sending a snapshot ended.
func (n *Node) ReportSnapshot(id uint64, failure bool) {
	rn := n.started()
	if rn == nil {
		return
	}
	st := raft.SnapshotFinish
	if failure {
		st = raft.SnapshotFailure
	}
	rn.reportSnapshot(id, st)
}

// Propose submits data to be replicated. Raft forwards it to the leader.
// A nil error means only that raft accepted it; the caller waits for it to
// be applied.
//
// A proposal raft drops (this member hands off its leadership, or knows no
// leader) was appended nowhere, so proposing it again cannot apply it
// twice: Propose tries again for up to an election timeout, which is what
// a handoff or an election takes, before it reports ErrNoLeader.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	var giveUp *time.Timer // from the first drop: most proposals are taken at once
	for {
		changed := n.LeaderChanged()
		if !n.transferring.Load() {
			err := n.raft.propose(data)
			if !errors.Is(err, raft.ErrProposalDropped) {
				return err
			}
		}
		if giveUp == nil {
			giveUp = time.NewTimer(time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval)
			defer giveUp.Stop()
		}
		select {
		case <-changed:
		case <-time.After(n.cfg.TickInterval):
		case <-giveUp.C:
			return ErrNoLeader
		case <-ctx.Done():
			return ErrNoLeader
		case <-n.donec:
			return ErrStopped
		}
	}
}

// ProposalNotSent takes back a proposal the transport could not send to
// the leader (see transport.ProposalReturner) and steps it again a
// heartbeat interval later: raft forwards it to whoever leads then, over a
// stream that may be up again. It is dropped once no leader is known, so a
// member cut off from the cluster does not retry for ever.
func (n *Node) ProposalNotSent(m *pb.Message) {
	time.AfterFunc(n.cfg.TickInterval, func() {
		if err := n.Process(context.Background(), m); err != nil {
			n.lg.Debug("proposal the transport could not send not taken", "err", err)
		}
	})
}

// holdProposal keeps a proposal a follower forwarded while this member
// hands off its leadership; it reports whether it did.
func (n *Node) holdProposal(m *pb.Message) bool {
	n.heldMu.Lock()
	defer n.heldMu.Unlock()
	if !n.transferring.Load() {
		return false
	}
	n.held = append(n.held, m)
	return true
}

// transferStarted begins a handoff of leadership; the returned function
// ends it and steps the proposals held meanwhile: on a follower raft
// forwards them to the new leader, on a member that still leads (the
// handoff failed) it appends them.
func (n *Node) transferStarted() (end func()) {
	n.transferring.Store(true)
	return func() {
		n.heldMu.Lock()
		n.transferring.Store(false)
		held := n.held
		n.held = nil
		n.heldMu.Unlock()
		for _, m := range held {
			if err := n.Process(context.Background(), m); err != nil {
				n.lg.Debug("proposal held during a leadership transfer not taken", "from", fmt.Sprintf("%x", m.From), "err", err)
			}
		}
	}
}

// ProposeConfChange submits a membership change.
func (n *Node) ProposeConfChange(ctx context.Context, cc pb.ConfChangeI) error {
	return n.raft.proposeConfChange(cc)
}

// ID is this member's raft ID.
func (n *Node) ID() uint64 { return n.cfg.ID }

// Leader is the current leader's ID, or 0 when none is known.
func (n *Node) Leader() uint64 { return n.lead.Load() }

// Term is the current raft term.
func (n *Node) Term() uint64 { return n.term.Load() }

// LeaderChanges counts the changes to a new known leader this node saw.
func (n *Node) LeaderChanges() uint64 { return n.leaderChanges.Load() }

// Installing tells whether a snapshot from the leader is being installed.
func (n *Node) Installing() bool { return n.installing.Load() }

// CommittedIndex is the highest log index known to be committed.
func (n *Node) CommittedIndex() uint64 { return n.commit.Load() }

// LogMemory is what the raft log entries kept in memory take, in bytes
// (encoded size), and how many there are: the entries since the last
// compaction point plus the ones kept for followers (SnapshotCount and
// CatchUpEntries bound their number).
func (n *Node) LogMemory() (bytes int64, entries uint64) {
	first, _ := n.log.mem.FirstIndex()
	last, _ := n.log.mem.LastIndex()
	if last >= first {
		entries = last - first + 1
	}
	return n.log.bytes.Load(), entries
}

// AppliedIndex is the highest index applied to the state machine.
func (n *Node) AppliedIndex() uint64 { return n.applied.Load() }

// Status is raft's full status (progress of followers on the leader);
// empty before Start.
func (n *Node) Status() raft.Status {
	if rn := n.started(); rn != nil {
		return rn.status()
	}
	return raft.Status{}
}

// WaitApplied blocks until the applied index reaches idx. It gives up with
// ctx's error when ctx ends, and with ErrTimeout when expired closes (nil:
// never).
func (n *Node) WaitApplied(ctx context.Context, expired <-chan struct{}, idx uint64) error {
	for {
		ch := n.appliedChanged.Changed()
		if n.applied.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-expired:
			return ErrTimeout
		case <-n.donec:
			return ErrStopped
		}
	}
}

// AppliedTerm is the term of the last entry applied since the start (0
// before the first). An entry of an earlier term that was not applied by
// then never will be: terms never decrease along the log.
func (n *Node) AppliedTerm() uint64 { return n.appliedTerm.Load() }

// SnapshotsInstalled counts the snapshots this member installed from a
// leader since it started. The entries a snapshot covers are not applied
// one by one, so whoever waits for a proposal cannot tell from Apply
// whether a snapshot held it.
func (n *Node) SnapshotsInstalled() uint64 { return n.installed.Load() }

// AppliedTermChanged returns a channel that is closed when AppliedTerm
// next grows.
func (n *Node) AppliedTermChanged() <-chan struct{} { return n.termChanged.Changed() }

// LeaderChanged returns a channel that is closed at the next change of
// leader (including to or from none).
func (n *Node) LeaderChanged() <-chan struct{} { return n.leaderChanged.Changed() }

// WaitLeader blocks until a leader is known.
func (n *Node) WaitLeader(ctx context.Context) error {
	return n.waitLeader(ctx, func(lead uint64) bool { return lead != raft.None })
}

// waitLeader blocks until ok holds for the current leader (0: none).
func (n *Node) waitLeader(ctx context.Context, ok func(lead uint64) bool) error {
	for {
		ch := n.leaderChanged.Changed()
		if ok(n.lead.Load()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.donec:
			return ErrStopped
		}
	}
}

// TransferLeadershipTo hands leadership to target and waits until target
// leads or ctx ends. The caller checks that this member leads and that
// target is a voting member.
func (n *Node) TransferLeadershipTo(ctx context.Context, target uint64) error {
	defer n.transferStarted()()
	n.raft.transferLeader(target)
	return n.waitLeader(ctx, func(lead uint64) bool { return lead == target })
}

// TransferLeadership hands leadership to the most up-to-date live
// follower and waits until another member leads or ctx ends. A no-op on a
// follower. If the chosen follower does not take over within an election
// timeout (it may have stopped a moment ago, before this leader noticed), it
// tries the next one.
func (n *Node) TransferLeadership(ctx context.Context) error {
	self := n.cfg.ID
	tried := make(map[uint64]bool)
	for n.lead.Load() == self {
		target := n.transferTarget(tried)
		if target == 0 {
			return nil
		}
		tried[target] = true
		n.lg.Info("transferring leadership before stopping", "to", fmt.Sprintf("%x", target), "term", n.term.Load())
		end := n.transferStarted()
		n.raft.transferLeader(target)
		// Stepping down is not enough: the successor still needs this
		// member's vote to arrive, so wait until another member leads.
		actx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval)
		err := n.waitLeader(actx, func(lead uint64) bool { return lead != raft.None && lead != self })
		cancel()
		end()
		if err == nil {
			n.linger(ctx)
		}
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrStopped) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	return nil
}

// linger keeps a member that just handed off its leadership running for
// two heartbeat intervals before it stops: the proposals it held during
// the handoff, and those followers forwarded to it before they heard of
// the new leader, are on their way to the new leader through this
// member's raft node and transport, and would be lost with them (their
// clients would wait for a timeout).
func (n *Node) linger(ctx context.Context) {
	select {
	case <-time.After(2 * n.cfg.TickInterval):
	case <-ctx.Done():
	case <-n.donec:
	}
}

// transferTarget picks the follower to hand leadership to: only one the
// leader is replicating to right now (a failed send puts a stopped member's
// progress into probing), not tried yet, and among those the most up to
// date. 0 means nobody.
func (n *Node) transferTarget(tried map[uint64]bool) uint64 {
	var best, bestMatch uint64
	for id, pr := range n.raft.status().Progress {
		if id == n.cfg.ID || tried[id] || pr.IsLearner || !pr.RecentActive || pr.State != tracker.StateReplicate {
			continue
		}
		if best == 0 || pr.Match > bestMatch {
			best, bestMatch = id, pr.Match
		}
	}
	return best
}
