package membudget

import (
	"fmt"
	"os"
	"runtime/debug"
)

// Default is the budget of a member that is not given one: room for a busy
// Kubernetes control plane's caches while leaving most of a 2–4 GiB node
// to kube-apiserver and the other components.
const Default = 256 << 20

// Min is the smallest budget accepted: below it the memtables get so small
// that the engine spends its time flushing them.
const Min = 64 << 20

// Budget is the split of one member's memory budget. Every share is in
// bytes.
type Budget struct {
	// Total is the whole budget.
	Total int64
	// BlockCache is the share of uncompressed table blocks (data, index
	// and filter blocks). The engine's cache holds them and the memtables'
	// reservations together, BlockCache + MemTableBytes(), so blocks get
	// at least this and at most what the memtables leave besides.
	BlockCache int64
	// MemTable is the size of one memtable of the storage engine. Writes
	// wait once MemTables of them are full and not flushed yet; the engine
	// also keeps one flushed memtable for reuse, so the memtables hold
	// MemTableBytes() at most (plus, for a moment, one that an iterator
	// still reads after its flush).
	MemTable  int64
	MemTables int
	// LatestCache bounds the key space's cache of the latest version of
	// recently written or read keys (a put's lookup of the previous
	// version).
	LatestCache int64
	// KeyFilter bounds the key space's in-memory Bloom filter of live keys
	// (it answers a put of a new key without an engine lookup). With more
	// keys than fit, there is no filter and such puts look in the engine.
	KeyFilter int64
	// WatchRecent bounds the watch hub's buffer of the latest changes,
	// from which a watcher a little behind catches up without reading the
	// engine.
	WatchRecent int64
	// RaftLog bounds the raft log entries kept in memory, by encoded
	// size: past it the log is compacted early, keeping at most half of it
	// for followers that are a little behind (one further behind gets a
	// snapshot). --snapshot-count bounds their number as well.
	RaftLog int64
	// GoLimit is the soft memory limit of the Go runtime
	// (runtime/debug.SetMemoryLimit). Built with cgo, the engine's cache and
	// memtables live outside the Go heap and are subtracted; without cgo
	// they are Go allocations and the limit is the whole budget.
	GoLimit int64
}

// MemTableBytes is what the memtables hold at most: MemTables being
// written or flushed and one kept for reuse.
func (b Budget) MemTableBytes() int64 { return b.MemTable * int64(b.MemTables+1) }

// Split divides total bytes (Default if 0). The shares are fixed
// fractions, so doubling the budget doubles every cache:
//
//	block cache    1/8
//	memtables      3 × 1/16 (2 in use, 1 kept for reuse)
//	latest cache   1/32
//	key filter     1/16
//	watch buffer   1/64
//	raft log       1/8
//
// That is 35/64 of the budget for things that are allocated as they fill
// (a member that is mostly idle uses far less). The rest is headroom for
// the Go heap: gRPC buffers, requests in flight and the garbage
// collector's own slack.
func Split(total int64) Budget {
	if total <= 0 {
		total = Default
	}
	b := Budget{
		Total:       total,
		BlockCache:  total / 8,
		MemTable:    total / 16,
		MemTables:   2,
		LatestCache: total / 32,
		KeyFilter:   total / 16,
		WatchRecent: total / 64,
		RaftLog:     total / 8,
	}
	b.GoLimit = total
	if engineOutsideGoHeap {
		b.GoLimit -= b.BlockCache + b.MemTableBytes()
	}
	return b
}

// Check refuses a budget too small to run with, naming the minimum.
func Check(total int64) error {
	if total != 0 && total < Min {
		return fmt.Errorf("--memory-budget-bytes %d is below the minimum of %d (64 MiB)", total, int64(Min))
	}
	return nil
}

// SetGoLimit sets the Go runtime's soft memory limit to b.GoLimit, unless
// the GOMEMLIMIT environment variable set one already (an operator's
// explicit choice wins). It reports the limit in effect.
func SetGoLimit(b Budget) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(b.GoLimit)
	return b.GoLimit
}
