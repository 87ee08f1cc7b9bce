package member_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/member"
	"github.com/kvorum/kvorum/internal/testcluster"
)

// statusJSON is the part of /status?format=json the tests read.
type statusJSON struct {
	ClusterID string `json:"cluster_id"`
	Member    struct {
		ID, Name string
	} `json:"member"`
	Leader *struct {
		ID, Name string
	} `json:"leader"`
	IsLeader        bool   `json:"is_leader"`
	RaftTerm        uint64 `json:"raft_term"`
	RaftApplied     uint64 `json:"raft_applied_index"`
	ProgressKnown   bool   `json:"progress_known"`
	LeaderStatusURL string `json:"leader_status_url"`
	Quorum          struct {
		Voters    int `json:"voting_members"`
		Quorum    int `json:"quorum"`
		Reachable int `json:"reachable"`
		Tolerated int `json:"failures_tolerated"`
	} `json:"quorum"`
	Members []struct {
		ID         string   `json:"id"`
		Name       string   `json:"name"`
		PeerURLs   []string `json:"peer_urls"`
		ClientURLs []string `json:"client_urls"`
		Started    bool     `json:"started"`
		Learner    bool     `json:"is_learner"`
		Self       bool     `json:"self"`
		Leader     bool     `json:"leader"`
		Reachable  string   `json:"reachable"`
		Match      *uint64  `json:"raft_match"`
		Lag        *uint64  `json:"lag"`
		Applied    *uint64  `json:"applied_index"`
	} `json:"members"`
	Alarms []struct{ Alarm string } `json:"alarms"`
	DB     struct {
		Size  int64 `json:"size"`
		InUse int64 `json:"size_in_use"`
		Quota int64 `json:"quota"`
	} `json:"db"`
	Backup struct {
		Scheduled bool `json:"scheduled"`
		Last      *struct {
			OK       bool   `json:"ok"`
			Path     string `json:"path"`
			Revision int64  `json:"revision"`
		} `json:"last"`
	} `json:"backup"`
}

