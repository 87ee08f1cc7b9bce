package membership

import (
	"fmt"
	"testing"
	"time"
)

// The expected IDs were read from the log of an official etcd 3.7.3 started
// with --initial-cluster m1=http://127.0.0.1:41380,m2=http://127.0.0.1:42380
// --initial-cluster-token tok.
func TestIDsAreEtcds(t *testing.T) {
	m1 := MemberID([]string{"http://127.0.0.1:41380"}, "tok", nil)
	m2 := MemberID([]string{"http://127.0.0.1:42380"}, "tok", nil)
	for _, c := range []struct {
		name string
		got  uint64
		want string
	}{
		{"m1", m1, "8027cae8a0e355ea"},
		{"m2", m2, "30cf319feadb6b70"},
		{"cluster", ClusterID([]uint64{m2, m1}), "6ed7fff4f4841518"},
	} {
		if got := fmt.Sprintf("%x", c.got); got != c.want {
			t.Errorf("%s ID = %s, want etcd's %s", c.name, got, c.want)
		}
	}
}

func TestMemberIDOfAddedMemberDependsOnTime(t *testing.T) {
	urls := []string{"http://10.0.0.4:2380"}
	t1, t2 := time.Unix(1000, 0), time.Unix(1001, 0)
	if MemberID(urls, "tok", &t1) == MemberID(urls, "tok", &t2) {
		t.Error("re-adding the same peer URLs a second later gave the same member ID")
	}
	if MemberID(urls, "tok", nil) == MemberID(urls, "other", nil) {
		t.Error("the cluster token does not change the member ID")
	}
	if MemberID([]string{"http://a:1", "http://b:1"}, "", nil) != MemberID([]string{"http://b:1", "http://a:1"}, "", nil) {
		t.Error("the order of peer URLs changes the member ID")
	}
}
