package auth

import (
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
)

// An etcd role's permissions come sorted by key alone and may repeat a
// range; imported, they are in the Store's order, one per range, granting
// what they granted together.
func TestMergePermsKeepsAccessInTheStoresOrder(t *testing.T) {
	p := func(key, end string, typ authpb.Permission_Type) *authpb.Permission {
		return &authpb.Permission{Key: []byte(key), RangeEnd: []byte(end), PermType: typ}
	}
	got := mergePerms([]*authpb.Permission{
		p("a", "b", authpb.Permission_READ), p("a", "", authpb.Permission_WRITE),
		p("a", "b", authpb.Permission_WRITE), p("c", "", authpb.Permission_READ),
		p("c", "", authpb.Permission_READ),
	})
	want := []*authpb.Permission{p("a", "", authpb.Permission_WRITE), p("a", "b", authpb.Permission_READWRITE), p("c", "", authpb.Permission_READ)}
	if len(got) != len(want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
	for i := range want {
		if comparePerm(got[i], want[i]) != 0 || got[i].GetPermType() != want[i].GetPermType() {
			t.Errorf("permission %d: %v, want %v", i, got[i], want[i])
		}
	}
}
