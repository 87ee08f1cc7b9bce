package membership

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// ErrNotFound is the replicated outcome of a change to a member the
// cluster does not have.
var ErrNotFound = errors.New("membership: member not found")

// Store is the replicated member list: records in the engine and a copy in
// memory for readers. Invariant: after Load, the in-memory list equals the
// records in the engine, sorted by ID; Apply* write only to a batch, so
// the list changes when the batch is committed and Load runs again.
type Store struct {
	mu      sync.RWMutex
	list    []*pb.Member // sorted by ID
	removed map[uint64]bool
}

// Load replaces the in-memory list with the records in r.
func (s *Store) Load(r pebble.Reader) error {
	lo, hi := storage.MemberSpan()
	iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer iter.Close()
	var list []*pb.Member
	for iter.First(); iter.Valid(); iter.Next() {
		mem := &pb.Member{}
		if err := proto.Unmarshal(iter.Value(), mem); err != nil {
			return fmt.Errorf("member record is corrupt: %w", err)
		}
		list = append(list, mem)
	}
	if err := iter.Error(); err != nil {
		return err
	}
	removed, err := loadRemoved(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.list, s.removed = list, removed
	s.mu.Unlock()
	return nil
}

func loadRemoved(r pebble.Reader) (map[uint64]bool, error) {
	lo, hi := storage.RemovedMemberSpan()
	iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer iter.Close()
	removed := make(map[uint64]bool)
	for iter.First(); iter.Valid(); iter.Next() {
		id, err := storage.RemovedMemberKeyID(iter.Key())
		if err != nil {
			return nil, err
		}
		removed[id] = true
	}
	return removed, iter.Error()
}

// IsRemoved reports whether member id was removed from the cluster.
func (s *Store) IsRemoved(id uint64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.removed[id]
}

// List returns a copy of the members, sorted by ID.
func (s *Store) List() []*pb.Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*pb.Member, len(s.list))
	for i, mem := range s.list {
		out[i] = proto.Clone(mem).(*pb.Member)
	}
	return out
}

// Get returns a copy of one member, or nil.
func (s *Store) Get(id uint64) *pb.Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := slices.IndexFunc(s.list, func(mem *pb.Member) bool { return mem.GetID() == id })
	if i < 0 {
		return nil
	}
	return proto.Clone(s.list[i]).(*pb.Member)
}

// Read returns the record of member id in r, or nil.
func Read(r pebble.Reader, id uint64) (*pb.Member, error) {
	v, err := storage.Get(r, storage.MemberKey(id))
	if err != nil || v == nil {
		return nil, err
	}
	mem := &pb.Member{}
	if err := proto.Unmarshal(v, mem); err != nil {
		return nil, fmt.Errorf("member record %x is corrupt: %w", id, err)
	}
	return mem, nil
}

// Write stores mem's record in w.
func Write(w pebble.Writer, mem *pb.Member) error {
	v, err := proto.Marshal(mem)
	if err != nil {
		return err
	}
	return w.Set(storage.MemberKey(mem.GetID()), v, nil)
}

// ApplyConfChange records what a committed conf change did to the member
// list: an added member (voter or learner) with the record its context
// carries, or a removed one. It returns the member's record after the
// change (nil when removed).
func ApplyConfChange(b *pebble.Batch, cc *raftpb.ConfChange) (*pb.Member, error) {
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeAddNode, raftpb.ConfChangeType_ConfChangeAddLearnerNode:
		mem := &pb.Member{}
		if len(cc.GetContext()) > 0 {
			if err := proto.Unmarshal(cc.GetContext(), mem); err != nil {
				return nil, fmt.Errorf("conf change for member %x carries a corrupt member record: %w", id, err)
			}
		}
		old, err := Read(b, id)
		if err != nil {
			return nil, err
		}
		if old != nil {
			// Keep what the member published about itself; a promotion
			// arrives as an AddNode for a known learner.
			mem.Name, mem.ClientURLs = old.GetName(), old.GetClientURLs()
			if len(mem.GetPeerURLs()) == 0 {
				mem.PeerURLs = old.GetPeerURLs()
			}
		}
		mem.ID = id
		mem.IsLearner = cc.GetType() == raftpb.ConfChangeType_ConfChangeAddLearnerNode
		return mem, Write(b, mem)
	case raftpb.ConfChangeType_ConfChangeUpdateNode:
		upd := &pb.Member{}
		if err := proto.Unmarshal(cc.GetContext(), upd); err != nil {
			return nil, fmt.Errorf("conf change for member %x carries a corrupt member record: %w", id, err)
		}
		mem, err := Read(b, id)
		if err != nil {
			return nil, err
		}
		if mem == nil {
			// Checked before proposing; a concurrent removal won the race.
			return nil, nil
		}
		mem.PeerURLs = upd.GetPeerURLs()
		return mem, Write(b, mem)
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		if err := b.Set(storage.RemovedMemberKey(id), nil, nil); err != nil {
			return nil, err
		}
		return nil, b.Delete(storage.MemberKey(id), nil)
	}
	return nil, nil
}

// ApplyAttrSet records the name and client URLs a member published.
func ApplyAttrSet(b *pebble.Batch, req *membershippb.ClusterMemberAttrSetRequest) (*pb.Member, error) {
	mem, err := Read(b, req.GetMember_ID())
	if err != nil {
		return nil, err
	}
	if mem == nil {
		return nil, ErrNotFound
	}
	mem.Name = req.GetMemberAttributes().GetName()
	mem.ClientURLs = req.GetMemberAttributes().GetClientUrls()
	return mem, Write(b, mem)
}
