package mvcc

import (
	"bytes"
	"math"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// appendEvent must give exactly the bytes proto.Marshal gives for the event
// (readers decode event records with proto.Unmarshal, and hashes and
// snapshots carry them), with the key-value's own encoding at the offset it
// reports.
func TestAppendEventMatchesMarshal(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, 300) // a length that takes two varint bytes
	kvs := []*mvccpb.KeyValue{
		{Key: []byte("a"), CreateRevision: 1, ModRevision: 1, Version: 1},
		{Key: []byte("k"), Value: []byte("v"), CreateRevision: 3, ModRevision: 9, Version: 4, Lease: 0x1234},
		{Key: []byte{0, 0xff}, Value: big, CreateRevision: math.MaxInt64, ModRevision: math.MaxInt64, Version: math.MaxInt64, Lease: math.MaxInt64},
		{Key: big, Value: []byte{}, ModRevision: 2},
	}
	prefix := []byte("reused buffer")
	for _, kv := range kvs {
		for _, typ := range []mvccpb.Event_EventType{mvccpb.Event_PUT, mvccpb.Event_DELETE} {
			ev := &mvccpb.Event{Type: typ, Kv: kv}
			want, err := encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			got, start, err := appendEvent(bytes.Clone(prefix), ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], want) {
				t.Errorf("%v event of %q: appendEvent gave %x, proto.Marshal %x", typ, kv.Key, got[len(prefix):], want)
			}
			wantKV, err := encode(kv)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[start:], wantKV) {
				t.Errorf("%v event of %q: key-value at offset %d is %x, want %x", typ, kv.Key, start, got[start:], wantKV)
			}
		}
	}
}

// A latest record that refers to its event decodes to the revision it was
// made from; a record holding a key-value is not taken for one; a damaged
// reference is an error, never a wrong revision.
func TestLatestRefRoundTripsAndRefusesDamage(t *testing.T) {
	for _, rev := range []storage.Revision{{Main: 1}, {Main: 300, Sub: 2}, {Main: math.MaxInt64, Sub: math.MaxInt64}} {
		b := appendLatestRef([]byte("reused"), rev)[len("reused"):]
		got, ok, err := latestRef([]byte("k"), b)
		if err != nil || !ok || got != rev {
			t.Errorf("%v: decoded %v ok %v err %v", rev, got, ok, err)
		}
		for cut := 1; cut < len(b); cut++ {
			if _, _, err := latestRef([]byte("k"), b[:cut]); err == nil {
				t.Errorf("%v cut to %d bytes: no error", rev, cut)
			}
		}
		if _, _, err := latestRef([]byte("k"), append(bytes.Clone(b), 0)); err == nil {
			t.Errorf("%v with a trailing byte: no error", rev)
		}
	}
	if _, _, err := latestRef([]byte("k"), []byte{latestRefMark, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}); err == nil {
		t.Error("a main revision past MaxInt64: no error")
	}
	kv, err := encode(&mvccpb.KeyValue{Key: []byte("k"), Value: []byte("v"), ModRevision: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := latestRef([]byte("k"), kv); ok || err != nil {
		t.Errorf("an encoded key-value: ok %v err %v, want neither", ok, err)
	}
}
