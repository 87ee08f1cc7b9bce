package mvcc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

func newTestStore(t *testing.T) (*pebble.DB, *Store) {
	t.Helper()
	db := openMemDB(t)
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	return db, s
}

// apply runs f in one writer batch, commits it and publishes it.
func apply(t *testing.T, db *pebble.DB, s *Store, f func(w *Writer)) *Writer {
	t.Helper()
	b := db.NewIndexedBatch()
	w := s.NewWriter(b)
	f(w)
	if err := s.Commit(w, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	return w
}

func put(k, v string) *etcdserverpb.PutRequest {
	return &etcdserverpb.PutRequest{Key: []byte(k), Value: []byte(v)}
}

func mustPut(t *testing.T, w *Writer, req *etcdserverpb.PutRequest) *etcdserverpb.PutResponse {
	t.Helper()
	resp, err := w.Put(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func mustRange(t *testing.T, s *Store, req *etcdserverpb.RangeRequest) *etcdserverpb.RangeResponse {
	t.Helper()
	resp, err := s.Range(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func kv(k, v string, create, mod, ver int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: create, ModRevision: mod, Version: ver}
}

func wantKVs(t *testing.T, got []*mvccpb.KeyValue, want ...*mvccpb.KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d kvs %v, want %v", len(got), got, want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("kv %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestEmptyStoreIsAtRevisionOneAndNeverCompacted(t *testing.T) {
	_, s := newTestStore(t)
	if s.Rev() != 1 || s.CompactRev() != -1 {
		t.Fatalf("Rev %d CompactRev %d, want 1 and -1", s.Rev(), s.CompactRev())
	}
	resp := mustRange(t, s, &etcdserverpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: 1})
	if resp.Header.Revision != 1 || resp.Count != 0 {
		t.Fatalf("range on empty store: %v", resp)
	}
}

func TestVersionsAndRevisionsFollowPutsDeletesAndRecreation(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) {
		if r := mustPut(t, w, put("k", "1")); r.Header.Revision != 2 {
			t.Fatalf("first put at %d, want 2", r.Header.Revision)
		}
		mustPut(t, w, put("k", "2"))
		if _, err := w.DeleteRange(&etcdserverpb.DeleteRangeRequest{Key: []byte("k")}); err != nil {
			t.Fatal(err)
		}
		mustPut(t, w, put("k", "3"))
	})
	if s.Rev() != 5 {
		t.Fatalf("Rev %d, want 5", s.Rev())
	}
	tests := []struct {
		rev  int64
		want []*mvccpb.KeyValue
	}{
		{1, nil},
		{2, []*mvccpb.KeyValue{kv("k", "1", 2, 2, 1)}},
		{3, []*mvccpb.KeyValue{kv("k", "2", 2, 3, 2)}},
		{4, nil},
		{5, []*mvccpb.KeyValue{kv("k", "3", 5, 5, 1)}},
		{0, []*mvccpb.KeyValue{kv("k", "3", 5, 5, 1)}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.rev), func(t *testing.T) {
			resp := mustRange(t, s, &etcdserverpb.RangeRequest{Key: []byte("k"), Revision: tt.rev})
			if resp.Header.Revision != 5 {
				t.Fatalf("header revision %d, want 5", resp.Header.Revision)
			}
			wantKVs(t, resp.Kvs, tt.want...)
		})
	}
}

func TestRangeRevisionBounds(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) {
		for i := range 5 {
			mustPut(t, w, put("k", fmt.Sprint(i)))
		}
		if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: 4}); err != nil {
			t.Fatal(err)
		}
	})
	tests := []struct {
		rev     int64
		wantErr error
	}{
		{3, ErrCompacted},
		{4, nil}, // exactly the compact revision is still readable
		{6, nil},
		{7, ErrFutureRev},
		{-1, nil}, // negative means current at the top level
	}
	for _, tt := range tests {
		_, err := s.Range(&etcdserverpb.RangeRequest{Key: []byte("k"), Revision: tt.rev})
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("range at %d: %v, want %v", tt.rev, err, tt.wantErr)
		}
	}
}

