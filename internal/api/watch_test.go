package api

import (
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

func TestFragmentedWatchResponseSplitsAtLimitAndJoinsBack(t *testing.T) {
	var evs []*mvccpb.Event
	for i := range 10 {
		evs = append(evs, &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte(fmt.Sprint("k", i)), Value: []byte(strings.Repeat("v", 100)), ModRevision: 7}})
	}
	evs = append(evs, &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("big"), Value: []byte(strings.Repeat("v", 1000)), ModRevision: 7}})
	m := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 7}, WatchId: 3, Events: evs}
	const limit = 400
	var sent []*pb.WatchResponse
	if err := sendFragments(m, limit, func(r *pb.WatchResponse) error { sent = append(sent, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var joined []*mvccpb.Event
	for i, r := range sent {
		if r.Fragment != (i < len(sent)-1) {
			t.Errorf("piece %d of %d: fragment %v", i, len(sent), r.Fragment)
		}
		if r.WatchId != 3 || r.Header.Revision != 7 {
			t.Errorf("piece %d: watch %d revision %d", i, r.WatchId, r.Header.Revision)
		}
		if proto.Size(r) >= limit && len(r.Events) > 1 {
			t.Errorf("piece %d has %d bytes and %d events, over the limit %d", i, proto.Size(r), len(r.Events), limit)
		}
		joined = append(joined, r.Events...)
	}
	if len(sent) < 3 || !proto.Equal(&pb.WatchResponse{Events: joined}, &pb.WatchResponse{Events: evs}) {
		t.Fatalf("%d pieces joining to %d events, want several pieces joining to the original %d", len(sent), len(joined), len(evs))
	}

	sent = nil
	small := &pb.WatchResponse{WatchId: 1, Events: evs[:2]}
	_ = sendFragments(small, 1<<20, func(r *pb.WatchResponse) error { sent = append(sent, r); return nil })
	if len(sent) != 1 || sent[0] != small {
		t.Fatalf("a response under the limit went out as %d pieces", len(sent))
	}
}
