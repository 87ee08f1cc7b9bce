package mvcc

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/storage"
)

// historyScan walks the history index of a span one user key at a time and
// finds each key's newest version at or below a revision. It reads the
// records in order, as they lie in the blocks: a history record is a key
// and a revision, about a tenth of the size of a latest record (which holds
// the whole key-value), so counting the live keys of a span this way reads
// a fraction of the blocks that iterating the latest records would, and far
// fewer than seeking twice for every key. A key whose run of records is long
// (a history not yet compacted) is not walked to its end: after longRun
// records the scan seeks.
type historyScan struct {
	it     *pebble.Iterator
	atRev  int64
	valid  bool   // it is on a record of the span
	prefix []byte // HistoryKeyPrefix of the key being read
	err    error
	// keys and records count the user keys and the records stepped to
	// so far.
	keys, records int
}

// longRun is how many records of one key the scan steps through before it
// seeks instead: a step within a block costs a small fraction of a seek.
const longRun = 8

// newHistoryScan starts a scan of sp's history at atRev.
func (v *view) newHistoryScan(sp span, atRev int64) (*historyScan, error) {
	lo := storage.HistorySpanStart(sp.key)
	var hi []byte
	if sp.single {
		hi = storage.HistoryKeyPastRevisions(lo)
	} else {
		hi = storage.HistorySpanEnd(sp.end)
	}
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	return &historyScan{it: it, atRev: atRev, valid: it.First()}, nil
}

// next moves to the next user key that had a version at or below atRev and
// reports that version's revision and whether it is a put (a live key) or
// a tombstone. It reports ok false at the end of the span or on an error
// (see close).
func (h *historyScan) next() (rev storage.Revision, put, ok bool) {
	for h.valid && h.err == nil {
		if rev, put, ok = h.readKey(); ok && h.err == nil {
			return rev, put, true
		}
	}
	return storage.Revision{}, false, false
}

// readKey reads the run of records of the key the iterator is on and leaves
// the iterator on the first record of the next key (or past the span).
func (h *historyScan) readKey() (rev storage.Revision, put, found bool) {
	p, r, err := storage.SplitHistoryKey(h.it.Key())
	if err != nil {
		h.err = err
		return rev, false, false
	}
	h.prefix = append(h.prefix[:0], p...)
	h.keys++
	for steps := 0; r.Main <= h.atRev; steps++ {
		if steps == longRun {
			// A long run: seek to its version at atRev and past its end.
			if rev, put, found = h.seekNewest(); found {
				h.valid = h.it.SeekGE(storage.HistoryKeyPastRevisions(h.prefix))
			}
			return rev, put, found
		}
		if put, err = h.isPut(); err != nil {
			h.err = err
			return rev, false, false
		}
		rev, found = r, true
		if !h.step() {
			return rev, put, found
		}
		if _, r, err = storage.SplitHistoryKey(h.it.Key()); err != nil {
			h.err = err
			return rev, false, false
		}
	}
	h.skipKey()
	return rev, put, found
}

// seekNewest positions the iterator on the current key's newest record at
// or below atRev, which exists: the scan has passed one.
func (h *historyScan) seekNewest() (storage.Revision, bool, bool) {
	target := storage.AppendHistoryRevision(bytes.Clone(h.prefix), storage.Revision{Main: h.atRev + 1})
	if !h.it.SeekLT(target) || !bytes.HasPrefix(h.it.Key(), h.prefix) {
		h.err = h.it.Error()
		if h.err == nil {
			h.err = fmt.Errorf("mvcc: the history of %x has no record at or below revision %d that the scan passed", h.prefix, h.atRev)
		}
		return storage.Revision{}, false, false
	}
	_, rev, err := storage.SplitHistoryKey(h.it.Key())
	if err != nil {
		h.err = err
		return rev, false, false
	}
	put, err := h.isPut()
	if err != nil {
		h.err = err
		return rev, false, false
	}
	return rev, put, true
}

// skipKey moves the iterator from a record of the current key to the first
// record of the next key: a few steps, then a seek.
func (h *historyScan) skipKey() {
	for range longRun {
		if !h.step() {
			return
		}
	}
	h.valid = h.it.SeekGE(storage.HistoryKeyPastRevisions(h.prefix))
}

// step moves to the next record and reports whether it is still one of the
// current key.
func (h *historyScan) step() bool {
	h.records++
	h.valid = h.it.Next()
	return h.valid && bytes.HasPrefix(h.it.Key(), h.prefix)
}

func (h *historyScan) isPut() (bool, error) {
	v, err := h.it.ValueAndErr()
	if err != nil {
		return false, err
	}
	return decodeHistoryValue(h.it.Key(), v)
}

// count counts the rest of the span's keys that were live at atRev.
func (h *historyScan) count() int64 {
	var n int64
	for {
		_, put, ok := h.next()
		if !ok {
			return n
		}
		if put {
			n++
		}
	}
}

// userKey decodes the user key of the record the scan is on (h.valid).
func (h *historyScan) userKey() ([]byte, error) {
	k, _, err := storage.DecodeHistoryKey(h.it.Key())
	return k, err
}

// close reports the first error the scan met and releases the iterator.
func (h *historyScan) close() error {
	err := h.err
	if err == nil {
		err = h.it.Error()
	}
	if cerr := h.it.Close(); err == nil {
		err = cerr
	}
	return err
}
