package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/alarm"
	"github.com/kvorum/kvorum/internal/apply"
	"github.com/kvorum/kvorum/internal/auth"
	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/logging"
	"github.com/kvorum/kvorum/internal/membership"
	"github.com/kvorum/kvorum/internal/membudget"
	"github.com/kvorum/kvorum/internal/metrics"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/notify"
	"github.com/kvorum/kvorum/internal/raftnode"
	"github.com/kvorum/kvorum/internal/storage"
	"github.com/kvorum/kvorum/internal/transport"
	"github.com/kvorum/kvorum/internal/watch"
)

// Config is what a member needs to run. The config package builds it from
// flags; tests build it directly.
type Config struct {
	Name                string
	DataDir             string
	WALDir              string // the raft log's directory; empty: DataDir/member/wal
	AdvertiseClientURLs []string
	AdvertisePeerURLs   []string
	InitialCluster      []InitialMember
	// NewCluster is true for --initial-cluster-state=new.
	NewCluster   bool
	ClusterToken string
	// PeerClientTLS, if set, is used to ask other members for the member
	// list when joining an existing cluster over https peer URLs.
	PeerClientTLS *tls.Config

	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	SnapshotCount     uint64
	CatchUpEntries    uint64 // raft log entries kept after a compaction
	MaxWALs           uint   // raft log files kept at most (0: all)
	MaxRequestBytes   int
	MaxTxnOps         int
	// QuotaBackendBytes is --quota-backend-bytes: 0 means 2 GiB, a
	// negative number no quota.
	QuotaBackendBytes int64
	// DiskReserveBytes is --disk-reserve-bytes: the disk space the member
	// holds back (see storage.Reserve); 0 means the default, a negative
	// number none.
	DiskReserveBytes int64
	// BcryptCost is --bcrypt-cost; 0 means bcrypt's default (10).
	BcryptCost int
	// AuthToken is --auth-token: "simple" (also for "") or "jwt,...".
	AuthToken string
	// AuthTokenTTL is --auth-token-ttl for simple tokens; 0 means 300 s.
	AuthTokenTTL time.Duration
	// MaxLearners bounds the learners in the cluster; 0 means 1 (etcd's
	// default).
	MaxLearners int
	// NoStrictReconfigCheck turns off the refusal of membership changes
	// that would leave fewer started or connected voters than a quorum
	// (--strict-reconfig-check=false).
	NoStrictReconfigCheck bool
	// WatchProgressNotifyInterval is the period of progress notifications
	// for watches that ask for them; 0 means etcd's default (10 minutes).
	WatchProgressNotifyInterval time.Duration
	// CorruptCheck says when members compare their data.
	CorruptCheck CorruptCheck
	// CompactionPace paces the background deletion of compacted history
	// (see mvcc.Store.RunCompactor); zero fields take its defaults.
	CompactionPace mvcc.Pace
	// AutoCompaction is the leader's automatic compaction of history.
	AutoCompaction AutoCompaction
	// LeaseCheckpointInterval is how often the leader replicates the
	// remaining TTL of long leases; 0 means 5 minutes (etcd's default).
	LeaseCheckpointInterval time.Duration

	// PeerTLS, when set, is the client side of TLS to the other members
	// (their https peer URLs); the peer listener's TLS is the caller's.
	PeerTLS *tls.Config

	Logger *slog.Logger
	// Metrics is the member's registry; nil means a basic one of its own.
	Metrics *metrics.Metrics
	// Memory is the split of the memory budget (zero: membudget's default).
	Memory membudget.Budget
}

// Server is one member.
type Server struct {
	cfg         Config
	lg          *slog.Logger
	engine      *storage.Engine
	db          *pebble.DB
	applier     *apply.Applier
	compactor   compactor
	lessor      *lease.Lessor
	renewals    *renewBatcher
	members     *membership.Store
	alarms      *alarm.Store
	auth        *auth.Store
	tokens      auth.Tokens
	authChanged notify.Signal // on every auth change
	space       *space
	raising     sync.Map // alarms being proposed, by type and member
	// reserve is the disk reserve once made, for the engine's disk-full
	// handler, which may run before (while the engine opens).
	reserve   atomic.Pointer[storage.Reserve]
	node      *raftnode.Node
	transport *transport.Transport
	waiters   waiters
	ids       *idGenerator
	watch     *watch.Hub
	stopWatch func()
	metrics   *metrics.Metrics
	kvStats   mvcc.Stats // counts of the key space, across restores
	backups   lastBackup // outcome of scheduled backups, for the status page

	memberID  uint64
	clusterID uint64

	reqTimeout time.Duration
	expiries   *expiries // the timeouts of proposals and linearizable reads

	stopOnce sync.Once
	stopped  chan struct{}
	ready    chan struct{}
}

