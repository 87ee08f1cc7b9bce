package admission

import (
	"context"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/mvcc"
)

func TestAdmitValidatesAsEtcd(t *testing.T) {
	c := New(Config{MaxTxnOps: 2})
	put := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k)}}}
	}
	for _, tc := range []struct {
		name string
		req  proto.Message
		want error // nil: admitted
	}{
		{"range", &pb.RangeRequest{Key: []byte("a")}, nil},
		{"range without key", &pb.RangeRequest{}, mvcc.ErrEmptyKey},
		{"range with unknown sort order", &pb.RangeRequest{Key: []byte("a"), SortOrder: 9}, mvcc.ErrInvalidSortOption},
		{"put", &pb.PutRequest{Key: []byte("a"), Value: []byte("v")}, nil},
		{"put without key", &pb.PutRequest{Value: []byte("v")}, mvcc.ErrEmptyKey},
		{"put with ignore_value and a value", &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}, mvcc.ErrValueProvided},
		{"put with ignore_lease and a lease", &pb.PutRequest{Key: []byte("a"), Lease: 5, IgnoreLease: true}, mvcc.ErrLeaseProvided},
		{"delete without key", &pb.DeleteRangeRequest{}, mvcc.ErrEmptyKey},
		{"txn", &pb.TxnRequest{Success: []*pb.RequestOp{put("a"), put("b")}}, nil},
		{"txn over --max-txn-ops", &pb.TxnRequest{Success: []*pb.RequestOp{put("a"), put("b"), put("c")}}, mvcc.ErrTooManyOps},
		{"txn putting one key twice", &pb.TxnRequest{Success: []*pb.RequestOp{put("a"), put("a")}}, mvcc.ErrDuplicateKey},
		{"lease grant", &pb.LeaseGrantRequest{TTL: 60}, nil},
		{"lease grant over the largest TTL", &pb.LeaseGrantRequest{TTL: lease.MaxTTL + 1}, lease.ErrTTLTooLarge},
		{"watch", &pb.WatchRequest{}, nil},
		{"member add", &pb.MemberAddRequest{}, nil},
		{"a type without a rule", &emptypb.Empty{}, ErrNoRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Admit(context.Background(), "/test/Method", tc.req)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}
