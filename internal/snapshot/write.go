package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/auth"
	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/membership"
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
	// Not synced: the database is an intermediate file, read back at once
	// (an fsync of it would compete with the member's own for the disk).
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	if err := db.Update(func(tx *bolt.Tx) error { return writeMeta(tx, r, opts) }); err != nil {
		return err
	}
	var batch []mvcc.Change
	flush := func() error {
		select {
		case <-opts.Abort:
			return ErrAborted
		default:
		}
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketKey)
			// Keys come in ascending order: fill pages further before
			// splitting them, as etcd's backend does for this bucket.
			b.FillPercent = 0.9
			for _, c := range batch {
				v, err := proto.Marshal(c.KV)
				if err != nil {
					return err
				}
				if err := b.Put(revKey(c.Rev.Main, c.Rev.Sub, c.Tombstone), v); err != nil {
					return err
				}
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

// writeMeta writes everything but the key space: the buckets etcd always
// has, the meta records, leases, members and the cluster version.
func writeMeta(tx *bolt.Tx, r pebble.Reader, opts BuildOptions) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	_, compactRev, err := mvcc.StoredRevs(r)
	if err != nil {
		return err
	}
	// A history still being compacted is finished only up to where the
	// steps were; etcd and a restore compact the rest.
	compacted, err := mvcc.StoredCompacted(r)
	if err != nil {
		return err
	}
	if compactRev > 0 {
		if err := meta.Put(metaScheduledCompact, revKey(compactRev, 0, false)); err != nil {
			return err
		}
	}
	if compacted > 0 {
		if err := meta.Put(metaFinishedCompact, revKey(compacted, 0, false)); err != nil {
			return err
		}
	}
	applied, err := storage.Get(r, storage.AppliedIndexKey)
	if err != nil {
		return err
	}
	index, err := storage.GetUint64(applied)
	if err != nil {
		return err
	}
	// etcd never records index 0 (it means "not loaded yet").
	if index > 0 {
		if err := meta.Put(metaConsistentIndex, binary.BigEndian.AppendUint64(nil, index)); err != nil {
			return err
		}
		if opts.Term > 0 {
			if err := meta.Put(metaTerm, binary.BigEndian.AppendUint64(nil, opts.Term)); err != nil {
				return err
			}
		}
	}
	if err := meta.Put(metaStorageVersion, []byte(version.StorageVersion)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketCluster).Put(clusterVersionKey, []byte(version.StorageVersion)); err != nil {
		return err
	}

	leases, err := lease.Records(r)
	if err != nil {
		return fmt.Errorf("read leases for snapshot: %w", err)
	}
	for _, l := range leases {
		v, err := proto.Marshal(&leasepb.Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.Remaining})
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketLease).Put(leaseKey(l.ID), v); err != nil {
			return err
		}
	}

	members, err := readMembers(r)
	if err != nil {
		return err
	}
	cs := &raftpb.ConfState{}
	for _, m := range members {
		v, err := json.Marshal(&memberRecord{
			ID: types.ID(m.GetID()), PeerURLs: m.GetPeerURLs(), IsLearner: m.GetIsLearner(),
			Name: m.GetName(), ClientURLs: m.GetClientURLs(),
		})
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketMembers).Put(memberKey(m.GetID()), v); err != nil {
			return err
		}
		if m.GetIsLearner() {
			cs.Learners = append(cs.Learners, m.GetID())
		} else {
			cs.Voters = append(cs.Voters, m.GetID())
		}
	}
	if len(members) > 0 {
		v, err := json.Marshal(cs)
		if err != nil {
			return err
		}
		if err := meta.Put(metaConfState, v); err != nil {
			return err
		}
	}
	return writeAuth(tx, r)
}

// writeAuth writes the auth switch, revision, users and roles as etcd
// keeps them: a cluster restored from the backup is as closed as the one
// it was taken from.
func writeAuth(tx *bolt.Tx, r pebble.Reader) error {
	var st auth.Store
	if err := st.Load(r); err != nil {
		return fmt.Errorf("read auth state for snapshot: %w", err)
	}
	rec := st.Records()
	b := tx.Bucket(bucketAuth)
	enabled := []byte{0}
	if rec.Enabled {
		enabled = []byte{1}
	}
	if err := b.Put(authEnabledKey, enabled); err != nil {
		return err
	}
	if err := b.Put(authRevisionKey, binary.BigEndian.AppendUint64(nil, rec.Revision)); err != nil {
		return err
	}
	for _, u := range rec.Users {
		v, err := proto.Marshal(u)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketAuthUsers).Put(u.GetName(), v); err != nil {
			return err
		}
	}
	for _, role := range rec.Roles {
		v, err := proto.Marshal(role)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketAuthRoles).Put(role.GetName(), v); err != nil {
			return err
		}
	}
	return nil
}

// readMembers reads the member list stored in r.
func readMembers(r pebble.Reader) ([]*pb.Member, error) {
	var ms membership.Store
	if err := ms.Load(r); err != nil {
		return nil, err
	}
	return ms.List(), nil
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
