package api

import (
	"context"
	"slices"

	"google.golang.org/grpc/metadata"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/membership"
	"github.com/kvorum/kvorum/internal/server"
)

// clusterServer serves the member list and membership changes.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *server.Server
}

func (c *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	resp, err := c.s.MemberList(ctx, r)
	return resp, toGRPC(err)
}

func (c *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	mem, list, err := c.s.MemberAdd(ctx, r.GetPeerURLs(), r.GetIsLearner(), autoPromoteAsked(ctx))
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberAddResponse{Header: c.s.ClusterHeader(), Member: mem, Members: list}, nil
}

func (c *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	list, err := c.s.MemberRemove(ctx, r.GetID())
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberRemoveResponse{Header: c.s.ClusterHeader(), Members: list}, nil
}

func (c *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	list, err := c.s.MemberUpdate(ctx, r.GetID(), r.GetPeerURLs())
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberUpdateResponse{Header: c.s.ClusterHeader(), Members: list}, nil
}

func (c *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	list, err := c.s.MemberPromote(ctx, r.GetID())
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberPromoteResponse{Header: c.s.ClusterHeader(), Members: list}, nil
}

func autoPromoteAsked(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return slices.Contains(md.Get(membership.AutoPromoteMetadata), "true")
}
