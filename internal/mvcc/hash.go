package mvcc

import (
	"context"
	"fmt"
	"hash/crc32"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/storage"
)

// HashKV hashes the retained history up to revision rev (0: the current
// one): every stored change with a revision at or below rev, in revision
// order, key and encoded change alike. Members that applied the same log
// hold the same history, so equal revisions must give equal hashes; a
// difference means a member's data diverged. It returns the hash, the
// revision hashed and the compact revision at the time.
//
// The history hashed is compacted up to the compact revision: HashKV first
// waits for the compaction steps (see Store.WaitCompacted), until ctx ends.
//
// The hash is Kvorum's own (etcd's depends on bbolt's layout); compare it
// only between Kvorum members.
func (s *Store) HashKV(ctx context.Context, rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	var v *view
	for {
		if err := s.WaitCompacted(ctx, 0); err != nil {
			return 0, 0, 0, err
		}
		var release func()
		v, release = s.committedView()
		if v.compacted >= v.compactRev {
			defer release()
			break
		}
		release() // a compaction came in between
	}
	cur, compactRev := v.rev, v.compactRev
	switch {
	case rev <= 0:
		rev = cur
	case rev > cur:
		return 0, 0, 0, fmt.Errorf("%w: hash at %d, current %d", ErrFutureRev, rev, cur)
	case rev < compactRev:
		return 0, 0, 0, fmt.Errorf("%w: hash at %d, compacted at %d", ErrCompacted, rev, compactRev)
	}
	lo, hi := storage.EventSpan(0, rev+1)
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, 0, 0, err
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return 0, 0, 0, err
		}
		h.Write(it.Key())
		h.Write(val)
	}
	if err := closeIter(it); err != nil {
		return 0, 0, 0, err
	}
	return h.Sum32(), rev, compactRev, nil
}
