package admission

import (
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/auth"
)

// fuzzAuth is access control that is on, knows one user, and answers
// lease lookups, so the authorize stage runs its whole path.
type fuzzAuth struct{}

func (fuzzAuth) AuthEnabled() bool                        { return true }
func (fuzzAuth) AuthRevision() uint64                     { return 1 }
func (fuzzAuth) Identify(context.Context) (string, error) { return "alice", nil }
func (fuzzAuth) CheckAccess(string, auth.Access) error    { return nil }
func (fuzzAuth) UserHasRole(string, string) bool          { return false }
func (fuzzAuth) LeaseKeys(int64) ([][]byte, error)        { return [][]byte{[]byte("k")}, nil }
func (fuzzAuth) AllowGrowth(int) error                    { return nil }

// FuzzAdmit decodes arbitrary bytes as each kind of client request and
// passes what decodes through admission: no input may panic it.
func FuzzAdmit(f *testing.F) {
	seed := func(m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a")}}, Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b")}}}}}}}}})
	seed(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, SortOrder: 2})
	seed(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("a")}}})
	seed(&pb.LeaseRevokeRequest{ID: 7})
	c := New(Config{MaxTxnOps: 8, Auth: fuzzAuth{}, Quota: fuzzAuth{}})
	kinds := []func() proto.Message{
		func() proto.Message { return &pb.RangeRequest{} }, func() proto.Message { return &pb.PutRequest{} },
		func() proto.Message { return &pb.DeleteRangeRequest{} }, func() proto.Message { return &pb.TxnRequest{} },
		func() proto.Message { return &pb.WatchRequest{} }, func() proto.Message { return &pb.LeaseRevokeRequest{} },
		func() proto.Message { return &pb.LeaseGrantRequest{} }, func() proto.Message { return &pb.AlarmRequest{} },
		func() proto.Message { return &pb.AuthUserGetRequest{} }, func() proto.Message { return &pb.MemberAddRequest{} },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range kinds {
			m := k()
			if proto.Unmarshal(data, m) != nil {
				continue
			}
			_, _ = c.Admit(context.Background(), "/fuzz", m)
		}
	})
}
