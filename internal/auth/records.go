package auth

import (
	"encoding/binary"
	"maps"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// Records is the auth state as a backup carries it: the switch, the
// revision, the users (with their bcrypt hashes) and the roles, as etcd
// keeps them in its auth buckets.
type Records struct {
	Enabled  bool
	Revision uint64
	Users    []*authpb.User // ordered by name
	Roles    []*authpb.Role // ordered by name
}

// Records returns a copy of the state, users and roles ordered by name.
func (s *Store) Records() Records {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := Records{Enabled: s.enabled, Revision: s.rev}
	for _, name := range slices.Sorted(maps.Keys(s.users)) {
		rec.Users = append(rec.Users, proto.Clone(s.users[name]).(*authpb.User))
	}
	for _, name := range slices.Sorted(maps.Keys(s.roles)) {
		rec.Roles = append(rec.Roles, proto.Clone(s.roles[name]).(*authpb.Role))
	}
	return rec
}

// WriteRecords writes rec as the auth state of a store being built (a
// restore): a Store loaded from it afterwards holds rec, with each user's
// roles and each role's permissions in the order the Store keeps them
// (sorted, without duplicates; etcd sorts permissions by key alone and may
// hold the same one twice), so later grants and revocations find them.
func WriteRecords(w pebble.Writer, rec Records) error {
	enabled := []byte{0}
	if rec.Enabled {
		enabled = []byte{1}
	}
	if err := w.Set(storage.AuthEnabledKey, enabled, nil); err != nil {
		return err
	}
	if rec.Revision > 0 {
		if err := w.Set(storage.AuthRevisionKey, binary.BigEndian.AppendUint64(nil, rec.Revision), nil); err != nil {
			return err
		}
	}
	for _, u := range rec.Users {
		u = proto.Clone(u).(*authpb.User)
		slices.Sort(u.Roles)
		u.Roles = slices.Compact(u.Roles)
		v, err := proto.Marshal(u)
		if err != nil {
			return err
		}
		if err := w.Set(storage.AuthUserKey(string(u.GetName())), v, nil); err != nil {
			return err
		}
	}
	for _, r := range rec.Roles {
		r = proto.Clone(r).(*authpb.Role)
		r.KeyPermission = mergePerms(r.KeyPermission)
		v, err := proto.Marshal(r)
		if err != nil {
			return err
		}
		if err := w.Set(storage.AuthRoleKey(string(r.GetName())), v, nil); err != nil {
			return err
		}
	}
	return nil
}

// mergePerms sorts perms as the Store keeps them and merges the ones on
// the same key range into one granting all they granted (a read and a
// write on the same range become a read-write), so access is unchanged.
func mergePerms(perms []*authpb.Permission) []*authpb.Permission {
	slices.SortStableFunc(perms, comparePerm)
	var out []*authpb.Permission
	for _, p := range perms {
		if n := len(out); n > 0 && comparePerm(out[n-1], p) == 0 {
			if out[n-1].GetPermType() != p.GetPermType() {
				out[n-1].PermType = authpb.Permission_READWRITE
			}
			continue
		}
		out = append(out, p)
	}
	return out
}
