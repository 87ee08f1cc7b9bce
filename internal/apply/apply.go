package apply

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/alarm"
	"github.com/kvorum/kvorum/internal/auth"
	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/membership"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
)

// ErrUnsupportedRequest is the outcome of an entry this version cannot
// apply (proposed by a newer member); every member of this version skips
// it the same way.
var ErrUnsupportedRequest = errors.New("apply: unsupported request in raft entry")

// Config is what an Applier works on.
type Config struct {
	DB      *pebble.DB
	Leases  *lease.Lessor     // replicated lease state; its timers are the caller's
	Members *membership.Store // the in-memory member list, reloaded after changes
	Alarms  *alarm.Store      // active alarms; NOSPACE caps writes that grow the store
	Auth    *auth.Store       // users, roles and the auth revision
	Logger  *slog.Logger
	// KVMemory bounds the key space's caches (zero: the default budget's).
	KVMemory mvcc.Memory
}

// Applier applies committed entries; see the package documentation.
type Applier struct {
	db      *pebble.DB
	kv      atomic.Pointer[mvcc.Store]
	leases  *lease.Lessor
	members *membership.Store
	alarms  *alarm.Store
	auth    *auth.Store
	lg      *slog.Logger
	applied uint64
	kvMem   mvcc.Memory
}

// Result is what applying one client proposal produced.
type Result struct {
	ID    uint64        // the proposal's ID (InternalRaftRequest.ID)
	Index uint64        // the raft index of its entry
	Resp  proto.Message // nil when Err is set
	Err   error         // the replicated outcome, the same on every member
	// Term is the term the proposal was tagged with (see TagTerm), 0 when
	// untagged. A proposer that proposed the same ID again tells by it
	// which attempt a stale outcome belongs to.
	Term uint64
	// Session is set for an applied Authenticate request: the token it
	// issued to its user, which every member now accepts.
	Session *Session
	// Op names the request (OpName) and Took is how long applying it
	// took, before the batch's commit; both are empty for a stale
	// proposal, which was not applied.
	Op   string
	Took time.Duration
}

// Session is a simple token and the user it authenticates.
type Session struct {
	Token, User string
}

// MemberChange is one change of the member list.
type MemberChange struct {
	Index uint64
	// ProposalID is the conf change's ID, which its proposer waits for (0
	// for a member's published attributes, answered through Results).
	ProposalID uint64
	ID         uint64
	Removed    bool
	Member     *pb.Member // the record after the change; nil when Removed
}

// Outcome is what one Apply call did.
type Outcome struct {
	// Applied is the index of the last entry given, or the previous applied
	// index when every entry had been applied before.
	Applied uint64
	// Rev is the key space's revision after the entries.
	Rev int64
	// Events are the key changes, in revision order.
	Events []*mvccpb.Event
	// Results has one entry per client proposal, in index order.
	Results []Result
	// Members lists conf changes and published attributes, in index order.
	Members []MemberChange
}

// New opens the replicated state in cfg.DB.
func New(cfg Config) (*Applier, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Alarms == nil {
		cfg.Alarms = &alarm.Store{}
	}
	if cfg.Auth == nil {
		cfg.Auth = &auth.Store{}
	}
	a := &Applier{db: cfg.DB, leases: cfg.Leases, members: cfg.Members, alarms: cfg.Alarms, auth: cfg.Auth, lg: cfg.Logger, kvMem: cfg.KVMemory}
	if err := a.Restore(); err != nil {
		return nil, err
	}
	return a, nil
}

// KV is the key space. It changes only through Restore; callers that hold
// it across a Restore read the old engine state, which is still valid.
func (a *Applier) KV() *mvcc.Store { return a.kv.Load() }

// Applied is the index of the last entry whose effects are stored.
func (a *Applier) Applied() uint64 { return a.applied }

// Restore reloads the applied index, the key space, the leases and the
// member list from the engine.
func (a *Applier) Restore() error {
	v, err := storage.Get(a.db, storage.AppliedIndexKey)
	if err != nil {
		return err
	}
	applied, err := storage.GetUint64(v)
	if err != nil {
		return err
	}
	kv, err := mvcc.OpenWithMemory(a.db, a.kvMem)
	if err != nil {
		return err
	}
	kv.SetLeaseCheck(a.leases.Check)
	if err := a.leases.Load(a.db); err != nil {
		return err
	}
	if err := a.members.Load(a.db); err != nil {
		return err
	}
	if err := a.alarms.Load(a.db); err != nil {
		return err
	}
	if err := a.auth.Load(a.db); err != nil {
		return err
	}
	a.kv.Store(kv)
	a.applied = applied
	return nil
}

