package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kvorum/kvorum/internal/membudget"
)

// engineDir is the directory under a member's data dir holding the Pebble
// engine. A data dir is recognised as Kvorum's by this directory.
const engineDir = "member/db"

// Engine is a member's Pebble engine.
type Engine struct {
	DB   *pebble.DB
	dir  string
	opts *pebble.Options
	// rewriting counts the CompactAll calls under way: while there is one,
	// every blob file that holds garbage is rewritten, copying the values
	// its keys still reference into a new file, and the old file, with the
	// values of keys deleted or overwritten since, goes.
	rewriting atomic.Int32
}

// Value separation. A value of SeparateValuesFrom bytes or more is written
// by a flush into a blob file, and the table keeps its key with a
// reference. Compactions, which merge tables again and again as they move
// down the levels, then rewrite the keys and references only, not the
// values. Without it, a store of 20 KB values wrote 1.8x the bytes a put
// and took 1.2x the CPU (docs/benchmarks.md). Small values stay in the
// tables, where a read finds them without a second lookup.
//
// A value in a blob file becomes garbage once its key is overwritten,
// deleted or compacted away. A blob file is deleted when none of its values
// is referenced any more; one that holds more than maxValueGarbage of
// garbage and is older than valueRewriteAge is rewritten in the
// background, and CompactAll (defragment) rewrites them all.
const (
	SeparateValuesFrom = 1024
	maxValueGarbage    = 0.2
	valueRewriteAge    = 0
	// maxBlobReferenceDepth bounds how many blob files of overlapping key
	// ranges a table may reference (so a range read opens few); past it, a
	// compaction copies the values into new blob files.
	maxBlobReferenceDepth = 10
	// rewriteGiveUp is how long CompactAll waits for the garbage to shrink.
	rewriteGiveUp = 5 * time.Second
)

// Open opens the engine in dataDir with the default memory budget's
// shares; see OpenWithBudget.
func Open(dataDir string) (*Engine, error) {
	return OpenWithBudget(dataDir, membudget.Split(0), nil)
}

// OpenWithBudget opens (creating if needed) the engine in dataDir, with the
// block cache and memtables of budget b. It refuses a directory that holds
// something else than a Kvorum data dir, naming what it found, so a typo in
// --data-dir never mixes two programs' files.
//
// onDiskFull, if set, is called when an engine write finds no free block
// on the disk (Pebble's vfs.OnDiskFull): every engine write waits while it
// runs, and the one that failed is retried once when it returns. Without
// it, such a write of the write-ahead log or the manifest stops the
// process.
func OpenWithBudget(dataDir string, b membudget.Budget, onDiskFull func()) (*Engine, error) {
	if err := checkDataDir(dataDir); err != nil {
		return nil, err
	}
	dir := filepath.Join(dataDir, engineDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	// The memtables and the block cache are the engine's memory, and both
	// are fixed by the budget rather than by the data: a member with more
	// keys reads more from disk (and the page cache), it does not hold more.
	// Pebble reserves every memtable it allocates in its cache, so the
	// cache is made large enough for both: sized for the blocks alone, the
	// memtables' reservation (up to 3 × 1/16 of the budget against 1/8)
	// left the blocks no room at all, and every table read went to the
	// operating system (TestBlockCacheHasRoomBesideTheMemtables).
	cache := pebble.NewCache(b.BlockCache + b.MemTableBytes())
	defer cache.Unref() // the DB holds its own reference
	e := &Engine{dir: dir}
	opts := &pebble.Options{
		Logger:                      quietLogger{},
		Cache:                       cache,
		MemTableSize:                uint64(b.MemTable),
		MemTableStopWritesThreshold: b.MemTables,
		// The level that flushed tables are compacted into (Lbase) holds
		// about one memtable's worth, where Pebble's default is 64 MB.
		// Keys written at random overlap all of Lbase, so each compaction
		// out of L0 rewrites most of it. A member of 1M keys wrote 1.2 GB
		// to disk for 300,000 random puts with the default, 0.37x that at
		// one memtable, for 0.69-0.79x the CPU, and its point reads stayed
		// within the noise (docs/benchmarks.md).
		LBaseMaxBytes:      b.MemTable,
		FormatMajorVersion: pebble.FormatNewest,
		// The engine keeps no write-ahead log: every write to it comes
		// from a raft log entry (kept in raftnode.WALDir, synced) or is
		// followed by a flush (Sync). A crash loses the memtables, and the
		// member applies their entries again from the raft log, which is
		// cut only behind a flush. Each put thus reaches the disk once
		// before its state is flushed, not twice.
		DisableWAL: true,
	}
	if onDiskFull != nil {
		opts.FS = vfs.OnDiskFull(vfs.Default, onDiskFull)
	}
	// Every table file holds keys of one prefix only (see tableSpan).
	opts.Experimental.SpanPolicyFunc = tableSpan
	opts.Experimental.ValueSeparationPolicy = e.valueSeparation
	// Point lookups of keys that are not in a table (a put of a new key
	// asks for its previous version) skip the table by its bloom filter.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("data dir %s is in use by another process (it holds %s): stop that member first, or give this one another --data-dir", dataDir, filepath.Join(dir, "LOCK"))
	}
	if err != nil {
		return nil, fmt.Errorf("open storage in %s (corrupt or not a Kvorum data dir?): %w", dir, err)
	}
	e.DB, e.opts = db, opts
	return e, nil
}

