package mvcc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/membudget"
	"github.com/kvorum/kvorum/internal/notify"
	"github.com/kvorum/kvorum/internal/storage"
)

// Revisions of a store that has never been written or compacted, as in etcd:
// the first change gets revision 2, and no revision is compacted.
const (
	initialRev        = 1
	neverCompactedRev = -1
)

// Store is the revisioned key space kept in one Pebble DB. Reads (Range) may
// run concurrently with the single Writer; they never see a half-applied
// batch because they read from a Pebble snapshot.
type Store struct {
	db *pebble.DB
	// mu orders commits against the start of reads: Commit holds it to
	// commit a batch and publish its revisions; Range holds it shared to read
	// the revisions and take its snapshot. So a snapshot always holds exactly
	// the state of the revisions read with it, without reading them from
	// storage on every request.
	mu         sync.RWMutex
	rev        atomic.Int64
	compactRev atomic.Int64
	leaseCheck func(leaseID int64) error
	cache      *latestCache // the Writer's; see latestCache
	keys       *keyFilter   // the Writer's; nil when there is none
	// build is the Writer's key filter under construction, nil when none;
	// filters are sized for filterMinKeys keys at least and bounded by
	// filterBytes, and built filterChunk keys a commit.
	build         *filterBuild
	filterBytes   int64
	filterMinKeys uint
	filterChunk   int
	// memCache and memFilter mirror the sizes of cache and keys for
	// MemoryUse, which other goroutines call.
	memCache, memFilter atomic.Int64
	stats               atomic.Pointer[Stats]

	// The compaction steps (see compact.go). compacted is the revision up
	// to which the history is physically compacted, published with the
	// commit of a step under mu; compactedStored tells whether it is
	// stored (storage.CompactedRevKey) or implied by the compact revision.
	compacted       atomic.Int64
	compactedStored atomic.Bool
	stepMu          sync.Mutex // serializes the steps and StopCompaction
	stepsStopped    bool
	// scan is the progress of the steps under way (nil: none), under
	// stepMu; keptMax and rangeMin tune them (see compactScan).
	scan            *compactScan
	keptMax         int
	rangeMin        int
	stepsStop       chan struct{}
	compactKick     chan struct{}
	compactedSignal notify.Signal // when the compacted revision moves

	// The live key count (see keycount.go): keysDelta sums the committed
	// batches' changes to it since Open, under mu; keysBase is the count
	// less keysDelta, set once counting (under stepMu) has finished.
	keysDelta, keysBase atomic.Int64
	keysKnown           atomic.Bool
	counting            *keyCount
	countChunk          int

	openReads atomic.Int64 // committed views not released yet
}

// Memory bounds what a Store holds in memory for its Writer; zero fields
// take the shares of the default memory budget (internal/membudget).
type Memory struct {
	LatestCache int64 // bytes of the latest-version cache
	KeyFilter   int64 // bytes of the key filter at most
}

// Open loads the current and compact revisions from db, with the default
// memory bounds.
func Open(db *pebble.DB) (*Store, error) { return OpenWithMemory(db, Memory{}) }

// OpenWithMemory is Open with the Writer's caches bounded by mem.
func OpenWithMemory(db *pebble.DB, mem Memory) (*Store, error) {
	def := membudget.Split(0)
	if mem.LatestCache <= 0 {
		mem.LatestCache = def.LatestCache
	}
	if mem.KeyFilter <= 0 {
		mem.KeyFilter = def.KeyFilter
	}
	rev, compactRev, err := loadRevs(db)
	if err != nil {
		return nil, err
	}
	compacted, stored, err := loadCompacted(db, compactRev)
	if err != nil {
		return nil, err
	}
	scan, err := loadCompactScan(db, compacted)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, cache: newLatestCache(int(mem.LatestCache)),
		filterBytes: mem.KeyFilter, filterMinKeys: keyFilterMinKeys, filterChunk: keyFilterChunk, countChunk: keyCountChunk,
		scan: scan, keptMax: compactKeptMax, rangeMin: compactRangeMin,
		stepsStop: make(chan struct{}), compactKick: make(chan struct{}, 1)}
	s.build = s.newFilterBuild(0)
	s.rev.Store(rev)
	s.compactRev.Store(compactRev)
	s.compacted.Store(compacted)
	s.compactedStored.Store(stored)
	s.publishMemory()
	return s, nil
}

