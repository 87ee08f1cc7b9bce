package mvcc

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// Writer applies requests to the store through one Pebble batch. Each
// modifying request that changes something takes the next main revision;
// its changes take sub-revisions 0, 1, ... in execution order.
//
// Every request is validated before it writes: one that fails with one of
// the package's sentinel errors (ErrCompacted, ErrKeyNotFound, ...) has
// written nothing and the writer stays usable. Any other error (storage
// failure, corrupt record) may leave the batch half-written; the writer then
// refuses further requests and the batch must be discarded.
type Writer struct {
	s          *Store
	b          *pebble.Batch
	rev        int64 // revision of the state in b
	compactRev int64
	err        error
	events     []*mvccpb.Event
	// changes counts the changes made so far by the request being applied;
	// it is the sub-revision of the next change.
	changes int64
	rec     recordWriter
	// keysDelta is how the batch changed the number of live keys (see
	// keycount.go); putBytes is the size of the keys and values it put.
	keysDelta, putBytes int64
}

// Events returns the changes made through w, in revision order. Unlike the
// event log records, each event carries PrevKv: the version it replaced or
// deleted (nil when a put created the key).
func (w *Writer) Events() []*mvccpb.Event { return w.events }

// Rev is the revision w has brought the batch to.
func (w *Writer) Rev() int64 { return w.rev }

// view is the state of the batch as the current request sees it: once the
// request has changed something, at the revision it is writing.
func (w *Writer) view() *view {
	rev := w.rev
	if w.changes > 0 {
		rev++
	}
	return &view{r: w.b, rev: rev, compactRev: w.compactRev, cache: w.s.cache, keys: w.s.keys}
}

func (w *Writer) begin() error {
	w.changes = 0
	return w.err
}

// finish closes the request being applied: if it changed anything, the
// store moves to its revision.
func (w *Writer) finish() error {
	if w.changes == 0 {
		return nil
	}
	w.rev++
	w.changes = 0
	return nil
}

// fail records an error that may have left the batch half-written.
func (w *Writer) fail(err error) error {
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("mvcc: writer unusable after failed write: %w", err)
	}
	return err
}

// Range reads the batch's state, including every request applied so far.
func (w *Writer) Range(req *etcdserverpb.RangeRequest) (*etcdserverpb.RangeResponse, error) {
	if err := w.begin(); err != nil {
		return nil, err
	}
	w.s.countRange()
	return w.view().execRange(req)
}

