package auth

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// IsAuthRequest reports whether req is one Apply handles.
func IsAuthRequest(req *pb.InternalRaftRequest) bool {
	return req.AuthEnable != nil || req.AuthDisable != nil || req.Authenticate != nil ||
		req.AuthUserAdd != nil || req.AuthUserDelete != nil || req.AuthUserChangePassword != nil ||
		req.AuthUserGrantRole != nil || req.AuthUserRevokeRole != nil || req.AuthRoleAdd != nil ||
		req.AuthRoleDelete != nil || req.AuthRoleGrantPermission != nil || req.AuthRoleRevokePermission != nil
}

// Apply applies a committed auth request to b and to the in-memory state
// at once (later entries of the same batch must see it). The error is the
// request's replicated outcome unless writing to b failed.
func (s *Store) Apply(b pebble.Writer, req *pb.InternalRaftRequest) (proto.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &applier{s: s, b: b}
	var resp proto.Message
	var err error
	switch {
	case req.AuthEnable != nil:
		resp, err = a.enable()
	case req.AuthDisable != nil:
		resp, err = a.disable()
	case req.Authenticate != nil:
		// The password was checked and the token made before proposing;
		// applying it only orders it with the changes around it.
		if !s.enabled {
			return nil, ErrAuthNotEnabled
		}
		if s.users[req.Authenticate.GetName()] == nil {
			return nil, ErrAuthFailed
		}
		return &pb.AuthenticateResponse{Token: req.Authenticate.GetSimpleToken()}, nil
	case req.AuthUserAdd != nil:
		resp, err = a.userAdd(req.AuthUserAdd)
	case req.AuthUserDelete != nil:
		resp, err = a.userDelete(req.AuthUserDelete.GetName())
	case req.AuthUserChangePassword != nil:
		resp, err = a.userChangePassword(req.AuthUserChangePassword)
	case req.AuthUserGrantRole != nil:
		resp, err = a.userGrantRole(req.AuthUserGrantRole.GetUser(), req.AuthUserGrantRole.GetRole())
	case req.AuthUserRevokeRole != nil:
		resp, err = a.userRevokeRole(req.AuthUserRevokeRole.GetName(), req.AuthUserRevokeRole.GetRole())
	case req.AuthRoleAdd != nil:
		resp, err = a.roleAdd(req.AuthRoleAdd.GetName())
	case req.AuthRoleDelete != nil:
		resp, err = a.roleDelete(req.AuthRoleDelete.GetRole())
	case req.AuthRoleGrantPermission != nil:
		resp, err = a.roleGrantPermission(req.AuthRoleGrantPermission.GetName(), req.AuthRoleGrantPermission.GetPerm())
	case req.AuthRoleRevokePermission != nil:
		r := req.AuthRoleRevokePermission
		resp, err = a.roleRevokePermission(r.GetRole(), string(r.GetKey()), string(r.GetRangeEnd()))
	}
	if err != nil {
		return nil, err
	}
	if a.err != nil {
		return nil, a.err
	}
	return resp, a.bump()
}

// applier makes the changes of one request; the caller holds s.mu.
type applier struct {
	s   *Store
	b   pebble.Writer
	err error // the first storage failure
}

func (a *applier) set(key []byte, m proto.Message) {
	if a.err != nil {
		return
	}
	v, err := proto.Marshal(m)
	if err == nil {
		err = a.b.Set(key, v, nil)
	}
	a.err = err
}

func (a *applier) del(key []byte) {
	if a.err == nil {
		a.err = a.b.Delete(key, nil)
	}
}

// bump records a change: the revision grows.
func (a *applier) bump() error {
	a.s.rev++
	return a.b.Set(storage.AuthRevisionKey, binary.BigEndian.AppendUint64(nil, a.s.rev), nil)
}

func (a *applier) enable() (proto.Message, error) {
	if a.s.enabled {
		return &pb.AuthEnableResponse{}, nil
	}
	root := a.s.users[Root]
	if root == nil {
		return nil, ErrRootUserNotExist
	}
	if !slices.Contains(root.GetRoles(), Root) {
		return nil, ErrRootRoleNotExist
	}
	a.s.enabled = true
	if a.err == nil {
		a.err = a.b.Set(storage.AuthEnabledKey, []byte{1}, nil)
	}
	return &pb.AuthEnableResponse{}, nil
}

func (a *applier) disable() (proto.Message, error) {
	a.s.enabled = false
	if a.err == nil {
		a.err = a.b.Set(storage.AuthEnabledKey, []byte{0}, nil)
	}
	return &pb.AuthDisableResponse{}, nil
}

func (a *applier) userAdd(r *pb.AuthUserAddRequest) (proto.Message, error) {
	if r.GetName() == "" {
		return nil, ErrUserEmpty
	}
	if a.s.users[r.GetName()] != nil {
		return nil, ErrUserAlreadyExist
	}
	u := &authpb.User{Name: []byte(r.GetName()), Password: []byte(r.GetHashedPassword()), Options: r.GetOptions()}
	if u.Options == nil {
		u.Options = &authpb.UserAddOptions{}
	}
	a.s.users[r.GetName()] = u
	a.set(storage.AuthUserKey(r.GetName()), u)
	return &pb.AuthUserAddResponse{}, nil
}

