package mvcc

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// A Change is one retained change of the key space, as backups carry it:
// a put with its full key-value, or a tombstone with just the key.
type Change struct {
	Rev       storage.Revision
	KV        *mvccpb.KeyValue // for a tombstone, only Key is set
	Tombstone bool
}

// StoredRevs reads the current and compact revisions held in r (a Pebble
// snapshot, say): the revisions the data in r describes.
func StoredRevs(r pebble.Reader) (rev, compactRev int64, err error) {
	return loadRevs(r)
}

// StoredCompacted reads the revision up to which the history held in r is
// physically compacted: the compact revision unless compaction steps were
// still due (see Store.CompactStep).
func StoredCompacted(r pebble.Reader) (int64, error) {
	_, compactRev, err := loadRevs(r)
	if err != nil {
		return 0, err
	}
	compacted, _, err := loadCompacted(r, compactRev)
	return compacted, err
}

// ForEachChange calls fn with every change r retains, in revision order:
// every change after the compact revision, and at or below it the versions
// that survived compaction. It stops at fn's first error and returns it.
func ForEachChange(r pebble.Reader, fn func(Change) error) error {
	lo, hi := storage.EventSpan(0, int64(^uint64(0)>>1))
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		rev, err := storage.DecodeEventKey(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		ev, err := decodeEvent(it.Key(), v)
		if err != nil {
			it.Close()
			return err
		}
		c := Change{Rev: rev, KV: ev.GetKv()}
		if ev.GetType() == mvccpb.Event_DELETE {
			c = Change{Rev: rev, KV: &mvccpb.KeyValue{Key: ev.GetKv().GetKey()}, Tombstone: true}
		}
		if c.KV == nil {
			it.Close()
			return fmt.Errorf("%w: event %x has no key-value", storage.ErrMalformedKey, it.Key())
		}
		if err := fn(c); err != nil {
			it.Close()
			return err
		}
	}
	return closeIter(it)
}

// ImportChange writes c into w in the store's layout, as if it had been
// applied: changes must be imported in revision order into an empty key
// space, so that the last import of a key leaves its live version. The
// records written are exactly those a Writer writes for the same change.
func ImportChange(w pebble.Writer, c Change) error {
	var kv *mvccpb.KeyValue
	if !c.Tombstone {
		kv = c.KV
	}
	var r recordWriter
	return r.write(w, c.Rev, kv, eventOf(c))
}

// ImportRevs records the current and compact revisions of an imported key
// space (compactRev < 0: never compacted).
func ImportRevs(w pebble.Writer, rev, compactRev int64) error {
	if err := w.Set(storage.CurrentRevKey, storage.PutUint64(uint64(rev)), nil); err != nil {
		return err
	}
	if compactRev < 0 {
		return w.Delete(storage.CompactRevKey, nil)
	}
	return w.Set(storage.CompactRevKey, storage.PutUint64(uint64(compactRev)), nil)
}

// eventOf is the event the store logs for c.
func eventOf(c Change) *mvccpb.Event {
	if c.Tombstone {
		return &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: c.KV.GetKey(), ModRevision: c.Rev.Main}}
	}
	return &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: c.KV}
}
