package member

import (
	"cmp"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/metrics"
	"github.com/kvorum/kvorum/internal/version"
)

// statusPeerTimeout bounds the question to each other member for its
// applied index: a member that does not answer within it shows as
// unknown rather than holding the page up.
const statusPeerTimeout = time.Second

// statusRefresh is how often the page reloads itself by default.
const statusRefresh = 5 * time.Second

// statusReport is what /status shows, as HTML or, with ?format=json, as
// JSON. It is one member's view: the leader knows every member's raft
// progress, a follower only its own indexes and what the others answer.
type statusReport struct {
	GeneratedAt time.Time  `json:"generated_at"`
	Version     string     `json:"version"`
	ClusterID   string     `json:"cluster_id"`
	Member      memberRef  `json:"member"`
	Leader      *memberRef `json:"leader"` // nil while no leader is known
	IsLeader    bool       `json:"is_leader"`
	RaftTerm    uint64     `json:"raft_term"`
	RaftIndex   uint64     `json:"raft_index"` // this member's commit index
	RaftApplied uint64     `json:"raft_applied_index"`
	// ProgressKnown says whether the members' raft match and lag are
	// known here (only on the leader).
	ProgressKnown bool `json:"progress_known"`
	// LeaderStatusURL is the leader's page, where a follower sends the
	// reader for progress and lag.
	LeaderStatusURL string `json:"leader_status_url,omitempty"`

	Quorum       quorumStatus   `json:"quorum"`
	Members      []memberStatus `json:"members"`
	Alarms       []alarmStatus  `json:"alarms"`
	DB           dbStatus       `json:"db"`
	Certificates []certStatus   `json:"certificates"`
	CertError    string         `json:"certificates_error,omitempty"`
	Backup       backupStatus   `json:"backup"`

	Refresh int `json:"-"` // seconds between reloads of the HTML page; 0: none
}

type memberRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type quorumStatus struct {
	Voters    int `json:"voting_members"`
	Quorum    int `json:"quorum"`
	Reachable int `json:"reachable"`
	Tolerated int `json:"failures_tolerated"`
	// EvenWarning is set for an even voter count, which tolerates no more
	// failures than one voter fewer.
	EvenWarning bool `json:"even_member_count"`
}

type memberStatus struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	Learner    bool     `json:"is_learner"`
	Started    bool     `json:"started"` // it has published its name (etcd's "unstarted" otherwise)
	Self       bool     `json:"self"`
	Leader     bool     `json:"leader"`
	// Reachable is "self", "yes" (this member's raft stream to it is up)
	// or "no", with ReachError saying why.
	Reachable  string `json:"reachable"`
	ReachError string `json:"reachable_error,omitempty"`
	// Match, Lag and Replication come from the leader's raft progress:
	// the last entry known in the member's log, how many entries of the
	// leader's log it lacks, and how the leader sends to it.
	Match       *uint64 `json:"raft_match,omitempty"`
	Lag         *uint64 `json:"lag,omitempty"`
	Replication string  `json:"replication,omitempty"`
	// Applied is the member's applied index as it answered; AppliedError
	// says why it is unknown.
	Applied      *uint64 `json:"applied_index,omitempty"`
	AppliedError string  `json:"applied_index_error,omitempty"`
}

type alarmStatus struct {
	MemberID   string `json:"member_id"`
	MemberName string `json:"member_name"`
	Alarm      string `json:"alarm"`
}

type dbStatus struct {
	Size  int64 `json:"size"`
	InUse int64 `json:"size_in_use"`
	Quota int64 `json:"quota"` // 0: no quota
}

