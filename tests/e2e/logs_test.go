package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// etcd's log line fields, in etcd's order, and the forms of their values.
var (
	logTS     = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d{4})$`)
	logCaller = regexp.MustCompile(`^[\w.-]+/[\w.-]+\.go:\d+$`)
)

// logLines returns the JSON log lines of s, skipping the harness's start
// markers and anything that does not start with '{' (a Go panic would not,
// and is caught by checkLogs).
func logLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "{") {
			out = append(out, l)
		}
	}
	return out
}

// checkLogLine checks that line has etcd's shape: level, ts, caller and
// msg first, in that order, then the fields; and that it is not an error
// (which a member must not log in normal operation).
func checkLogLine(t *testing.T, who, line string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Errorf("%s: log line is not a JSON object: %s", who, line)
		return
	}
	var keys []string
	vals := map[string]any{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Errorf("%s: bad JSON log line (%v): %s", who, err, line)
			return
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Errorf("%s: bad JSON log line (%v): %s", who, err, line)
			return
		}
		keys = append(keys, k.(string))
		vals[k.(string)] = v
	}
	if len(keys) < 4 || strings.Join(keys[:4], ",") != "level,ts,caller,msg" {
		t.Errorf("%s: log line starts with keys %v, want level,ts,caller,msg: %s", who, keys, line)
		return
	}
	switch vals["level"] {
	case "debug", "info", "warn":
	case "error":
		t.Errorf("%s: error-level line in normal operation: %s", who, line)
	default:
		t.Errorf("%s: level %v, want debug, info or warn: %s", who, vals["level"], line)
	}
	if ts, _ := vals["ts"].(string); !logTS.MatchString(ts) {
		t.Errorf("%s: ts %q, want RFC 3339 with microseconds as etcd writes it: %s", who, vals["ts"], line)
	}
	if c, _ := vals["caller"].(string); !logCaller.MatchString(c) {
		t.Errorf("%s: caller %q, want dir/file.go:line: %s", who, vals["caller"], line)
	}
	if m, _ := vals["msg"].(string); m == "" {
		t.Errorf("%s: empty msg: %s", who, line)
	}
}

// TestLogsHaveEtcdShapeAndNoErrors starts a cluster, writes, stops it
// member by member, and checks every line each member logged: JSON in
// etcd's shape, and no error level during a normal start, run and stop.
func TestLogsHaveEtcdShapeAndNoErrors(t *testing.T) {
	c := newCluster(t, kvorumBin, 3)
	cli := c.client()
	if _, err := cli.Put(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.members {
		m.stop()
	}
	c.checkLogs()
	for _, m := range c.members {
		for _, l := range strings.Split(m.LogText(), "\n") {
			if l != "" && !strings.HasPrefix(l, "=====") && !strings.HasPrefix(l, "{") {
				t.Errorf("%s wrote a line that is not a JSON log line: %q", m.Name, l)
			}
		}
		lines := logLines(m.LogText())
		if len(lines) < 5 {
			t.Fatalf("%s logged %d JSON lines, want a start's worth:\n%s", m.Name, len(lines), m.LogText())
		}
		var ready bool
		for _, l := range lines {
			checkLogLine(t, m.Name, l)
			ready = ready || strings.Contains(l, `"msg":"ready to serve client requests"`)
		}
		if !ready {
			t.Errorf("%s never logged that it was ready to serve clients", m.Name)
		}
	}
}

// TestLogOutputsAndFormat sends one member's logs to a file with
// --log-outputs and another's to stdout in the console format.
func TestLogOutputsAndFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "member.log")
	c := newCluster(t, kvorumBin, 1, "--log-outputs="+path)
	m := c.members[0]
	m.stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := logLines(string(b))
	if len(lines) == 0 || !bytes.Contains(b, []byte(`"msg":"ready to serve client requests"`)) {
		t.Fatalf("--log-outputs=%s: the file holds no start's worth of log lines:\n%s", path, b)
	}
	for _, l := range lines {
		checkLogLine(t, "log file", l)
	}
	if n := len(logLines(m.LogText())); n != 0 {
		t.Errorf("with --log-outputs=%s the member still wrote %d log lines to stderr:\n%s", path, n, m.LogText())
	}

	c = newCluster(t, kvorumBin, 1, "--log-format=console", "--log-outputs=stdout")
	c.members[0].stop()
	console := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d{4})\t(debug|info|warn)\t[\w.-]+/[\w.-]+\.go:\d+\t[^\t]+(\t\{.*\})?$`)
	var n int
	sc := bufio.NewScanner(strings.NewReader(c.members[0].LogText()))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "=====") {
			continue
		}
		n++
		if !console.MatchString(l) {
			t.Errorf("--log-format=console line %q: want ts, level, caller, msg and JSON fields, tab-separated", l)
		}
	}
	if n < 5 {
		t.Errorf("--log-format=console: %d lines on stdout, want a start's worth", n)
	}
}