func TestCompactRevisionChecks(t *testing.T) {
	db, s := newTestStore(t)
	tests := []struct {
		rev     int64
		wantErr error
	}{
		{2, ErrFutureRev},
		{0, nil}, // etcd accepts compacting an empty store at 0 (its compact revision starts at -1)
		{0, ErrCompacted},
		{1, nil},
		{1, ErrCompacted},
	}
	for _, tt := range tests {
		apply(t, db, s, func(w *Writer) {
			resp, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: tt.rev})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("compact %d: %v, want %v", tt.rev, err, tt.wantErr)
			}
			if err == nil && resp.Header.Revision != 1 {
				t.Fatalf("compact header revision %d, want 1", resp.Header.Revision)
			}
		})
	}
	if s.CompactRev() != 1 {
		t.Fatalf("CompactRev %d, want 1", s.CompactRev())
	}
	s2, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Rev() != 1 || s2.CompactRev() != 1 {
		t.Fatalf("reopened store at %d/%d, want 1/1", s2.Rev(), s2.CompactRev())
	}
}

func TestRefusedRequestsWriteNothing(t *testing.T) {
	leaseErr := errors.New("lease not found")
	tests := []struct {
		name    string
		do      func(w *Writer) error
		wantErr error
	}{
		{"put ignore_value of missing key", func(w *Writer) error {
			_, err := w.Put(&etcdserverpb.PutRequest{Key: []byte("missing"), IgnoreValue: true})
			return err
		}, ErrKeyNotFound},
		{"put ignore_lease of missing key", func(w *Writer) error {
			_, err := w.Put(&etcdserverpb.PutRequest{Key: []byte("missing"), IgnoreLease: true})
			return err
		}, ErrKeyNotFound},
		{"lease checked before ignore_value", func(w *Writer) error {
			_, err := w.Put(&etcdserverpb.PutRequest{Key: []byte("missing"), IgnoreValue: true, Lease: 7})
			return err
		}, leaseErr},
		{"txn with range at future revision after a put", func(w *Writer) error {
			_, err := w.Txn(&etcdserverpb.TxnRequest{Success: []*etcdserverpb.RequestOp{
				{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: put("x", "1")}},
				{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: &etcdserverpb.RangeRequest{Key: []byte("x"), Revision: 3}}},
			}})
			return err
		}, ErrFutureRev},
		{"txn with negative range revision below compaction", func(w *Writer) error {
			_, err := w.Txn(&etcdserverpb.TxnRequest{Success: []*etcdserverpb.RequestOp{
				{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: put("x", "1")}},
				{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: &etcdserverpb.RangeRequest{Key: []byte("x"), Revision: -1}}},
			}})
			return err
		}, ErrCompacted},
		{"nested txn put ignore_value of missing key", func(w *Writer) error {
			_, err := w.Txn(&etcdserverpb.TxnRequest{Success: []*etcdserverpb.RequestOp{
				{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: put("x", "1")}},
				{Request: &etcdserverpb.RequestOp_RequestTxn{RequestTxn: &etcdserverpb.TxnRequest{Success: []*etcdserverpb.RequestOp{
					{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte("missing"), IgnoreValue: true}}},
				}}}},
			}})
			return err
		}, ErrKeyNotFound},
		{"txn put ignore_value after deleting the key from a from-key delete", func(w *Writer) error {
			_, err := w.Txn(&etcdserverpb.TxnRequest{Success: []*etcdserverpb.RequestOp{
				{Request: &etcdserverpb.RequestOp_RequestDeleteRange{RequestDeleteRange: &etcdserverpb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}}},
				{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte("k"), IgnoreValue: true}}},
			}})
			return err
		}, ErrKeyNotFound},
		{"compact in the future", func(w *Writer) error {
			_, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: 100})
			return err
		}, ErrFutureRev},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, s := newTestStore(t)
			s.SetLeaseCheck(func(id int64) error { return leaseErr })
			apply(t, db, s, func(w *Writer) {
				mustPut(t, w, put("k", "v"))
				if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: 2}); err != nil {
					t.Fatal(err)
				}
			})
			var before int
			lo, hi := storage.StateMachineStart, storage.StateMachineEnd
			scan(t, db, lo, hi, func(k, v []byte) { before++ })
			w := apply(t, db, s, func(w *Writer) {
				if err := tt.do(w); !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				// The writer stays usable after a refused request.
				mustPut(t, w, put("after", "1"))
			})
			var after int
			scan(t, db, lo, hi, func(k, v []byte) { after++ })
			// The later put adds a latest, a history and an event record.
			if after != before+3 || s.Rev() != 3 || len(w.Events()) != 1 {
				t.Fatalf("records %d -> %d, Rev %d, %d events: the refused request wrote something", before, after, s.Rev(), len(w.Events()))
			}
		})
	}
}

