package member

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	etcdtransport "go.etcd.io/etcd/client/pkg/v3/transport"
	electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kvorum/kvorum/internal/server"
)

// The JSON gateway (--enable-grpc-gateway, on by default) answers etcd's
// HTTP/JSON API under /v3/ with the handlers etcd's API module generates
// for grpc-gateway. They do not call the server directly: they dial this
// member's own gRPC client URL, so a gateway request passes through the
// same interceptors (admission, auth, metrics) as a gRPC one. The
// Authorization header reaches the server as the "authorization" metadata
// key, which it reads as the token, as etcd does.

// gateway is the gateway of one member: the HTTP handler and the client
// connection its handlers use.
type gateway struct {
	handler http.Handler
	conn    *grpc.ClientConn
}

// newGateway builds the gateway on a connection to the client listener
// ln. With TLS (secure) it connects with the client plane's certificate,
// which etcd also uses as a client certificate towards itself, and does
// not verify its own server's name. Its requests are marked (see
// server.GatewayMetadataKey) so that this certificate is never taken for
// the user: a gateway request is identified by its token alone.
func newGateway(ln net.Listener, secure bool, info *etcdtransport.TLSInfo) (*gateway, error) {
	creds := insecure.NewCredentials()
	if secure {
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("JSON gateway: TLS of the client plane: %v", err)
		}
		tc.InsecureSkipVerify = true
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(dialTarget(ln.Addr()),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		grpc.WithChainUnaryInterceptor(markUnary), grpc.WithChainStreamInterceptor(markStream))
	if err != nil {
		return nil, fmt.Errorf("JSON gateway: connect to %s: %v", ln.Addr(), err)
	}
	// Field names as in the .proto files and no zero values, as etcd
	// answers (create_revision, dbSize, no "more": false).
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	ctx := context.Background()
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler, gw.RegisterWatchHandler, gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler, gw.RegisterMaintenanceHandler, gw.RegisterAuthHandler,
		lockgw.RegisterLockHandler, electiongw.RegisterElectionHandler,
	} {
		if err := register(ctx, mux, conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("JSON gateway: %v", err)
		}
	}
	return &gateway{handler: v3beta(mux), conn: conn}, nil
}

// markUnary and markStream mark the gateway's requests, so that the
// server does not take the member's own certificate for the user.
func markUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(metadata.AppendToOutgoingContext(ctx, server.GatewayMetadataKey, "1"), method, req, reply, cc, opts...)
}

func markStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(metadata.AppendToOutgoingContext(ctx, server.GatewayMetadataKey, "1"), desc, cc, method, opts...)
}

// v3beta serves the /v3beta/ paths of etcd 3.3 as /v3/, as etcd does.
func v3beta(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v3beta/"); ok {
			r.URL.Path = "/v3/" + rest
			r.URL.RawPath = ""
		}
		h.ServeHTTP(w, r)
	})
}

// dialTarget is the gRPC target that reaches a listener of this process:
// a Unix socket by path, a TCP listener on all interfaces by loopback.
func dialTarget(a net.Addr) string {
	if a.Network() == "unix" {
		return "unix:" + a.String()
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
