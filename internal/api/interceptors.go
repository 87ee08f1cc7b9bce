package api

import (
	"context"
	"log/slog"
	"time"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kvorum/kvorum/internal/server"
)

// requiresLeader reports whether the client asked (with etcd's "hasleader"
// metadata, set by clientv3.WithRequireLeader) to fail at once rather than
// wait when the member it talks to knows no leader.
func requiresLeader(ctx context.Context) bool {
	// Only the one key: FromIncomingContext would copy all the metadata
	// of every request.
	for _, v := range metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataRequireLeaderKey) {
		if v == rpctypes.MetadataHasLeader {
			return true
		}
	}
	return false
}

func unaryRequireLeader(s *server.Server) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := countClient(s, ctx, "unary"); err != nil {
			return nil, err
		}
		if s.Leader() == 0 && requiresLeader(ctx) {
			return nil, rpctypes.ErrGRPCNoLeader
		}
		return handler(ctx, req)
	}
}

// countClient counts a unary call or stream (kind) by the client API
// version its client sent (etcd_server_client_requests_total), and, as
// etcd, refuses a version that is not valid UTF-8.
func countClient(s *server.Server, ctx context.Context, kind string) error {
	ver := "unknown"
	if vs := metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataClientAPIVersionKey); len(vs) > 0 {
		ver = vs[0]
	}
	if !utf8.ValidString(ver) {
		return rpctypes.ErrGRPCInvalidClientAPIVersion
	}
	s.Metrics().ClientRequest(kind, ver)
	return nil
}

// maxNoLeaderChecks is how many election timeouts in a row a member may
// know no leader before it ends the streams that require one (etcd's
// rule: reconnecting a stream costs more than refusing a new request).
const maxNoLeaderChecks = 3

func streamRequireLeader(s *server.Server) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := countClient(s, ss.Context(), "stream"); err != nil {
			return err
		}
		if !requiresLeader(ss.Context()) {
			return handler(srv, ss)
		}
		if s.Leader() == 0 {
			return rpctypes.ErrGRPCNoLeader
		}
		ctx, cancel := context.WithCancelCause(ss.Context())
		defer cancel(nil)
		go monitorLeader(ctx, s, cancel)
		return handler(srv, ctxStream{ServerStream: ss, ctx: ctx})
	}
}

// monitorLeader cancels a stream that requires a leader, with etcd's "no
// leader" error as the cause, once the member has known no leader for
// maxNoLeaderChecks election timeouts in a row.
func monitorLeader(ctx context.Context, s *server.Server, cancel context.CancelCauseFunc) {
	t := time.NewTicker(s.ElectionTimeout())
	defer t.Stop()
	missing := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.Leader() != 0 {
			missing = 0
			continue
		}
		if missing++; missing >= maxNoLeaderChecks {
			cancel(rpctypes.ErrGRPCNoLeader)
			return
		}
	}
}

// ctxStream is a server stream with a context of our own.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// unaryLog says why a request failed on the server side: failures of the
// cluster (no leader, timeouts, storage) at warn level, verdicts on the
// request itself (compacted, empty key, ...) at debug level.
func unaryLog(lg *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		if err != nil {
			level := slog.LevelDebug
			switch status.Code(err) {
			case codes.Unavailable, codes.Unknown, codes.Internal, codes.DataLoss, codes.DeadlineExceeded:
				level = slog.LevelWarn
			}
			lg.Log(ctx, level, "request failed", "method", info.FullMethod, "err", err, "took", time.Since(start).String())
		}
		return resp, err
	}
}
