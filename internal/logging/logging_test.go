package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.uber.org/zap/zapcore"
)

func bufferLogger(level zapcore.Level) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(logutil.DefaultZapLoggerConfig.EncoderConfig), zapcore.AddSync(&buf), level)
	return slog.New(NewHandler(core)), &buf
}

func TestRecordBecomesEtcdLine(t *testing.T) {
	lg, buf := bufferLogger(zapcore.DebugLevel)
	lg.With("member", "m1").WithGroup("peer").Warn("peer lost", "id", "abc", "rtt", 1500*time.Millisecond,
		"n", 3, "ok", true, "err", errors.New("boom"), slog.Group("addr", "host", "h1"))
	line := buf.String()
	prefix := regexp.MustCompile(`^\{"level":"warn","ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d{4})","caller":"logging/logging_test.go:\d+","msg":"peer lost",`)
	if !prefix.MatchString(line) {
		t.Fatalf("line %s: want level, ts, caller (this file) and msg first, as etcd", line)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"member": "m1", "peer.id": "abc", "peer.rtt": "1.5s", "peer.n": 3.0, "peer.ok": true, "peer.err": "boom", "peer.addr.host": "h1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %v, want %v (line %s)", k, got[k], v, line)
		}
	}
}

func TestLevels(t *testing.T) {
	lg, buf := bufferLogger(zapcore.WarnLevel)
	lg.Debug("d")
	lg.Info("i")
	lg.Warn("w")
	lg.Error("e")
	var levels []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		levels = append(levels, m["level"].(string))
	}
	if strings.Join(levels, ",") != "warn,error" {
		t.Errorf("levels logged at warn: %v, want warn,error", levels)
	}
}

func TestNewWritesToFileInConsoleFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.log")
	lg, closeLog, err := New(Config{Level: "info", Format: "console", Outputs: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	lg.Debug("hidden")
	lg.Info("hello", "k", "v")
	closeLog()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\S+\tinfo\tlogging/logging_test.go:\d+\thello\t\{"k": "v"\}\n$`)
	if !re.Match(b) {
		t.Errorf("console line %q: want ts, info, caller, msg, fields", b)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, c := range []Config{
		{Format: "xml"},
		{Format: "console", Outputs: []string{OutputJournal}},
		{Outputs: []string{filepath.Join(t.TempDir(), "no/such/dir/k.log")}},
	} {
		if _, _, err := New(c); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", c)
		}
	}
}

func TestGRPCLoggerKeepsWarnings(t *testing.T) {
	lg, buf := bufferLogger(zapcore.DebugLevel)
	gl, ok := GRPCLogger(lg)
	if !ok {
		t.Fatal("GRPCLogger refused a logger made by this package")
	}
	gl.Info("chatter")
	gl.Warning("transport trouble")
	out := buf.String()
	if strings.Contains(out, "chatter") || !strings.Contains(out, `"level":"warn"`) || !strings.Contains(out, `"msg":"transport trouble"`) {
		t.Errorf("gRPC log lines: %s; want the warning only, as a JSON line", out)
	}
	if _, ok := GRPCLogger(slog.Default()); ok {
		t.Error("GRPCLogger accepted a logger it cannot write through")
	}
}

func TestFatalLevelKeepsErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.log")
	lg, closeLog, err := New(Config{Level: "fatal", Outputs: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	lg.Warn("w")
	lg.Error("cannot start")
	closeLog()
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), `"msg":"w"`) || !strings.Contains(string(b), `"msg":"cannot start"`) {
		t.Errorf("--log-level fatal wrote %q; want the error line only", b)
	}
}
