package admission

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/auth"
	"github.com/kvorum/kvorum/internal/lease"
)

// Auth is what the authenticate and authorize stages ask of the member.
type Auth interface {
	AuthEnabled() bool
	AuthRevision() uint64
	// Identify names the request's user ("" for none) from its token or
	// its client certificate.
	Identify(ctx context.Context) (string, error)
	CheckAccess(user string, a auth.Access) error
	UserHasRole(user, role string) bool
	LeaseKeys(id int64) ([][]byte, error)
}

// Identity is who a request was admitted for, and at which auth revision
// its access was checked. Proposals carry both, so a request checked
// under permissions that changed before it applied is refused.
type Identity struct {
	User     string
	Revision uint64
}

type identityKey struct{}

// IdentityFrom returns the identity admission recorded in ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// authorize checks msg's access for the identified user.
type authorizeFunc func(a Auth, user string, msg proto.Message) error

// keys checks reads and writes of key ranges.
func keys(a Auth, user string, read, write []auth.Range) error {
	return a.CheckAccess(user, auth.Access{Read: read, Write: write})
}

// admin requires the root role.
func admin(a Auth, user string, _ proto.Message) error {
	return a.CheckAccess(user, auth.Access{Admin: true})
}

func rangeAccess(a Auth, user string, r *pb.RangeRequest) error {
	return keys(a, user, []auth.Range{{Key: r.GetKey(), End: r.GetRangeEnd()}}, nil)
}

func putAccess(a Auth, user string, r *pb.PutRequest) error {
	var read []auth.Range
	if r.GetPrevKv() {
		read = []auth.Range{{Key: r.GetKey()}}
	}
	return keys(a, user, read, []auth.Range{{Key: r.GetKey()}})
}

func deleteAccess(a Auth, user string, r *pb.DeleteRangeRequest) error {
	rg := auth.Range{Key: r.GetKey(), End: r.GetRangeEnd()}
	var read []auth.Range
	if r.GetPrevKv() {
		read = []auth.Range{rg}
	}
	return keys(a, user, read, []auth.Range{rg})
}

// txnAccess checks every compare (a read) and every op of both branches,
// nested txns included: a txn may run either branch.
func txnAccess(a Auth, user string, t *pb.TxnRequest) error {
	var read, write []auth.Range
	var walk func(t *pb.TxnRequest)
	walk = func(t *pb.TxnRequest) {
		for _, c := range t.GetCompare() {
			read = append(read, auth.Range{Key: c.GetKey(), End: c.GetRangeEnd()})
		}
		for _, ops := range [][]*pb.RequestOp{t.GetSuccess(), t.GetFailure()} {
			for _, op := range ops {
				switch {
				case op.GetRequestRange() != nil:
					r := op.GetRequestRange()
					read = append(read, auth.Range{Key: r.GetKey(), End: r.GetRangeEnd()})
				case op.GetRequestPut() != nil:
					p := op.GetRequestPut()
					write = append(write, auth.Range{Key: p.GetKey()})
					if p.GetPrevKv() {
						read = append(read, auth.Range{Key: p.GetKey()})
					}
				case op.GetRequestDeleteRange() != nil:
					d := op.GetRequestDeleteRange()
					write = append(write, auth.Range{Key: d.GetKey(), End: d.GetRangeEnd()})
					if d.GetPrevKv() {
						read = append(read, auth.Range{Key: d.GetKey(), End: d.GetRangeEnd()})
					}
				case op.GetRequestTxn() != nil:
					walk(op.GetRequestTxn())
				}
			}
		}
	}
	walk(t)
	return keys(a, user, read, write)
}

// watchAccess checks a watch creation: reading its range.
func watchAccess(a Auth, user string, r *pb.WatchRequest) error {
	c := r.GetCreateRequest()
	if c == nil {
		return nil
	}
	key := c.GetKey()
	if len(key) == 0 {
		key = []byte{0}
	}
	return keys(a, user, []auth.Range{{Key: key, End: c.GetRangeEnd()}}, nil)
}

// leaseKeysAccess checks access to every key attached to a lease: writing
// them to revoke it, reading them to see its keys.
func leaseKeysAccess(a Auth, user string, id int64, write bool) error {
	ks, err := a.LeaseKeys(id)
	if errors.Is(err, lease.ErrNotFound) {
		return nil // the request answers "not found" itself
	}
	if err != nil {
		return err
	}
	rs := make([]auth.Range, len(ks))
	for i, k := range ks {
		rs[i] = auth.Range{Key: k}
	}
	if write {
		return keys(a, user, nil, rs)
	}
	return keys(a, user, rs, nil)
}
