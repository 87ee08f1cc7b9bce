package ctl

import (
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestQuorumSummary(t *testing.T) {
	member := func(id uint64, name, url string, learner bool) *pb.Member {
		return &pb.Member{ID: id, Name: name, ClientURLs: []string{url}, IsLearner: learner}
	}
	three := []*pb.Member{member(1, "m1", "u1", false), member(2, "m2", "u2", false), member(3, "m3", "u3", false)}
	up := func(urls ...string) []epHealth {
		var hs []epHealth
		for _, u := range urls {
			hs = append(hs, epHealth{Ep: u, Health: true})
		}
		return hs
	}
	for _, tc := range []struct {
		name    string
		members []*pb.Member
		health  []epHealth
		want    []string
	}{
		{"all up", three, up("u1", "u2", "u3"), []string{"cluster: 3 voting members, quorum 2, 3 healthy: tolerates 1 more failure"}},
		{"one down", three, up("u1", "u2"), []string{
			"cluster: 3 voting members, quorum 2, 2 healthy: tolerates 0 more failures",
			"warning: 1 voting member down: m3"}},
		{"quorum lost", three, up("u1"), []string{
			"cluster: 3 voting members, quorum 2, 1 healthy: quorum lost, writes fail",
			"warning: 2 voting members down: m2, m3"}},
		{"even, with a learner", append(three[:3:3], member(4, "m4", "u4", false), member(5, "", "u5", true)),
			up("u1", "u2", "u3", "u4"), []string{
				"cluster: 4 voting members, quorum 3, 4 healthy: tolerates 1 more failure",
				"warning: 4 voting members tolerate no more failures than 3 would; prefer an odd number"}},
	} {
		if got := quorumSummary(tc.members, tc.health); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
