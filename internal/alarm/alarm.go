// Package alarm is the replicated list of active alarms of a Kvorum
// cluster (etcd's NOSPACE and CORRUPT): which member raised which alarm.
//
// Alarms change only by applying committed AlarmRequest entries, so every
// member holds the same list at the same applied index. The in-memory list
// changes as each entry is applied, not when its batch is committed: the
// entries after it in the same batch must already see the alarm, on every
// member, whatever the batch boundaries. Each alarm is stored under
// storage.AlarmKey with an empty value; this package alone reads and
// writes those records.
package alarm

import (
	"errors"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// ErrNoSpace is the outcome of a request that would grow the store while
// the NOSPACE alarm is active, or past the space quota.
var ErrNoSpace = errors.New("mvcc: database space exceeded")

// ErrCorrupt is the outcome of a write while the CORRUPT alarm is active:
// a member's data was found to differ from the others'.
var ErrCorrupt = errors.New("corrupt cluster")

// Store holds the active alarms.
type Store struct {
	mu     sync.RWMutex
	active []*pb.AlarmMember // sorted by member, then alarm
}

// Load replaces the list with the records in r (at start, and after a raft
// snapshot replaced the state).
func (s *Store) Load(r pebble.Reader) error {
	lo, hi := storage.AlarmSpan()
	iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer iter.Close()
	var list []*pb.AlarmMember
	for iter.First(); iter.Valid(); iter.Next() {
		id, typ, err := storage.AlarmKeyParts(iter.Key())
		if err != nil {
			return err
		}
		list = append(list, &pb.AlarmMember{MemberID: id, Alarm: pb.AlarmType(typ)})
	}
	if err := iter.Error(); err != nil {
		return err
	}
	s.mu.Lock()
	s.active = list
	s.mu.Unlock()
	return nil
}

// List returns a copy of the active alarms.
func (s *Store) List() []*pb.AlarmMember {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*pb.AlarmMember, len(s.active))
	for i, a := range s.active {
		out[i] = &pb.AlarmMember{MemberID: a.GetMemberID(), Alarm: a.GetAlarm()}
	}
	return out
}

// Active reports whether any member raised an alarm of type t.
func (s *Store) Active(t pb.AlarmType) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.ContainsFunc(s.active, func(a *pb.AlarmMember) bool { return a.GetAlarm() == t })
}

// Apply applies a committed alarm request: it records an activation or a
// deactivation in b and in the list at once, and answers as etcd does
// (the alarm changed, or every alarm for GET; empty when nothing changed).
func (s *Store) Apply(b pebble.Writer, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp := &pb.AlarmResponse{Header: &pb.ResponseHeader{}}
	m := &pb.AlarmMember{MemberID: r.GetMemberID(), Alarm: r.GetAlarm()}
	switch r.GetAction() {
	case pb.AlarmRequest_GET:
		resp.Alarms = s.List()
		return resp, nil
	case pb.AlarmRequest_ACTIVATE:
		if m.Alarm == pb.AlarmType_NONE {
			return resp, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		i, found := s.find(m)
		if found {
			return resp, nil
		}
		if err := b.Set(storage.AlarmKey(m.MemberID, int32(m.Alarm)), nil, nil); err != nil {
			return nil, err
		}
		s.active = slices.Insert(s.active, i, m)
		resp.Alarms = []*pb.AlarmMember{m}
	case pb.AlarmRequest_DEACTIVATE:
		s.mu.Lock()
		defer s.mu.Unlock()
		i, found := s.find(m)
		if !found {
			return resp, nil
		}
		if err := b.Delete(storage.AlarmKey(m.MemberID, int32(m.Alarm)), nil); err != nil {
			return nil, err
		}
		s.active = slices.Delete(s.active, i, i+1)
		resp.Alarms = []*pb.AlarmMember{m}
	}
	return resp, nil
}

// find locates m in the sorted list; the caller holds mu.
func (s *Store) find(m *pb.AlarmMember) (int, bool) {
	return slices.BinarySearchFunc(s.active, m, func(a, b *pb.AlarmMember) int {
		switch {
		case a.GetMemberID() != b.GetMemberID():
			if a.GetMemberID() < b.GetMemberID() {
				return -1
			}
			return 1
		default:
			return int(a.GetAlarm()) - int(b.GetAlarm())
		}
	})
}
