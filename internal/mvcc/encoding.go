package mvcc

import (
	"encoding/binary"
	"fmt"
	"math"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

// Values of history records (storage.HistoryKey). A history record only says
// what happened to its key at its revision; the written key-value lives in
// the event log under the same revision.
var (
	historyPut       = []byte{'p'}
	historyTombstone = []byte{'t'}
)

// decodeHistoryValue reports whether a history record marks a put (true) or
// a tombstone (false).
func decodeHistoryValue(hk, v []byte) (bool, error) {
	if len(v) == 1 {
		switch v[0] {
		case historyPut[0]:
			return true, nil
		case historyTombstone[0]:
			return false, nil
		}
	}
	return false, fmt.Errorf("%w: history record %x has value %x", storage.ErrMalformedKey, hk, v)
}

// A latest record of a value of latestByRevisionFrom bytes or more holds
// no copy of the key-value, only the revision of its event (which the
// event log keeps as long as the version is live, compactions included):
// latestRefMark, then the main and sub revision as uvarints. Every put
// writes its value to the event log anyway; a second copy in the latest
// record doubled what large values cost the engine, at the flush and in
// every compaction after it. A read of such a key looks the event up.
// The mark is a byte no encoded KeyValue starts with (a protobuf tag of
// field 0).
const (
	latestByRevisionFrom      = 4096
	latestRefMark        byte = 0
)

// appendLatestRef appends the latest record that refers to the event at
// rev.
func appendLatestRef(dst []byte, rev storage.Revision) []byte {
	dst = append(dst, latestRefMark)
	dst = binary.AppendUvarint(dst, uint64(rev.Main))
	return binary.AppendUvarint(dst, uint64(rev.Sub))
}

// latestRef decodes a latest record made by appendLatestRef; ok is false
// for a record holding the key-value itself.
func latestRef(k, v []byte) (rev storage.Revision, ok bool, err error) {
	if len(v) == 0 || v[0] != latestRefMark {
		return rev, false, nil
	}
	main, n := binary.Uvarint(v[1:])
	sub, m := binary.Uvarint(v[1+max(n, 0):])
	if n <= 0 || m <= 0 || 1+n+m != len(v) || main > math.MaxInt64 || sub > math.MaxInt64 {
		return rev, false, fmt.Errorf("mvcc: malformed latest record under %x: %x", k, v)
	}
	return storage.Revision{Main: int64(main), Sub: int64(sub)}, true, nil
}

func decodeKV(k, v []byte) (*mvccpb.KeyValue, error) {
	kv := &mvccpb.KeyValue{}
	if err := proto.Unmarshal(v, kv); err != nil {
		return nil, fmt.Errorf("mvcc: decode key-value under %x: %w", k, err)
	}
	return kv, nil
}

func decodeEvent(k, v []byte) (*mvccpb.Event, error) {
	ev := &mvccpb.Event{}
	if err := proto.Unmarshal(v, ev); err != nil {
		return nil, fmt.Errorf("mvcc: decode event under %x: %w", k, err)
	}
	return ev, nil
}

func encode(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Field numbers of mvccpb.Event (etcd's kv.proto).
const (
	eventTypeField protowire.Number = 1
	eventKVField   protowire.Number = 2
)

// appendEvent appends the encoding of ev without its PrevKv, the same bytes
// as encode gives, and reports where the encoding of ev.Kv starts in it.
// Encoding the fields by hand lets a put store the key-value's bytes as its
// latest record without encoding it twice.
func appendEvent(dst []byte, ev *mvccpb.Event) ([]byte, int, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	size := opts.Size(ev.Kv)
	if t := ev.GetType(); t != 0 {
		dst = protowire.AppendTag(dst, eventTypeField, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(t))
	}
	dst = protowire.AppendTag(dst, eventKVField, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(size))
	start := len(dst)
	opts.UseCachedSize = true
	dst, err := opts.MarshalAppend(dst, ev.Kv)
	if err != nil {
		return nil, 0, err
	}
	if len(dst)-start != size {
		return nil, 0, fmt.Errorf("mvcc: key-value of %x encoded to %d bytes, sized %d", ev.Kv.GetKey(), len(dst)-start, size)
	}
	return dst, start, nil
}
