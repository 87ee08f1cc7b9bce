package mvcc

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
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
