package member

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/testcerts"
)

// TestStatusPageEscapesWhatMembersReport renders a report whose every
// member-supplied string is markup: names and URLs come from other members
// and error texts from the network, so none may reach the page as HTML.
func TestStatusPageEscapesWhatMembersReport(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	lag, match, applied := uint64(3), uint64(40), uint64(39)
	at := time.Now().Add(-2 * time.Minute)
	rep := statusReport{
		GeneratedAt: time.Now(), Version: "0", ClusterID: "c1",
		Member:   memberRef{ID: "a", Name: evil},
		Leader:   &memberRef{ID: "b", Name: evil + "lead"},
		RaftTerm: 7, ProgressKnown: true,
		Quorum: quorumStatus{Voters: 2, Quorum: 2, Reachable: 2, EvenWarning: true},
		Members: []memberStatus{
			{ID: "a", Name: evil, PeerURLs: []string{"http://" + evil}, ClientURLs: []string{"http://x/\"><b>"}, Self: true, Reachable: "self", Applied: &applied},
			{ID: "b", Name: evil + "lead", Leader: true, Reachable: "no", ReachError: evil, Match: &match, Lag: &lag, Replication: "probe", AppliedError: evil},
		},
		Alarms:       []alarmStatus{{MemberID: "a", MemberName: evil, Alarm: "NOSPACE"}},
		DB:           dbStatus{Size: 3 << 20, InUse: 1 << 20, Quota: 2 << 30},
		Certificates: []certStatus{{File: "/etc/" + evil, Subject: "CN=" + evil, NotAfter: time.Now(), DaysLeft: 3, Soon: true}},
		Backup: backupStatus{Scheduled: true, Dir: evil, Interval: "1h",
			Last: &backupAttempt{At: at, Error: evil}, LastSuccess: &at},
		Refresh: 5,
	}
	var b strings.Builder
	if err := statusPage.Execute(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "<script") || strings.Contains(page, `"><b>`) {
		t.Errorf("markup from a report reached the page unescaped:\n%s", page)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`id="leader" data-leader-id="b" data-leader-name="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;lead"`,
		`id="raft-term" data-term="7"`,
		`data-role="leader" data-reachable="no" data-lag="3"`,
		`data-alarm="NOSPACE"`,
		`An even member count`,
		`3.0 MiB on disk, 1.0 MiB in use`,
		`data-days-left="3"`,
		`data-last-ok="false"`,
		`(probe)`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s:\n%s", want, page)
		}
	}
}

// TestStatusPageOverTLS checks that a TLS member serves /status on its
// client URL like /metrics, and that the page lists its certificate files
// with their expiry.
func TestStatusPageOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "ca")
	server := ca.Issue(t, testcerts.Spec{Name: "server", Hosts: []string{"127.0.0.1"}, Server: true, Client: true,
		NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	admin := ca.Issue(t, testcerts.Spec{Name: "admin", CN: "admin", Client: true})
	cs := certSet{ca: ca, server: server, admin: admin}
	ports := freeTCPPorts(t, 2)
	client := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cfg, err := config.Parse([]string{
		"--name=tls-member", "--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=tls-member=" + peer,
		"--cert-file=" + server.CertFile, "--key-file=" + server.KeyFile,
		"--trusted-ca-file=" + ca.File, "--client-cert-auth",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	select {
	case <-m.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("member not ready within 20s")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cs.clientTLS(t, true)}, Timeout: 10 * time.Second}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := hc.Get(client + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	var rep statusReport
	if resp, body := get("/status?format=json"); resp.StatusCode != 200 || json.Unmarshal([]byte(body), &rep) != nil {
		t.Fatalf("GET /status?format=json = %d\n%s", resp.StatusCode, body)
	}
	if rep.Member.Name != "tls-member" || rep.Quorum.Voters != 1 {
		t.Errorf("report of a one-member cluster: member %+v, quorum %+v", rep.Member, rep.Quorum)
	}
	var found bool
	for _, c := range rep.Certificates {
		if c.File == server.CertFile {
			found = true
			if c.DaysLeft != 9 || !c.Soon {
				t.Errorf("%s: %d days left (soon %v), want 9 and soon for a certificate valid 10 days", c.File, c.DaysLeft, c.Soon)
			}
		}
	}
	if !found {
		t.Errorf("certificates %+v do not list %s", rep.Certificates, server.CertFile)
	}
	resp, body := get("/status")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/html; charset=utf-8" {
		t.Fatalf("GET /status = %d %s", resp.StatusCode, ct)
	}
	if want := `data-file="` + server.CertFile + `" data-days-left="9"`; !strings.Contains(body, want) {
		t.Errorf("page lacks %s:\n%s", want, body)
	}
	// Without a client certificate the page is refused as /metrics is.
	bare := &http.Client{Transport: &http.Transport{TLSClientConfig: cs.clientTLS(t, false)}, Timeout: 10 * time.Second}
	if resp, err := bare.Get(client + "/status"); err == nil {
		resp.Body.Close()
		t.Errorf("GET /status without a client certificate under --client-cert-auth = %d, want a refused handshake", resp.StatusCode)
	}
}