type certStatus struct {
	File     string    `json:"file"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
	DaysLeft int       `json:"days_left"`
	Soon     bool      `json:"expires_soon"` // within the warning window, or expired
}

type backupStatus struct {
	Scheduled bool   `json:"scheduled"`
	Dir       string `json:"dir,omitempty"`
	Interval  string `json:"interval,omitempty"`
	Retention int    `json:"retention,omitempty"`
	// Last is this member's last attempt; nil if it took none (only the
	// leader takes scheduled backups).
	Last        *backupAttempt `json:"last,omitempty"`
	LastSuccess *time.Time     `json:"last_success,omitempty"`
}

type backupAttempt struct {
	At       time.Time `json:"at"`
	OK       bool      `json:"ok"`
	Path     string    `json:"path,omitempty"`
	Revision int64     `json:"revision,omitempty"`
	Size     int64     `json:"size,omitempty"`
	Error    string    `json:"error,omitempty"`
}

func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

// statusReport gathers the page's content. It asks the other members for
// their applied index (each within statusPeerTimeout); everything else is
// this member's own state.
func (m *Member) statusReport(r *http.Request) statusReport {
	s := m.Server
	now := time.Now()
	self, lead := s.MemberID(), s.Leader()
	repl := s.Replication()
	rep := statusReport{
		GeneratedAt:   now.UTC(),
		Version:       version.Version,
		ClusterID:     hexID(s.ClusterID()),
		Member:        memberRef{ID: hexID(self)},
		IsLeader:      lead != 0 && lead == self,
		RaftTerm:      repl.Term,
		RaftIndex:     repl.Commit,
		RaftApplied:   repl.Applied,
		ProgressKnown: repl.Progress != nil,
		Quorum:        quorumOf(s.Quorum()),
		Alarms:        []alarmStatus{},
		Certificates:  []certStatus{},
	}
	peers := make(map[uint64]bool)
	peerErr := make(map[uint64]string)
	for _, p := range s.Peers() {
		peers[p.ID] = p.Connected
		peerErr[p.ID] = p.LastError
	}
	indexes := s.PeerIndexes(r.Context(), statusPeerTimeout)
	names := make(map[uint64]string)
	var list []*pb.Member
	if resp, err := s.MemberList(r.Context(), &pb.MemberListRequest{}); err == nil {
		list = resp.GetMembers()
	}
	for _, pm := range list {
		id := pm.GetID()
		names[id] = pm.GetName()
		ms := memberStatus{
			ID: hexID(id), Name: pm.GetName(),
			PeerURLs: nonNil(pm.GetPeerURLs()), ClientURLs: nonNil(pm.GetClientURLs()),
			Learner: pm.GetIsLearner(), Started: pm.GetName() != "",
			Self: id == self, Leader: id == lead,
		}
		switch {
		case ms.Self:
			ms.Reachable = "self"
			ms.Applied = ptr(repl.Applied)
		case peers[id]:
			ms.Reachable = "yes"
		default:
			ms.Reachable = "no"
			ms.ReachError = peerErr[id]
		}
		if ix, ok := indexes[id]; ok {
			if ix.Err != nil {
				ms.AppliedError = ix.Err.Error()
			} else {
				ms.Applied = ptr(ix.Applied)
			}
		}
		if pr, ok := repl.Progress[id]; ok {
			ms.Match = ptr(pr.Match)
			ms.Replication = pr.State
			if repl.LastIndex >= pr.Match {
				ms.Lag = ptr(repl.LastIndex - pr.Match)
			}
		}
		rep.Members = append(rep.Members, ms)
		if ms.Self {
			rep.Member.Name = ms.Name
		}
		if ms.Leader && !ms.Self && len(ms.ClientURLs) > 0 {
			rep.LeaderStatusURL = ms.ClientURLs[0] + "/status"
		}
	}
	slices.SortFunc(rep.Members, func(a, b memberStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	if lead != 0 {
		rep.Leader = &memberRef{ID: hexID(lead), Name: names[lead]}
	}
	for _, a := range s.Alarms() {
		rep.Alarms = append(rep.Alarms, alarmStatus{MemberID: hexID(a.GetMemberID()), MemberName: names[a.GetMemberID()], Alarm: a.GetAlarm().String()})
	}
	if st, err := s.Status(r.Context()); err == nil {
		rep.DB = dbStatus{Size: st.GetDbSize(), InUse: st.GetDbSizeInUse(), Quota: st.GetDbSizeQuota()}
	}
	if es, err := certExpiries(m.certFiles); err != nil {
		rep.CertError = err.Error()
	} else {
		for _, e := range es {
			left := e.notAfter.Sub(now)
			rep.Certificates = append(rep.Certificates, certStatus{File: e.file, Subject: e.subject, NotAfter: e.notAfter.UTC(),
				DaysLeft: int(left.Hours() / 24), Soon: left < certWarnBefore})
		}
	}
	rep.Backup = m.backupStatus()
	rep.Refresh = int(statusRefresh / time.Second)
	if v := r.URL.Query().Get("refresh"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 3600 {
			rep.Refresh = n
		}
	}
	return rep
}

func (m *Member) backupStatus() backupStatus {
	b := backupStatus{Scheduled: m.backups.Interval > 0 && m.backups.Dir != ""}
	if !b.Scheduled {
		return b
	}
	b.Dir, b.Interval, b.Retention = m.backups.Dir, m.backups.Interval.String(), m.backups.Retention
	last, ok := m.Server.LastBackup()
	if last != nil {
		a := &backupAttempt{At: last.At.UTC(), OK: last.Err == nil}
		if last.Err != nil {
			a.Error = last.Err.Error()
		} else {
			a.Path, a.Revision, a.Size = last.Saved.Path, last.Saved.Revision, last.Saved.Size
		}
		b.Last = a
	}
	if !ok.IsZero() {
		t := ok.UTC()
		b.LastSuccess = &t
	}
	return b
}

func quorumOf(c metrics.Cluster) quorumStatus {
	return quorumStatus{Voters: c.Voters, Quorum: c.Quorum, Reachable: c.Reachable, Tolerated: c.Tolerated,
		EvenWarning: c.Voters > 0 && c.Voters%2 == 0}
}

func ptr[T any](v T) *T { return &v }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// handleStatus serves the status page: HTML that reloads itself every few
// seconds (?refresh=N seconds, 0 for never), or the same content as JSON
// with ?format=json. The page runs no script.
func (m *Member) handleStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	rep := m.statusReport(r)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch f := r.URL.Query().Get("format"); f {
	case "json":
		h.Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	case "", "html":
		// No script, no outside resources, no framing.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		h.Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, rep); err != nil {
			m.lg.Warn("render /status", "err", err)
		}
	default:
		http.Error(w, fmt.Sprintf("unknown format %q: use html (the default) or json", f), http.StatusBadRequest)
	}
}

//go:embed status.html
var statusHTML string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":   humanBytes,
	"percent": func(a, b int64) string { return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(b)) },
	"since":   func(t time.Time) string { return roughDuration(time.Since(t)) + " ago" },
	"deref":   func(p *uint64) uint64 { return *p },
}).Parse(statusHTML))

// humanBytes writes n in binary units, as operators size quotas.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// roughDuration is d to the largest whole unit, for "x ago".
func roughDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
