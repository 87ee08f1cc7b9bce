package admission

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
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
	// Quota, if set, is asked before a request that grows the store.
	Quota Quota
	// Auth, if set, identifies the request's user and checks its access.
	Auth Auth
}

// Quota refuses requests that would grow the store past its space quota.
type Quota interface {
	// AllowGrowth returns nil if cost more bytes may be written.
	AllowGrowth(cost int) error
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

// Admit returns the context to serve msg with (carrying its Identity),
// if msg, received on the gRPC method named method, may proceed; or the
// reason it may not (an error the api package maps to etcd's gRPC errors).
func (c *Controller) Admit(ctx context.Context, method string, msg proto.Message) (context.Context, error) {
	r, ok := rules[msg.ProtoReflect().Descriptor().FullName()]
	if !ok {
		return ctx, fmt.Errorf("%w: %s on %s", ErrNoRule, msg.ProtoReflect().Descriptor().FullName(), method)
	}
	if r.validate != nil {
		if err := r.validate(c, msg); err != nil {
			return ctx, err
		}
	}
	if a := c.cfg.Auth; a != nil && a.AuthEnabled() {
		rev := a.AuthRevision()
		user, err := a.Identify(ctx)
		if err != nil {
			return ctx, err
		}
		if r.authorize != nil {
			if err := r.authorize(a, user, msg); err != nil {
				return ctx, err
			}
		}
		ctx = context.WithValue(ctx, identityKey{}, Identity{User: user, Revision: rev})
	}
	if r.cost != nil && c.cfg.Quota != nil {
		if n := r.cost(msg); n > 0 {
			if err := c.cfg.Quota.AllowGrowth(n); err != nil {
				return ctx, err
			}
		}
	}
	return ctx, nil
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
	// cost is how many bytes the request may add to the store, for the
	// quota; nil for requests that never grow it.
	cost func(msg proto.Message) int
	// authorize checks the user's access when access control is on; nil
	// for requests anyone may make (as in etcd: lease grants and
	// keep-alives, member list, status, authenticate).
	authorize authorizeFunc
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

// costs gives the rule for the type of m a cost function.
func costs[T proto.Message](m T, cost func(r T) int) {
	name := m.ProtoReflect().Descriptor().FullName()
	r := rules[name]
	r.cost = func(msg proto.Message) int { return cost(msg.(T)) }
	rules[name] = r
}

// guards gives the rule for the type of m an access check.
func guards[T proto.Message](m T, check func(a Auth, user string, r T) error) {
	name := m.ProtoReflect().Descriptor().FullName()
	r := rules[name]
	r.authorize = func(a Auth, user string, msg proto.Message) error { return check(a, user, msg.(T)) }
	rules[name] = r
}

// adminOnly makes the type of m need the root role.
func adminOnly[T proto.Message](m T) {
	guards(m, func(a Auth, user string, r T) error { return admin(a, user, r) })
}

// leaseCost is what a lease adds to the store, roughly its record.
const leaseCost = 64

func putCost(r *pb.PutRequest) int { return len(r.GetKey()) + len(r.GetValue()) }

func txnCost(r *pb.TxnRequest) int {
	n := 0
	for _, ops := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			if p := op.GetRequestPut(); p != nil {
				n += putCost(p)
			}
			if t := op.GetRequestTxn(); t != nil {
				n += txnCost(t)
			}
		}
	}
	return n
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
	// No access rule (as in etcd): the Lock and Election services keep
	// their leases alive as no particular user (internal/api).
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

	// Lock and Election: etcd's recipes, whose reads and writes each pass
	// admission on their own as the caller's (internal/api).
	add[*v3lockpb.LockRequest](&v3lockpb.LockRequest{}, nil)
	add[*v3lockpb.UnlockRequest](&v3lockpb.UnlockRequest{}, nil)
	add[*v3electionpb.CampaignRequest](&v3electionpb.CampaignRequest{}, nil)
	add[*v3electionpb.ProclaimRequest](&v3electionpb.ProclaimRequest{}, nil)
	add[*v3electionpb.LeaderRequest](&v3electionpb.LeaderRequest{}, nil)
	add[*v3electionpb.ResignRequest](&v3electionpb.ResignRequest{}, nil)

	// What grows the store passes the quota stage.
	costs(&pb.PutRequest{}, putCost)
	costs(&pb.TxnRequest{}, txnCost)
	costs(&pb.LeaseGrantRequest{}, func(*pb.LeaseGrantRequest) int { return leaseCost })

	// Who may do what once access control is on (etcd's rules).
	guards(&pb.RangeRequest{}, rangeAccess)
	guards(&pb.PutRequest{}, putAccess)
	guards(&pb.DeleteRangeRequest{}, deleteAccess)
	guards(&pb.TxnRequest{}, txnAccess)
	guards(&pb.WatchRequest{}, watchAccess)
	guards(&pb.LeaseRevokeRequest{}, func(a Auth, user string, r *pb.LeaseRevokeRequest) error {
		return leaseKeysAccess(a, user, r.GetID(), true)
	})
	guards(&pb.LeaseTimeToLiveRequest{}, func(a Auth, user string, r *pb.LeaseTimeToLiveRequest) error {
		return leaseKeysAccess(a, user, r.GetID(), false)
	})
	adminOnly(&pb.MemberAddRequest{})
	adminOnly(&pb.MemberRemoveRequest{})
	adminOnly(&pb.MemberUpdateRequest{})
	adminOnly(&pb.MemberPromoteRequest{})
	adminOnly(&pb.DefragmentRequest{})
	adminOnly(&pb.HashRequest{})
	adminOnly(&pb.HashKVRequest{})
	adminOnly(&pb.SnapshotRequest{})
	adminOnly(&pb.MoveLeaderRequest{})
	adminOnly(&pb.DowngradeRequest{})
	guards(&pb.AlarmRequest{}, func(a Auth, user string, r *pb.AlarmRequest) error {
		if r.GetAction() == pb.AlarmRequest_GET {
			return nil
		}
		return admin(a, user, r)
	})
	add[*pb.AuthStatusRequest](&pb.AuthStatusRequest{}, nil) // anyone may ask whether auth is on
	for _, m := range []proto.Message{&pb.AuthEnableRequest{}, &pb.AuthDisableRequest{},
		&pb.AuthUserAddRequest{}, &pb.AuthUserListRequest{}, &pb.AuthUserDeleteRequest{},
		&pb.AuthUserChangePasswordRequest{}, &pb.AuthUserGrantRoleRequest{}, &pb.AuthUserRevokeRoleRequest{},
		&pb.AuthRoleAddRequest{}, &pb.AuthRoleListRequest{}, &pb.AuthRoleDeleteRequest{},
		&pb.AuthRoleGrantPermissionRequest{}, &pb.AuthRoleRevokePermissionRequest{}} {
		add[proto.Message](m, nil)
		adminOnly(m)
	}
	add[*pb.AuthenticateRequest](&pb.AuthenticateRequest{}, nil)
	// A user may read its own record and the roles it holds.
	add[*pb.AuthUserGetRequest](&pb.AuthUserGetRequest{}, nil)
	guards(&pb.AuthUserGetRequest{}, func(a Auth, user string, r *pb.AuthUserGetRequest) error {
		if user != "" && user == r.GetName() {
			return nil
		}
		return admin(a, user, r)
	})
	add[*pb.AuthRoleGetRequest](&pb.AuthRoleGetRequest{}, nil)
	guards(&pb.AuthRoleGetRequest{}, func(a Auth, user string, r *pb.AuthRoleGetRequest) error {
		if a.UserHasRole(user, r.GetRole()) {
			return nil
		}
		return admin(a, user, r)
	})

	// gRPC health checking, which load balancers use without credentials.
	add[*healthpb.HealthCheckRequest](&healthpb.HealthCheckRequest{}, nil)
	add[*healthpb.HealthListRequest](&healthpb.HealthListRequest{}, nil)
}