// New opens the data dir, checks that it belongs to this member and cluster,
// and prepares raft. It does not listen; see PeerHandler and Start.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 100 * time.Millisecond
	}
	if cfg.ElectionTimeout <= 0 {
		cfg.ElectionTimeout = 1000 * time.Millisecond
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 1572864
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = 128
	}
	if cfg.MaxLearners <= 0 {
		cfg.MaxLearners = 1
	}
	if cfg.Memory.Total == 0 {
		cfg.Memory = membudget.Split(0)
	}
	s := &Server{
		cfg:        cfg,
		lg:         cfg.Logger,
		waiters:    waiters{m: make(map[uint64]waiter)},
		reqTimeout: 5*time.Second + 2*cfg.ElectionTimeout,
		expiries:   newExpiries(100 * time.Millisecond),
		stopped:    make(chan struct{}),
		ready:      make(chan struct{}),
		lessor:     lease.New(nil),
	}
	engine, err := storage.OpenWithBudget(cfg.DataDir, cfg.Memory, s.onEngineDiskFull)
	if err != nil {
		return nil, err
	}
	s.engine, s.db = engine, engine.DB
	s.metrics = cfg.Metrics
	if s.metrics == nil {
		s.metrics = metrics.New(metrics.Basic)
	}
	s.members = &membership.Store{}
	s.alarms = &alarm.Store{}
	s.auth = &auth.Store{}
	if s.tokens, err = auth.NewTokens(cfg.AuthToken, cfg.AuthTokenTTL); err != nil {
		engine.Close()
		return nil, err
	}
	if s.cfg.BcryptCost == 0 {
		s.cfg.BcryptCost = bcrypt.DefaultCost
	}
	reserve, err := storage.NewReserve(cfg.DataDir, cfg.DiskReserveBytes)
	if err != nil {
		engine.Close()
		return nil, err
	}
	s.space = newSpace(cfg.QuotaBackendBytes, reserve)
	logDir := raftnode.WALPath(cfg.DataDir, cfg.WALDir)
	if same, err := storage.SameFileSystem(cfg.DataDir, logDir); err != nil {
		s.lg.Warn("cannot tell whether the raft log shares the data dir's file system; watching only the data dir's free space", "path", logDir, "err", err)
	} else if !same {
		s.space.logApart = logDir
	}
	if free, err := reserve.Free(); err == nil && free >= reserve.Size+s.headroom() {
		if err := reserve.Take(); err != nil {
			s.lg.Warn("could not take the disk reserve", "err", err)
		}
	}
	s.reserve.Store(reserve)
	s.renewals = newRenewBatcher(s)
	if err := s.open(); err != nil {
		engine.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	cfg := s.cfg
	ident, err := loadIdentity(s.db)
	if err != nil {
		return err
	}
	var peers []raft.Peer
	var joined *joinedCluster
	switch {
	case ident != nil && (ident.Name != cfg.Name || ident.Token != cfg.ClusterToken):
		return fmt.Errorf("data dir %s belongs to member %q of cluster %x (token %q), not to member %q with token %q; use the matching --name/--initial-cluster-token or another --data-dir",
			cfg.DataDir, ident.Name, ident.ClusterID, ident.Token, cfg.Name, cfg.ClusterToken)
	case ident != nil && ident.Removed:
		return fmt.Errorf("member %q (%x) was removed from cluster %x; it cannot rejoin with its old data dir %s: remove the data dir, add the member again with member add, and start it with --initial-cluster-state existing",
			ident.Name, ident.MemberID, ident.ClusterID, cfg.DataDir)
	case ident != nil && s.bootstrapped():
	case cfg.NewCluster:
		// A new data dir, or a crash came between recording the identity
		// and persisting the first raft state: bootstrap exactly as the
		// first time.
		if ident, peers, err = s.bootstrapIdentity(); err != nil {
			return err
		}
	default:
		if ident, joined, err = s.joinIdentity(); err != nil {
			return err
		}
	}
	s.memberID, s.clusterID = ident.MemberID, ident.ClusterID
	s.ids = newIDGenerator(s.memberID, time.Now())

	s.applier, err = apply.New(apply.Config{DB: s.db, Leases: s.lessor, Members: s.members, Alarms: s.alarms, Auth: s.auth, Logger: s.lg,
		KVMemory: mvcc.Memory{LatestCache: cfg.Memory.LatestCache, KeyFilter: cfg.Memory.KeyFilter}})
	if err != nil {
		return err
	}
	s.attachKVStats()
	s.watch = s.newWatchHub()

	electionTicks := int(cfg.ElectionTimeout / cfg.HeartbeatInterval)
	node, err := raftnode.New(raftnode.Config{
		ID:             s.memberID,
		Peers:          peers,
		TickInterval:   cfg.HeartbeatInterval,
		ElectionTicks:  electionTicks,
		SnapshotCount:  cfg.SnapshotCount,
		CatchUpEntries: cfg.CatchUpEntries,
		MaxLogBytes:    cfg.Memory.RaftLog,
		DataDir:        cfg.DataDir,
		WALDir:         cfg.WALDir,
		DB:             s.db,
		WALMetadata:    walMetadata(s.memberID, s.clusterID),
		WALLogger:      walLogger(s.lg),
		MaxWALs:        cfg.MaxWALs,
		OnDiskFull:     s.onEngineDiskFull,
		StateMachine:   &stateMachine{s: s},
		Logger:         s.lg,
		Observer:       observer{s.metrics},
	})
	if err != nil {
		return err
	}
	s.node = node
	s.transport = transport.New(transport.Config{
		LocalID:   s.memberID,
		ClusterID: s.clusterID,
		TLS:       cfg.PeerTLS,
		Raft:      node,
		Snapshots: node.Snapshots(),
		Logger:    s.lg,
		Calls:     s.peerCalls(),
		Bytes:     observer{s.metrics},
		IsRemoved: s.members.IsRemoved,
		OnRemoved: func() {
			s.lg.Warn("a peer refused this member as removed from the cluster; stopping", "member-id", fmt.Sprintf("%x", s.memberID))
			s.markRemoved()
			s.Stop()
		},
	})
	switch {
	case joined != nil:
		for _, m := range joined.members {
			id, err := strconv.ParseUint(m.ID, 16, 64)
			if err == nil && id != s.memberID {
				s.transport.AddPeer(id, m.PeerURLs)
			}
		}
	case len(s.members.List()) == 0:
		// Bootstrapping: the member list is replicated by the first
		// entries; until they apply, --initial-cluster is all there is.
		for _, m := range cfg.InitialCluster {
			id := membership.MemberID(m.PeerURLs, cfg.ClusterToken, nil)
			if id != s.memberID {
				s.transport.AddPeer(id, m.PeerURLs)
			}
		}
	default:
		// The replicated list is authoritative: members added later have
		// IDs that --initial-cluster cannot tell.
		s.syncPeers(nil)
	}
	s.watchMetrics()
	return nil
}

