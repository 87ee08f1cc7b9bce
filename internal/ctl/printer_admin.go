package ctl

import (
	"fmt"
	"strconv"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// This file holds the printers of the cluster-administration commands
// (member changes, alarms, move-leader, auth, users and roles). Which
// formats each supports is etcdctl's: a format it refuses is refused here
// too, after the request was made, as etcdctl does.

// rootRoleName is the role etcd gives every permission without listing any.
const rootRoleName = "root"

// rpcFormats prints r in the formats every answer has: JSON and protobuf.
func (p *printer) rpcFormats(r proto.Message) error {
	switch p.format {
	case formatJSON:
		return p.json(r)
	case formatProtobuf:
		return p.protobuf(r)
	}
	return p.unsupported()
}

// memberChange prints the answer to member add/remove/update/promote:
// simple is the given line, JSON (with --hex, IDs as hex strings) and
// protobuf the answer; fields and table are refused.
func (p *printer) memberChange(line string, r proto.Message, hexJSON func() any) error {
	switch p.format {
	case formatSimple:
		fmt.Fprintln(p.out, line)
		return nil
	case formatJSON:
		if p.hex {
			return p.json(hexJSON())
		}
	}
	return p.rpcFormats(r)
}

// MemberAdd prints the answer to member add.
func (p *printer) MemberAdd(r *clientv3.MemberAddResponse) error {
	resp := (*pb.MemberAddResponse)(r)
	as := " "
	if resp.GetMember().GetIsLearner() {
		as = " as learner "
	}
	line := fmt.Sprintf("Member %16x added%sto cluster %16x", resp.GetMember().GetID(), as, resp.GetHeader().GetClusterId())
	return p.memberChange(line, resp, func() any {
		list := hexMemberList(&pb.MemberListResponse{Header: resp.GetHeader(), Members: resp.GetMembers()})
		out := &hexMemberAddJSON{Header: list.Header, Members: list.Members}
		if m := resp.GetMember(); m != nil {
			out.Member = hexMemberList(&pb.MemberListResponse{Members: []*pb.Member{m}}).Members[0]
		}
		return out
	})
}

// hexMemberAddJSON is the --hex JSON shape of the answer to member add.
type hexMemberAddJSON struct {
	Header  *hexHeaderJSON   `json:"header"`
	Member  *hexMemberJSON   `json:"member"`
	Members []*hexMemberJSON `json:"members"`
}

// hexMembers is the --hex JSON shape of the other member changes: that of
// member list.
func hexMembers(h *pb.ResponseHeader, ms []*pb.Member) func() any {
	return func() any { return hexMemberList(&pb.MemberListResponse{Header: h, Members: ms}) }
}

// MemberRemove prints the answer to member remove of id.
func (p *printer) MemberRemove(id uint64, r *clientv3.MemberRemoveResponse) error {
	resp := (*pb.MemberRemoveResponse)(r)
	line := fmt.Sprintf("Member %16x removed from cluster %16x", id, resp.GetHeader().GetClusterId())
	return p.memberChange(line, resp, hexMembers(resp.GetHeader(), resp.GetMembers()))
}

// MemberUpdate prints the answer to member update of id.
func (p *printer) MemberUpdate(id uint64, r *clientv3.MemberUpdateResponse) error {
	resp := (*pb.MemberUpdateResponse)(r)
	line := fmt.Sprintf("Member %16x updated in cluster %16x", id, resp.GetHeader().GetClusterId())
	return p.memberChange(line, resp, hexMembers(resp.GetHeader(), resp.GetMembers()))
}

// MemberPromote prints the answer to member promote of id.
func (p *printer) MemberPromote(id uint64, r *clientv3.MemberPromoteResponse) error {
	resp := (*pb.MemberPromoteResponse)(r)
	line := fmt.Sprintf("Member %16x promoted in cluster %16x", id, resp.GetHeader().GetClusterId())
	return p.memberChange(line, resp, hexMembers(resp.GetHeader(), resp.GetMembers()))
}

// Alarm prints the answer to alarm list and alarm disarm. The simple format
// is each alarm's protobuf text form, whose spacing the protobuf library
// varies per binary on purpose.
func (p *printer) Alarm(r *clientv3.AlarmResponse) error {
	resp := (*pb.AlarmResponse)(r)
	switch p.format {
	case formatSimple:
		for _, a := range resp.GetAlarms() {
			fmt.Fprintf(p.out, "%+v\n", a)
		}
		return nil
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
		for _, a := range resp.GetAlarms() {
			fmt.Fprintln(p.out, `"MemberID" :`, p.fieldsID(a.GetMemberID()))
			fmt.Fprintln(p.out, `"AlarmType" :`, a.GetAlarm())
			fmt.Fprintln(p.out)
		}
		return nil
	}
	return p.rpcFormats(resp)
}

// MoveLeader prints the answer to move-leader from leader to target.
func (p *printer) MoveLeader(leader, target uint64, r *clientv3.MoveLeaderResponse) error {
	if p.format == formatSimple {
		fmt.Fprintf(p.out, "Leadership transferred from %s to %s\n", strconv.FormatUint(leader, 16), strconv.FormatUint(target, 16))
		return nil
	}
	if p.format == formatFields {
		return p.unsupported()
	}
	return p.rpcFormats((*pb.MoveLeaderResponse)(r))
}

// authChange prints the answer of a user or role change: simple is the
// given line, fields the header.
func (p *printer) authChange(line string, h *pb.ResponseHeader, r proto.Message) error {
	switch p.format {
	case formatSimple:
		fmt.Fprintln(p.out, line)
		return nil
	case formatFields:
		p.fieldsHeader(h)
		return nil
	}
	return p.rpcFormats(r)
}

// AuthStatus prints the answer to auth status.
func (p *printer) AuthStatus(r *clientv3.AuthStatusResponse) error {
	resp := (*pb.AuthStatusResponse)(r)
	if p.format == formatSimple {
		fmt.Fprintln(p.out, "Authentication Status:", resp.GetEnabled())
		fmt.Fprintln(p.out, "AuthRevision:", resp.GetAuthRevision())
		return nil
	}
	if p.format == formatFields {
		return p.unsupported()
	}
	return p.rpcFormats(resp)
}

// RoleAdd prints the answer to role add.
func (p *printer) RoleAdd(role string, r *clientv3.AuthRoleAddResponse) error {
	resp := (*pb.AuthRoleAddResponse)(r)
	return p.authChange("Role "+role+" created", resp.GetHeader(), resp)
}

// RoleDelete prints the answer to role delete.
func (p *printer) RoleDelete(role string, r *clientv3.AuthRoleDeleteResponse) error {
	resp := (*pb.AuthRoleDeleteResponse)(r)
	return p.authChange("Role "+role+" deleted", resp.GetHeader(), resp)
}

// RoleGrantPermission prints the answer to role grant-permission.
func (p *printer) RoleGrantPermission(role string, r *clientv3.AuthRoleGrantPermissionResponse) error {
	resp := (*pb.AuthRoleGrantPermissionResponse)(r)
	return p.authChange("Role "+role+" updated", resp.GetHeader(), resp)
}

// RoleRevokePermission prints the answer to role revoke-permission of
// [key, end) ("" end: the single key; "\x00": open-ended).
func (p *printer) RoleRevokePermission(role, key, end string, r *clientv3.AuthRoleRevokePermissionResponse) error {
	resp := (*pb.AuthRoleRevokePermissionResponse)(r)
	var line string
	switch end {
	case "":
		line = fmt.Sprintf("Permission of key %s is revoked from role %s", key, role)
	case "\x00":
		line = fmt.Sprintf("Permission of range [%s, <open ended> is revoked from role %s", key, role)
	default:
		line = fmt.Sprintf("Permission of range [%s, %s) is revoked from role %s", key, end, role)
	}
	return p.authChange(line, resp.GetHeader(), resp)
}

// RoleGet prints a role's permissions: in the simple format the keys and
// ranges it may read, then those it may write.
func (p *printer) RoleGet(role string, r *clientv3.AuthRoleGetResponse) error {
	resp := (*pb.AuthRoleGetResponse)(r)
	switch p.format {
	case formatSimple:
		fmt.Fprintf(p.out, "Role %s\n", role)
		if role == rootRoleName && resp.GetPerm() == nil {
			fmt.Fprint(p.out, "KV Read:\n\t[, <open ended>\nKV Write:\n\t[, <open ended>\n")
			return nil
		}
		fmt.Fprintln(p.out, "KV Read:")
		p.simplePerms(resp.GetPerm(), authpb.Permission_READ)
		fmt.Fprintln(p.out, "KV Write:")
		p.simplePerms(resp.GetPerm(), authpb.Permission_WRITE)
		return nil
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
		for _, perm := range resp.GetPerm() {
			fmt.Fprintln(p.out, `"PermType" : `, perm.GetPermType().String())
			fmt.Fprintf(p.out, "\"Key\" : %q\n", string(perm.GetKey()))
			fmt.Fprintf(p.out, "\"RangeEnd\" : %q\n", string(perm.GetRangeEnd()))
		}
		return nil
	}
	return p.rpcFormats(resp)
}

// simplePerms prints the permissions that grant t (read or write; a
// readwrite permission grants both), one per line.
func (p *printer) simplePerms(perms []*authpb.Permission, t authpb.Permission_Type) {
	for _, perm := range perms {
		if perm.GetPermType() != t && perm.GetPermType() != authpb.Permission_READWRITE {
			continue
		}
		key, end := string(perm.GetKey()), string(perm.GetRangeEnd())
		switch {
		case end == "":
			fmt.Fprintf(p.out, "\t%s\n", key)
			continue
		case end == "\x00":
			fmt.Fprintf(p.out, "\t[%s, <open ended>", key)
		default:
			fmt.Fprintf(p.out, "\t[%s, %s)", key, end)
		}
		if key != "" && clientv3.GetPrefixRangeEnd(key) == end {
			fmt.Fprintf(p.out, " (prefix %s)", key)
		}
		fmt.Fprintln(p.out)
	}
}

// RoleList prints the names of all roles.
func (p *printer) RoleList(r *clientv3.AuthRoleListResponse) error {
	resp := (*pb.AuthRoleListResponse)(r)
	switch p.format {
	case formatSimple:
		for _, role := range resp.GetRoles() {
			fmt.Fprintln(p.out, role)
		}
		return nil
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
		fmt.Fprint(p.out, `"Roles" :`)
		for _, role := range resp.GetRoles() {
			fmt.Fprintf(p.out, " %q", role)
		}
		fmt.Fprintln(p.out)
		return nil
	}
	return p.rpcFormats(resp)
}

// UserAdd prints the answer to user add.
func (p *printer) UserAdd(user string, r *clientv3.AuthUserAddResponse) error {
	resp := (*pb.AuthUserAddResponse)(r)
	return p.authChange("User "+user+" created", resp.GetHeader(), resp)
}

// UserDelete prints the answer to user delete.
func (p *printer) UserDelete(user string, r *clientv3.AuthUserDeleteResponse) error {
	resp := (*pb.AuthUserDeleteResponse)(r)
	return p.authChange("User "+user+" deleted", resp.GetHeader(), resp)
}

// UserChangePassword prints the answer to user passwd.
func (p *printer) UserChangePassword(r *clientv3.AuthUserChangePasswordResponse) error {
	resp := (*pb.AuthUserChangePasswordResponse)(r)
	return p.authChange("Password updated", resp.GetHeader(), resp)
}

// UserGrantRole prints the answer to user grant-role.
func (p *printer) UserGrantRole(user, role string, r *clientv3.AuthUserGrantRoleResponse) error {
	resp := (*pb.AuthUserGrantRoleResponse)(r)
	return p.authChange("Role "+role+" is granted to user "+user, resp.GetHeader(), resp)
}

// UserRevokeRole prints the answer to user revoke-role.
func (p *printer) UserRevokeRole(user, role string, r *clientv3.AuthUserRevokeRoleResponse) error {
	resp := (*pb.AuthUserRevokeRoleResponse)(r)
	return p.authChange("Role "+role+" is revoked from user "+user, resp.GetHeader(), resp)
}

// UserGet prints a user's roles.
func (p *printer) UserGet(user string, r *clientv3.AuthUserGetResponse) error {
	resp := (*pb.AuthUserGetResponse)(r)
	if p.format == formatSimple {
		fmt.Fprintf(p.out, "User: %s\nRoles:", user)
		for _, role := range resp.GetRoles() {
			fmt.Fprintf(p.out, " %s", role)
		}
		fmt.Fprintln(p.out)
		return nil
	}
	if p.format == formatFields {
		return p.unsupported()
	}
	return p.rpcFormats(resp)
}

// UserList prints the names of all users.
func (p *printer) UserList(r *clientv3.AuthUserListResponse) error {
	resp := (*pb.AuthUserListResponse)(r)
	if p.format == formatSimple {
		for _, u := range resp.GetUsers() {
			fmt.Fprintln(p.out, u)
		}
		return nil
	}
	if p.format == formatFields {
		return p.unsupported()
	}
	return p.rpcFormats(resp)
}
