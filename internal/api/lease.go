package api

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/server"
)

// leaseServer serves etcd's Lease service.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *server.Server
}

func (ls *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	resp, err := ls.s.LeaseGrant(ctx, r)
	return resp, toGRPC(err)
}

func (ls *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := ls.s.LeaseRevoke(ctx, r)
	return resp, toGRPC(err)
}

// LeaseTimeToLive answers an unknown or expired lease with TTL -1, as
// etcd does, rather than with an error.
func (ls *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := ls.s.LeaseTimeToLive(ctx, r)
	if errors.Is(err, lease.ErrNotFound) {
		return &pb.LeaseTimeToLiveResponse{Header: ls.s.CurrentHeader(), ID: r.GetID(), TTL: -1}, nil
	}
	return resp, toGRPC(err)
}

func (ls *leaseServer) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := ls.s.LeaseLeases(ctx)
	return resp, toGRPC(err)
}

// LeaseKeepAlive renews leases one request at a time, in order. An unknown
// or expired lease is answered with TTL 0 (clients take that as the end
// of the lease); any other failure ends the stream with its error.
func (ls *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ttl, err := ls.s.LeaseRenew(ctx, req.GetID())
		if errors.Is(err, lease.ErrNotFound) {
			ttl, err = 0, nil
		}
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				return cause
			}
			return toGRPC(err)
		}
		if err := stream.Send(&pb.LeaseKeepAliveResponse{Header: ls.s.CurrentHeader(), ID: req.GetID(), TTL: ttl}); err != nil {
			return err
		}
	}
}
