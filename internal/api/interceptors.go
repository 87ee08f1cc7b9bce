package api

import (
	"context"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/kvorum/kvorum/internal/server"
)

// requiresLeader reports whether the client asked (with etcd's "hasleader"
// metadata, set by clientv3.WithRequireLeader) to fail at once rather than
// wait when the member it talks to knows no leader.
func requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	for _, v := range md.Get(rpctypes.MetadataRequireLeaderKey) {
		if v == rpctypes.MetadataHasLeader {
			return true
		}
	}
	return false
}

func unaryRequireLeader(s *server.Server) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if s.Leader() == 0 && requiresLeader(ctx) {
			return nil, rpctypes.ErrGRPCNoLeader
		}
		return handler(ctx, req)
	}
}

func streamRequireLeader(s *server.Server) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if s.Leader() == 0 && requiresLeader(ss.Context()) {
			return rpctypes.ErrGRPCNoLeader
		}
		return handler(srv, ss)
	}
}
