package snapshot

import (
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/storage"
)

// HashKV hashes every change the file holds the way a Kvorum member's
// HashKV hashes its retained history (see mvcc.Store.HashKV): for a file
// Kvorum built, it equals the member's HashKV at the file's revision as
// long as the member has not compacted since. It returns the hash, the
// highest revision in the file and the file's compact revision (-1: none).
func (f *File) HashKV() (hash uint32, rev, compactRev int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("snapshot %s: the database is damaged: %v", f.Path, r)
		}
	}()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	err = f.db.View(func(tx *bolt.Tx) error {
		var err error
		if compactRev, err = readCompactRev(tx, metaFinishedCompact); err != nil {
			return fmt.Errorf("snapshot %s: %w", f.Path, err)
		}
		b := tx.Bucket(bucketKey)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			main, sub, tombstone, err := parseRevKey(k)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", f.Path, err)
			}
			kv := &mvccpb.KeyValue{}
			if err := proto.Unmarshal(v, kv); err != nil {
				return fmt.Errorf("snapshot %s: key-value at revision %d is corrupt: %w", f.Path, main, err)
			}
			c := mvcc.Change{Rev: storage.Revision{Main: main, Sub: sub}, KV: kv, Tombstone: tombstone}
			if tombstone {
				c.KV = &mvccpb.KeyValue{Key: kv.GetKey()}
			}
			ek, ev, err := mvcc.EventRecord(c)
			if err != nil {
				return err
			}
			h.Write(ek)
			h.Write(ev)
			rev = main
			return nil
		})
	})
	return h.Sum32(), rev, compactRev, err
}
