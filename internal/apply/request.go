package apply

import (
	"strings"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kvorum/kvorum/internal/alarm"
	"github.com/kvorum/kvorum/internal/auth"
	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/membership"
	"github.com/kvorum/kvorum/internal/mvcc"
)

// entryApplier applies the client proposals of one batch.
type entryApplier struct {
	w      *mvcc.Writer
	b      *pebble.Batch
	leases *lease.Lessor
	alarms *alarm.Store
	auth   *auth.Store
	// tracked counts the writer's events already passed to the lessor,
	// which derives lease attachments from the key changes.
	tracked int
}

type requestResult struct {
	resp   proto.Message
	err    error
	member *pb.Member // set when the request changed a member record
}

// request applies one client proposal. Errors it returns are the
// replicated outcome, unless IsRequestError says they are not.
func (e *entryApplier) request(req *pb.InternalRaftRequest) requestResult {
	r := e.dispatch(req)
	if r.err == nil && len(e.w.Events()) > e.tracked {
		r.err = e.leases.Track(e.b, e.w.Events()[e.tracked:])
		e.tracked = len(e.w.Events())
	}
	return r
}

func (e *entryApplier) dispatch(req *pb.InternalRaftRequest) requestResult {
	// A request admitted under an older auth revision may have been allowed
	// by a permission that is gone now: refuse it (the client re-checks and
	// retries). Requests the members make themselves carry no user.
	if h := req.GetHeader(); h.GetUsername() != "" && req.Authenticate == nil &&
		e.auth.Enabled() && h.GetAuthRevision() < e.auth.Revision() {
		return requestResult{err: auth.ErrAuthOldRevision}
	}
	// While the space alarm is active, what would grow the store is
	// refused; reads, deletes, compaction, revocation and alarm changes go
	// on, so space can be freed (etcd's rule).
	if grows(req) && e.alarms.Active(pb.AlarmType_NOSPACE) {
		return requestResult{err: alarm.ErrNoSpace}
	}
	// While a member's data is known to differ, nothing is written until
	// an operator repaired it and disarmed the alarm (etcd's rule); reads
	// are served.
	if writes(req) && e.alarms.Active(pb.AlarmType_CORRUPT) {
		return requestResult{err: alarm.ErrCorrupt}
	}
	switch {
	case req.Put != nil:
		resp, err := e.w.Put(req.Put)
		return requestResult{resp: resp, err: err}
	case req.DeleteRange != nil:
		resp, err := e.w.DeleteRange(req.DeleteRange)
		return requestResult{resp: resp, err: err}
	case req.Txn != nil:
		resp, err := e.w.Txn(req.Txn)
		return requestResult{resp: resp, err: err}
	case req.Compaction != nil:
		resp, err := e.w.Compact(req.Compaction)
		return requestResult{resp: resp, err: err}
	case req.LeaseGrant != nil:
		return e.leaseGrant(req.LeaseGrant)
	case req.LeaseRevoke != nil:
		return e.leaseRevoke(req.LeaseRevoke)
	case req.LeaseCheckpoint != nil:
		return e.leaseCheckpoint(req.LeaseCheckpoint)
	case auth.IsAuthRequest(req):
		resp, err := e.auth.Apply(e.b, req)
		return requestResult{resp: resp, err: err}
	case req.Alarm != nil:
		resp, err := e.alarms.Apply(e.b, req.Alarm)
		return requestResult{resp: resp, err: err}
	case req.ClusterMemberAttrSet != nil:
		mem, err := membership.ApplyAttrSet(e.b, req.ClusterMemberAttrSet)
		return requestResult{err: err, member: mem}
	default:
		return requestResult{err: ErrUnsupportedRequest}
	}
}

// leaseGrant creates a lease (replicated outcome: exists, too long).
func (e *entryApplier) leaseGrant(r *pb.LeaseGrantRequest) requestResult {
	if err := e.leases.Grant(e.b, r.GetID(), r.GetTTL()); err != nil {
		return requestResult{err: err}
	}
	return requestResult{resp: &pb.LeaseGrantResponse{
		Header: &pb.ResponseHeader{Revision: e.w.Rev()},
		ID:     r.GetID(),
		TTL:    r.GetTTL(),
	}}
}

// leaseRevoke deletes a lease's keys, in key order and as one revision,
// then the lease.
func (e *entryApplier) leaseRevoke(r *pb.LeaseRevokeRequest) requestResult {
	keys, err := e.leases.Keys(r.GetID())
	if err != nil {
		return requestResult{err: err}
	}
	rev, err := e.w.DeleteKeys(keys)
	if err != nil {
		return requestResult{err: err}
	}
	if err := e.leases.Revoke(e.b, r.GetID()); err != nil {
		return requestResult{err: err}
	}
	return requestResult{resp: &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: rev}}}
}

func (e *entryApplier) leaseCheckpoint(r *pb.LeaseCheckpointRequest) requestResult {
	for _, cp := range r.GetCheckpoints() {
		if err := e.leases.Checkpoint(e.b, cp.GetID(), cp.GetRemaining_TTL()); err != nil {
			return requestResult{err: err}
		}
	}
	return requestResult{resp: &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{}}}
}

// grows reports whether req may add data to the store: a put, a txn with a
// put in any branch, a lease grant.
func grows(req *pb.InternalRaftRequest) bool {
	return req.Put != nil || req.LeaseGrant != nil || (req.Txn != nil && mvcc.TxnHasPut(req.Txn))
}

// writes reports whether req changes keys or leases.
func writes(req *pb.InternalRaftRequest) bool {
	return req.Put != nil || req.DeleteRange != nil || req.Compaction != nil ||
		req.LeaseGrant != nil || req.LeaseRevoke != nil ||
		(req.Txn != nil && !mvcc.IsReadOnlyTxn(req.Txn))
}

// OpName names a request's operation as etcd's apply_duration_seconds
// labels it: "Put", "Txn", "LeaseGrant", "AuthUserAdd", ...
func OpName(req *pb.InternalRaftRequest) string {
	switch {
	case req.Put != nil:
		return "Put"
	case req.DeleteRange != nil:
		return "DeleteRange"
	case req.Txn != nil:
		return "Txn"
	case req.Range != nil:
		return "Range"
	case req.Compaction != nil:
		return "Compaction"
	case req.LeaseGrant != nil:
		return "LeaseGrant"
	case req.LeaseRevoke != nil:
		return "LeaseRevoke"
	case req.LeaseCheckpoint != nil:
		return "LeaseCheckpoint"
	case req.Alarm != nil:
		return "Alarm"
	case req.ClusterMemberAttrSet != nil:
		return "ClusterMemberAttrSet"
	case req.ClusterVersionSet != nil:
		return "ClusterVersionSet"
	case req.Authenticate != nil:
		return "Authenticate"
	}
	// The auth requests are named after their field: AuthEnable,
	// AuthUserAdd, AuthRoleGrantPermission, ...
	var name string
	req.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.Message() != nil && strings.HasPrefix(string(fd.Name()), "auth_") {
			name = string(fd.Message().Name())
			name = strings.TrimSuffix(name, "Request")
			return false
		}
		return true
	})
	if name == "" {
		return "unknown"
	}
	return name
}
