package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
)

const testCluster = "m1=http://127.0.0.1:2380"

// loadedEngine is a data dir with history, deletions, a compaction, a txn
// of several changes and keys on two leases (one checkpointed), written
// through the same packages the apply loop uses.
func loadedEngine(t *testing.T) *storage.Engine {
	t.Helper()
	eng, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	kv, err := mvcc.Open(eng.DB)
	if err != nil {
		t.Fatal(err)
	}
	ls := lease.New(nil)
	kv.SetLeaseCheck(ls.Check)
	step := func(f func(b *pebble.Batch, w *mvcc.Writer) error) {
		t.Helper()
		b := eng.DB.NewIndexedBatch()
		w := kv.NewWriter(b)
		if err := f(b, w); err != nil {
			t.Fatal(err)
		}
		if err := ls.Track(b, w.Events()); err != nil {
			t.Fatal(err)
		}
		if err := kv.Commit(w, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	put := func(k, v string, l int64) func(*pebble.Batch, *mvcc.Writer) error {
		return func(_ *pebble.Batch, w *mvcc.Writer) error {
			_, err := w.Put(&pb.PutRequest{Key: []byte(k), Value: []byte(v), Lease: l})
			return err
		}
	}
	step(func(b *pebble.Batch, _ *mvcc.Writer) error { return ls.Grant(b, 0x100, 60) })
	step(func(b *pebble.Batch, _ *mvcc.Writer) error { return ls.Grant(b, 0x200, 3600) })
	step(func(b *pebble.Batch, _ *mvcc.Writer) error { return ls.Checkpoint(b, 0x200, 1234) })
	for i := range 20 {
		step(put(fmt.Sprintf("k%02d", i%7), fmt.Sprintf("v%d", i), 0))
	}
	step(put("leased/a", "x", 0x100))
	step(put("leased/b", "y", 0x200))
	step(put("leased/c", "z", 0x100))
	step(put("leased/c", "z2", 0)) // detached again
	step(func(_ *pebble.Batch, w *mvcc.Writer) error {
		_, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("k00")})
		return err
	})
	step(func(_ *pebble.Batch, w *mvcc.Writer) error {
		_, err := w.Compact(&pb.CompactionRequest{Revision: 15})
		return err
	})
	if err := kv.FinishCompaction(); err != nil {
		t.Fatal(err)
	}
	step(func(_ *pebble.Batch, w *mvcc.Writer) error {
		_, err := w.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t1"), Value: []byte("1")}}},
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k01")}}},
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t2"), Value: []byte("2")}}},
		}})
		return err
	})
	if err := eng.DB.Set(storage.AppliedIndexKey, storage.PutUint64(77), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	m, _ := proto.Marshal(&pb.Member{ID: 0xabc, Name: "m1", PeerURLs: []string{"http://127.0.0.1:2380"}})
	if err := eng.DB.Set(storage.MemberKey(0xabc), m, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	return eng
}

func saveFile(t *testing.T, db *pebble.DB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snap.db")
	snap := db.NewSnapshot()
	defer snap.Close()
	dbPath := filepath.Join(t.TempDir(), "db")
	if err := Build(dbPath, snap, BuildOptions{Term: 3}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := WriteTo(f, dbPath); err != nil {
		t.Fatal(err)
	}
	return path
}

// state is everything a restore must carry over: every retained change,
// the revisions and the leases with their keys.
type state struct {
	Rev, CompactRev int64
	Changes         []string
	Leases          []lease.Record
	Attached        map[int64][]string
}

func stateOf(t *testing.T, db *pebble.DB) state {
	t.Helper()
	var st state
	var err error
	if st.Rev, st.CompactRev, err = mvcc.StoredRevs(db); err != nil {
		t.Fatal(err)
	}
	if err := mvcc.ForEachChange(db, func(c mvcc.Change) error {
		st.Changes = append(st.Changes, fmt.Sprintf("%d.%d tomb=%v %v", c.Rev.Main, c.Rev.Sub, c.Tombstone, c.KV))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if st.Leases, err = lease.Records(db); err != nil {
		t.Fatal(err)
	}
	ls := lease.New(nil)
	if err := ls.Load(db); err != nil {
		t.Fatal(err)
	}
	st.Attached = map[int64][]string{}
	for _, id := range ls.IDs() {
		keys, err := ls.Keys(id)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			st.Attached[id] = append(st.Attached[id], string(k))
		}
	}
	return st
}

func restoreConfig(snap, dir string) RestoreConfig {
	return RestoreConfig{SnapshotPath: snap, DataDir: dir, Name: "m1", InitialCluster: testCluster,
		ClusterToken: "t", PeerURLs: []string{"http://127.0.0.1:2380"}}
}

func TestRoundTripKeepsEveryRetainedChangeRevisionAndLease(t *testing.T) {
	eng := loadedEngine(t)
	path := saveFile(t, eng.DB)

	f, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Status()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := stateOf(t, eng.DB)
	if st.Revision != want.Rev || st.TotalKey != 10 || st.Version != "3.6.0" {
		t.Fatalf("status %+v, want revision %d, 10 keys, version 3.6.0", st, want.Rev)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	res, err := Restore(restoreConfig(path, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != want.Rev || res.CompactRev != want.CompactRev || res.Leases != 2 {
		t.Fatalf("restore result %+v, want revision %d compact %d and 2 leases", res, want.Rev, want.CompactRev)
	}
	got2, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer got2.Close()
	got := stateOf(t, got2.DB)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored state differs:\n got  %v\n want %v", got, want)
	}
	if v, _ := storage.Get(got2.DB, storage.AppliedIndexKey); v != nil {
		t.Fatalf("restored data dir has applied index %x; a new cluster must apply its bootstrap entries from 1", v)
	}
	if len(want.Attached[0x100]) != 1 || len(want.Attached[0x200]) != 1 || want.Leases[1].Remaining != 1234 {
		t.Fatalf("fixture lost its leases: %+v", want)
	}
}

func TestRestoreBumpsAndMarksCompacted(t *testing.T) {
	eng := loadedEngine(t)
	path := saveFile(t, eng.DB)
	want := stateOf(t, eng.DB)
	cfg := restoreConfig(path, filepath.Join(t.TempDir(), "d"))
	cfg.RevisionBump, cfg.MarkCompacted = 1000, true
	res, err := Restore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != want.Rev+1000 || res.CompactRev != want.Rev+1000 {
		t.Fatalf("restore result %+v, want revision and compact revision %d", res, want.Rev+1000)
	}
}

func TestOpenRefusesDamagedFilesEachWithItsReason(t *testing.T) {
	eng := loadedEngine(t)
	path := saveFile(t, eng.DB)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-100] ^= 0xff
	noSum := data[:len(data)-32]
	for _, tc := range []struct {
		name string
		path string
		skip bool
		want error
	}{
		{"wrong checksum", write("flipped", flipped), false, ErrChecksum},
		{"truncated in the middle", write("half", data[:len(data)/2]), false, ErrTruncated},
		{"truncated to a page and a checksum", write("short", data[:4096+32]), false, ErrTruncated},
		{"text file", write("text", []byte("hello, this is not a database\n")), false, ErrNotSnapshot},
		{"zeros", write("zeros", make([]byte, 64<<10)), false, ErrNotSnapshot},
		{"db without checksum", write("nosum", noSum), false, ErrNoChecksum},
		{"truncated even when skipping the check", write("half2", data[:len(data)/2]), true, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(tc.path, tc.skip)
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
	f, err := Open(write("nosum2", noSum), true)
	if err != nil {
		t.Fatalf("a db without checksum with --skip-hash-check: %v", err)
	}
	f.Close()
}

func TestRestoreRefusesNonEmptyDataDirAndLeavesNothingOnFailure(t *testing.T) {
	eng := loadedEngine(t)
	path := saveFile(t, eng.DB)
	parent := t.TempDir()
	dir := filepath.Join(parent, "d")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(restoreConfig(path, dir)); err == nil {
		t.Fatal("restore into a non-empty data dir succeeded")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(b) != "x" {
		t.Fatalf("existing file changed: %q, %v", b, err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("not a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(restoreConfig(bad, filepath.Join(parent, "e"))); !errors.Is(err, ErrNotSnapshot) {
		t.Fatalf("restore of a foreign file: %v", err)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		t.Fatalf("failed restores left %d entries in %s, want only the pre-existing dir", len(ents), parent)
	}
}