// Put writes a new version of a key. The version keeps req's key and value
// slices (the store's caches and the events share them), so the caller must
// not change them afterwards.
func (w *Writer) Put(req *etcdserverpb.PutRequest) (*etcdserverpb.PutResponse, error) {
	if err := w.begin(); err != nil {
		return nil, err
	}
	prev, err := w.checkPut(w.view(), req)
	if err != nil {
		return nil, err
	}
	resp, err := w.put(req, prev)
	if err != nil {
		return nil, err
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	w.s.countPut()
	return resp, nil
}

// DeleteRange deletes the live keys a request names. Deleting nothing is not
// a change: the revision stays.
func (w *Writer) DeleteRange(req *etcdserverpb.DeleteRangeRequest) (*etcdserverpb.DeleteRangeResponse, error) {
	if err := w.begin(); err != nil {
		return nil, err
	}
	resp, err := w.deleteRange(req)
	if err != nil {
		return nil, err
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	w.s.countDelete()
	return resp, nil
}

// DeleteKeys deletes the given live keys, in the order given, as one
// request: all deletions share one revision (a lease revocation is seen as
// one change). Keys that are not live are skipped. It returns the revision
// the store is at afterwards.
func (w *Writer) DeleteKeys(keys [][]byte) (int64, error) {
	if err := w.begin(); err != nil {
		return 0, err
	}
	for _, k := range keys {
		if _, err := w.deleteRange(&etcdserverpb.DeleteRangeRequest{Key: k}); err != nil {
			return 0, err
		}
	}
	if err := w.finish(); err != nil {
		return 0, err
	}
	return w.rev, nil
}

// checkPut validates a put against view v and returns the key's live
// version, if any: the lease must exist, and ignore_value/ignore_lease need
// a live key.
func (w *Writer) checkPut(v *view, req *etcdserverpb.PutRequest) (*mvccpb.KeyValue, error) {
	if l := req.GetLease(); l != 0 && w.s.leaseCheck != nil {
		if err := w.s.leaseCheck(l); err != nil {
			return nil, err
		}
	}
	prev, err := v.latest(req.GetKey())
	if err != nil {
		return nil, w.fail(err)
	}
	if prev == nil && (req.GetIgnoreValue() || req.GetIgnoreLease()) {
		return nil, fmt.Errorf("%w: put with ignore_value or ignore_lease of missing key %q", ErrKeyNotFound, req.GetKey())
	}
	return prev, nil
}

// put writes req's version of its key; prev is the key's live version.
func (w *Writer) put(req *etcdserverpb.PutRequest, prev *mvccpb.KeyValue) (*etcdserverpb.PutResponse, error) {
	rev := storage.Revision{Main: w.rev + 1, Sub: w.changes}
	// The key-value keeps req's key and value (see Put).
	kv := &mvccpb.KeyValue{
		Key:            req.GetKey(),
		Value:          req.GetValue(),
		CreateRevision: rev.Main,
		ModRevision:    rev.Main,
		Version:        1,
		Lease:          req.GetLease(),
	}
	if prev != nil {
		kv.CreateRevision = prev.CreateRevision
		kv.Version = prev.Version + 1
		if req.GetIgnoreValue() {
			kv.Value = prev.Value
		}
		if req.GetIgnoreLease() {
			kv.Lease = prev.Lease
		}
	}
	ev := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv}
	if err := w.writeChange(rev, kv, ev); err != nil {
		return nil, err
	}
	ev.PrevKv = prev
	w.events = append(w.events, ev)
	if prev == nil {
		w.keysDelta++
	}
	w.putBytes += int64(len(kv.Key) + len(kv.Value))

	resp := &etcdserverpb.PutResponse{Header: &etcdserverpb.ResponseHeader{Revision: rev.Main}}
	if req.GetPrevKv() && prev != nil {
		resp.PrevKv = cloneKV(prev)
	}
	return resp, nil
}

// deleteRange deletes the live keys req names. The response's header
// revision is the one the request is writing if anything was changed so far.
func (w *Writer) deleteRange(req *etcdserverpb.DeleteRangeRequest) (*etcdserverpb.DeleteRangeResponse, error) {
	rr, err := w.view().rangeKeys(spanOf(req.GetKey(), req.GetRangeEnd()), 0, 0, false)
	if err != nil {
		return nil, w.fail(err)
	}
	main := w.rev + 1
	for _, prev := range rr.kvs {
		rev := storage.Revision{Main: main, Sub: w.changes}
		ev := &mvccpb.Event{
			Type: mvccpb.Event_DELETE,
			Kv:   &mvccpb.KeyValue{Key: prev.Key, ModRevision: main},
		}
		if err := w.writeChange(rev, nil, ev); err != nil {
			return nil, err
		}
		ev.PrevKv = prev
		w.events = append(w.events, ev)
		w.keysDelta--
	}
	resp := &etcdserverpb.DeleteRangeResponse{
		Header:  &etcdserverpb.ResponseHeader{Revision: w.view().rev},
		Deleted: int64(len(rr.kvs)),
	}
	if req.GetPrevKv() {
		resp.PrevKvs = make([]*mvccpb.KeyValue, len(rr.kvs))
		for i, kv := range rr.kvs {
			resp.PrevKvs[i] = cloneKV(kv)
		}
	}
	return resp, nil
}

// writeChange records one change at rev (see writeRecords) and keeps the
// caches in step.
func (w *Writer) writeChange(rev storage.Revision, kv *mvccpb.KeyValue, ev *mvccpb.Event) error {
	if err := w.rec.write(w.b, rev, kv, ev); err != nil {
		return w.fail(err)
	}
	key := ev.Kv.Key
	w.s.cache.set(key, kv)
	if kv != nil && w.s.keys != nil {
		w.s.keys.add(key)
	}
	if kv != nil && w.s.build != nil {
		w.s.build.written(key)
	}
	w.changes++
	return nil
}

// recordWriter writes the records of one change, reusing its buffers for
// their keys and values (a batch copies what it is given).
type recordWriter struct{ key, val, ref []byte }

// write records the change at rev: the latest version (kv, or its absence
// for a delete), the history record and the event ev (stored without
// PrevKv; for a put ev.Kv is kv). The key-value is encoded once: the latest
// record holds the same bytes as the event's kv field, or, for a value of
// latestByRevisionFrom bytes or more, only rev, where the event is.
func (r *recordWriter) write(b pebble.Writer, rev storage.Revision, kv *mvccpb.KeyValue, ev *mvccpb.Event) error {
	key := ev.Kv.Key
	var kvStart int
	var err error
	if r.val, kvStart, err = appendEvent(r.val[:0], ev); err != nil {
		return err
	}
	hist := historyTombstone
	r.key = storage.AppendLatestKey(r.key[:0], key)
	if kv != nil {
		hist = historyPut
		latest := r.val[kvStart:]
		if len(kv.Value) >= latestByRevisionFrom {
			r.ref = appendLatestRef(r.ref[:0], rev)
			latest = r.ref
		}
		err = b.Set(r.key, latest, nil)
	} else {
		err = b.Delete(r.key, nil)
	}
	if err != nil {
		return err
	}
	r.key = storage.AppendHistoryKey(r.key[:0], key, rev)
	if err := b.Set(r.key, hist, nil); err != nil {
		return err
	}
	r.key = storage.AppendEventKey(r.key[:0], rev)
	return b.Set(r.key, r.val, nil)
}

func cloneKV(kv *mvccpb.KeyValue) *mvccpb.KeyValue { return proto.Clone(kv).(*mvccpb.KeyValue) }
