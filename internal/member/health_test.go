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
			"[+]quorum ok: voting members 3, quorum 2, reachable 3, failures tolerated 1\n"},
		{metrics.Cluster{Voters: 5, Quorum: 3, Reachable: 3, Tolerated: 0},
			"[+]quorum ok: voting members 5, quorum 3, reachable 3, failures tolerated 0\n"},
		{metrics.Cluster{Voters: 4, Quorum: 3, Reachable: 4, Tolerated: 1},
			"[+]quorum ok: voting members 4, quorum 3, reachable 4, failures tolerated 1; warning: an even member count tolerates no more failures than 3 members\n"},
		{metrics.Cluster{Voters: 1, Quorum: 1, Reachable: 1},
			"[+]quorum ok: voting members 1, quorum 1, reachable 1, failures tolerated 0\n"},
	} {
		if got := formatQuorum(tc.q); got != tc.want {
			t.Errorf("formatQuorum(%+v) =\n%q\nwant\n%q", tc.q, got, tc.want)
		}
	}
}
