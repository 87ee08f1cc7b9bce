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

// Alarm reports no alarms: Kvorum raises none yet (space and corruption
// alarms come with the operations work). etcdctl's endpoint health asks.
func (m *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	st, err := m.s.Status(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.AlarmResponse{Header: st.Header}, nil
}
