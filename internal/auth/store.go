package auth

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// Root is the name of the root user and of the root role.
const Root = "root"

// Store is the replicated auth state; see the package documentation.
// Invariant: the in-memory state equals the records in the engine once
// the batch Apply wrote to is committed (a failed batch stops the member).
type Store struct {
	mu      sync.RWMutex
	enabled bool
	rev     uint64
	users   map[string]*authpb.User
	roles   map[string]*authpb.Role
}

// Load replaces the state with the records in r.
func (s *Store) Load(r pebble.Reader) error {
	enabled, err := storage.Get(r, storage.AuthEnabledKey)
	if err != nil {
		return err
	}
	revBytes, err := storage.Get(r, storage.AuthRevisionKey)
	if err != nil {
		return err
	}
	// A store that never changed is at revision 1, as etcd's starts.
	rev := uint64(1)
	if len(revBytes) == 8 {
		rev = binary.BigEndian.Uint64(revBytes)
	}
	users := make(map[string]*authpb.User)
	roles := make(map[string]*authpb.Role)
	load := func(lo, hi []byte, add func(v []byte) error) error {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			if err := add(it.Value()); err != nil {
				return err
			}
		}
		return it.Error()
	}
	lo, hi := storage.AuthUserSpan()
	if err := load(lo, hi, func(v []byte) error {
		u := &authpb.User{}
		if err := proto.Unmarshal(v, u); err != nil {
			return fmt.Errorf("auth user record is corrupt: %w", err)
		}
		users[string(u.GetName())] = u
		return nil
	}); err != nil {
		return err
	}
	lo, hi = storage.AuthRoleSpan()
	if err := load(lo, hi, func(v []byte) error {
		r := &authpb.Role{}
		if err := proto.Unmarshal(v, r); err != nil {
			return fmt.Errorf("auth role record is corrupt: %w", err)
		}
		roles[string(r.GetName())] = r
		return nil
	}); err != nil {
		return err
	}
	s.mu.Lock()
	s.enabled, s.rev, s.users, s.roles = len(enabled) == 1 && enabled[0] == 1, rev, users, roles
	s.mu.Unlock()
	return nil
}

// Enabled reports whether access control is on.
func (s *Store) Enabled() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.enabled
}

// Revision is the auth revision: it grows with every change.
func (s *Store) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// CheckPassword verifies a user's password (bcrypt; expensive, so done
// before proposing an Authenticate request, not while applying it).
func (s *Store) CheckPassword(name, password string) error {
	s.mu.RLock()
	u := s.users[name]
	enabled := s.enabled
	s.mu.RUnlock()
	switch {
	case !enabled:
		return ErrAuthNotEnabled
	case u == nil, u.GetOptions().GetNoPassword(), len(u.GetPassword()) == 0:
		return ErrAuthFailed
	}
	if bcrypt.CompareHashAndPassword(u.GetPassword(), []byte(password)) != nil {
		return ErrAuthFailed
	}
	return nil
}

// HasUser reports whether the user exists.
func (s *Store) HasUser(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.users[name] != nil
}

// Check returns nil if user may do what a needs under the current state.
// With access control off everything is allowed.
func (s *Store) Check(user string, a Access) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.enabled {
		return nil
	}
	if user == "" {
		return ErrUserEmpty
	}
	u := s.users[user]
	if u == nil {
		return ErrPermissionDenied
	}
	if slices.Contains(u.GetRoles(), Root) {
		return nil
	}
	if a.Admin {
		return ErrPermissionDenied
	}
	var roles []*authpb.Role
	for _, name := range u.GetRoles() {
		if r := s.roles[name]; r != nil {
			roles = append(roles, r)
		}
	}
	for _, r := range a.Read {
		if !permitted(roles, r, false) {
			return ErrPermissionDenied
		}
	}
	for _, r := range a.Write {
		if !permitted(roles, r, true) {
			return ErrPermissionDenied
		}
	}
	return nil
}

// IsAdmin reports whether user has the root role (or access control is
// off).
func (s *Store) IsAdmin(user string) bool { return s.Check(user, Access{Admin: true}) == nil }

// Status answers AuthStatus.
func (s *Store) Status() *pb.AuthStatusResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pb.AuthStatusResponse{Enabled: s.enabled, AuthRevision: s.rev}
}

// UserGet answers UserGet: the user's roles.
func (s *Store) UserGet(name string) (*pb.AuthUserGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[name]
	if u == nil {
		return nil, ErrUserNotFound
	}
	return &pb.AuthUserGetResponse{Roles: slices.Clone(u.GetRoles())}, nil
}

// UserList answers UserList: every user name, sorted.
func (s *Store) UserList() *pb.AuthUserListResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &pb.AuthUserListResponse{}
	for name := range s.users {
		out.Users = append(out.Users, name)
	}
	sort.Strings(out.Users)
	return out
}

// RoleGet answers RoleGet: the role's permissions.
func (s *Store) RoleGet(name string) (*pb.AuthRoleGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.roles[name]
	if r == nil {
		return nil, ErrRoleNotFound
	}
	out := &pb.AuthRoleGetResponse{}
	for _, p := range r.GetKeyPermission() {
		out.Perm = append(out.Perm, proto.Clone(p).(*authpb.Permission))
	}
	return out, nil
}

// RoleList answers RoleList: every role name, sorted.
func (s *Store) RoleList() *pb.AuthRoleListResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &pb.AuthRoleListResponse{}
	for name := range s.roles {
		out.Roles = append(out.Roles, name)
	}
	sort.Strings(out.Roles)
	return out
}

// UserHasRole reports whether user was granted role.
func (s *Store) UserHasRole(user, role string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.users[user] != nil && slices.Contains(s.users[user].GetRoles(), role)
}
