// Package logging builds a member's logger: the code logs through log/slog,
// and the lines come out in etcd's shape, encoded by zap with etcd's own
// encoder settings (go.etcd.io/etcd/client/pkg/v3/logutil), so log
// pipelines and queries written for etcd read Kvorum's logs unchanged:
//
//	{"level":"info","ts":"2026-12-03T12:00:00.123456Z","caller":"member/member.go:140","msg":"ready to serve client requests","listen-client-urls":["http://127.0.0.1:2379"]}
//
// level is lowercase, ts is RFC 3339 with microseconds, caller is the last
// directory and file of the source line, then msg and the record's fields
// in order. A slog group becomes a dotted key prefix.
package logging

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zapgrpc"
	"google.golang.org/grpc/grpclog"
)

// Output names etcd gives --log-outputs besides file paths.
const (
	OutputDefault = "default" // stderr
	OutputStderr  = "stderr"
	OutputStdout  = "stdout"
	OutputJournal = "systemd/journal" // journald's native protocol; JSON format only
)

// Config says where and how a member logs; its fields are etcd's flags.
type Config struct {
	Level   string   // --log-level: debug, info, warn, error, panic or fatal (both as error); "" means info
	Format  string   // --log-format: json or console; "" means json
	Outputs []string // --log-outputs; empty means default
}

// New returns a logger writing as cfg says and a function that flushes and
// closes its files.
func New(cfg Config) (*slog.Logger, func(), error) {
	format, err := logutil.ConvertToZapFormat(cfg.Format)
	if err != nil {
		return nil, nil, fmt.Errorf("--log-format %q: want json or console", cfg.Format)
	}
	enc := zapcore.NewJSONEncoder(logutil.DefaultZapLoggerConfig.EncoderConfig)
	if format == logutil.ConsoleLogFormat {
		enc = zapcore.NewConsoleEncoder(logutil.DefaultZapLoggerConfig.EncoderConfig)
	}
	outputs := cfg.Outputs
	if len(outputs) == 0 {
		outputs = []string{OutputDefault}
	}
	var paths []string
	var syncers []zapcore.WriteSyncer
	for _, o := range outputs {
		switch o {
		case OutputDefault:
			paths = append(paths, OutputStderr)
		case OutputJournal:
			if format != logutil.JSONLogFormat {
				return nil, nil, fmt.Errorf("--log-outputs %s needs --log-format json", OutputJournal)
			}
			w, err := logutil.NewJournalWriter(os.Stderr)
			if err != nil {
				return nil, nil, fmt.Errorf("--log-outputs %s: %v; use default or stderr instead", OutputJournal, err)
			}
			syncers = append(syncers, zapcore.AddSync(w))
		default:
			paths = append(paths, o)
		}
	}
	closeAll := func() {}
	if len(paths) > 0 {
		ws, closeFiles, err := zap.Open(dedup(paths)...)
		if err != nil {
			return nil, nil, fmt.Errorf("--log-outputs %s: %v", strings.Join(outputs, ","), err)
		}
		syncers = append(syncers, ws)
		closeAll = closeFiles
	}
	ws := zapcore.NewMultiWriteSyncer(syncers...)
	// Kvorum's most severe lines are errors (what etcd logs as panic or
	// fatal, such as a member that cannot start, it logs as an error and
	// exits), so panic and fatal keep the errors.
	level := min(logutil.ConvertToZapLevel(cfg.Level), zapcore.ErrorLevel)
	core := zapcore.NewCore(enc, ws, level)
	return slog.New(NewHandler(core)), func() { ws.Sync(); closeAll() }, nil
}

// GRPCLogger returns a logger for gRPC's own messages (grpclog) that writes
// its warnings and errors as lines of lg, as etcd does (caller
// zapgrpc/zapgrpc.go); gRPC's informational chatter is dropped. ok is false
// if lg was not made by New.
func GRPCLogger(lg *slog.Logger) (_ grpclog.LoggerV2, ok bool) {
	zl, ok := ZapLogger(lg)
	if !ok {
		return nil, false
	}
	return zapgrpc.NewLogger(zl.WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))), true
}

// ZapLogger returns a zap logger writing lines of lg, for libraries that
// log through zap (etcd's wal package: "slow fdatasync", new segments), so
// their lines keep etcd's shape. ok is false if lg was not made by New.
func ZapLogger(lg *slog.Logger) (_ *zap.Logger, ok bool) {
	h, ok := lg.Handler().(*Handler)
	if !ok {
		return nil, false
	}
	return zap.New(h.core, zap.AddCaller()), true
}

func dedup(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// Handler is a slog.Handler that writes each record to a zap core, with
// the record's source line as zap's caller.
type Handler struct {
	core   zapcore.Core
	prefix string // the open groups, each followed by a dot
}

// NewHandler returns a handler writing to core.
func NewHandler(core zapcore.Core) *Handler { return &Handler{core: core} }

// Enabled reports whether the core logs records of level l.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return h.core.Enabled(zapLevel(l)) }

// Handle writes r.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	ent := zapcore.Entry{Level: zapLevel(r.Level), Time: r.Time, Message: r.Message}
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		ent.Caller = zapcore.NewEntryCaller(f.PC, f.File, f.Line, f.File != "")
	}
	ce := h.core.Check(ent, nil)
	if ce == nil {
		return nil
	}
	fields := make([]zapcore.Field, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		fields = appendAttr(fields, h.prefix, a)
		return true
	})
	ce.Write(fields...)
	return nil
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var fields []zapcore.Field
	for _, a := range attrs {
		fields = appendAttr(fields, h.prefix, a)
	}
	return &Handler{core: h.core.With(fields), prefix: h.prefix}
}

// WithGroup returns a handler that prefixes later keys with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Handler{core: h.core, prefix: h.prefix + name + "."}
}

// zapLevel maps slog's levels to zap's. Records above error stay error:
// zap's panic and fatal levels would end the process.
func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l < slog.LevelInfo:
		return zapcore.DebugLevel
	case l < slog.LevelWarn:
		return zapcore.InfoLevel
	case l < slog.LevelError:
		return zapcore.WarnLevel
	default:
		return zapcore.ErrorLevel
	}
}

func appendAttr(fields []zapcore.Field, prefix string, a slog.Attr) []zapcore.Field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fields
	}
	key := prefix + a.Key
	v := a.Value
	switch v.Kind() {
	case slog.KindGroup:
		p := prefix
		if a.Key != "" {
			p = key + "."
		}
		for _, g := range v.Group() {
			fields = appendAttr(fields, p, g)
		}
		return fields
	case slog.KindString:
		return append(fields, zap.String(key, v.String()))
	case slog.KindInt64:
		return append(fields, zap.Int64(key, v.Int64()))
	case slog.KindUint64:
		return append(fields, zap.Uint64(key, v.Uint64()))
	case slog.KindFloat64:
		return append(fields, zap.Float64(key, v.Float64()))
	case slog.KindBool:
		return append(fields, zap.Bool(key, v.Bool()))
	case slog.KindDuration:
		return append(fields, zap.Duration(key, v.Duration()))
	case slog.KindTime:
		return append(fields, zap.Time(key, v.Time()))
	default:
		return append(fields, zap.Any(key, v.Any()))
	}
}
