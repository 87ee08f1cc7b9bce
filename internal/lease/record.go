package lease

import (
	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/storage"
)

// A Record is one stored lease, as backups carry it: its granted TTL and
// the remaining TTL last checkpointed (0: none), in seconds.
type Record struct {
	ID        int64
	TTL       int64
	Remaining int64
}

// Records returns every lease r holds, in ID order.
func Records(r pebble.Reader) ([]Record, error) {
	lo, hi := storage.LeaseSpan()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var out []Record
	for it.First(); it.Valid(); it.Next() {
		id, err := storage.DecodeLeaseKey(it.Key())
		if err != nil {
			it.Close()
			return nil, err
		}
		ttl, remaining, err := decodeRecord(it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, Record{ID: id, TTL: ttl, Remaining: remaining})
	}
	return out, it.Close()
}

// Import writes lease rec and the attachment of each of keys to it into w,
// as the replicated half would have: Load then sees the lease with those
// keys.
func Import(w pebble.Writer, rec Record, keys [][]byte) error {
	if err := w.Set(storage.LeaseKey(rec.ID), encodeRecord(rec.TTL, rec.Remaining), nil); err != nil {
		return err
	}
	for _, k := range keys {
		if err := w.Set(storage.LeaseAttachKey(rec.ID, k), nil, nil); err != nil {
			return err
		}
	}
	return nil
}
