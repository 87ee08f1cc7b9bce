package snapshot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/coreos/go-semver/semver"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// Reasons a file is refused; each error Open returns wraps one of them and
// names the file.
var (
	ErrNotSnapshot = errors.New("is not an etcd snapshot (no bbolt database in it)")
	ErrTruncated   = errors.New("is truncated")
	ErrChecksum    = errors.New("has a wrong sha256 checksum (corrupt or altered)")
	ErrNoChecksum  = errors.New("has no sha256 checksum (a db file copied from a data dir?); pass --skip-hash-check to use it anyway")
)

// lockTimeout bounds the wait for a database file that a running etcd
// holds locked (etcdutl's default --timeout).
const lockTimeout = 10 * time.Second

// A File is a snapshot file that passed Open's checks, open for reading.
type File struct {
	Path string
	db   *bolt.DB
}

// hasChecksum reports whether a file of n bytes ends with a checksum: the
// database is a whole number of pages (at least 512 bytes each), so only a
// checksum leaves 32 bytes over. etcdutl decides the same way.
func hasChecksum(n int64) bool { return n%512 == sha256.Size }

// Open checks the snapshot file at path and opens its database read-only.
// skipHashCheck accepts a database with no checksum (or a wrong one), as
// etcdutl's --skip-hash-check does.
func Open(path string, skipHashCheck bool) (f *File, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("snapshot %s: %w", path, ErrNotSnapshot)
	}
	size := fi.Size()
	withSum := hasChecksum(size)
	dbLen := size
	if withSum {
		dbLen -= sha256.Size
	}
	// A file cut short inside a page bbolt maps would fault on access
	// rather than fail; turn such a fault into an error.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("snapshot %s: %w (reading it failed: %v)", path, ErrTruncated, r)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("snapshot %s is locked by another process (a running etcd using it?); stop it or copy the file first", path)
	}
	if err != nil {
		if size < 2*4096 && size > 0 && !errors.Is(err, bolt.ErrInvalid) {
			return nil, fmt.Errorf("snapshot %s: %w", path, ErrTruncated)
		}
		return nil, fmt.Errorf("snapshot %s: %w", path, ErrNotSnapshot)
	}
	var need int64
	_ = db.View(func(tx *bolt.Tx) error { need = tx.Size(); return nil })
	if need > dbLen {
		db.Close()
		return nil, fmt.Errorf("snapshot %s: %w: its database needs %d bytes, the file holds %d", path, ErrTruncated, need, dbLen)
	}
	if !skipHashCheck {
		if !withSum {
			db.Close()
			return nil, fmt.Errorf("snapshot %s: %w", path, ErrNoChecksum)
		}
		if err := verifySum(path, dbLen); err != nil {
			db.Close()
			return nil, err
		}
	}
	return &File{Path: path, db: db}, nil
}

func verifySum(path string, dbLen int64) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, fh, dbLen); err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(fh, want); err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return fmt.Errorf("snapshot %s: %w", path, ErrChecksum)
	}
	return nil
}

// Close closes the file.
func (f *File) Close() error { return f.db.Close() }

// Status is what etcdutl snapshot status reports, with its JSON names.
type Status struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	// Version is the storage version recorded in the file; empty for files
	// of etcd before 3.6.
	Version string `json:"version"`
}

// Status checks the database's integrity and summarises it as etcdutl
// does: the CRC-32C of every bucket name, key and value in order, the
// highest revision, the number of live keys, the database size and its
// storage version.
func (f *File) Status() (st Status, err error) {
	live := make(map[string]struct{})
	defer func() {
		// bbolt panics on some damaged pages; a status report must not.
		if r := recover(); r != nil {
			err = fmt.Errorf("snapshot %s: the database is damaged: %v", f.Path, r)
		}
	}()
	err = f.db.View(func(tx *bolt.Tx) error {
		var problems []string
		for err := range tx.Check() {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			return fmt.Errorf("snapshot %s: integrity check found %d errors: %s", f.Path, len(problems), strings.Join(problems, "; "))
		}
		st.TotalSize = tx.Size()
		st.Version = storageVersion(tx)
		h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		defer func() { st.Hash = h.Sum32() }()
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			h.Write(name)
			isKey := bytes.Equal(name, bucketKey)
			return b.ForEach(func(k, v []byte) error {
				h.Write(k)
				h.Write(v)
				if !isKey {
					return nil
				}
				main, _, tombstone, err := parseRevKey(k)
				if err != nil {
					return fmt.Errorf("snapshot %s: %w", f.Path, err)
				}
				st.Revision = main
				kv := &mvccpb.KeyValue{}
				if err := proto.Unmarshal(v, kv); err != nil {
					return fmt.Errorf("snapshot %s: key-value at revision %d is corrupt: %w", f.Path, main, err)
				}
				if tombstone {
					delete(live, string(kv.Key))
				} else {
					live[string(kv.Key)] = struct{}{}
				}
				return nil
			})
		})
	})
	st.TotalKey = len(live)
	return st, err
}

// storageVersion is the storage version a file records, in etcd's
// major.minor.patch form, or "" (files of etcd before 3.6).
func storageVersion(tx *bolt.Tx) string {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return ""
	}
	v, err := semver.NewVersion(string(b.Get(metaStorageVersion)))
	if err != nil {
		return ""
	}
	return v.String()
}
