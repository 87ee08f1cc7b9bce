package api

import (
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/kvorum/kvorum/internal/admission"
	"github.com/kvorum/kvorum/internal/server"
)

// grpcOverheadBytes is room for the envelope around the largest allowed
// request, as etcd allows: a request body up to --max-request-bytes is
// answered with "request is too large" by the server, not dropped by gRPC.
const grpcOverheadBytes = 512 * 1024

// NewGRPCServer builds the client-facing gRPC server for s.
func NewGRPCServer(s *server.Server, opts ...grpc.ServerOption) *grpc.Server {
	ac := admission.New(admission.Config{MaxTxnOps: s.MaxTxnOps(), Quota: s, Auth: s})
	base := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.MaxRequestBytes() + grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(unaryRequireLeader(s), s.Metrics().UnaryInterceptor(), unaryLog(s.Logger()), unaryAdmit(ac)),
		grpc.ChainStreamInterceptor(streamRequireLeader(s), s.Metrics().StreamInterceptor(), streamAdmit(ac)),
		grpc.ForceServerCodecV2(newCodec(s.Metrics())),
		// Request goroutines are reused: each new one grew its stack for
		// every request (stack copying was 5% of a leader's CPU).
		grpc.NumStreamWorkers(128),
	}
	g := grpc.NewServer(append(base, opts...)...)
	registerServices(g, s, ac)
	return g
}

// registerServices registers the client plane's services on g: etcd's KV,
// Watch, Lease, Cluster, Maintenance, Auth, Lock and Election, and gRPC
// health checking.
func registerServices(g *grpc.Server, s *server.Server, ac *admission.Controller) {
	kv, watch, lease := &kvServer{s: s}, &watchServer{s: s}, &leaseServer{s: s}
	pb.RegisterKVServer(g, kv)
	pb.RegisterClusterServer(g, &clusterServer{s: s})
	pb.RegisterMaintenanceServer(g, &maintenanceServer{s: s})
	pb.RegisterWatchServer(g, watch)
	pb.RegisterLeaseServer(g, lease)
	pb.RegisterAuthServer(g, &authServer{s: s})
	registerLockElection(g, s, ac, kv, lease, watch)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
}