// MemoryUse is what a Store's Writer holds in memory, in bytes.
type MemoryUse struct {
	LatestCache int64 // the latest-version cache (an estimate with overheads)
	KeyFilter   int64 // the key filter's bits; 0 when there is none
}

// MemoryUse reports the Writer's caches as of the last commit. It is safe
// to call from any goroutine.
func (s *Store) MemoryUse() MemoryUse {
	return MemoryUse{LatestCache: s.memCache.Load(), KeyFilter: s.memFilter.Load()}
}

// publishMemory copies the Writer's cache sizes where MemoryUse reads them;
// only the Writer's goroutine (or Open) calls it.
func (s *Store) publishMemory() {
	s.memCache.Store(int64(s.cache.used))
	var f int64
	if s.keys != nil {
		f = int64(s.keys.f.Cap() / 8)
	}
	if s.build != nil && s.build.kf != nil {
		f += int64(s.build.kf.f.Cap() / 8)
	}
	s.memFilter.Store(f)
}

// SetLeaseCheck installs the lease lookup that puts consult, in etcd's order
// of checks, before anything else: check returns a non-nil error (passed
// through unchanged) when leaseID names no lease. Puts with lease 0 are never
// checked. Call it before the first Writer; without it every lease is
// accepted.
func (s *Store) SetLeaseCheck(check func(leaseID int64) error) { s.leaseCheck = check }

// Rev is the current revision of committed and published state.
func (s *Store) Rev() int64 { return s.rev.Load() }

// CompactRev is the revision of the last published compaction, -1 if none.
func (s *Store) CompactRev() int64 { return s.compactRev.Load() }

// Range serves a read against committed state. The data and the header
// revision come from one Pebble snapshot, so they always agree, whatever
// the Writer commits meanwhile.
func (s *Store) Range(req *etcdserverpb.RangeRequest) (*etcdserverpb.RangeResponse, error) {
	v, release := s.committedView()
	defer release()
	s.countRange()
	return v.execRange(req)
}

// committedView is a view of the committed state at one point in time:
// mu orders it against Commit, so its revisions describe exactly its data.
// Call release when done with it.
func (s *Store) committedView() (v *view, release func()) {
	s.openReads.Add(1)
	s.mu.RLock()
	rev, compactRev, compacted := s.rev.Load(), s.compactRev.Load(), s.compacted.Load()
	snap := s.db.NewSnapshot()
	s.mu.RUnlock()
	return &view{r: snap, rev: rev, compactRev: compactRev, compacted: compacted}, func() {
		snap.Close()
		s.openReads.Add(-1)
	}
}

// OpenReads is the number of reads of committed state under way.
func (s *Store) OpenReads() int64 { return s.openReads.Load() }

// NewWriter starts applying requests into b, which must be an indexed batch
// (db.NewIndexedBatch()) so that each request sees the earlier ones. The
// writer starts from the revisions stored in b's view of the DB. Only one
// Writer may be live at a time.
func (s *Store) NewWriter(b *pebble.Batch) *Writer {
	if !b.Indexed() {
		panic("mvcc: NewWriter needs an indexed batch (pebble.DB.NewIndexedBatch)")
	}
	return &Writer{s: s, b: b, rev: s.rev.Load(), compactRev: s.compactRev.Load()}
}