func TestDeleteRangeOfNothingKeepsRevision(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) {
		mustPut(t, w, put("a", "1"))
		resp, err := w.DeleteRange(&etcdserverpb.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("c")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Deleted != 0 || resp.Header.Revision != 2 {
			t.Fatalf("delete of nothing: %v", resp)
		}
		resp, err = w.DeleteRange(&etcdserverpb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Deleted != 1 || resp.Header.Revision != 3 {
			t.Fatalf("delete of a: %v", resp)
		}
		wantKVs(t, resp.PrevKvs, kv("a", "1", 2, 2, 1))
	})
	if s.Rev() != 3 {
		t.Fatalf("Rev %d, want 3", s.Rev())
	}
}

func TestTxnChangesShareOneRevisionWithSubRevisions(t *testing.T) {
	db, s := newTestStore(t)
	w := apply(t, db, s, func(w *Writer) {
		mustPut(t, w, put("a", "0"))
		resp, err := w.Txn(&etcdserverpb.TxnRequest{
			Compare: []*etcdserverpb.Compare{{
				Key: []byte("a"), Target: etcdserverpb.Compare_VALUE, Result: etcdserverpb.Compare_EQUAL,
				TargetUnion: &etcdserverpb.Compare_Value{Value: []byte("0")},
			}},
			Success: []*etcdserverpb.RequestOp{
				{Request: &etcdserverpb.RequestOp_RequestDeleteRange{RequestDeleteRange: &etcdserverpb.DeleteRangeRequest{Key: []byte("zz")}}},
				{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: put("b", "1")}},
				{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: &etcdserverpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}}},
				{Request: &etcdserverpb.RequestOp_RequestTxn{RequestTxn: &etcdserverpb.TxnRequest{Success: []*etcdserverpb.RequestOp{
					{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte("a"), Value: []byte("2"), PrevKv: true}}},
				}}}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := &etcdserverpb.TxnResponse{
			Header:    &etcdserverpb.ResponseHeader{Revision: 3},
			Succeeded: true,
			Responses: []*etcdserverpb.ResponseOp{
				// Nothing had changed yet: the delete reports the old revision.
				{Response: &etcdserverpb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &etcdserverpb.DeleteRangeResponse{Header: &etcdserverpb.ResponseHeader{Revision: 2}}}},
				{Response: &etcdserverpb.ResponseOp_ResponsePut{ResponsePut: &etcdserverpb.PutResponse{Header: &etcdserverpb.ResponseHeader{Revision: 3}}}},
				{Response: &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: &etcdserverpb.RangeResponse{
					Header: &etcdserverpb.ResponseHeader{Revision: 3}, Count: 2,
					Kvs: []*mvccpb.KeyValue{kv("a", "0", 2, 2, 1), kv("b", "1", 3, 3, 1)},
				}}},
				{Response: &etcdserverpb.ResponseOp_ResponseTxn{ResponseTxn: &etcdserverpb.TxnResponse{
					Header:    &etcdserverpb.ResponseHeader{},
					Succeeded: true,
					Responses: []*etcdserverpb.ResponseOp{{Response: &etcdserverpb.ResponseOp_ResponsePut{ResponsePut: &etcdserverpb.PutResponse{
						Header: &etcdserverpb.ResponseHeader{Revision: 3}, PrevKv: kv("a", "0", 2, 2, 1),
					}}}},
				}}},
			},
		}
		if !proto.Equal(resp, want) {
			t.Fatalf("txn response\n got  %v\n want %v", resp, want)
		}
	})
	if s.Rev() != 3 {
		t.Fatalf("Rev %d, want 3", s.Rev())
	}
	evs := w.Events()
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for i, want := range []storage.Revision{{Main: 2}, {Main: 3, Sub: 0}, {Main: 3, Sub: 1}} {
		if evs[i].Kv.ModRevision != want.Main {
			t.Errorf("event %d at %d, want %d", i, evs[i].Kv.ModRevision, want.Main)
		}
		if b, _ := storage.Get(db, storage.EventKey(want)); b == nil {
			t.Errorf("no event stored at %v", want)
		}
	}
}

