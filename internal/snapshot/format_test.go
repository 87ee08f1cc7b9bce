package snapshot

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/coreos/go-semver/semver"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	etcdmvcc "go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
)

// The layout restated in format.go must be etcd's: a file Build writes is
// read back by etcd's own readers (through boltTx), record by record.
func TestBuiltFileReadsBackThroughEtcdsSchema(t *testing.T) {
	eng := loadedEngine(t)
	path := filepath.Join(t.TempDir(), "db")
	snap := eng.DB.NewSnapshot()
	defer snap.Close()
	if err := Build(path, snap, BuildOptions{Term: 3}); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(btx *bolt.Tx) error {
		tx := &boltTx{tx: btx}
		for i, b := range schema.AllBuckets {
			if !bytes.Equal(allBuckets[i], b.Name()) || btx.Bucket(b.Name()) == nil {
				t.Errorf("bucket %d: ours %q, etcd's %q (present: %v)", i, allBuckets[i], b.Name(), btx.Bucket(b.Name()) != nil)
			}
		}
		if index, term := schema.UnsafeReadConsistentIndex(tx); index != 77 || term != 3 {
			t.Errorf("etcd reads consistent index %d term %d, want 77 and 3", index, term)
		}
		for _, read := range []func(tx *boltTx) (int64, bool){
			func(tx *boltTx) (int64, bool) { return etcdmvcc.UnsafeReadFinishedCompact(tx) },
			func(tx *boltTx) (int64, bool) { return etcdmvcc.UnsafeReadScheduledCompact(tx) },
		} {
			if rev, ok := read(tx); !ok || rev != 15 {
				t.Errorf("etcd reads compaction revision %d (%v), want 15", rev, ok)
			}
		}
		if v := schema.UnsafeReadStorageVersion(tx); v == nil || !v.Equal(*semver.New("3.6.0")) {
			t.Errorf("etcd reads storage version %v, want 3.6.0", v)
		}
		if _, vs := tx.UnsafeRange(schema.Cluster, schema.ClusterClusterVersionKeyName, nil, 0); len(vs) != 1 || string(vs[0]) != "3.6.0" {
			t.Errorf("cluster version %q, want 3.6.0", vs)
		}
		if cs := schema.UnsafeConfStateFromBackend(zap.NewNop(), tx); cs == nil || !slices.Equal(cs.GetVoters(), []uint64{0xabc}) {
			t.Errorf("etcd reads conf state %v, want voter abc", cs)
		}
		if l := schema.MustUnsafeGetLease(tx, 0x200); l.GetTTL() != 3600 || l.GetRemainingTTL() != 1234 {
			t.Errorf("etcd reads lease 0x200 as %v, want TTL 3600 remaining 1234", l)
		}
		if ls := schema.MustUnsafeGetAllLeases(tx); len(ls) != 2 {
			t.Errorf("etcd reads %d leases, want 2", len(ls))
		}
		want := &membership.Member{ID: 0xabc, RaftAttributes: membership.RaftAttributes{PeerURLs: []string{"http://127.0.0.1:2380"}},
			Attributes: membership.Attributes{Name: "m1"}}
		wantJSON, _ := json.Marshal(want)
		if _, vs := tx.UnsafeRange(schema.Members, schema.BackendMemberKey(types.ID(0xabc)), nil, 0); len(vs) != 1 || !bytes.Equal(vs[0], wantJSON) {
			t.Errorf("member record %s, etcd's encoding %s", vs, wantJSON)
		}
		var changes []mvcc.Change
		if err := mvcc.ForEachChange(eng.DB, func(c mvcc.Change) error { changes = append(changes, c); return nil }); err != nil {
			t.Fatal(err)
		}
		i := 0
		err := tx.UnsafeForEach(schema.Key, func(k, v []byte) error {
			c := changes[i]
			i++
			want := etcdmvcc.BucketKeyToBytes(etcdmvcc.BucketKey{Revision: etcdmvcc.Revision{Main: c.Rev.Main, Sub: c.Rev.Sub}}, etcdmvcc.NewRevBytes())
			bk := etcdmvcc.BytesToBucketKey(k)
			if !bytes.HasPrefix(k, want) || bk.Main != c.Rev.Main || bk.Sub != c.Rev.Sub || etcdmvcc.IsTombstone(k) != c.Tombstone {
				t.Errorf("key record %x: etcd reads %+v tombstone %v, want %+v", k, bk, etcdmvcc.IsTombstone(k), c)
			}
			kv := &mvccpb.KeyValue{}
			if err := proto.Unmarshal(v, kv); err != nil || !proto.Equal(kv, c.KV) {
				t.Errorf("key record %x holds %v (%v), want %v", k, kv, err, c.KV)
			}
			return nil
		})
		if i != len(changes) || len(changes) == 0 {
			t.Errorf("key bucket holds %d records, the store %d changes", i, len(changes))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A file written with etcd's writers restores with its revisions, keys and
// leases.
func TestRestoresFileWrittenByEtcdsSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etcd.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	put := func(tx *boltTx, main, sub int64, kv *mvccpb.KeyValue) {
		v, err := proto.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		tx.UnsafeSeqPut(schema.Key, etcdmvcc.BucketKeyToBytes(etcdmvcc.BucketKey{Revision: etcdmvcc.Revision{Main: main, Sub: sub}}, etcdmvcc.NewRevBytes()), v)
	}
	err = db.Update(func(btx *bolt.Tx) error {
		tx := &boltTx{tx: btx}
		for _, b := range schema.AllBuckets {
			tx.UnsafeCreateBucket(b)
		}
		put(tx, 2, 0, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1})
		put(tx, 3, 0, &mvccpb.KeyValue{Key: []byte("b"), Value: []byte("2"), CreateRevision: 3, ModRevision: 3, Version: 1, Lease: 9})
		put(tx, 4, 0, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("3"), CreateRevision: 2, ModRevision: 4, Version: 2})
		put(tx, 4, 1, &mvccpb.KeyValue{Key: []byte("c"), Value: []byte("4"), CreateRevision: 4, ModRevision: 4, Version: 1})
		schema.MustUnsafePutLease(tx, &leasepb.Lease{ID: 9, TTL: 100, RemainingTTL: 40})
		etcdmvcc.UnsafeSetScheduledCompact(tx, 3)
		etcdmvcc.UnsafeSetFinishedCompact(tx, 3)
		schema.UnsafeUpdateConsistentIndex(tx, 50, 2)
		return tx.err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Append the checksum as etcd's Maintenance.Snapshot does.
	withChecksum(t, path)
	dir := filepath.Join(t.TempDir(), "restored")
	res, err := Restore(restoreConfig(path, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 4 || res.CompactRev != 3 || res.Keys != 3 || res.Leases != 1 {
		t.Fatalf("restore result %+v, want revision 4, compacted at 3, 3 keys, 1 lease", res)
	}
	eng, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	got := stateOf(t, eng.DB)
	if len(got.Changes) != 4 || got.Rev != 4 || got.CompactRev != 3 {
		t.Errorf("restored state %+v", got)
	}
	if !slices.Equal(got.Leases, []lease.Record{{ID: 9, TTL: 100, Remaining: 40}}) || !slices.Equal(got.Attached[9], []string{"b"}) {
		t.Errorf("restored leases %+v attached %v", got.Leases, got.Attached)
	}
}