// Commit commits w's batch (with whatever else the caller wrote into it)
// and makes the revisions w reached visible to Rev, CompactRev and Range,
// atomically with the data.
func (s *Store) Commit(w *Writer, opts *pebble.WriteOptions) error {
	// The current revision is recorded once per batch rather than once
	// per request: nothing reads it back before the commit.
	if w.rev != s.rev.Load() {
		if err := putCounter(w.b, storage.CurrentRevKey, w.rev); err != nil {
			return err
		}
	}
	s.mu.Lock()
	start := time.Now()
	if err := w.b.Commit(opts); err != nil {
		s.mu.Unlock()
		return err
	}
	s.observeCommit(time.Since(start))
	s.keysDelta.Add(w.keysDelta)
	s.countPutBytes(w.putBytes)
	w.keysDelta, w.putBytes = 0, 0
	s.rev.Store(w.rev)
	compacting := w.compactRev != s.compactRev.Load()
	s.compactRev.Store(w.compactRev)
	if compacting {
		s.compactedStored.Store(true) // Writer.Compact stored it
	}
	s.mu.Unlock()
	if compacting {
		s.kickCompactor()
	}
	if err := s.stepFilterBuild(); err != nil {
		return err
	}
	s.publishMemory()
	return nil
}

// stepFilterBuild advances the key filter's construction by a chunk, on
// the Writer's goroutine after a commit (see filterBuild). A filter sized
// for fewer keys than it now holds is replaced by a bigger one; every live
// key was added at least once, so added bounds their number.
func (s *Store) stepFilterBuild() error {
	if s.build == nil && s.keys != nil && s.keys.stale {
		s.build = s.newFilterBuild(s.keys.added)
	}
	if s.build == nil {
		return nil
	}
	kf, done, err := s.build.step(s.db)
	if err != nil {
		return err
	}
	if done {
		s.keys, s.build = kf, nil
	}
	return nil
}

// loadRevs reads the current and compact revisions from r. Absent counters
// mean a store that has never been written or compacted.
func loadRevs(r pebble.Reader) (rev, compactRev int64, err error) {
	rev, err = loadCounter(r, storage.CurrentRevKey, initialRev)
	if err != nil {
		return 0, 0, err
	}
	compactRev, err = loadCounter(r, storage.CompactRevKey, neverCompactedRev)
	return rev, compactRev, err
}

// loadCompacted reads the revision up to which the history is physically
// compacted, and whether it is stored: absent, it equals the compact
// revision (stores from before the compaction steps).
func loadCompacted(r pebble.Reader, compactRev int64) (compacted int64, stored bool, err error) {
	b, err := storage.Get(r, storage.CompactedRevKey)
	if err != nil || b == nil {
		return compactRev, false, err
	}
	v, err := storage.GetUint64(b)
	if err != nil {
		return 0, false, fmt.Errorf("mvcc: read %q: %w", storage.CompactedRevKey, err)
	}
	return int64(v), true, nil
}

// loadCompactScan reads the progress of the compaction steps under way
// (nil: none); compacted is the revision the history was physically
// compacted to before they began.
func loadCompactScan(r pebble.Reader, compacted int64) (*compactScan, error) {
	b, err := storage.Get(r, storage.CompactScanKey)
	if err != nil || b == nil {
		return nil, err
	}
	if len(b) < 9 {
		return nil, fmt.Errorf("mvcc: read %q: %w: %x", storage.CompactScanKey, storage.ErrMalformedKey, b)
	}
	sc := &compactScan{target: int64(binary.BigEndian.Uint64(b)), base: compacted}
	if from := bytes.Clone(b[8:]); storage.IsEventKey(from) {
		sc.events = from
	} else {
		sc.history = from
	}
	return sc, nil
}

func loadCounter(r pebble.Reader, key []byte, absent int64) (int64, error) {
	b, err := storage.Get(r, key)
	if err != nil {
		return 0, fmt.Errorf("mvcc: read %q: %w", key, err)
	}
	if b == nil {
		return absent, nil
	}
	v, err := storage.GetUint64(b)
	if err != nil {
		return 0, fmt.Errorf("mvcc: read %q: %w", key, err)
	}
	return int64(v), nil
}

func putCounter(b *pebble.Batch, key []byte, v int64) error {
	return b.Set(key, storage.PutUint64(uint64(v)), nil)
}
