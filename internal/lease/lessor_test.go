package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestDB(t *testing.T) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quiet{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// apply runs f against a batch and commits it, as the applier does.
func apply(t *testing.T, db *pebble.DB, f func(b *pebble.Batch) error) error {
	t.Helper()
	b := db.NewIndexedBatch()
	defer b.Close()
	if err := f(b); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	return nil
}

func put(key string, lease int64, prev int64) *mvccpb.Event {
	ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(key), Lease: lease}}
	if prev >= 0 {
		ev.PrevKv = &mvccpb.KeyValue{Key: []byte(key), Lease: prev}
	}
	return ev
}

func del(key string, prev int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key)}, PrevKv: &mvccpb.KeyValue{Key: []byte(key), Lease: prev}}
}

func keyStrings(keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = string(k)
	}
	return out
}

func TestTrackFollowsKeyChangesAndLoadRestoresThem(t *testing.T) {
	db := newTestDB(t)
	l := New(nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(apply(t, db, func(b *pebble.Batch) error { return l.Grant(b, 1, 10) }))
	must(apply(t, db, func(b *pebble.Batch) error { return l.Grant(b, 2, 20) }))
	must(apply(t, db, func(b *pebble.Batch) error {
		return l.Track(b, []*mvccpb.Event{
			put("a", 1, -1), put("b", 1, -1), put("c", 2, -1),
			put("b", 2, 1), // moves from lease 1 to 2
			put("c", 0, 2), // leaves its lease
			put("d", 1, -1), del("d", 1),
			put("e", 7, -1), // unknown lease: not tracked
		})
	}))
	must(apply(t, db, func(b *pebble.Batch) error { return l.Checkpoint(b, 2, 15) }))
	check := func(l *Lessor) {
		t.Helper()
		for id, want := range map[int64][]string{1: {"a"}, 2: {"b"}} {
			keys, err := l.Keys(id)
			if err != nil || !slices.Equal(keyStrings(keys), want) {
				t.Errorf("keys of lease %d = %q, %v; want %q", id, keyStrings(keys), err, want)
			}
		}
		if got := l.IDs(); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("IDs = %v, want [1 2]", got)
		}
	}
	check(l)
	reloaded := New(nil)
	must(reloaded.Load(db))
	check(reloaded)
	if ls := reloaded.leases[2]; ls.ttl != 20 || ls.remaining != 15 {
		t.Errorf("reloaded lease 2: ttl %d remaining %d, want 20 and 15", ls.ttl, ls.remaining)
	}

	must(apply(t, db, func(b *pebble.Batch) error { return reloaded.Revoke(b, 1) }))
	again := New(nil)
	must(again.Load(db))
	if _, err := again.Keys(1); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoked lease after reload: %v, want ErrNotFound", err)
	}
	if err := again.Check(2); err != nil {
		t.Errorf("lease 2 after reload: %v", err)
	}
}

func TestGrantRefusals(t *testing.T) {
	db := newTestDB(t)
	l := New(nil)
	if err := apply(t, db, func(b *pebble.Batch) error { return l.Grant(b, 5, 10) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id, ttl int64
		want    error
	}{
		{5, 10, ErrExists},
		{6, MaxTTL + 1, ErrTTLTooLarge},
		{0, 10, ErrNotFound},
	} {
		err := apply(t, db, func(b *pebble.Batch) error { return l.Grant(b, tc.id, tc.ttl) })
		if !errors.Is(err, tc.want) || !IsRequestError(err) {
			t.Errorf("Grant(%d, %d) = %v, want %v", tc.id, tc.ttl, err, tc.want)
		}
	}
}

func TestOnlyThePrimaryExpiresAndPromotionRestartsTTLs(t *testing.T) {
	db := newTestDB(t)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := New(clk.now)
	for id, ttl := range map[int64]int64{1: 5, 2: 60} {
		if err := apply(t, db, func(b *pebble.Batch) error { return l.Grant(b, id, ttl) }); err != nil {
			t.Fatal(err)
		}
	}
	clk.advance(time.Hour)
	if got := l.Expired(10, time.Second); got != nil {
		t.Fatalf("a follower's lessor expired %v", got)
	}
	if _, _, err := l.Renew(context.Background(), 1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("Renew on a follower = %v, want ErrNotPrimary", err)
	}

	l.Promote(time.Second)
	clk.advance(5 * time.Second)
	if got := l.Expired(10, time.Second); got != nil {
		t.Fatalf("expired %v within TTL + extension", got)
	}
	clk.advance(time.Second)
	if got := l.Expired(10, 3*time.Second); !slices.Equal(got, []int64{1}) {
		t.Fatalf("expired %v after 6 s, want [1]", got)
	}
	if got := l.Expired(10, 3*time.Second); got != nil {
		t.Fatalf("expired %v again before the retry interval", got)
	}
	clk.advance(3 * time.Second)
	if got := l.Expired(10, 3*time.Second); !slices.Equal(got, []int64{1}) {
		t.Fatalf("not proposed again after the retry interval: %v", got)
	}

	st, err := l.TimeToLive(2, false)
	if err != nil || st.GrantedTTL != 60 || st.Remaining != 52 {
		t.Fatalf("TimeToLive(2) = %+v, %v; want granted 60, remaining 52", st, err)
	}
	ttl, clear, err := l.Renew(context.Background(), 2)
	if err != nil || ttl != 60 || clear {
		t.Fatalf("Renew(2) = %d, %v, %v; want 60, no checkpoint to clear", ttl, clear, err)
	}

	// An expired lease is not renewed: the caller waits for revocation.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := l.Renew(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Renew of an expired lease = %v, want to wait", err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := l.Renew(context.Background(), 1); done <- err }()
	if err := apply(t, db, func(b *pebble.Batch) error { return l.Revoke(b, 1) }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrNotFound) {
		t.Fatalf("Renew waiting on a revoked lease = %v, want ErrNotFound", err)
	}

	l.Demote()
	if got := l.Due(time.Second); got != nil {
		t.Fatalf("a follower's lessor has checkpoints due: %v", got)
	}
}

func TestCheckpointedRemainderIsWhatANewLeaderGives(t *testing.T) {
	db := newTestDB(t)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := New(clk.now)
	l.Promote(0)
	if err := apply(t, db, func(b *pebble.Batch) error { return l.Grant(b, 9, 100) }); err != nil {
		t.Fatal(err)
	}
	clk.advance(30 * time.Second)
	due := l.Due(10 * time.Second)
	if !slices.Equal(due, []CheckpointEntry{{ID: 9, Remaining: 70}}) {
		t.Fatalf("Due = %v, want lease 9 with 70 s", due)
	}
	if err := apply(t, db, func(b *pebble.Batch) error { return l.Checkpoint(b, 9, 70) }); err != nil {
		t.Fatal(err)
	}
	l.Demote()
	l.Promote(2 * time.Second)
	if st, _ := l.TimeToLive(9, false); st.Remaining != 72 {
		t.Fatalf("after re-promotion: %d s left, want the 70 s checkpoint + 2 s", st.Remaining)
	}
	if _, clear, _ := l.Renew(context.Background(), 9); !clear {
		t.Fatal("renewing a checkpointed lease does not ask to clear the checkpoint")
	}
}
