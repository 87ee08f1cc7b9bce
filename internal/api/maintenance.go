package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvorum/kvorum/internal/server"
)

type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *server.Server
}

func (m *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp, err := m.s.Status(ctx)
	return resp, toGRPC(err)
}

func (m *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp, err := m.s.Alarm(ctx, r)
	return resp, toGRPC(err)
}

func (m *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	resp, err := m.s.HashKV(ctx, r)
	return resp, toGRPC(err)
}

func (m *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if err := m.s.MoveLeader(ctx, r.GetTargetID()); err != nil {
		return nil, toGRPC(err)
	}
	st, err := m.s.Status(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MoveLeaderResponse{Header: st.Header}, nil
}

// Defragment reclaims the space of deleted and compacted data at once
// (Pebble does it in the background anyway); requests are served
// meanwhile.
func (m *maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := m.s.Defragment(ctx); err != nil {
		return nil, toGRPC(err)
	}
	st, err := m.s.Status(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.DefragmentResponse{Header: st.Header}, nil
}

// errNoDowngrade answers a downgrade's validation or start. etcd lowers its
// cluster version so that members of the previous minor release can join;
// Kvorum members never run beside etcd members, and its data files are not
// etcd's, so there is nothing to lower. What moves a cluster's data to
// etcd is a snapshot, which is in etcd's format.
var errNoDowngrade = status.Error(codes.FailedPrecondition,
	"kvorum: cluster downgrades are not supported (Kvorum's data files are not etcd's); "+
		"to move the data to etcd, save a snapshot (etcd's format) and restore it with etcdutl snapshot restore")

// Downgrade refuses to validate or start a downgrade with errNoDowngrade,
// and answers a cancellation as etcd does when none is in progress.
func (m *maintenanceServer) Downgrade(_ context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	if r.GetAction() == pb.DowngradeRequest_CANCEL {
		return nil, rpctypes.ErrGRPCNoInflightDowngrade
	}
	return nil, errNoDowngrade
}
