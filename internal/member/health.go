package member

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/metrics"
	"github.com/kvorum/kvorum/internal/server"
)

// healthTimeout bounds one health check that needs the cluster (a
// linearizable read waits for the leader).
const healthTimeout = 5 * time.Second

// check is one named health check; nil means it passed.
type check struct {
	name string
	run  func(ctx context.Context) error
}

// healthChecks are the kube-style checks of /livez and /readyz, with
// etcd's names, plus Kvorum's quorum report on /readyz.
func healthChecks(s *server.Server) (livez, readyz []check) {
	serializable := check{"serializable_read", func(ctx context.Context) error { return readCheck(ctx, s, true) }}
	livez = []check{serializable}
	readyz = []check{
		{"data_corruption", func(context.Context) error {
			for _, a := range s.Alarms() {
				if a.GetAlarm() == pb.AlarmType_CORRUPT {
					return fmt.Errorf("alarm activated: %s", a.GetAlarm())
				}
			}
			return nil
		}},
		serializable,
		{"linearizable_read", func(ctx context.Context) error { return readCheck(ctx, s, false) }},
		{"non_learner", func(context.Context) error {
			if s.IsLearner() {
				return errors.New("this member is a learner: it serves no client requests until promoted")
			}
			return nil
		}},
	}
	return livez, readyz
}

func readCheck(ctx context.Context, s *server.Server, serializable bool) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	_, err := s.Range(ctx, &pb.RangeRequest{Key: []byte("health"), KeysOnly: true, Limit: 1, Serializable: serializable})
	return err
}

// quorumLine is Kvorum's addition to /readyz?verbose: the quorum
// arithmetic of the voting members as this member sees them. It is a
// report, not a check: it never fails the endpoint (a follower may be cut
// from other followers and still serve correctly through the leader).
func quorumLine(s *server.Server) string { return formatQuorum(s.Quorum()) }

func formatQuorum(q metrics.Cluster) string {
	line := fmt.Sprintf("[+]quorum ok: voting members %d, quorum %d, reachable %d, failures tolerated %d",
		q.Voters, q.Quorum, q.Reachable, q.Tolerated)
	if q.Voters > 0 && q.Voters%2 == 0 {
		line += fmt.Sprintf("; warning: an even member count tolerates no more failures than %d members", q.Voters-1)
	}
	return line + "\n"
}

// handleHealthz serves /livez or /readyz (root) and one path per check:
// 200 "ok" when every check not excluded passes, 503 with each check's
// line otherwise; ?verbose lists the checks on success too, ?exclude=name
// (repeatable) skips a check, as in Kubernetes and etcd 3.6.
func (m *Member) handleHealthz(mux *http.ServeMux, root string, checks []check, extra func() string) {
	mux.HandleFunc(root, func(w http.ResponseWriter, r *http.Request) {
		excluded := make(map[string]bool)
		for _, e := range r.URL.Query()["exclude"] {
			excluded[e] = true
		}
		var run []check
		for _, c := range checks {
			if !excluded[c.name] {
				run = append(run, c)
			}
		}
		var tail string
		if extra != nil && !excluded["quorum"] {
			tail = extra()
		}
		m.serveChecks(w, r, root, run, tail)
	})
	for _, c := range checks {
		path := root + "/" + c.name
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			m.serveChecks(w, r, path, []check{c}, "")
		})
	}
}

func (m *Member) serveChecks(w http.ResponseWriter, r *http.Request, path string, checks []check, tail string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	var out strings.Builder
	failed := false
	kind := strings.TrimPrefix(path, "/")
	if i := strings.IndexByte(kind, '/'); i >= 0 {
		kind = kind[:i]
	}
	for _, c := range checks {
		err := c.run(r.Context())
		m.Server.Metrics().HealthCheck(kind, c.name, err == nil)
		if err != nil {
			failed = true
			fmt.Fprintf(&out, "[-]%s failed: %v\n", c.name, err)
		} else {
			fmt.Fprintf(&out, "[+]%s ok\n", c.name)
		}
	}
	out.WriteString(tail)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if failed {
		m.lg.Warn("health check failed", "path", path, "reason", out.String())
		http.Error(w, out.String(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if _, ok := r.URL.Query()["verbose"]; ok {
		fmt.Fprint(w, out.String())
	}
	fmt.Fprint(w, "ok\n")
}

// handleHealth serves etcd's /health: JSON {"health","reason"}, failing on
// an alarm (unless named in ?exclude=), on no leader (unless
// ?serializable=true) or when a read fails, with etcd's reasons.
func (m *Member) handleHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	excluded := make(map[string]bool)
	for _, e := range r.URL.Query()["exclude"] {
		excluded[e] = true
	}
	serializable := r.URL.Query().Get("serializable") == "true"
	reason := ""
	for _, a := range m.Server.Alarms() {
		if excluded[a.GetAlarm().String()] {
			continue
		}
		switch a.GetAlarm() {
		case pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT:
			reason = "ALARM " + a.GetAlarm().String()
		default:
			reason = "ALARM UNKNOWN"
		}
		break
	}
	if reason == "" && !serializable && m.Server.Leader() == 0 {
		reason = "RAFT NO LEADER"
	}
	if reason == "" {
		if err := readCheck(r.Context(), m.Server, serializable); err != nil {
			reason = "RANGE ERROR:" + err.Error()
		}
	}
	m.Server.Metrics().Health(reason == "")
	body, _ := json.Marshal(map[string]string{"health": fmt.Sprint(reason == ""), "reason": reason})
	if reason != "" {
		m.lg.Warn("/health failed", "reason", reason)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write(body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// registerObservability mounts etcd's health endpoints, /metrics and
// Kvorum's /status page, the handlers shared by the client URLs and
// --listen-metrics-urls.
func (m *Member) registerObservability(mux *http.ServeMux) {
	livez, readyz := healthChecks(m.Server)
	mux.HandleFunc("/health", m.handleHealth)
	m.handleHealthz(mux, "/livez", livez, nil)
	m.handleHealthz(mux, "/readyz", readyz, func() string { return quorumLine(m.Server) })
	mux.Handle("/metrics", m.Server.Metrics().Handler())
	mux.HandleFunc("/status", m.handleStatus)
}
