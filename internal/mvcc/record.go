package mvcc

import (
	"github.com/kvorum/kvorum/internal/storage"
)

// EventRecord is the event-log record (key and value) that the store holds
// for c: the same bytes ImportChange writes, so hashing the records of a
// backup's changes in order gives the store's HashKV at the backup's
// revision.
func EventRecord(c Change) (key, val []byte, err error) {
	ev := eventOf(c)
	val, err = encode(ev)
	if err != nil {
		return nil, nil, err
	}
	return storage.EventKey(c.Rev), val, nil
}
