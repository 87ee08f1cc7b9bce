package member

import (
	"testing"

	"github.com/kvorum/kvorum/internal/metrics"
)

func TestQuorumLineWarnsOnEvenMemberCount(t *testing.T) {
	for _, tc := range []struct {
		q    metrics.Cluster
		want string
	}{
		{metrics.Cluster{Voters: 3, Quorum: 2, Reachable: 3, Tolerated: 1},
			"[+]quorum ok: 3 voting members, quorum 2, 3 reachable, 1 more failures tolerated\n"},
		{metrics.Cluster{Voters: 5, Quorum: 3, Reachable: 3, Tolerated: 0},
			"[+]quorum ok: 5 voting members, quorum 3, 3 reachable, 0 more failures tolerated\n"},
		{metrics.Cluster{Voters: 4, Quorum: 3, Reachable: 4, Tolerated: 1},
			"[+]quorum ok: 4 voting members, quorum 3, 4 reachable, 1 more failures tolerated; warning: an even member count tolerates no more failures than 3 members\n"},
		{metrics.Cluster{Voters: 1, Quorum: 1, Reachable: 1},
			"[+]quorum ok: 1 voting members, quorum 1, 1 reachable, 0 more failures tolerated\n"},
	} {
		if got := formatQuorum(tc.q); got != tc.want {
			t.Errorf("formatQuorum(%+v) =\n%q\nwant\n%q", tc.q, got, tc.want)
		}
	}
}
