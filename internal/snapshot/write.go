package snapshot

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/coreos/go-semver/semver"
	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	etcdmvcc "go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
	"github.com/kvorum/kvorum/internal/version"
)

// changesPerTx bounds the key-value records written per bbolt transaction,
// so building a large snapshot holds a bounded amount of dirty pages.
const changesPerTx = 10000

// BuildOptions says what the state machine itself does not hold.
type BuildOptions struct {
	// Term is the raft term recorded with the applied index (etcd's "term"
	// meta key). Restores ignore it.
	Term uint64
	// Abort, when closed, makes Build give up (with ErrAborted) before
	// its next transaction: the server closes it when it stops.
	Abort <-chan struct{}
}

// ErrAborted is what Build returns when BuildOptions.Abort was closed.
var ErrAborted = errors.New("snapshot build aborted: the server is stopping")

// Build writes a bbolt database in etcd's layout at path (which must not
// exist) from r, a consistent view of a member's state machine. The file
// holds no checksum yet; WriteTo appends it when copying the database out.
func Build(path string, r pebble.Reader, opts BuildOptions) (err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		return fmt.Errorf("create snapshot database %s: %w", path, err)
	}
	defer func() {
		if err == nil {
			err = db.Sync()
		}
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	if err := update(db, func(tx *boltTx) error { return writeMeta(tx, r, opts) }); err != nil {
		return err
	}
	var batch []mvcc.Change
	flush := func() error {
		select {
		case <-opts.Abort:
			return ErrAborted
		default:
		}
		err := update(db, func(tx *boltTx) error {
			for _, c := range batch {
				k := etcdmvcc.BucketKeyToBytes(etcdmvcc.BucketKey{Revision: etcdmvcc.Revision{Main: c.Rev.Main, Sub: c.Rev.Sub}}, etcdmvcc.NewRevBytes())
				if c.Tombstone {
					// etcd marks a tombstone's revision key with a trailing
					// 't' (mvcc.IsTombstone); the marking constructor is not
					// exported.
					k = append(k, 't')
				}
				v, err := proto.Marshal(c.KV)
				if err != nil {
					return err
				}
				tx.UnsafeSeqPut(schema.Key, k, v)
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	err = mvcc.ForEachChange(r, func(c mvcc.Change) error {
		batch = append(batch, c)
		if len(batch) >= changesPerTx {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read key space for snapshot: %w", err)
	}
	return flush()
}

func update(db *bolt.DB, fn func(tx *boltTx) error) error {
	return db.Update(func(btx *bolt.Tx) error {
		tx := &boltTx{tx: btx}
		if err := fn(tx); err != nil {
			return err
		}
		return tx.err
	})
}

// writeMeta writes everything but the key space: the buckets etcd always
// has, the meta records, leases, members and the cluster version.
func writeMeta(tx *boltTx, r pebble.Reader, opts BuildOptions) error {
	for _, b := range schema.AllBuckets {
		tx.UnsafeCreateBucket(b)
	}
	_, compactRev, err := mvcc.StoredRevs(r)
	if err != nil {
		return err
	}
	if compactRev > 0 {
		etcdmvcc.UnsafeSetScheduledCompact(tx, compactRev)
		etcdmvcc.UnsafeSetFinishedCompact(tx, compactRev)
	}
	applied, err := storage.Get(r, storage.AppliedIndexKey)
	if err != nil {
		return err
	}
	index, err := storage.GetUint64(applied)
	if err != nil {
		return err
	}
	schema.UnsafeUpdateConsistentIndex(tx, index, opts.Term)
	ver := semver.Must(semver.NewVersion(version.StorageVersion))
	schema.UnsafeSetStorageVersion(tx, ver)
	tx.UnsafePut(schema.Cluster, schema.ClusterClusterVersionKeyName, []byte(ver.String()))

	leases, err := lease.Records(r)
	if err != nil {
		return fmt.Errorf("read leases for snapshot: %w", err)
	}
	for _, l := range leases {
		schema.MustUnsafePutLease(tx, &leasepb.Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.Remaining})
	}

	members, err := readMembers(r)
	if err != nil {
		return err
	}
	cs := &raftpb.ConfState{}
	for _, m := range members {
		em := &membership.Member{
			ID:             types.ID(m.GetID()),
			RaftAttributes: membership.RaftAttributes{PeerURLs: m.GetPeerURLs(), IsLearner: m.GetIsLearner()},
			Attributes:     membership.Attributes{Name: m.GetName(), ClientURLs: m.GetClientURLs()},
		}
		v, err := json.Marshal(em)
		if err != nil {
			return err
		}
		tx.UnsafePut(schema.Members, schema.BackendMemberKey(em.ID), v)
		if m.GetIsLearner() {
			cs.Learners = append(cs.Learners, m.GetID())
		} else {
			cs.Voters = append(cs.Voters, m.GetID())
		}
	}
	if len(members) > 0 {
		schema.MustUnsafeSaveConfStateToBackend(zap.NewNop(), tx, cs)
	}
	return nil
}

func readMembers(r pebble.Reader) ([]*pb.Member, error) {
	lo, hi := storage.MemberSpan()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var out []*pb.Member
	for it.First(); it.Valid(); it.Next() {
		m := &pb.Member{}
		if err := proto.Unmarshal(it.Value(), m); err != nil {
			it.Close()
			return nil, fmt.Errorf("member record %x is corrupt: %w", it.Key(), err)
		}
		out = append(out, m)
	}
	return out, it.Close()
}

// Size is the number of bytes WriteTo writes for the database at path,
// checksum included.
func Size(path string) (int64, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n + sha256.Size, err
}

// WriteTo copies the database built at path to w as a snapshot file: the
// database's pages, then their sha256. It returns the bytes written.
func WriteTo(w io.Writer, path string) (int64, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("open snapshot database %s: %w", path, err)
	}
	defer db.Close()
	h := sha256.New()
	var n int64
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(io.MultiWriter(w, h))
		return err
	})
	if err != nil {
		return n, err
	}
	m, err := w.Write(h.Sum(nil))
	return n + int64(m), err
}

// Save builds a snapshot of r and writes it to the file at path, which
// must not exist; a failure leaves no file behind. tmpDir holds the
// intermediate database. It returns the file's size.
func Save(path, tmpDir string, r pebble.Reader, opts BuildOptions) (int64, error) {
	dir, err := os.MkdirTemp(tmpDir, "kvorum-snapshot-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	dbPath := dir + string(os.PathSeparator) + "db"
	if err := Build(dbPath, r, opts); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := WriteTo(f, dbPath)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return 0, err
	}
	return n, nil
}
