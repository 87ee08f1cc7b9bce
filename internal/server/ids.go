package server

import (
	"sync/atomic"
	"time"
)

// idGenerator makes proposal IDs unique across members and restarts: the
// top 16 bits come from the member ID, the rest from a counter that starts
// at the current time in milliseconds shifted left by 8 (so a restart never
// reuses IDs of proposals that may still be in the log, unless the clock
// goes back by more than the time the previous run lasted).
type idGenerator struct {
	prefix uint64
	next   atomic.Uint64
}

func newIDGenerator(memberID uint64, now time.Time) *idGenerator {
	g := &idGenerator{prefix: memberID & 0xffff << 48}
	g.next.Store(uint64(now.UnixMilli()) << 8 & (1<<48 - 1))
	return g
}

func (g *idGenerator) Next() uint64 {
	return g.prefix | g.next.Add(1)&(1<<48-1)
}
