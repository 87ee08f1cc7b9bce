package server

import (
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

// members is the replicated member list. Records are written only by the
// apply loop (conf changes carry a member in their context; a member
// publishes its name and client URLs with a ClusterMemberAttrSet proposal);
// readers get a copy of the in-memory list.
type members struct {
	db   *pebble.DB
	mu   sync.RWMutex
	list []*pb.Member // sorted by ID
}

func (m *members) load() error {
	lo, hi := storage.MemberSpan()
	iter, err := m.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
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
	m.mu.Lock()
	m.list = list
	m.mu.Unlock()
	return nil
}

// List returns a copy of the members.
func (m *members) List() []*pb.Member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*pb.Member, len(m.list))
	for i, mem := range m.list {
		out[i] = proto.Clone(mem).(*pb.Member)
	}
	return out
}

// Get returns a copy of one member, or nil.
func (m *members) Get(id uint64) *pb.Member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i := slices.IndexFunc(m.list, func(mem *pb.Member) bool { return mem.GetID() == id })
	if i < 0 {
		return nil
	}
	return proto.Clone(m.list[i]).(*pb.Member)
}

func get(r pebble.Reader, id uint64) (*pb.Member, error) {
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

func put(b *pebble.Batch, mem *pb.Member) error {
	v, err := proto.Marshal(mem)
	if err != nil {
		return err
	}
	return b.Set(storage.MemberKey(mem.GetID()), v, nil)
}

func (m *members) applyConfChange(b *pebble.Batch, cc *raftpb.ConfChange) error {
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeAddNode, raftpb.ConfChangeType_ConfChangeAddLearnerNode:
		mem := &pb.Member{}
		if len(cc.GetContext()) > 0 {
			if err := proto.Unmarshal(cc.GetContext(), mem); err != nil {
				return fmt.Errorf("conf change for member %x carries a corrupt member record: %w", id, err)
			}
		}
		old, err := get(b, id)
		if err != nil {
			return err
		}
		if old != nil {
			// Keep what the member published about itself.
			mem.Name, mem.ClientURLs = old.GetName(), old.GetClientURLs()
		}
		mem.ID = id
		mem.IsLearner = cc.GetType() == raftpb.ConfChangeType_ConfChangeAddLearnerNode
		return put(b, mem)
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		return b.Delete(storage.MemberKey(id), nil)
	}
	return nil
}

func (m *members) applyAttrSet(b *pebble.Batch, req *membershippb.ClusterMemberAttrSetRequest) error {
	mem, err := get(b, req.GetMember_ID())
	if err != nil {
		return err
	}
	if mem == nil {
		return ErrMemberNotFound
	}
	mem.Name = req.GetMemberAttributes().GetName()
	mem.ClientURLs = req.GetMemberAttributes().GetClientUrls()
	return put(b, mem)
}
