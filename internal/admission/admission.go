package admission

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/mvcc"
)

// ErrNoRule refuses a request of a type admission does not know.
var ErrNoRule = errors.New("admission: no rule for this request type")

// Config is what the checks need to know.
type Config struct {
	// MaxTxnOps is --max-txn-ops.
	MaxTxnOps int
}

// Controller admits requests; see the package documentation.
type Controller struct {
	cfg Config
}

// New returns a Controller.
func New(cfg Config) *Controller {
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = 128
	}
	return &Controller{cfg: cfg}
}

// Admit returns nil if msg, received on the gRPC method named method, may
// proceed, or the reason it may not (an error the api package maps to
// etcd's gRPC errors).
func (c *Controller) Admit(ctx context.Context, method string, msg proto.Message) error {
	r, ok := rules[msg.ProtoReflect().Descriptor().FullName()]
	if !ok {
		return fmt.Errorf("%w: %s on %s", ErrNoRule, msg.ProtoReflect().Descriptor().FullName(), method)
	}
	if r.validate != nil {
		if err := r.validate(c, msg); err != nil {
			return err
		}
	}
	return nil
}

// Knows reports whether admission has a rule for requests of the named
// type.
func Knows(name protoreflect.FullName) bool {
	_, ok := rules[name]
	return ok
}

// rule is what admission knows of one request type.
type rule struct {
	// validate checks the request alone, as etcd's API layer does; nil if
	// there is nothing to check before it reaches the server.
	validate func(c *Controller, msg proto.Message) error
}

// rules has one entry per request type the client plane accepts.
var rules = map[protoreflect.FullName]rule{}

// add registers the rule for the type of m; check, if not nil, validates
// a request of that type.
func add[T proto.Message](m T, check func(c *Controller, r T) error) {
	var r rule
	if check != nil {
		r.validate = func(c *Controller, msg proto.Message) error { return check(c, msg.(T)) }
	}
	rules[m.ProtoReflect().Descriptor().FullName()] = r
}

func init() {
	// KV.
	add(&pb.RangeRequest{}, func(_ *Controller, r *pb.RangeRequest) error { return mvcc.CheckRange(r) })
	add(&pb.PutRequest{}, func(_ *Controller, r *pb.PutRequest) error { return mvcc.CheckPut(r) })
	add(&pb.DeleteRangeRequest{}, func(_ *Controller, r *pb.DeleteRangeRequest) error { return mvcc.CheckDeleteRange(r) })
	add(&pb.TxnRequest{}, func(c *Controller, r *pb.TxnRequest) error { return mvcc.CheckTxn(r, c.cfg.MaxTxnOps) })
	add[*pb.CompactionRequest](&pb.CompactionRequest{}, nil)

	// Watch: one stream message carries a create, cancel or progress
	// request; the revision and filters are the watch hub's to judge.
	add[*pb.WatchRequest](&pb.WatchRequest{}, nil)

	// Lease.
	add(&pb.LeaseGrantRequest{}, func(_ *Controller, r *pb.LeaseGrantRequest) error {
		if r.GetTTL() > lease.MaxTTL {
			return lease.ErrTTLTooLarge
		}
		return nil
	})
	add[*pb.LeaseRevokeRequest](&pb.LeaseRevokeRequest{}, nil)
	add[*pb.LeaseKeepAliveRequest](&pb.LeaseKeepAliveRequest{}, nil)
	add[*pb.LeaseTimeToLiveRequest](&pb.LeaseTimeToLiveRequest{}, nil)
	add[*pb.LeaseLeasesRequest](&pb.LeaseLeasesRequest{}, nil)

	// Cluster: peer URLs are checked by the server against the member list.
	add[*pb.MemberAddRequest](&pb.MemberAddRequest{}, nil)
	add[*pb.MemberRemoveRequest](&pb.MemberRemoveRequest{}, nil)
	add[*pb.MemberUpdateRequest](&pb.MemberUpdateRequest{}, nil)
	add[*pb.MemberListRequest](&pb.MemberListRequest{}, nil)
	add[*pb.MemberPromoteRequest](&pb.MemberPromoteRequest{}, nil)

	// Maintenance.
	add[*pb.AlarmRequest](&pb.AlarmRequest{}, nil)
	add[*pb.StatusRequest](&pb.StatusRequest{}, nil)
	add[*pb.DefragmentRequest](&pb.DefragmentRequest{}, nil)
	add[*pb.HashRequest](&pb.HashRequest{}, nil)
	add[*pb.HashKVRequest](&pb.HashKVRequest{}, nil)
	add[*pb.SnapshotRequest](&pb.SnapshotRequest{}, nil)
	add[*pb.MoveLeaderRequest](&pb.MoveLeaderRequest{}, nil)
	add[*pb.DowngradeRequest](&pb.DowngradeRequest{}, nil)

	// gRPC health checking, which load balancers use without credentials.
	add[*healthpb.HealthCheckRequest](&healthpb.HealthCheckRequest{}, nil)
	add[*healthpb.HealthListRequest](&healthpb.HealthListRequest{}, nil)
}
