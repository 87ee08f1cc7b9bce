package api

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/kvorum/kvorum/internal/admission"
	"github.com/kvorum/kvorum/internal/server"
)

// etcd serves two more services on its client URLs, Lock and Election
// (distributed locks and leader election, used by clients such as jetcd).
// Their handlers are etcd's own (v3lock, v3election): they run etcd's
// concurrency recipes through a client of the member itself. That client
// calls the member's KV, Lease and Watch handlers in process (etcd's
// adapters, as etcd's v3client does), each request through admission with
// the context of the Lock or Election call: so the caller's token or
// certificate decides what its lock may touch, and the quota applies, as
// for the caller's own requests.

// registerLockElection registers the Lock and Election services on g. The
// in-process client closes when the member stops.
//
// The lease keep-alives of the in-process client run on a stream of its
// own, not as any caller (as etcd's do): they need no access rule, and one
// in admission would break locks and elections.
func registerLockElection(g *grpc.Server, s *server.Server, ac *admission.Controller, kv pb.KVServer, lease pb.LeaseServer, watch pb.WatchServer) {
	c := clientv3.NewCtxClient(context.Background(), clientv3.WithZapLogger(zap.NewNop()))
	c.KV = clientv3.NewKVFromKVClient(adapter.KvServerToKvClient(admittedKV{kv, ac}), c)
	c.Lease = clientv3.NewLeaseFromLeaseClient(adapter.LeaseServerToLeaseClient(admittedLease{lease, ac}), c, time.Second)
	c.Watcher = &ownStreams{Watcher: clientv3.NewWatchFromWatchClient(adapter.WatchServerToWatchClient(admittedWatch{watch, ac}), c)}
	if s != nil { // nil for tests that only list the services
		go func() {
			<-s.Done()
			c.Close() // its watcher and lessor, whose loops would outlive the member
		}()
	}
	v3lockpb.RegisterLockServer(g, callerLock{shared: c})
	v3electionpb.RegisterElectionServer(g, callerElection{shared: c})
}

// callerClient is the in-process client for one Lock or Election call: the
// shared KV, Lease and Watch, with the call's context as the client's own.
// etcd's recipes clean up with the client's context (a lock wait that
// failed deletes its key, a campaign that failed resigns); with the shared
// client's they would run as no user, be refused under access control,
// and leave the waiter's key to block the queue until its lease ended (as
// in etcd). With the call's, they run as its caller.
func callerClient(ctx context.Context, shared *clientv3.Client) *clientv3.Client {
	c := clientv3.NewCtxClient(context.WithoutCancel(ctx), clientv3.WithZapLogger(zap.NewNop()))
	c.KV, c.Lease, c.Watcher = shared.KV, shared.Lease, shared.Watcher
	return c // never closed: it owns nothing
}

// callerLock serves each Lock call with etcd's handler over callerClient.
type callerLock struct {
	v3lockpb.UnimplementedLockServer
	shared *clientv3.Client
}

func (l callerLock) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	return v3lock.NewLockServer(callerClient(ctx, l.shared)).Lock(ctx, r)
}

func (l callerLock) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	return v3lock.NewLockServer(callerClient(ctx, l.shared)).Unlock(ctx, r)
}

// callerElection serves each Election call with etcd's handler over
// callerClient.
type callerElection struct {
	v3electionpb.UnimplementedElectionServer
	shared *clientv3.Client
}

func (e callerElection) Campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	return v3election.NewElectionServer(callerClient(ctx, e.shared)).Campaign(ctx, r)
}

func (e callerElection) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	return v3election.NewElectionServer(callerClient(ctx, e.shared)).Proclaim(ctx, r)
}

func (e callerElection) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	return v3election.NewElectionServer(callerClient(ctx, e.shared)).Leader(ctx, r)
}

func (e callerElection) Observe(r *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	return v3election.NewElectionServer(callerClient(stream.Context(), e.shared)).Observe(r, stream)
}

func (e callerElection) Resign(ctx context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	return v3election.NewElectionServer(callerClient(ctx, e.shared)).Resign(ctx, r)
}

// ownStreams gives every watch of the in-process client a stream of its
// own. clientv3 shares one stream among the watches whose contexts carry
// the same outgoing metadata (none, for a handler's context), and a stream
// keeps the context of the watch that opened it: the watches of one
// caller's lock would be admitted, and re-checked after auth changes, as
// another caller's.
type ownStreams struct {
	clientv3.Watcher
	n atomic.Uint64
}