// bootstrapped reports whether raft ever persisted state in this data dir.
func (s *Server) bootstrapped() bool {
	ok, err := raftnode.Bootstrapped(raftnode.WALPath(s.cfg.DataDir, s.cfg.WALDir), s.db)
	return err != nil || ok
}

// walLogger is the logger of the raft log's wal package: the member's
// log, or nothing if it was not made by logging.New (tests).
func walLogger(lg *slog.Logger) *zap.Logger {
	if zl, ok := logging.ZapLogger(lg); ok {
		return zl
	}
	return zap.NewNop()
}

// walMetadata is the metadata record of a member's raft log, as etcd
// writes it (member and cluster ID), for tools that read etcd's logs.
func walMetadata(member, cluster uint64) []byte {
	v, _ := proto.Marshal(&pb.Metadata{NodeID: proto.Uint64(member), ClusterID: proto.Uint64(cluster)})
	return v
}

// bootstrapIdentity computes IDs from --initial-cluster for a new data dir
// and records them.
func (s *Server) bootstrapIdentity() (*localIdentity, []raft.Peer, error) {
	cfg := s.cfg
	var ids []uint64
	var self uint64
	var peers []raft.Peer
	for _, m := range cfg.InitialCluster {
		id := membership.MemberID(m.PeerURLs, cfg.ClusterToken, nil)
		ids = append(ids, id)
		if m.Name == cfg.Name {
			self = id
		}
		ctx, err := proto.Marshal(&pb.Member{ID: id, PeerURLs: m.PeerURLs})
		if err != nil {
			return nil, nil, err
		}
		peers = append(peers, raft.Peer{ID: id, Context: ctx})
	}
	if self == 0 {
		return nil, nil, fmt.Errorf("member %q is not in --initial-cluster", cfg.Name)
	}
	ident := &localIdentity{Name: cfg.Name, MemberID: self, ClusterID: membership.ClusterID(ids), Token: cfg.ClusterToken}
	if err := saveIdentity(s.db, ident); err != nil {
		return nil, nil, err
	}
	if !cfg.NewCluster {
		peers = nil
	}
	return ident, peers, nil
}

