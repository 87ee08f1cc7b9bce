package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/auth"
	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
)

// RestoreConfig is what etcdutl snapshot restore takes, with its flag
// names in the comments.
type RestoreConfig struct {
	SnapshotPath   string
	DataDir        string // --data-dir; must not exist or be empty
	Name           string // --name
	InitialCluster string // --initial-cluster, name=peerURL,...
	ClusterToken   string // --initial-cluster-token
	PeerURLs       []string
	SkipHashCheck  bool   // --skip-hash-check
	RevisionBump   uint64 // --bump-revision
	MarkCompacted  bool   // --mark-compacted
}

// RestoreResult describes a restored data dir.
type RestoreResult struct {
	Revision   int64
	CompactRev int64 // -1: nothing compacted
	Keys       int   // live keys
	Leases     int
	// Auth is the auth state restored with the data: a cluster restored
	// from a backup of one with access control on has it on too.
	Auth auth.Records
}

// importsPerBatch bounds the changes imported per Pebble batch.
const importsPerBatch = 10000

// Validate checks the member flags as etcdutl does: --name must be one of
// --initial-cluster, with the peer URLs of --initial-advertise-peer-urls.
func (c *RestoreConfig) Validate() error {
	if c.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if c.RevisionBump > 0 != c.MarkCompacted {
		return errors.New("--bump-revision and --mark-compacted go together: a bumped revision must be marked compacted so watchers do not miss the gap")
	}
	ic, err := types.NewURLsMap(c.InitialCluster)
	if err != nil {
		return fmt.Errorf("--initial-cluster %q: %v", c.InitialCluster, err)
	}
	own, ok := ic[c.Name]
	if !ok {
		return fmt.Errorf("--name %q is not a member of --initial-cluster %q", c.Name, c.InitialCluster)
	}
	peers, err := types.NewURLs(c.PeerURLs)
	if err != nil {
		return fmt.Errorf("--initial-advertise-peer-urls %q: %v", c.PeerURLs, err)
	}
	if !slices.Equal(own.StringSlice(), peers.StringSlice()) {
		return fmt.Errorf("--initial-cluster has %s=%s but --initial-advertise-peer-urls is %s; they must match", c.Name, own, peers)
	}
	return nil
}

// Restore builds a new Kvorum data dir at cfg.DataDir holding the key
// space and leases of the snapshot, for a member of a new cluster: the
// member starts with --initial-cluster-state new and the same --name,
// --initial-cluster and --initial-cluster-token, and forms the cluster with
// the members of --initial-cluster (the snapshot's own members are not
// carried over, as with etcdutl). The data dir appears only once complete;
// a failure leaves nothing behind.
func Restore(cfg RestoreConfig) (*RestoreResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(cfg.DataDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("data dir %s is not empty; restore into a new directory (nothing was changed)", cfg.DataDir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	f, err := Open(cfg.SnapshotPath, cfg.SkipHashCheck)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	parent := filepath.Dir(filepath.Clean(cfg.DataDir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(cfg.DataDir)+".restoring-")
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	res, err := f.importInto(tmp, cfg)
	if err != nil {
		return nil, err
	}
	// An empty directory already there is replaced; rename refuses a
	// non-empty one, so nothing written meanwhile is overwritten.
	if err := os.Remove(cfg.DataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	if err := os.Rename(tmp, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("move restored data into %s: %w", cfg.DataDir, err)
	}
	done = true
	// The rename is durable once the parent directory is.
	if d, err := os.Open(parent); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("sync %s: %w", parent, err)
		}
	}
	return res, nil
}

func (f *File) importInto(dir string, cfg RestoreConfig) (res *RestoreResult, err error) {
	eng, err := storage.Open(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			err = eng.Sync()
		}
		if cerr := eng.Close(); err == nil {
			err = cerr
		}
	}()
	res = &RestoreResult{CompactRev: -1}
	var leases []*leasepb.Lease
	var finished, scheduled int64
	attached := make(map[string]int64) // live key -> lease
	live := make(map[string]struct{})
	b := eng.DB.NewBatch()
	n := 0
	err = f.db.View(func(tx *bolt.Tx) (err error) {
		defer func() {
			// bbolt panics on some damaged pages.
			if r := recover(); r != nil {
				err = fmt.Errorf("snapshot %s: the database is damaged: %v", f.Path, r)
			}
		}()
		if leases, err = readLeases(tx); err != nil {
			return fmt.Errorf("snapshot %s: %w", f.Path, err)
		}
		if finished, err = readCompactRev(tx, metaFinishedCompact); err != nil {
			return fmt.Errorf("snapshot %s: %w", f.Path, err)
		}
		if scheduled, err = readCompactRev(tx, metaScheduledCompact); err != nil {
			return fmt.Errorf("snapshot %s: %w", f.Path, err)
		}
		if res.Auth, err = readAuth(tx); err != nil {
			return fmt.Errorf("snapshot %s: %w", f.Path, err)
		}
		if err := auth.WriteRecords(b, res.Auth); err != nil {
			return err
		}
		keys := tx.Bucket(bucketKey)
		if keys == nil {
			return fmt.Errorf("snapshot %s: %w: it has no %q bucket", f.Path, ErrNotSnapshot, bucketKey)
		}
		return keys.ForEach(func(k, v []byte) error {
			main, sub, tombstone, err := parseRevKey(k)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", f.Path, err)
			}
			res.Revision = max(res.Revision, main)
			if len(v) == 0 {
				return nil // a revision marker (etcdutl --bump-revision), not a change
			}
			kv := &mvccpb.KeyValue{}
			if err := proto.Unmarshal(v, kv); err != nil {
				return fmt.Errorf("snapshot %s: key-value at revision %d is corrupt: %w", f.Path, main, err)
			}
			c := mvcc.Change{Rev: storage.Revision{Main: main, Sub: sub}, KV: kv, Tombstone: tombstone}
			if c.Tombstone {
				c.KV = &mvccpb.KeyValue{Key: kv.Key}
				delete(live, string(kv.Key))
				delete(attached, string(kv.Key))
			} else {
				live[string(kv.Key)] = struct{}{}
				if kv.Lease != 0 {
					attached[string(kv.Key)] = kv.Lease
				} else {
					delete(attached, string(kv.Key))
				}
			}
			if err := mvcc.ImportChange(b, c); err != nil {
				return err
			}
			if n++; n%importsPerBatch == 0 {
				if err := b.Commit(pebble.NoSync); err != nil {
					return err
				}
				b = eng.DB.NewBatch()
			}
			return nil
		})
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	byLease := make(map[int64][][]byte)
	for k, id := range attached {
		byLease[id] = append(byLease[id], []byte(k))
	}
	for _, l := range leases {
		if err := lease.Import(b, lease.Record{ID: l.ID, TTL: l.TTL, Remaining: l.RemainingTTL}, byLease[l.ID]); err != nil {
			b.Close()
			return nil, err
		}
	}
	res.Leases, res.Keys = len(leases), len(live)

	// The revision etcd would start at: the newest change, and never below
	// a compaction.
	res.Revision = max(res.Revision, finished, scheduled, 1)
	compactTo := scheduled // a compaction etcd had scheduled but not finished
	if cfg.MarkCompacted {
		res.Revision += int64(cfg.RevisionBump)
		compactTo = res.Revision
	}
	if finished > 0 {
		res.CompactRev = finished
	}
	if err := mvcc.ImportRevs(b, res.Revision, res.CompactRev); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, err
	}
	if compactTo > res.CompactRev {
		kv, err := mvcc.Open(eng.DB)
		if err != nil {
			return nil, err
		}
		w := kv.NewWriter(eng.DB.NewIndexedBatch())
		if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: compactTo}); err != nil {
			return nil, fmt.Errorf("compact restored data at revision %d: %w", compactTo, err)
		}
		if err := kv.Commit(w, pebble.NoSync); err != nil {
			return nil, err
		}
		if err := kv.FinishCompaction(); err != nil {
			return nil, fmt.Errorf("compact restored data at revision %d: %w", compactTo, err)
		}
		res.CompactRev = compactTo
	}
	return res, nil
}

