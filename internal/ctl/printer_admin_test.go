package ctl

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// decodeAdminResponse is decodeResponse for the administration commands:
// ids are the hex member IDs of the case's id file, args the words of its
// args file (names, and for role-revoke the key and range end, "<open>"
// standing for "\x00").
func decodeAdminResponse(t *testing.T, kind string, ids, args []string, data []byte) func(*printer) error {
	t.Helper()
	unmarshal := func(v any) {
		t.Helper()
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("decode %s response: %v", kind, err)
		}
	}
	id := func(i int) uint64 {
		t.Helper()
		if i >= len(ids) {
			t.Fatalf("%s case needs %d IDs in its id file, has %q", kind, i+1, ids)
		}
		v, err := strconv.ParseUint(ids[i], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	arg := func(i int) string {
		t.Helper()
		if i >= len(args) {
			t.Fatalf("%s case needs %d words in its args file, has %q", kind, i+1, args)
		}
		if args[i] == "<open>" {
			return "\x00"
		}
		return args[i]
	}
	switch kind {
	case "member-remove":
		var r pb.MemberRemoveResponse
		unmarshal(&r)
		return func(p *printer) error { return p.MemberRemove(id(0), (*clientv3.MemberRemoveResponse)(&r)) }
	case "member-update":
		var r pb.MemberUpdateResponse
		unmarshal(&r)
		return func(p *printer) error { return p.MemberUpdate(id(0), (*clientv3.MemberUpdateResponse)(&r)) }
	case "move-leader":
		var r pb.MoveLeaderResponse
		unmarshal(&r)
		return func(p *printer) error { return p.MoveLeader(id(0), id(1), (*clientv3.MoveLeaderResponse)(&r)) }
	case "alarm":
		var r pb.AlarmResponse
		unmarshal(&r)
		return func(p *printer) error { return p.Alarm((*clientv3.AlarmResponse)(&r)) }
	case "auth-status":
		var r pb.AuthStatusResponse
		unmarshal(&r)
		return func(p *printer) error { return p.AuthStatus((*clientv3.AuthStatusResponse)(&r)) }
	case "role-add":
		var r pb.AuthRoleAddResponse
		unmarshal(&r)
		return func(p *printer) error { return p.RoleAdd(arg(0), (*clientv3.AuthRoleAddResponse)(&r)) }
	case "role-delete":
		var r pb.AuthRoleDeleteResponse
		unmarshal(&r)
		return func(p *printer) error { return p.RoleDelete(arg(0), (*clientv3.AuthRoleDeleteResponse)(&r)) }
	case "role-get":
		var r pb.AuthRoleGetResponse
		unmarshal(&r)
		return func(p *printer) error { return p.RoleGet(arg(0), (*clientv3.AuthRoleGetResponse)(&r)) }
	case "role-list":
		var r pb.AuthRoleListResponse
		unmarshal(&r)
		return func(p *printer) error { return p.RoleList((*clientv3.AuthRoleListResponse)(&r)) }
	case "role-grant":
		var r pb.AuthRoleGrantPermissionResponse
		unmarshal(&r)
		return func(p *printer) error {
			return p.RoleGrantPermission(arg(0), (*clientv3.AuthRoleGrantPermissionResponse)(&r))
		}
	case "role-revoke":
		var r pb.AuthRoleRevokePermissionResponse
		unmarshal(&r)
		return func(p *printer) error {
			end := ""
			if len(args) > 2 {
				end = arg(2)
			}
			return p.RoleRevokePermission(arg(0), arg(1), end, (*clientv3.AuthRoleRevokePermissionResponse)(&r))
		}
	case "user-add":
		var r pb.AuthUserAddResponse
		unmarshal(&r)
		return func(p *printer) error { return p.UserAdd(arg(0), (*clientv3.AuthUserAddResponse)(&r)) }
	case "user-delete":
		var r pb.AuthUserDeleteResponse
		unmarshal(&r)
		return func(p *printer) error { return p.UserDelete(arg(0), (*clientv3.AuthUserDeleteResponse)(&r)) }
	case "user-get":
		var r pb.AuthUserGetResponse
		unmarshal(&r)
		return func(p *printer) error { return p.UserGet(arg(0), (*clientv3.AuthUserGetResponse)(&r)) }
	case "user-list":
		var r pb.AuthUserListResponse
		unmarshal(&r)
		return func(p *printer) error { return p.UserList((*clientv3.AuthUserListResponse)(&r)) }
	case "user-passwd":
		var r pb.AuthUserChangePasswordResponse
		unmarshal(&r)
		return func(p *printer) error { return p.UserChangePassword((*clientv3.AuthUserChangePasswordResponse)(&r)) }
	case "user-grant":
		var r pb.AuthUserGrantRoleResponse
		unmarshal(&r)
		return func(p *printer) error {
			return p.UserGrantRole(arg(0), arg(1), (*clientv3.AuthUserGrantRoleResponse)(&r))
		}
	case "user-revoke":
		var r pb.AuthUserRevokeRoleResponse
		unmarshal(&r)
		return func(p *printer) error {
			return p.UserRevokeRole(arg(0), arg(1), (*clientv3.AuthUserRevokeRoleResponse)(&r))
		}
	}
	t.Fatalf("unknown kind %q", kind)
	return nil
}

// Member add and promote have no goldens (a new member's ID differs from
// run to run, and promoting needs a learner that caught up); the e2e
// session compares them with etcdctl. These pin the simple lines, whose
// IDs are padded to 16 characters.
func TestMemberAddAndPromoteSimpleLines(t *testing.T) {
	var out bytes.Buffer
	p := &printer{format: formatSimple, out: &out}
	hdr := &pb.ResponseHeader{ClusterId: 0xabc}
	if err := p.MemberAdd(&clientv3.MemberAddResponse{Header: hdr, Member: &pb.Member{ID: 0x1f, IsLearner: true}}); err != nil {
		t.Fatal(err)
	}
	if err := p.MemberAdd(&clientv3.MemberAddResponse{Header: hdr, Member: &pb.Member{ID: 0x1f}}); err != nil {
		t.Fatal(err)
	}
	if err := p.MemberPromote(0x2a, &clientv3.MemberPromoteResponse{Header: hdr}); err != nil {
		t.Fatal(err)
	}
	want := "Member               1f added as learner to cluster              abc\n" +
		"Member               1f added to cluster              abc\n" +
		"Member               2a promoted in cluster              abc\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
