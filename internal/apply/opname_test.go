package apply

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
)

// TestOpNameIsEtcds checks the op label of etcd_server_apply_duration_seconds
// and the type label of etcd_server_request_duration_seconds: etcd names a
// request after the field of InternalRaftRequest it fills.
func TestOpNameIsEtcds(t *testing.T) {
	for _, c := range []struct {
		req  *pb.InternalRaftRequest
		want string
	}{
		{&pb.InternalRaftRequest{Put: &pb.PutRequest{}}, "Put"},
		{&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{}}, "DeleteRange"},
		{&pb.InternalRaftRequest{Txn: &pb.TxnRequest{}}, "Txn"},
		{&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{}}, "Compaction"},
		{&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{}}, "LeaseGrant"},
		{&pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{}}, "LeaseRevoke"},
		{&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{}}, "LeaseCheckpoint"},
		{&pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{}}, "Alarm"},
		{&pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{}}, "Authenticate"},
		{&pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}, "AuthEnable"},
		{&pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{}}, "AuthUserAdd"},
		{&pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{}}, "AuthRoleGrantPermission"},
		{&pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{}}, "ClusterMemberAttrSet"},
		{&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 1}}, "unknown"},
	} {
		if got := OpName(c.req); got != c.want {
			t.Errorf("OpName(%v) = %q, want %q", c.req, got, c.want)
		}
	}
}