// Apply applies ents in one engine batch written together with the new
// applied index.
func (a *Applier) Apply(ents []*raftpb.Entry) (Outcome, error) {
	kv := a.KV()
	out := Outcome{Applied: a.applied, Rev: kv.Rev()}
	b := a.db.NewIndexedBatch()
	defer b.Close()
	e := &entryApplier{w: kv.NewWriter(b), b: b, leases: a.leases, alarms: a.alarms, auth: a.auth}
	// One request message decodes every entry: decoding resets it and
	// gives it new parts, which is all that outlives the entry (responses,
	// events and caches hold the parts). A fresh message per entry was 2%
	// of a follower's CPU in first writes to its cold memory alone.
	req := &pb.InternalRaftRequest{}
	for _, ent := range ents {
		if ent.GetIndex() <= a.applied {
			continue
		}
		out.Applied = ent.GetIndex()
		switch ent.GetType() {
		case raftpb.EntryType_EntryNormal:
			if len(ent.GetData()) == 0 {
				continue // the empty entry a new leader appends
			}
			if err := proto.Unmarshal(ent.GetData(), req); err != nil {
				// Every member skips the same undecodable entry, so state
				// stays identical.
				a.lg.Error("skipping undecodable raft entry", "index", ent.GetIndex(), "err", err)
				continue
			}
			tag := proposalTerm(req)
			if tag != 0 && tag != ent.GetTerm() {
				out.Results = append(out.Results, Result{ID: req.GetID(), Index: ent.GetIndex(), Err: ErrStaleProposal, Term: tag})
				continue
			}
			start := time.Now()
			r := e.request(req)
			took := time.Since(start)
			if r.err != nil && !IsRequestError(r.err) {
				// A storage failure: the batch may be half written. Drop it.
				return Outcome{}, fmt.Errorf("apply entry %d: %w", ent.GetIndex(), r.err)
			}
			if r.member != nil {
				out.Members = append(out.Members, MemberChange{Index: ent.GetIndex(), ID: r.member.GetID(), Member: r.member})
			}
			res := Result{ID: req.GetID(), Index: ent.GetIndex(), Resp: r.resp, Err: r.err, Term: tag, Op: OpName(req), Took: took}
			if r.err == nil && req.Authenticate != nil {
				res.Session = &Session{Token: req.Authenticate.GetSimpleToken(), User: req.Authenticate.GetName()}
			}
			out.Results = append(out.Results, res)
		case raftpb.EntryType_EntryConfChange:
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(ent.GetData(), cc); err != nil {
				return Outcome{}, fmt.Errorf("conf change entry %d is corrupt: %w", ent.GetIndex(), err)
			}
			mem, err := membership.ApplyConfChange(b, cc)
			if err != nil {
				return Outcome{}, err
			}
			out.Members = append(out.Members, MemberChange{Index: ent.GetIndex(), ProposalID: cc.GetId(), ID: cc.GetNodeId(),
				Removed: cc.GetType() == raftpb.ConfChangeType_ConfChangeRemoveNode, Member: mem})
		}
	}
	if out.Applied == a.applied {
		return out, nil
	}
	if err := b.Set(storage.AppliedIndexKey, storage.PutUint64(out.Applied), nil); err != nil {
		return Outcome{}, err
	}
	if err := kv.Commit(e.w, pebble.NoSync); err != nil {
		return Outcome{}, fmt.Errorf("apply entries up to %d: %w", out.Applied, err)
	}
	a.applied = out.Applied
	out.Rev, out.Events = e.w.Rev(), e.w.Events()
	if len(out.Members) > 0 {
		if err := a.members.Load(a.db); err != nil {
			return Outcome{}, err
		}
	}
	return out, nil
}

// IsRequestError reports whether an error of a Result is the request's
// replicated outcome rather than a local storage failure.
func IsRequestError(err error) bool {
	return mvcc.IsRequestError(err) || lease.IsRequestError(err) ||
		errors.Is(err, membership.ErrNotFound) || errors.Is(err, ErrUnsupportedRequest) || errors.Is(err, ErrStaleProposal) ||
		errors.Is(err, alarm.ErrNoSpace) || errors.Is(err, alarm.ErrCorrupt) || auth.IsRequestError(err)
}