func TestTxnComparesOnMissingKeys(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) { mustPut(t, w, put("present", "v")) })
	tests := []struct {
		name string
		cmp  *etcdserverpb.Compare
		want bool
	}{
		{"version of missing key is 0", &etcdserverpb.Compare{Key: []byte("missing"), Target: etcdserverpb.Compare_VERSION, TargetUnion: &etcdserverpb.Compare_Version{Version: 0}}, true},
		{"create of missing key is 0", &etcdserverpb.Compare{Key: []byte("missing"), Target: etcdserverpb.Compare_CREATE, Result: etcdserverpb.Compare_LESS, TargetUnion: &etcdserverpb.Compare_CreateRevision{CreateRevision: 1}}, true},
		{"value of missing key always fails", &etcdserverpb.Compare{Key: []byte("missing"), Target: etcdserverpb.Compare_VALUE, Result: etcdserverpb.Compare_NOT_EQUAL, TargetUnion: &etcdserverpb.Compare_Value{Value: []byte("x")}}, false},
		{"range compare needs every key", &etcdserverpb.Compare{Key: []byte("a"), RangeEnd: []byte{0}, Target: etcdserverpb.Compare_MOD, Result: etcdserverpb.Compare_GREATER, TargetUnion: &etcdserverpb.Compare_ModRevision{ModRevision: 1}}, true},
		{"mismatched target union compares with 0", &etcdserverpb.Compare{Key: []byte("present"), Target: etcdserverpb.Compare_MOD, Result: etcdserverpb.Compare_GREATER, TargetUnion: &etcdserverpb.Compare_Version{Version: 100}}, true},
		{"lease", &etcdserverpb.Compare{Key: []byte("present"), Target: etcdserverpb.Compare_LEASE, TargetUnion: &etcdserverpb.Compare_Lease{Lease: 0}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apply(t, db, s, func(w *Writer) {
				resp, err := w.Txn(&etcdserverpb.TxnRequest{Compare: []*etcdserverpb.Compare{tt.cmp}})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Succeeded != tt.want {
					t.Fatalf("succeeded %v, want %v", resp.Succeeded, tt.want)
				}
			})
		})
	}
}

