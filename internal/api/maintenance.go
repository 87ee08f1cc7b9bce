package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

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
