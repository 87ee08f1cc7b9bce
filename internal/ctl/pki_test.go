package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvorum/kvorum/internal/pki"
)

func TestPKIInitAddMemberAndStatus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errOut := run(t, "", nil, "pki", "init", "--dir", dir,
		"--member", "m1=10.0.1.11,m1.example", "--member", "m2=10.0.1.12,m2.example", "--localhost", "--admin-client", "root")
	if code != 0 {
		t.Fatalf("pki init: exit %d, stderr %q", code, errOut)
	}
	for _, f := range []string{"ca.crt", "ca.key", "members/m1/server.crt", "members/m2/peer.key", "clients/root.crt", "clients/kube-apiserver-etcd-client.key"} {
		if !strings.Contains(out, "created "+filepath.Join(dir, f)+"\n") {
			t.Errorf("pki init output does not list %s:\n%s", f, out)
		}
	}
	if code, _, errOut := run(t, "", nil, "pki", "init", "--dir", dir, "--member", "m1=10.0.1.11"); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Errorf("pki init over an existing dir: exit %d, stderr %q; want 1 and 'already exists'", code, errOut)
	}
	if code, _, errOut := run(t, "", nil, "pki", "add-member", "--dir", dir, "m3=10.0.1.13"); code != 0 {
		t.Fatalf("pki add-member: exit %d, stderr %q", code, errOut)
	}

	code, out, errOut = run(t, "", nil, "-w", "json", "pki", "status", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("pki status of fresh certificates: exit %d, stderr %q", code, errOut)
	}
	var entries []pki.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("pki status -w json: %v\n%s", err, out)
	}
	sans := map[string][]string{}
	for _, e := range entries {
		sans[e.Path] = e.SANs
	}
	if got, want := sans[filepath.Join("members", "m1", "server.crt")], []string{"m1.example", "localhost", "10.0.1.11", "127.0.0.1", "::1"}; !slices.Equal(got, want) {
		t.Errorf("m1 server SANs %q, want %q", got, want)
	}
	if got, want := sans[filepath.Join("members", "m3", "peer.crt")], []string{"10.0.1.13"}; !slices.Equal(got, want) {
		t.Errorf("m3 (added without --localhost) peer SANs %q, want %q", got, want)
	}
	if len(entries) != 1+3*2+2 {
		t.Errorf("pki status lists %d certificates, want 9", len(entries))
	}

	code, out, _ = run(t, "", nil, "pki", "status", "--dir", dir)
	if code != 0 || !strings.Contains(out, "members/m3/server.crt") || !strings.Contains(out, "CN=kvorum-ca") {
		t.Errorf("pki status (table): exit %d, output\n%s", code, out)
	}
}

func TestPKIStatusWarnsBeforeExpiry(t *testing.T) {
	dir := t.TempDir()
	// Issued 350 days ago with one-year leaves: they expire in 15 days.
	plan := pki.Plan{CAName: "ca", Members: []pki.Member{pki.Member{Name: "m1"}.WithLocalhost()}, Clients: []string{"admin"}, Validity: pki.DefaultValidity}
	if _, err := (pki.Layout{Dir: dir}).Init(plan, time.Now().Add(-350*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "", nil, "pki", "status", dir)
	if code != 0 || strings.Count(errOut, "warning: ") != 3 || !strings.Contains(errOut, "clients/admin.crt: expires in 14 days") {
		t.Errorf("pki status: exit %d, stderr %q; want exit 0 and a warning for each of the 3 leaves", code, errOut)
	}
	if code, _, errOut := run(t, "", nil, "pki", "status", dir, "--warn-within", "30d"); code != 1 || strings.Count(errOut, "warning: ") != 3 {
		t.Errorf("pki status --warn-within 30d: exit %d, stderr %q; want exit 1 and 3 warnings", code, errOut)
	}
	if code, _, errOut := run(t, "", nil, "pki", "status", dir, "--warn-within", "240h"); code != 0 || errOut != "" {
		t.Errorf("pki status --warn-within 240h (10 days): exit %d, stderr %q; want no warning", code, errOut)
	}

	// A tampered certificate is a problem whatever the window.
	if err := os.WriteFile(filepath.Join(dir, "clients", "admin.crt"), mustRead(t, filepath.Join(dir, "members", "m1", "server.crt")), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "", nil, "pki", "status", dir, "--warn-within", "1d"); code != 1 || !strings.Contains(errOut, "clients/admin.crt: admin.key") {
		t.Errorf("pki status with admin.crt replaced: exit %d, stderr %q; want exit 1 and a key mismatch", code, errOut)
	}
}

func TestPKIArgumentErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pki", "init", "--dir", dir}, 128, "needs at least one --member"},
		{[]string{"pki", "init", "--dir", dir, "--member", "m1=not a name"}, 128, `"not a name" is neither an IP address nor a DNS name`},
		{[]string{"pki", "init", "--dir", dir, "--member", "m1"}, 1, "member m1 has no address"},
		{[]string{"pki", "init", "--dir", dir, "--member", "m1=1.2.3.4", "--member", "m1=1.2.3.5"}, 1, `member "m1" is given twice`},
		{[]string{"pki", "init", "--dir", dir, "--member", "m1=1.2.3.4", "--validity", "soon"}, 1, `"soon" is not a duration`},
		{[]string{"pki", "add-member", "--dir", dir, "m9=1.2.3.4"}, 1, "pki init"},
		{[]string{"pki", "add-member", "--dir", dir}, 128, "needs one argument"},
		{[]string{"pki", "status", dir}, 1, "no *.crt files"},
	} {
		code, _, errOut := run(t, "", nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed commands left files in %s: %v", dir, entries)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