func (s *Server) kvStore() *mvcc.Store { return s.applier.KV() }

// Start starts raft and publishes this member's client URLs to the cluster.
func (s *Server) Start() {
	s.startWatchHub()
	s.startCompactor()
	s.node.Start(s.transport)
	go s.runLeases()
	go s.renewals.run()
	go s.runSpaceMonitor()
	go s.runAutoCompaction()
	go s.runCompactHashCheck()
	go s.runAutoPromote()
	go s.runPeerProbes()
	s.lg.Info("member started", "name", s.cfg.Name, "member-id", fmt.Sprintf("%x", s.memberID),
		"cluster-id", fmt.Sprintf("%x", s.clusterID), "data-dir", s.cfg.DataDir,
		"advertise-client-urls", s.cfg.AdvertiseClientURLs, "advertise-peer-urls", s.cfg.AdvertisePeerURLs)
	go func() {
		s.initialCorruptCheck()
		s.publish()
	}()
}

// publish records this member's name and client URLs in the replicated
// member list, retrying until it succeeds or the server stops. Like etcd,
// a member does so on every start: once the record is applied here, the
// member has reached a quorum and caught up with the log up to it, and it
// declares itself ready to serve clients.
func (s *Server) publish() {
	req := &pb.InternalRaftRequest{ClusterMemberAttrSet: attrSet(s.memberID, s.cfg.Name, s.cfg.AdvertiseClientURLs)}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
		_, err := s.propose(ctx, req)
		cancel()
		if err == nil {
			s.lg.Info("published member attributes to the cluster", "name", s.cfg.Name, "client-urls", s.cfg.AdvertiseClientURLs)
			close(s.ready)
			return
		}
		select {
		case <-s.stopped:
			return
		case <-time.After(s.cfg.HeartbeatInterval):
		}
	}
}

// ReadyNotify is closed once this member has published itself through raft
// (see publish).
func (s *Server) ReadyNotify() <-chan struct{} { return s.ready }

// HandOffLeadership moves leadership to the most up-to-date follower if
// this member leads, so a planned stop costs the cluster no election
// timeout. It gives up after two election timeouts.
func (s *Server) HandOffLeadership() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.ElectionTimeout)
	defer cancel()
	if err := s.node.TransferLeadership(ctx); err != nil {
		s.lg.Warn("leadership transfer before stop did not finish", "err", err)
	}
}

// Stop hands leadership away if this member leads, then stops raft and
// closes the engine.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.HandOffLeadership()
		close(s.stopped)
		s.node.Stop()
		s.stopCompactor()
		if s.stopWatch != nil {
			s.stopWatch()
		}
		s.transport.Close()
		if err := s.engine.Sync(); err != nil {
			s.lg.Error("sync storage on stop", "err", err)
		}
		if err := s.engine.Close(); err != nil {
			s.lg.Error("close storage", "err", err)
		}
		s.lg.Info("member stopped", "name", s.cfg.Name)
	})
}

// Done is closed when the raft node stopped (after Stop, or on a fatal
// storage error).
func (s *Server) Done() <-chan struct{} { return s.node.Done() }

// MemberID is this member's ID.
func (s *Server) MemberID() uint64 { return s.memberID }

// ClusterID is the cluster's ID.
func (s *Server) ClusterID() uint64 { return s.clusterID }

// Leader is the current leader's ID (0 when unknown).
func (s *Server) Leader() uint64 { return s.node.Leader() }

// Term is the current raft term.
func (s *Server) Term() uint64 { return s.node.Term() }

// MaxTxnOps is the most operations a txn branch may hold (--max-txn-ops).
func (s *Server) MaxTxnOps() int { return s.cfg.MaxTxnOps }

// MaxRequestBytes is the largest request the server accepts.
func (s *Server) MaxRequestBytes() int { return s.cfg.MaxRequestBytes }

// Logger is the member's logger.
func (s *Server) Logger() *slog.Logger { return s.lg }

