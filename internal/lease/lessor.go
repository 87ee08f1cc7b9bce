package lease

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// MaxTTL is the largest TTL a lease may be granted with, in seconds (etcd's
// limit).
const MaxTTL = 9000000000

// Errors. ErrNotFound, ErrExists and ErrTTLTooLarge are outcomes of applied
// requests, the same on every member; ErrNotPrimary tells a caller of the
// clock half that this member is not (or no longer) the leader's lessor.
var (
	ErrNotFound    = errors.New("lease: lease not found")
	ErrExists      = errors.New("lease: lease already exists")
	ErrTTLTooLarge = errors.New("lease: TTL is too large")
	ErrNotPrimary  = errors.New("lease: not the primary lessor")
)

// IsRequestError reports whether err is a replicated outcome of a lease
// request rather than a storage failure.
func IsRequestError(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.Is(err, ErrTTLTooLarge)
}

// Lessor holds every lease. It is safe for concurrent use: the applier
// changes it while client requests read it.
type Lessor struct {
	now func() time.Time

	mu      sync.RWMutex
	leases  map[int64]*lease
	primary bool
	demotec chan struct{} // closed by Demote; replaced by Promote
}

type lease struct {
	id  int64
	ttl int64 // granted TTL, seconds
	// remaining is the last checkpointed remaining TTL in seconds; 0 means
	// no checkpoint (a new leader gives the full TTL).
	remaining int64
	keys      map[string]struct{}

	// Clock half, primary only.
	expiry   time.Time // zero: never (this member is not primary)
	proposed time.Time // when the leader last proposed revoking it
	revokec  chan struct{}
}

// New returns an empty lessor reading time from now (time.Now if nil).
func New(now func() time.Time) *Lessor {
	if now == nil {
		now = time.Now
	}
	return &Lessor{now: now, leases: make(map[int64]*lease), demotec: closedChan()}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func newLease(id, ttl, remaining int64) *lease {
	return &lease{id: id, ttl: ttl, remaining: remaining, keys: make(map[string]struct{}), revokec: make(chan struct{})}
}

// Load replaces every lease with the records r holds: at start and after a
// raft snapshot replaced the state machine. Expiry times restart from now
// if this member is primary.
func (l *Lessor) Load(r pebble.Reader) error {
	leases := make(map[int64]*lease)
	lo, hi := storage.LeaseSpan()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		id, err := storage.DecodeLeaseKey(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		ttl, remaining, err := decodeRecord(it.Value())
		if err != nil {
			it.Close()
			return fmt.Errorf("lease %x: %w", id, err)
		}
		leases[id] = newLease(id, ttl, remaining)
	}
	if err := it.Close(); err != nil {
		return err
	}
	lo, hi = storage.LeaseAttachSpan()
	it, err = r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		id, key, err := storage.DecodeLeaseAttachKey(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		ls := leases[id]
		if ls == nil {
			it.Close()
			return fmt.Errorf("%w: key %q is attached to lease %x, which has no record", storage.ErrMalformedKey, key, id)
		}
		ls.keys[string(key)] = struct{}{}
	}
	if err := it.Close(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leases = leases
	if l.primary {
		now := l.now()
		for _, ls := range leases {
			ls.expiry = now.Add(seconds(ls.startTTL()))
		}
	}
	return nil
}

func encodeRecord(ttl, remaining int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(ttl))
	return binary.BigEndian.AppendUint64(b, uint64(remaining))
}

func decodeRecord(v []byte) (ttl, remaining int64, err error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("%w: lease record %x", storage.ErrMalformedKey, v)
	}
	return int64(binary.BigEndian.Uint64(v[:8])), int64(binary.BigEndian.Uint64(v[8:])), nil
}

func seconds(s int64) time.Duration {
	if s > int64(math.MaxInt64/time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s) * time.Second
}

// startTTL is what a new leader gives the lease: the checkpointed
// remainder if there is one, otherwise the full TTL.
func (ls *lease) startTTL() int64 {
	if ls.remaining > 0 {
		return ls.remaining
	}
	return ls.ttl
}