func fetch(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func fetchStatus(t *testing.T, base string) statusJSON {
	t.Helper()
	code, body := fetch(t, base+"/status?format=json")
	var st statusJSON
	if code != http.StatusOK {
		t.Fatalf("GET %s/status?format=json = %d\n%s", base, code, body)
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET %s/status?format=json: %v\n%s", base, err, body)
	}
	return st
}

func freeURL(t *testing.T) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// TestStatusPageReportsTheCluster checks the page's content on the leader
// and on a follower of a three-member cluster, on the client URL and on
// --listen-metrics-urls, against what the cluster reports through
// clientv3.
func TestStatusPageReportsTheCluster(t *testing.T) {
	metricsURLs := make(map[string]string)
	backupDir := t.TempDir()
	c := testcluster.Start(t, testcluster.Options{
		Args: []string{"--backup-dir", backupDir, "--backup-interval", "200ms", "--backup-retention", "1"},
		Configure: func(cfg *config.Config) {
			u := freeURL(t)
			cfg.ListenMetricsURLs = []url.URL{u}
			metricsURLs[cfg.Name] = u.String()
		},
	})
	leader, _ := c.WaitLeader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := leader.Client().Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitApplied(10 * time.Second)
	ls, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	hex := func(id uint64) string { return strconv.FormatUint(id, 16) }

	// The leader's page: every member's progress, and, once an interval
	// passed, a verified backup holding the puts (revision 21 on).
	var st statusJSON
	deadline := time.Now().Add(20 * time.Second)
	for {
		st = fetchStatus(t, leader.ClientURL)
		if b := st.Backup.Last; b != nil && b.OK && b.Revision >= 21 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backup of revision 21 or later on the leader's page within 20s: %+v", st.Backup.Last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.ClusterID != hex(ls.Header.GetClusterId()) || st.Member.ID != hex(leader.ID()) || st.Member.Name != leader.Name {
		t.Errorf("leader's page: cluster %s member %+v, want cluster %x member %s %x", st.ClusterID, st.Member, ls.Header.GetClusterId(), leader.Name, leader.ID())
	}
	if st.Leader == nil || st.Leader.Name != leader.Name || !st.IsLeader || st.RaftTerm != ls.RaftTerm || !st.ProgressKnown {
		t.Errorf("leader's page: leader %+v is_leader %v term %d progress %v; want %s, term %d", st.Leader, st.IsLeader, st.RaftTerm, st.ProgressKnown, leader.Name, ls.RaftTerm)
	}
	if q := st.Quorum; q.Voters != 3 || q.Quorum != 2 || q.Reachable != 3 || q.Tolerated != 1 {
		t.Errorf("leader's page: quorum %+v, want 3 voters, quorum 2, 3 reachable, 1 tolerated", q)
	}
	if len(st.Members) != 3 {
		t.Fatalf("leader's page lists %d members, want 3", len(st.Members))
	}
	for i, m := range st.Members {
		want := c.Members[i] // both sorted by name
		if m.Name != want.Name || m.ID != hex(want.ID()) || !m.Started || m.Learner ||
			len(m.PeerURLs) != 1 || m.PeerURLs[0] != want.PeerURL || len(m.ClientURLs) != 1 || m.ClientURLs[0] != want.ClientURL {
			t.Errorf("leader's page, member %d: %+v, want %s %x %s %s", i, m, want.Name, want.ID(), want.PeerURL, want.ClientURL)
		}
		if m.Self != (want == leader) || m.Leader != (want == leader) {
			t.Errorf("leader's page: %s self %v leader %v", m.Name, m.Self, m.Leader)
		}
		if wantReach := map[bool]string{true: "self", false: "yes"}[want == leader]; m.Reachable != wantReach {
			t.Errorf("leader's page: %s reachable %q, want %q", m.Name, m.Reachable, wantReach)
		}
		if m.Match == nil || m.Lag == nil || m.Applied == nil {
			t.Errorf("leader's page: %s lacks match, lag or applied index: %+v", m.Name, m)
		} else if *m.Match < ls.RaftIndex-*m.Lag || *m.Applied < 20 {
			t.Errorf("leader's page: %s match %d lag %d applied %d after 20 puts at commit index %d", m.Name, *m.Match, *m.Lag, *m.Applied, ls.RaftIndex)
		}
	}
	if len(st.Alarms) != 0 || st.DB.Size <= 0 || st.DB.InUse <= 0 || st.DB.Quota != ls.DbSizeQuota {
		t.Errorf("leader's page: alarms %v db %+v; want none and sizes as Status (%d)", st.Alarms, st.DB, ls.DbSizeQuota)
	}
	if !st.Backup.Scheduled || filepath.Dir(st.Backup.Last.Path) != backupDir {
		t.Errorf("leader's page: backups scheduled %v, last %+v, want a file in %s", st.Backup.Scheduled, st.Backup.Last, backupDir)
	}

	// A follower's page, on both of its URLs: its own indexes and the
	// others' applied indexes, no progress, a link to the leader's page.
	f := c.Followers(leader)[0]
	for _, base := range []string{f.ClientURL, metricsURLs[f.Name]} {
		fs := fetchStatus(t, base)
		if fs.Member.Name != f.Name || fs.IsLeader || fs.Leader == nil || fs.Leader.Name != leader.Name || fs.ProgressKnown ||
			fs.LeaderStatusURL != leader.ClientURL+"/status" || fs.RaftApplied < 20 {
			t.Errorf("%s/status: member %+v is_leader %v leader %+v progress %v leader page %q applied %d",
				base, fs.Member, fs.IsLeader, fs.Leader, fs.ProgressKnown, fs.LeaderStatusURL, fs.RaftApplied)
		}
		for _, m := range fs.Members {
			if m.Match != nil || m.Lag != nil || m.Applied == nil {
				t.Errorf("%s/status: %s has match %v lag %v applied %v; a follower knows applied indexes only", base, m.Name, m.Match, m.Lag, m.Applied)
			}
		}
		code, page := fetch(t, base+"/status")
		if code != http.StatusOK || !strings.Contains(page, `data-leader-name="`+leader.Name+`"`) || !strings.Contains(page, `id="progress-note"`) {
			t.Errorf("%s/status = %d, want a page naming leader %s with the note on progress:\n%s", base, code, leader.Name, page)
		}
	}
	if code, _ := fetch(t, f.ClientURL+"/status?format=yaml"); code != http.StatusBadRequest {
		t.Errorf("/status?format=yaml = %d, want 400", code)
	}

	// A stopped member shows as unreachable, with no applied index, and
	// the cluster tolerates no more failures.
	other := c.Followers(leader)[1]
	other.Stop()
	deadline = time.Now().Add(20 * time.Second)
	for {
		st = fetchStatus(t, leader.ClientURL)
		var down bool
		for _, m := range st.Members {
			if m.Name == other.Name {
				down = m.Reachable == "no" && m.Applied == nil
			}
		}
		if down && st.Quorum.Tolerated == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader's page 20s after %s stopped: quorum %+v members %+v", other.Name, st.Quorum, st.Members)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStatusPageBeforeQuorum checks that the page answers on
// --listen-metrics-urls while the member waits for the rest of its
// cluster, and says that no leader is known.
func TestStatusPageBeforeQuorum(t *testing.T) {
	metricsURL, client, peer := freeURL(t), freeURL(t), freeURL(t)
	others := []url.URL{freeURL(t), freeURL(t)}
	cfg, err := config.Parse([]string{
		"--name", "m1", "--data-dir", t.TempDir(),
		"--listen-client-urls", client.String(), "--advertise-client-urls", client.String(),
		"--listen-peer-urls", peer.String(), "--initial-advertise-peer-urls", peer.String(),
		"--initial-cluster", fmt.Sprintf("m1=%s,m2=%s,m3=%s", peer.String(), others[0].String(), others[1].String()),
		"--listen-metrics-urls", metricsURL.String(),
		"--heartbeat-interval", "50", "--election-timeout", "500",
	}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m, err := member.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	base := metricsURL.String()
	st := fetchStatus(t, base)
	if st.Leader != nil || st.Quorum.Voters != 3 || st.Quorum.Tolerated != 0 {
		t.Errorf("before quorum: leader %+v quorum %+v, want none and 3 voters tolerating 0", st.Leader, st.Quorum)
	}
	code, page := fetch(t, base+"/status")
	if code != http.StatusOK || !strings.Contains(page, `id="leader" data-leader-id="" data-leader-name=""`) {
		t.Errorf("/status before quorum = %d, want a page saying no leader is known:\n%s", code, page)
	}
}