func TestRangeOptionsFollowEtcd(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) {
		mustPut(t, w, &etcdserverpb.PutRequest{Key: []byte("a"), Value: []byte("3"), Lease: 9}) // rev 2
		mustPut(t, w, put("b", "1"))                                                            // rev 3
		mustPut(t, w, put("c", "2"))                                                            // rev 4
		mustPut(t, w, put("b", "1"))                                                            // rev 5, b version 2
	})
	all := func(r *etcdserverpb.RangeRequest) *etcdserverpb.RangeRequest {
		r.Key, r.RangeEnd = []byte("a"), []byte{0}
		return r
	}
	tests := []struct {
		name     string
		req      *etcdserverpb.RangeRequest
		keys     string
		count    int64
		more     bool
		checkKVs func(t *testing.T, kvs []*mvccpb.KeyValue)
	}{
		{name: "limit", req: all(&etcdserverpb.RangeRequest{Limit: 2}), keys: "ab", count: 3, more: true},
		{name: "limit equal to count", req: all(&etcdserverpb.RangeRequest{Limit: 3}), keys: "abc", count: 3},
		{name: "prefix", req: &etcdserverpb.RangeRequest{Key: []byte("b"), RangeEnd: []byte("c")}, keys: "b", count: 1},
		{name: "end before key", req: &etcdserverpb.RangeRequest{Key: []byte("c"), RangeEnd: []byte("a")}, keys: "", count: 0},
		{name: "count only", req: all(&etcdserverpb.RangeRequest{CountOnly: true, Limit: 1}), keys: "", count: 3},
		{name: "descend by key", req: all(&etcdserverpb.RangeRequest{SortOrder: etcdserverpb.RangeRequest_DESCEND}), keys: "cba", count: 3},
		{name: "value target with order none ascends", req: all(&etcdserverpb.RangeRequest{SortTarget: etcdserverpb.RangeRequest_VALUE}), keys: "bca", count: 3},
		{name: "descend by mod", req: all(&etcdserverpb.RangeRequest{SortTarget: etcdserverpb.RangeRequest_MOD, SortOrder: etcdserverpb.RangeRequest_DESCEND, Limit: 2}), keys: "bc", count: 3, more: true},
		{name: "order none with limit sorts only the first limit+1 keys", req: all(&etcdserverpb.RangeRequest{SortTarget: etcdserverpb.RangeRequest_VALUE, Limit: 1}), keys: "b", count: 3, more: true},
		{name: "filters do not change count", req: all(&etcdserverpb.RangeRequest{MinModRevision: 3, MaxCreateRevision: 3}), keys: "b", count: 3},
		{name: "filters then limit", req: all(&etcdserverpb.RangeRequest{MinModRevision: 3, Limit: 1}), keys: "b", count: 3, more: true},
		{name: "keys only drops value and lease", req: all(&etcdserverpb.RangeRequest{KeysOnly: true, Limit: 1}), keys: "a", count: 3, more: true,
			checkKVs: func(t *testing.T, kvs []*mvccpb.KeyValue) {
				if kvs[0].Value != nil || kvs[0].Lease != 0 || kvs[0].Version != 1 {
					t.Fatalf("keys only kv %v", kvs[0])
				}
			}},
		{name: "keys only sorted by value keeps lease", req: all(&etcdserverpb.RangeRequest{KeysOnly: true, SortTarget: etcdserverpb.RangeRequest_VALUE, SortOrder: etcdserverpb.RangeRequest_DESCEND, Limit: 1}), keys: "a", count: 3, more: true,
			checkKVs: func(t *testing.T, kvs []*mvccpb.KeyValue) {
				if kvs[0].Value != nil || kvs[0].Lease != 9 {
					t.Fatalf("keys only kv %v", kvs[0])
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := mustRange(t, s, tt.req)
			var keys string
			for _, kv := range resp.Kvs {
				keys += string(kv.Key)
			}
			if keys != tt.keys || resp.Count != tt.count || resp.More != tt.more || resp.Header.Revision != 5 {
				t.Fatalf("keys %q count %d more %v rev %d, want %q %d %v 5", keys, resp.Count, resp.More, resp.Header.Revision, tt.keys, tt.count, tt.more)
			}
			if tt.checkKVs != nil {
				tt.checkKVs(t, resp.Kvs)
			}
		})
	}
	if _, err := s.Range(all(&etcdserverpb.RangeRequest{SortOrder: 7})); !errors.Is(err, ErrInvalidSortOption) {
		t.Fatalf("invalid sort order: %v", err)
	}
}

