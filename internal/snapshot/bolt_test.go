package snapshot

import (
	"bytes"
	"errors"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/backend"
)

// boltTx lets etcd's schema helpers (which read and write through
// backend.UnsafeReader/UnsafeWriter) work on a plain bbolt transaction, so
// every record goes through etcd's own encoders. The interfaces have no
// error results; the first failure is kept in err.
type boltTx struct {
	tx  *bolt.Tx
	err error
}

func (t *boltTx) fail(err error) {
	if err != nil && t.err == nil {
		t.err = err
	}
}

func (t *boltTx) bucket(b backend.Bucket) *bolt.Bucket {
	bk, err := t.tx.CreateBucketIfNotExists(b.Name())
	t.fail(err)
	return bk
}

func (t *boltTx) UnsafeCreateBucket(b backend.Bucket) { t.bucket(b) }

func (t *boltTx) UnsafeDeleteBucket(b backend.Bucket) {
	if err := t.tx.DeleteBucket(b.Name()); !errors.Is(err, bolt.ErrBucketNotFound) {
		t.fail(err)
	}
}

func (t *boltTx) UnsafePut(b backend.Bucket, key, value []byte) {
	if bk := t.bucket(b); bk != nil {
		t.fail(bk.Put(key, value))
	}
}

// UnsafeSeqPut is for keys written in ascending order: pages are filled
// further before they split, as etcd's backend does for the key bucket.
func (t *boltTx) UnsafeSeqPut(b backend.Bucket, key, value []byte) {
	if bk := t.bucket(b); bk != nil {
		bk.FillPercent = 0.9
		t.fail(bk.Put(key, value))
	}
}

func (t *boltTx) UnsafeDelete(b backend.Bucket, key []byte) {
	if bk := t.tx.Bucket(b.Name()); bk != nil {
		t.fail(bk.Delete(key))
	}
}

// UnsafeRange returns the value of key (endKey nil) or the pairs in
// [key, endKey), at most limit of them when limit > 0.
func (t *boltTx) UnsafeRange(b backend.Bucket, key, endKey []byte, limit int64) (keys, vals [][]byte) {
	bk := t.tx.Bucket(b.Name())
	if bk == nil {
		return nil, nil
	}
	if endKey == nil {
		if v := bk.Get(key); v != nil {
			return [][]byte{key}, [][]byte{v}
		}
		return nil, nil
	}
	c := bk.Cursor()
	for k, v := c.Seek(key); k != nil && bytes.Compare(k, endKey) < 0; k, v = c.Next() {
		keys, vals = append(keys, k), append(vals, v)
		if limit > 0 && int64(len(keys)) >= limit {
			break
		}
	}
	return keys, vals
}

func (t *boltTx) UnsafeForEach(b backend.Bucket, visitor func(k, v []byte) error) error {
	bk := t.tx.Bucket(b.Name())
	if bk == nil {
		return nil
	}
	return bk.ForEach(visitor)
}
