package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/kvorum/kvorum/internal/server"
)

// clusterServer serves the member list. Membership changes (add, remove,
// promote) arrive with the membership issue; until then they are refused
// with etcd's "not capable" error rather than left unimplemented, so
// clients print a meaningful message.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *server.Server
}

func (c *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	resp, err := c.s.MemberList(ctx, r)
	return resp, toGRPC(err)
}

func (c *clusterServer) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, rpctypes.ErrGRPCNotCapable
}

func (c *clusterServer) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, rpctypes.ErrGRPCNotCapable
}

func (c *clusterServer) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, rpctypes.ErrGRPCNotCapable
}

func (c *clusterServer) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, rpctypes.ErrGRPCNotCapable
}