// valueSeparation is the engine's ValueSeparationPolicy; Pebble asks for it
// at every flush and compaction.
func (e *Engine) valueSeparation() pebble.ValueSeparationPolicy {
	p := pebble.ValueSeparationPolicy{
		Enabled:               true,
		MinimumSize:           SeparateValuesFrom,
		MaxBlobReferenceDepth: maxBlobReferenceDepth,
		RewriteMinimumAge:     valueRewriteAge,
		TargetGarbageRatio:    maxValueGarbage,
	}
	if e.rewriting.Load() > 0 {
		p.TargetGarbageRatio = 0
	}
	return p
}

// CompactAll compacts the key span [start, end) down to the last level,
// leaving no deleted or overwritten record behind, and copies the values
// still referenced out of blob files that hold garbage (defragment).
func (e *Engine) CompactAll(ctx context.Context, start, end []byte) error {
	if err := e.DB.Flush(); err != nil {
		return err
	}
	if err := e.DB.Compact(ctx, start, end, true); err != nil {
		return err
	}
	// A flush has Pebble pick its next compactions, and with no garbage
	// allowed the blob files that hold any are rewritten one by one, each
	// completion picking the next. While the garbage does not reach a new
	// low (a compaction that holds the files back, or writes going on
	// making new garbage as fast), another flush asks again every second;
	// what is left after rewriteGiveUp without a new low stays for the
	// background rewrites.
	e.rewriting.Add(1)
	defer e.rewriting.Add(-1)
	if err := e.DB.Flush(); err != nil {
		return err
	}
	low, moved, asked := int64(math.MaxInt64), time.Now(), time.Now()
	for {
		g := UnreferencedValueBytes(e.DB.Metrics())
		switch {
		case g == 0:
			return nil
		case g < low:
			low, moved = g, time.Now()
		case time.Since(moved) > rewriteGiveUp:
			return nil
		case time.Since(asked) > time.Second:
			if err := e.DB.Flush(); err != nil {
				return err
			}
			asked = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// DiskUsage is the bytes the engine's files take on disk, from its
// metrics, without its write-ahead log (turned off, see OpenWithBudget).
// It is Pebble's DiskSpaceUsage with the live blob files counted from
// their total: Pebble 2.1 counts the local ones only as it writes them, so
// after a restart its local figure leaves out every blob file already
// there (all of a member's files are local).
func DiskUsage(m *pebble.Metrics) int64 {
	b := m.BlobFiles
	return int64(m.DiskSpaceUsage()) - int64(m.WAL.PhysicalSize) - int64(m.WAL.ObsoletePhysicalSize) -
		int64(b.Local.LiveSize) + int64(max(b.LiveSize, b.Local.LiveSize))
}

// UnreferencedValueBytes estimates, from the engine's metrics, the bytes on
// disk that blob files spend on values no key references any more: freed
// once the background rewrites (or CompactAll) have copied out what is
// still referenced.
func UnreferencedValueBytes(m *pebble.Metrics) int64 {
	b := m.BlobFiles
	if b.ValueSize == 0 || b.ReferencedValueSize >= b.ValueSize {
		return 0
	}
	// The sizes are of the uncompressed values; scale to the files' size.
	return int64(float64(b.ValueSize-b.ReferencedValueSize) * float64(b.LiveSize) / float64(b.ValueSize))
}

// tableSpan ends the key span a table file written from startKey may cover
// at the next one-byte prefix (storage keeps each kind of record under its
// own prefix). Without it, every flushed table mixes the raft log and the
// event log, which grow at their ends, with the latest versions and the
// history, which change all over the key space: each such table overlaps
// every table of the next level, and compacting it rewrites the event log
// again and again. Split by prefix, tables of appended records rarely
// overlap others and move down the levels without being rewritten, and the
// raft log's deleted entries go as whole tables. In a run of 300,000 puts on
// three members this wrote 13% fewer bytes (docs/benchmarks.md).
func tableSpan(startKey []byte) (pebble.SpanPolicy, []byte, error) {
	if len(startKey) == 0 || startKey[0] == 0xff {
		return pebble.SpanPolicy{}, nil, nil
	}
	return pebble.SpanPolicy{}, []byte{startKey[0] + 1}, nil
}

// WriteHeadroom is the free disk space the engine needs to go on taking
// writes: a full memtable is flushed into a table file while the next one
// fills. (The raft log, on the same file system unless --wal-dir moves
// it, needs room for its next file besides; see server's headroom.)
func (e *Engine) WriteHeadroom() int64 {
	return 2 * int64(e.opts.MemTableSize)
}

// MemoryUse is what the engine holds in memory now, in bytes.
type MemoryUse struct {
	BlockCache int64 // blocks in the block cache
	// MemTables are the memtables being written or waiting for their
	// flush, the flushed one kept for reuse and any flushed one an
	// iterator still reads (freed when it closes).
	MemTables int64
}

// MemoryUse reports the engine's block cache and memtables.
func (e *Engine) MemoryUse() MemoryUse {
	m := e.DB.Metrics()
	return MemoryUse{
		BlockCache: m.BlockCache.Size,
		MemTables:  int64(m.MemTable.Size + m.MemTable.ZombieSize),
	}
}

// Dir is the engine's directory.
func (e *Engine) Dir() string { return e.dir }

// Close flushes the memtables (the engine keeps no write-ahead log, so
// they would be lost otherwise) and closes the engine.
func (e *Engine) Close() error {
	ferr := e.DB.Flush()
	if err := e.DB.Close(); err != nil {
		return err
	}
	return ferr
}

// Sync makes every write so far durable: it flushes the memtables, since
// the engine keeps no write-ahead log.
func (e *Engine) Sync() error { return e.DB.Flush() }

// Get reads a key, returning a copy, or nil if absent.
func Get(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	return out, closer.Close()
}

// checkDataDir refuses a non-empty directory that is not a Kvorum data dir.
func checkDataDir(dataDir string) error {
	ents, err := os.ReadDir(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read data dir %s: %w", dataDir, err)
	}
	// fixtures holds the certificates of --auto-tls and --peer-auto-tls,
	// which a member creates before it opens its storage (as in etcd).
	if len(ents) == 0 || len(ents) == 1 && ents[0].Name() == "fixtures" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dataDir, engineDir)); err != nil {
		if _, werr := os.Stat(filepath.Join(dataDir, "member", "wal")); werr == nil {
			return fmt.Errorf("data dir %s holds an etcd data dir (member/wal); Kvorum cannot open it in place — restore an etcd snapshot into a new Kvorum data dir instead", dataDir)
		}
		return fmt.Errorf("data dir %s is not empty and holds no Kvorum data (no %s); use an empty or Kvorum data dir", dataDir, engineDir)
	}
	return nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
	os.Exit(1)
}