func TestCompactionDropsSupersededHistoryAndKeepsAnswers(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) {
		mustPut(t, w, put("a", "1"))                                                                 // 2
		mustPut(t, w, put("a", "2"))                                                                 // 3
		mustPut(t, w, put("b", "1"))                                                                 // 4
		if _, err := w.DeleteRange(&etcdserverpb.DeleteRangeRequest{Key: []byte("b")}); err != nil { // 5
			t.Fatal(err)
		}
		mustPut(t, w, put("c", "1")) // 6
		mustPut(t, w, put("a", "3")) // 7
	})
	before := map[int64]*etcdserverpb.RangeResponse{}
	for rev := int64(5); rev <= 7; rev++ {
		before[rev] = mustRange(t, s, &etcdserverpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: rev})
	}
	apply(t, db, s, func(w *Writer) {
		if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: 5}); err != nil {
			t.Fatal(err)
		}
	})
	// Reads answer the same before the compaction steps discarded
	// anything, and after.
	for _, steps := range []bool{false, true} {
		if steps {
			if err := s.FinishCompaction(); err != nil {
				t.Fatal(err)
			}
		}
		for rev, want := range before {
			if got := mustRange(t, s, &etcdserverpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: rev}); !proto.Equal(got, want) {
				t.Fatalf("at %d after compaction (steps done: %v)\n got  %v\n want %v", rev, steps, got, want)
			}
		}
	}
	var hist []string
	scan(t, db, storage.HistorySpanStart(nil), storage.HistorySpanEnd(nil), func(k, v []byte) {
		key, rev, err := storage.DecodeHistoryKey(k)
		if err != nil {
			t.Fatal(err)
		}
		hist = append(hist, fmt.Sprintf("%s@%d", key, rev.Main))
	})
	// a@3 survives (newest at 5), a@2 and b's put and tombstone are gone.
	if fmt.Sprint(hist) != "[a@3 a@7 c@6]" {
		t.Fatalf("history after compaction: %v", hist)
	}
	apply(t, db, s, func(w *Writer) {
		if _, err := w.Compact(&etcdserverpb.CompactionRequest{Revision: 7}); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.FinishCompaction(); err != nil {
		t.Fatal(err)
	}
	hist = nil
	scan(t, db, storage.HistorySpanStart(nil), storage.HistorySpanEnd(nil), func(k, v []byte) { hist = append(hist, string(k)) })
	if len(hist) != 2 {
		t.Fatalf("after second compaction %d history records, want 2 (a@7, c@6)", len(hist))
	}
}

func TestWriterSeesEarlierRequestsOfItsBatch(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) {
		mustPut(t, w, put("a", "1"))
		resp, err := w.Range(&etcdserverpb.RangeRequest{Key: []byte("a")})
		if err != nil {
			t.Fatal(err)
		}
		wantKVs(t, resp.Kvs, kv("a", "1", 2, 2, 1))
		if committed := mustRange(t, s, &etcdserverpb.RangeRequest{Key: []byte("a")}); committed.Count != 0 || committed.Header.Revision != 1 {
			t.Fatalf("uncommitted batch visible to Store.Range: %v", committed)
		}
	})
}

func TestDeleteKeysIsOneRevisionAndSkipsMissingKeys(t *testing.T) {
	db, s := newTestStore(t)
	apply(t, db, s, func(w *Writer) {
		for _, k := range []string{"a", "b", "c"} {
			mustPut(t, w, put(k, "v"))
		}
	})
	var rev int64
	w := apply(t, db, s, func(w *Writer) {
		var err error
		if rev, err = w.DeleteKeys([][]byte{[]byte("a"), []byte("missing"), []byte("c")}); err != nil {
			t.Fatal(err)
		}
	})
	if rev != 5 || s.Rev() != 5 {
		t.Fatalf("DeleteKeys ended at revision %d (store %d), want 5: one revision for both deletions", rev, s.Rev())
	}
	evs := w.Events()
	if len(evs) != 2 || evs[0].Kv.ModRevision != 5 || evs[1].Kv.ModRevision != 5 ||
		string(evs[0].Kv.Key) != "a" || string(evs[1].Kv.Key) != "c" || evs[0].PrevKv == nil {
		t.Fatalf("events = %v, want deletions of a and c at revision 5 with their previous versions", evs)
	}
	wantKVs(t, mustRange(t, s, &etcdserverpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z")}).Kvs, kv("b", "v", 3, 3, 1))

	apply(t, db, s, func(w *Writer) {
		if rev, _ = w.DeleteKeys([][]byte{[]byte("missing")}); rev != 5 {
			t.Fatalf("deleting nothing moved the revision to %d", rev)
		}
	})
}