// propose replicates req and waits until it was applied here.
//
// A proposal can be lost when the leader fails: the leader it was forwarded
// to may die before replicating it, or a new leader may overwrite it. The
// client would wait for its timeout, and could only guess whether it
// applied. Instead, each proposal carries the term it was made in (see
// apply.TagTerm), and once this member applies an entry of a later term
// without having applied the proposal, the proposal provably never will
// apply and is made again, under the same ID, to the new leader.
func (s *Server) propose(ctx context.Context, req *pb.InternalRaftRequest) (_ proto.Message, err error) {
	defer s.timeRequest(apply.OpName(req), time.Now(), &err)
	req.ID = s.ids.Next()
	if h := identityHeader(ctx); h != nil {
		h.ID = req.ID
		req.Header = h
	}
	// Room for the term tag, so that the first attempt tags data in place.
	size := proto.Size(req)
	data, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(make([]byte, 0, size+apply.TagSize), req)
	if err != nil {
		return nil, err
	}
	if len(data) > s.cfg.MaxRequestBytes {
		return nil, ErrRequestTooLarge
	}
	expired := s.expiries.after(s.reqTimeout)
	for attempt := 0; ; attempt++ {
		resp, lost, err := s.proposeOnce(ctx, expired, req.ID, data, attempt == 0)
		if !lost {
			return resp, err
		}
		s.metrics.ProposalRetried()
		s.lg.Debug("a change of leader lost a proposal; proposing it again", "id", req.ID, "term", s.node.Term())
	}
}

// proposeOnce proposes data, tagged with the current term, and waits until
// it applied or provably never will (lost is then set), the client gave up
// (ctx) or the request timed out (expired).
func (s *Server) proposeOnce(ctx context.Context, expired <-chan struct{}, id uint64, data []byte, first bool) (resp proto.Message, lost bool, err error) {
	select {
	case <-expired: // an attempt after the request's time is not made
		s.metrics.ProposalFailed()
		return nil, false, s.timeoutError(raft.None)
	default:
	}
	if s.node.Leader() == raft.None {
		wctx, wcancel := context.WithTimeout(ctx, s.cfg.ElectionTimeout)
		err := s.node.WaitLeader(wctx)
		wcancel()
		if err != nil {
			s.metrics.ProposalFailed()
			if ctx.Err() != nil {
				return nil, false, s.ctxError(ctx, 0)
			}
			return nil, false, ErrNoLeader
		}
	}
	lead, term := s.node.Leader(), s.node.Term()
	termChanged := s.node.AppliedTermChanged()
	installed := s.node.SnapshotsInstalled()
	ch := s.waiters.register(id, term)
	// The first attempt tags data in its spare capacity; later ones tag a
	// copy, since raft may still hold the bytes of an earlier attempt.
	if !first {
		data = slices.Clip(data)
	}
	if err := s.node.Propose(ctx, apply.TagTerm(data, term)); err != nil {
		s.waiters.cancel(id)
		s.metrics.ProposalFailed()
		if errors.Is(err, raftnode.ErrNoLeader) {
			return nil, false, ErrNoLeader
		}
		return nil, false, s.ctxError(ctx, lead)
	}
	result := func(r applyResult) (proto.Message, bool, error) {
		if errors.Is(r.err, apply.ErrStaleProposal) {
			return nil, true, nil
		}
		return r.resp, false, r.err
	}
	for {
		select {
		case r := <-ch:
			return result(r)
		case <-termChanged:
			termChanged = s.node.AppliedTermChanged()
			if s.node.AppliedTerm() <= term {
				continue
			}
			// The proposal's entry, had it been committed, came before
			// the entry of the later term, and applying it woke ch.
			select {
			case r := <-ch:
				return result(r)
			default:
			}
			if s.node.SnapshotsInstalled() != installed {
				// Unless a snapshot from the leader held it: then it
				// applied without waking ch, or never will. Which one
				// is unknown, and proposing again could apply it twice.
				s.waiters.cancel(id)
				s.metrics.ProposalFailed()
				return nil, false, ErrTimeoutDueToLeaderFail
			}
			return nil, true, nil
		case <-ctx.Done():
			s.waiters.cancel(id)
			s.metrics.ProposalFailed()
			return nil, false, s.ctxError(ctx, lead)
		case <-expired:
			s.waiters.cancel(id)
			s.metrics.ProposalFailed()
			return nil, false, s.timeoutError(lead)
		case <-s.stopped:
			s.waiters.cancel(id)
			return nil, false, ErrStopped
		}
	}
}

// ctxError explains why a request's context ended: the client gave up, or
// the request did not commit in time (perhaps because the leader failed).
func (s *Server) ctxError(ctx context.Context, lead uint64) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	return s.timeoutError(lead)
}

// timeoutError explains why a request did not commit in time.
func (s *Server) timeoutError(lead uint64) error {
	select {
	case <-s.stopped:
		return ErrStopped
	default:
	}
	if now := s.node.Leader(); now == raft.None {
		return ErrNoLeader
	} else if lead != raft.None && now != lead {
		return ErrTimeoutDueToLeaderFail
	}
	return ErrTimeout
}
