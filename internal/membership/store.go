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
	"google.golang.org/protobuf/encoding/protowire"
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
	mu          sync.RWMutex
	list        []*pb.Member // sorted by ID
	removed     map[uint64]bool
	autoPromote map[uint64]bool
}

// AutoPromoteMetadata is the gRPC metadata key with which a MemberAdd of
// a learner asks Kvorum to promote it once it has caught up (a Kvorum
// extension, sent by `kvorumctl member add --learner --auto-promote`;
// etcd ignores it). Its value is "true".
const AutoPromoteMetadata = "kvorum-auto-promote"

// autoPromoteField is the field number, unknown to etcd's Member message,
// under which a conf change adding a learner asks for its automatic
// promotion. Kvorum writes and reads it in the conf change's context only;
// it is never stored in a member record or sent to clients.
const autoPromoteField = 1000

// MarkAutoPromote appends the automatic-promotion request to a marshaled
// member record meant as a conf change context.
func MarkAutoPromote(ctx []byte) []byte {
	ctx = protowire.AppendTag(ctx, autoPromoteField, protowire.VarintType)
	return protowire.AppendVarint(ctx, 1)
}

// takeAutoPromote reports whether mem carried the automatic-promotion
// request, and removes it from mem.
func takeAutoPromote(mem *pb.Member) bool {
	unknown := mem.ProtoReflect().GetUnknown()
	found := false
	for len(unknown) > 0 {
		num, typ, n := protowire.ConsumeTag(unknown)
		if n < 0 {
			break
		}
		m := protowire.ConsumeFieldValue(num, typ, unknown[n:])
		if m < 0 {
			break
		}
		if num == autoPromoteField {
			found = true
		}
		unknown = unknown[n+m:]
	}
	mem.ProtoReflect().SetUnknown(nil)
	return found
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
	removed, err := loadIDs(r, storage.RemovedMemberSpan)
	if err != nil {
		return err
	}
	promote, err := loadIDs(r, storage.AutoPromoteSpan)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.list, s.removed, s.autoPromote = list, removed, promote
	s.mu.Unlock()
	return nil
}

// AutoPromote lists the learners waiting for automatic promotion.
func (s *Store) AutoPromote() []uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]uint64, 0, len(s.autoPromote))
	for id := range s.autoPromote {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// loadIDs reads the member IDs whose 9-byte keys (prefix, ID) fill span.
func loadIDs(r pebble.Reader, span func() (lo, hi []byte)) (map[uint64]bool, error) {
	lo, hi := span()
	iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer iter.Close()
	ids := make(map[uint64]bool)
	for iter.First(); iter.Valid(); iter.Next() {
		id, err := storage.MemberIDOfKey(iter.Key())
		if err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, iter.Error()
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
		promote := takeAutoPromote(mem)
		switch {
		case mem.IsLearner && promote:
			if err := b.Set(storage.AutoPromoteKey(id), nil, nil); err != nil {
				return nil, err
			}
		case !mem.IsLearner:
			if err := b.Delete(storage.AutoPromoteKey(id), nil); err != nil {
				return nil, err
			}
		}
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
		if err := b.Delete(storage.AutoPromoteKey(id), nil); err != nil {
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