func (a *applier) userDelete(name string) (proto.Message, error) {
	if a.s.enabled && name == Root {
		return nil, ErrInvalidAuthMgmt
	}
	if a.s.users[name] == nil {
		return nil, ErrUserNotFound
	}
	delete(a.s.users, name)
	a.del(storage.AuthUserKey(name))
	return &pb.AuthUserDeleteResponse{}, nil
}

func (a *applier) userChangePassword(r *pb.AuthUserChangePasswordRequest) (proto.Message, error) {
	u := a.s.users[r.GetName()]
	if u == nil {
		return nil, ErrUserNotFound
	}
	u = proto.Clone(u).(*authpb.User)
	u.Password = []byte(r.GetHashedPassword())
	a.s.users[r.GetName()] = u
	a.set(storage.AuthUserKey(r.GetName()), u)
	return &pb.AuthUserChangePasswordResponse{}, nil
}

func (a *applier) userGrantRole(user, role string) (proto.Message, error) {
	u := a.s.users[user]
	if u == nil {
		return nil, ErrUserNotFound
	}
	if role != Root && a.s.roles[role] == nil {
		return nil, ErrRoleNotFound
	}
	i, found := slices.BinarySearch(u.GetRoles(), role)
	if found {
		return &pb.AuthUserGrantRoleResponse{}, nil
	}
	u = proto.Clone(u).(*authpb.User)
	u.Roles = slices.Insert(u.Roles, i, role)
	a.s.users[user] = u
	a.set(storage.AuthUserKey(user), u)
	return &pb.AuthUserGrantRoleResponse{}, nil
}

func (a *applier) userRevokeRole(user, role string) (proto.Message, error) {
	if a.s.enabled && user == Root && role == Root {
		return nil, ErrInvalidAuthMgmt
	}
	u := a.s.users[user]
	if u == nil {
		return nil, ErrUserNotFound
	}
	i, found := slices.BinarySearch(u.GetRoles(), role)
	if !found {
		return nil, ErrRoleNotGranted
	}
	u = proto.Clone(u).(*authpb.User)
	u.Roles = slices.Delete(u.Roles, i, i+1)
	a.s.users[user] = u
	a.set(storage.AuthUserKey(user), u)
	return &pb.AuthUserRevokeRoleResponse{}, nil
}

func (a *applier) roleAdd(name string) (proto.Message, error) {
	if name == "" {
		return nil, ErrRoleEmpty
	}
	if a.s.roles[name] != nil {
		return nil, ErrRoleAlreadyExist
	}
	r := &authpb.Role{Name: []byte(name)}
	a.s.roles[name] = r
	a.set(storage.AuthRoleKey(name), r)
	return &pb.AuthRoleAddResponse{}, nil
}

func (a *applier) roleDelete(name string) (proto.Message, error) {
	if a.s.enabled && name == Root {
		return nil, ErrInvalidAuthMgmt
	}
	if a.s.roles[name] == nil {
		return nil, ErrRoleNotFound
	}
	delete(a.s.roles, name)
	a.del(storage.AuthRoleKey(name))
	// Users lose the role too.
	for _, un := range sortedKeys(a.s.users) {
		u := a.s.users[un]
		if i, found := slices.BinarySearch(u.GetRoles(), name); found {
			u = proto.Clone(u).(*authpb.User)
			u.Roles = slices.Delete(u.Roles, i, i+1)
			a.s.users[un] = u
			a.set(storage.AuthUserKey(un), u)
		}
	}
	return &pb.AuthRoleDeleteResponse{}, nil
}

func (a *applier) roleGrantPermission(name string, p *authpb.Permission) (proto.Message, error) {
	r := a.s.roles[name]
	if r == nil {
		return nil, ErrRoleNotFound
	}
	if p == nil {
		return nil, ErrPermissionNotGiven
	}
	r = proto.Clone(r).(*authpb.Role)
	perm := proto.Clone(p).(*authpb.Permission)
	i, found := slices.BinarySearchFunc(r.KeyPermission, perm, comparePerm)
	if found {
		r.KeyPermission[i].PermType = perm.GetPermType()
	} else {
		r.KeyPermission = slices.Insert(r.KeyPermission, i, perm)
	}
	a.s.roles[name] = r
	a.set(storage.AuthRoleKey(name), r)
	return &pb.AuthRoleGrantPermissionResponse{}, nil
}

func (a *applier) roleRevokePermission(name, key, end string) (proto.Message, error) {
	r := a.s.roles[name]
	if r == nil {
		return nil, ErrRoleNotFound
	}
	i, found := slices.BinarySearchFunc(r.GetKeyPermission(), &authpb.Permission{Key: []byte(key), RangeEnd: []byte(end)}, comparePerm)
	if !found {
		return nil, ErrPermissionNotGranted
	}
	r = proto.Clone(r).(*authpb.Role)
	r.KeyPermission = slices.Delete(r.KeyPermission, i, i+1)
	a.s.roles[name] = r
	a.set(storage.AuthRoleKey(name), r)
	return &pb.AuthRoleRevokePermissionResponse{}, nil
}

// comparePerm orders a role's permissions by key, then range end.
func comparePerm(a, b *authpb.Permission) int {
	if c := bytes.Compare(a.GetKey(), b.GetKey()); c != 0 {
		return c
	}
	return bytes.Compare(a.GetRangeEnd(), b.GetRangeEnd())
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