func (w *ownStreams) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	ctx = metadata.AppendToOutgoingContext(ctx, "kvorum-in-process-watch", strconv.FormatUint(w.n.Add(1), 10))
	return w.Watcher.Watch(ctx, key, opts...)
}

// admitted passes req through admission as if it arrived on method, and
// calls serve with the context admission gives.
func admitted[Req, Resp any](ctx context.Context, ac *admission.Controller, method string, req Req, serve func(context.Context, Req) (Resp, error)) (Resp, error) {
	ctx, err := admit(ctx, ac, method, req)
	if err != nil {
		var zero Resp
		return zero, err
	}
	return serve(ctx, req)
}

// admittedKV is the KV service as the in-process client calls it.
type admittedKV struct {
	pb.KVServer
	ac *admission.Controller
}

func (k admittedKV) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return admitted(ctx, k.ac, "/etcdserverpb.KV/Range", r, k.KVServer.Range)
}

func (k admittedKV) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return admitted(ctx, k.ac, "/etcdserverpb.KV/Put", r, k.KVServer.Put)
}

func (k admittedKV) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return admitted(ctx, k.ac, "/etcdserverpb.KV/DeleteRange", r, k.KVServer.DeleteRange)
}

func (k admittedKV) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return admitted(ctx, k.ac, "/etcdserverpb.KV/Txn", r, k.KVServer.Txn)
}

func (k admittedKV) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return admitted(ctx, k.ac, "/etcdserverpb.KV/Compact", r, k.KVServer.Compact)
}

// admittedLease is the Lease service as the in-process client calls it.
type admittedLease struct {
	pb.LeaseServer
	ac *admission.Controller
}

func (l admittedLease) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return admitted(ctx, l.ac, "/etcdserverpb.Lease/LeaseGrant", r, l.LeaseServer.LeaseGrant)
}

func (l admittedLease) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return admitted(ctx, l.ac, "/etcdserverpb.Lease/LeaseRevoke", r, l.LeaseServer.LeaseRevoke)
}

func (l admittedLease) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return admitted(ctx, l.ac, "/etcdserverpb.Lease/LeaseTimeToLive", r, l.LeaseServer.LeaseTimeToLive)
}

func (l admittedLease) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	return admitted(ctx, l.ac, "/etcdserverpb.Lease/LeaseLeases", r, l.LeaseServer.LeaseLeases)
}

func (l admittedLease) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	return l.LeaseServer.LeaseKeepAlive(admittedKeepAlive{stream, l.ac})
}

// admittedKeepAlive admits each keep-alive as the handler receives it.
type admittedKeepAlive struct {
	pb.Lease_LeaseKeepAliveServer
	ac *admission.Controller
}

func (s admittedKeepAlive) Recv() (*pb.LeaseKeepAliveRequest, error) {
	return admittedRecv(s.Context(), s.ac, "/etcdserverpb.Lease/LeaseKeepAlive", s.Lease_LeaseKeepAliveServer.Recv)
}

// admittedWatch is the Watch service as the in-process client calls it.
type admittedWatch struct {
	pb.WatchServer
	ac *admission.Controller
}

func (w admittedWatch) Watch(stream pb.Watch_WatchServer) error {
	return w.WatchServer.Watch(admittedWatchStream{stream, w.ac})
}

// admittedWatchStream admits each watch request as the handler receives
// it, and hands the in-process client watch responses as messages (the
// handler sends them in a form only the gRPC codec encodes).
type admittedWatchStream struct {
	pb.Watch_WatchServer
	ac *admission.Controller
}

func (s admittedWatchStream) Recv() (*pb.WatchRequest, error) {
	return admittedRecv(s.Context(), s.ac, "/etcdserverpb.Watch/Watch", s.Watch_WatchServer.Recv)
}

// admittedRecv receives a stream message with recv and passes it through
// admission, refusing it as streamAdmit refuses one (a *refusedMessage).
func admittedRecv[T any](ctx context.Context, ac *admission.Controller, method string, recv func() (T, error)) (T, error) {
	r, err := recv()
	if err != nil {
		return r, err
	}
	if _, err := admit(ctx, ac, method, r); err != nil {
		var zero T
		return zero, &refusedMessage{msg: r, err: err}
	}
	return r, nil
}

func (s admittedWatchStream) SendMsg(m any) error {
	if w, ok := m.(*wireWatchResponse); ok {
		resp := w.r.Message()
		resp.Header = w.header
		return s.Watch_WatchServer.Send(resp)
	}
	return s.Watch_WatchServer.SendMsg(m)
}
