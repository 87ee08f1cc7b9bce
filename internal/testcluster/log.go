package testcluster

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
)

// logSink collects the text logs of all members of a cluster. It is written
// to after the test ends too (members log while stopping), which t.Log
// would not allow.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// logger is a member's logger: info records and up, tagged with the
// member's name, each record also counted by message in events.
func (s *logSink) logger(name string, events *eventCounter) *slog.Logger {
	text := slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelInfo})
	return slog.New(countingHandler{Handler: text, events: events}).With("member", name)
}

// eventCounter counts log records by message, so a test can check that
// something happened inside a member (a snapshot was installed) without
// parsing text.
type eventCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *eventCounter) add(msg string) {
	e.mu.Lock()
	e.n[msg]++
	e.mu.Unlock()
}

func (e *eventCounter) count(msg string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[msg]
}

type countingHandler struct {
	slog.Handler
	events *eventCounter
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.events.add(r.Message)
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{Handler: h.Handler.WithAttrs(as), events: h.events}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{Handler: h.Handler.WithGroup(name), events: h.events}
}
