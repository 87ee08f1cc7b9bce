package member

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kvorum/kvorum/internal/testcerts"
)

func TestMemberWarnsAboutCertificatesNearExpiry(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "ca")
	now := time.Now()
	soon := ca.Issue(t, testcerts.Spec{Name: "soon", Server: true, NotAfter: now.Add(10 * 24 * time.Hour)})
	later := ca.Issue(t, testcerts.Spec{Name: "later", Server: true, NotAfter: now.Add(100 * 24 * time.Hour)})
	var buf bytes.Buffer
	lg := slog.New(slog.NewJSONHandler(&buf, nil))
	earliest := warnExpiring(lg, []string{later.CertFile, soon.CertFile}, now)
	if got := earliest.Sub(now).Round(time.Hour); got != 10*24*time.Hour {
		t.Errorf("earliest expiry in %v, want 240h", got)
	}
	logs := buf.String()
	if !strings.Contains(logs, "certificate expires soon") || !strings.Contains(logs, soon.CertFile) {
		t.Errorf("no warning about %s:\n%s", soon.CertFile, logs)
	}
	if strings.Contains(logs, later.CertFile) {
		t.Errorf("a warning about a certificate valid for 100 days:\n%s", logs)
	}
}
