package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kvorum/kvorum/internal/ctl"
)

// The binary is ctl.Main; its behaviour is tested in internal/ctl. This
// checks the wiring: arguments in, output and exit code out.
func TestMainRunsTheCLI(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := ctl.Main([]string{"version"}, strings.NewReader(""), &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "kvorumctl version: ") {
		t.Fatalf("version: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := ctl.Main([]string{"put"}, strings.NewReader(""), &out, &errOut); code != ctl.ExitBadArgs || out.Len() != 0 {
		t.Fatalf("put without args: exit %d, stdout %q", code, out.String())
	}
}