// readAuth returns the auth state of the auth buckets (etcd's layout; a
// snapshot without them has auth off and no users).
func readAuth(tx *bolt.Tx) (auth.Records, error) {
	var rec auth.Records
	if b := tx.Bucket(bucketAuth); b != nil {
		rec.Enabled = bytes.Equal(b.Get(authEnabledKey), []byte{1})
		if v := b.Get(authRevisionKey); v != nil {
			if len(v) != 8 {
				return rec, fmt.Errorf("auth revision record of %d bytes, want 8", len(v))
			}
			rec.Revision = binary.BigEndian.Uint64(v)
		}
	}
	var err error
	if rec.Users, err = readRecords(tx, bucketAuthUsers, "user", func() *authpb.User { return &authpb.User{} }); err != nil {
		return rec, err
	}
	if rec.Roles, err = readRecords(tx, bucketAuthRoles, "role", func() *authpb.Role { return &authpb.Role{} }); err != nil {
		return rec, err
	}
	// etcd never turns auth on without a root user holding the root role;
	// a file that has it on without one would restore a cluster nobody
	// could administer.
	if rec.Enabled && !slices.ContainsFunc(rec.Users, func(u *authpb.User) bool {
		return string(u.GetName()) == auth.Root && slices.Contains(u.GetRoles(), auth.Root)
	}) {
		return rec, errors.New("auth is on but no root user holds the root role (the file is damaged or was not written by etcd or Kvorum)")
	}
	return rec, nil
}

// readRecords decodes every record of an auth bucket with newRecord (none
// if the bucket is absent); what names the kind of record for errors.
func readRecords[T proto.Message](tx *bolt.Tx, bucket []byte, what string, newRecord func() T) ([]T, error) {
	b := tx.Bucket(bucket)
	if b == nil {
		return nil, nil
	}
	var out []T
	err := b.ForEach(func(k, v []byte) error {
		m := newRecord()
		if err := proto.Unmarshal(v, m); err != nil {
			return fmt.Errorf("auth %s %q is corrupt: %w", what, k, err)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// readLeases returns the lease records of the lease bucket.
func readLeases(tx *bolt.Tx) ([]*leasepb.Lease, error) {
	b := tx.Bucket(bucketLease)
	if b == nil {
		return nil, nil
	}
	var out []*leasepb.Lease
	err := b.ForEach(func(k, v []byte) error {
		l := &leasepb.Lease{}
		if err := proto.Unmarshal(v, l); err != nil {
			return fmt.Errorf("lease record %x is corrupt: %w", k, err)
		}
		out = append(out, l)
		return nil
	})
	return out, err
}

// readCompactRev reads a compaction revision of the meta bucket; -1 when
// there is none.
func readCompactRev(tx *bolt.Tx, key []byte) (int64, error) {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return -1, nil
	}
	v := b.Get(key)
	if v == nil {
		return -1, nil
	}
	main, _, _, err := parseRevKey(v)
	if err != nil {
		return 0, fmt.Errorf("meta record %s: %w", key, err)
	}
	return main, nil
}