// Grant creates lease id with ttl seconds (the caller has already raised it
// to the minimum TTL), recording it in w.
func (l *Lessor) Grant(w pebble.Writer, id, ttl int64) error {
	if id == 0 {
		return fmt.Errorf("%w: lease ID 0 is reserved", ErrNotFound)
	}
	if ttl > MaxTTL {
		return fmt.Errorf("%w: %d s (at most %d s)", ErrTTLTooLarge, ttl, int64(MaxTTL))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.leases[id]; ok {
		return fmt.Errorf("%w: %x", ErrExists, id)
	}
	if err := w.Set(storage.LeaseKey(id), encodeRecord(ttl, 0), nil); err != nil {
		return err
	}
	ls := newLease(id, ttl, 0)
	if l.primary {
		ls.expiry = l.now().Add(seconds(ttl))
	}
	l.leases[id] = ls
	return nil
}

// Keys returns the keys attached to lease id in byte order, or ErrNotFound.
func (l *Lessor) Keys(id int64) ([][]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	ls := l.leases[id]
	if ls == nil {
		return nil, fmt.Errorf("%w: %x", ErrNotFound, id)
	}
	return ls.sortedKeys(), nil
}

func (ls *lease) sortedKeys() [][]byte {
	keys := make([][]byte, 0, len(ls.keys))
	for k := range ls.keys {
		keys = append(keys, []byte(k))
	}
	slices.SortFunc(keys, bytes.Compare)
	return keys
}

// Revoke removes lease id and its attachment records. The caller deletes
// the attached keys (Keys) in the same batch first.
func (l *Lessor) Revoke(w pebble.Writer, id int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil {
		return fmt.Errorf("%w: %x", ErrNotFound, id)
	}
	for k := range ls.keys {
		if err := w.Delete(storage.LeaseAttachKey(id, []byte(k)), nil); err != nil {
			return err
		}
	}
	if err := w.Delete(storage.LeaseKey(id), nil); err != nil {
		return err
	}
	delete(l.leases, id)
	close(ls.revokec)
	return nil
}

// Checkpoint records the remaining TTL the leader measured for lease id;
// unknown leases are skipped (revoked since the leader measured).
func (l *Lessor) Checkpoint(w pebble.Writer, id, remaining int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil || ls.remaining == remaining {
		return nil
	}
	if err := w.Set(storage.LeaseKey(id), encodeRecord(ls.ttl, remaining), nil); err != nil {
		return err
	}
	ls.remaining = remaining
	return nil
}

// Track updates attachments from the changes the KV store made: a key
// leaves the lease of the version it replaced or deleted and joins the
// lease of the version a put wrote.
func (l *Lessor) Track(w pebble.Writer, events []*mvccpb.Event) error {
	if !slices.ContainsFunc(events, func(ev *mvccpb.Event) bool {
		return ev.GetKv().GetLease() != 0 || ev.GetPrevKv().GetLease() != 0
	}) {
		return nil // the common case: no lease involved, no lock taken
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range events {
		key := ev.GetKv().GetKey()
		var from, to int64
		if ev.GetPrevKv() != nil {
			from = ev.GetPrevKv().GetLease()
		}
		if ev.GetType() == mvccpb.Event_PUT {
			to = ev.GetKv().GetLease()
		}
		if from == to {
			continue
		}
		if ls := l.leases[from]; ls != nil {
			delete(ls.keys, string(key))
			if err := w.Delete(storage.LeaseAttachKey(from, key), nil); err != nil {
				return err
			}
		}
		if ls := l.leases[to]; ls != nil {
			ls.keys[string(key)] = struct{}{}
			if err := w.Set(storage.LeaseAttachKey(to, key), nil, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check returns ErrNotFound unless lease id exists; it is the KV store's
// check of a put's lease.
func (l *Lessor) Check(id int64) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.leases[id] == nil {
		return fmt.Errorf("%w: %x", ErrNotFound, id)
	}
	return nil
}

// IDs returns the ID of every lease, in ascending order.
func (l *Lessor) IDs() []int64 {
	l.mu.RLock()
	ids := make([]int64, 0, len(l.leases))
	for id := range l.leases {
		ids = append(ids, id)
	}
	l.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// Promote makes this lessor primary: every lease expires after its
// remaining TTL (see startTTL) plus extend from now.
func (l *Lessor) Promote(extend time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.primary {
		return
	}
	l.primary = true
	l.demotec = make(chan struct{})
	now := l.now().Add(extend)
	for _, ls := range l.leases {
		ls.expiry = now.Add(seconds(ls.startTTL()))
		ls.proposed = time.Time{}
	}
}

// Demote makes this lessor a follower's: no lease expires here. Callers
// waiting in Renew get ErrNotPrimary.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return
	}
	l.primary = false
	close(l.demotec)
	for _, ls := range l.leases {
		ls.expiry = time.Time{}
		ls.proposed = time.Time{}
	}
}

// Primary reports whether this lessor decides expiry.
func (l *Lessor) Primary() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.primary
}

// Renew restarts lease id's full TTL and returns it. A lease that has
// already expired is not renewed: Renew waits until its revocation is
// applied (ErrNotFound) or this lessor is demoted (ErrNotPrimary).
// clearCheckpoint is true when the lease carries a checkpointed remainder
// that the caller should now replicate as cleared (0), so a later leader
// gives the lease its full TTL.
func (l *Lessor) Renew(ctx context.Context, id int64) (ttl int64, clearCheckpoint bool, err error) {
	l.mu.Lock()
	if !l.primary {
		l.mu.Unlock()
		return 0, false, ErrNotPrimary
	}
	ls := l.leases[id]
	if ls == nil {
		l.mu.Unlock()
		return 0, false, fmt.Errorf("%w: %x", ErrNotFound, id)
	}
	now := l.now()
	if !ls.expiry.After(now) {
		revokec, demotec := ls.revokec, l.demotec
		l.mu.Unlock()
		select {
		case <-revokec:
			return 0, false, fmt.Errorf("%w: %x", ErrNotFound, id)
		case <-demotec:
			return 0, false, ErrNotPrimary
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
	ls.expiry = now.Add(seconds(ls.ttl))
	ls.proposed = time.Time{}
	ttl, clearCheckpoint = ls.ttl, ls.remaining > 0
	l.mu.Unlock()
	return ttl, clearCheckpoint, nil
}

// Status is what TimeToLive reports of one lease.
type Status struct {
	ID         int64
	GrantedTTL int64
	Remaining  int64    // seconds until expiry, rounded down; 0 when due
	Keys       [][]byte // in byte order, only when asked for
}

// TimeToLive describes lease id as the primary sees it.
func (l *Lessor) TimeToLive(id int64, withKeys bool) (Status, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.primary {
		return Status{}, ErrNotPrimary
	}
	ls := l.leases[id]
	if ls == nil {
		return Status{}, fmt.Errorf("%w: %x", ErrNotFound, id)
	}
	st := Status{ID: id, GrantedTTL: ls.ttl, Remaining: max(0, int64(ls.expiry.Sub(l.now())/time.Second))}
	if withKeys {
		st.Keys = ls.sortedKeys()
	}
	return st, nil
}

// Expired returns up to limit leases whose time has come, earliest first,
// and remembers that their revocation is being proposed: a lease is
// returned again only if it is still here retry later (the proposal was
// lost, for instance in a leader change). Only a primary has any.
func (l *Lessor) Expired(limit int, retry time.Duration) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return nil
	}
	now := l.now()
	var due []*lease
	for _, ls := range l.leases {
		if ls.expiry.After(now) || (!ls.proposed.IsZero() && now.Sub(ls.proposed) < retry) {
			continue
		}
		due = append(due, ls)
	}
	sort.Slice(due, func(i, j int) bool { return due[i].expiry.Before(due[j].expiry) })
	if len(due) == 0 {
		return nil
	}
	if len(due) > limit {
		due = due[:limit]
	}
	ids := make([]int64, len(due))
	for i, ls := range due {
		ls.proposed = now
		ids[i] = ls.id
	}
	return ids
}

// CheckpointEntry is one lease's remaining TTL, measured by the primary.
type CheckpointEntry struct {
	ID        int64
	Remaining int64
}

// Due returns, for every lease that will live longer than interval, its
// remaining TTL in whole seconds (rounded up), in ID order: what the
// primary replicates every interval so that a new leader does not give
// long leases their full TTL back.
func (l *Lessor) Due(interval time.Duration) []CheckpointEntry {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.primary {
		return nil
	}
	now := l.now()
	var out []CheckpointEntry
	for _, ls := range l.leases {
		left := ls.expiry.Sub(now)
		if left <= interval {
			continue
		}
		out = append(out, CheckpointEntry{ID: ls.id, Remaining: int64((left + time.Second - 1) / time.Second)})
	}
	slices.SortFunc(out, func(a, b CheckpointEntry) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
