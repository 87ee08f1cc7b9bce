package watch

import (
	"fmt"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func evResp(id, rev int64, keys ...string) Response {
	var evs []*mvccpb.Event
	for _, k := range keys {
		evs = append(evs, &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte(k), ModRevision: rev}})
	}
	cs := wrap(evs)
	size := 0
	for _, c := range cs {
		size += c.size
	}
	return Response{watchID: id, rev: rev, changes: cs, size: size}
}

// shape renders responses as "id@rev:keys" for comparison.
func shape(rs []Response) []string {
	var out []string
	for _, r := range rs {
		m := r.Message()
		s := ""
		for _, ev := range m.GetEvents() {
			s += string(ev.GetKv().GetKey())
		}
		kind := "ev"
		switch {
		case m.GetCreated():
			kind = "created"
		case m.GetCanceled():
			kind = "canceled"
		case len(m.GetEvents()) == 0:
			kind = "progress"
		}
		out = append(out, fmt.Sprintf("%s%d@%d:%s", kind, m.GetWatchId(), m.GetHeader().GetRevision(), s))
	}
	return out
}

// coalesce adds rs to an empty Outbox and pops everything.
func coalesce(rs []Response) []Response {
	var o Outbox
	o.Add(rs)
	var out []Response
	for r, ok := o.Pop(); ok; r, ok = o.Pop() {
		out = append(out, r)
	}
	return out
}

func TestOutboxMergesOnlyIntoResponsesNotSentYet(t *testing.T) {
	var o Outbox
	o.Add([]Response{evResp(1, 2, "a"), evResp(2, 2, "a")})
	first, _ := o.Pop()
	o.Add([]Response{evResp(1, 3, "b"), evResp(2, 3, "b")})
	var got []Response
	for r, ok := o.Pop(); ok; r, ok = o.Pop() {
		got = append(got, r)
	}
	want := []string{"ev2@3:ab", "ev1@3:b"}
	if s := shape(append([]Response{first}, got...)); !slices.Equal(s, append([]string{"ev1@2:a"}, want...)) {
		t.Fatalf("sent %q, want [ev1@2:a] then %q", s, want)
	}
}

func TestCoalesceMergesEachWatchersEventsUpToABarrier(t *testing.T) {
	progress := Response{ctl: &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 4}, WatchId: -1}}
	in := []Response{
		evResp(1, 2, "a"), evResp(2, 2, "a"), evResp(1, 3, "b", "c"), evResp(2, 3, "b"),
		progress,
		evResp(1, 5, "d"), evResp(1, 6, "e"),
		{ctl: &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 6}, WatchId: 3, Created: true}},
		evResp(1, 7, "f"),
	}
	got := shape(coalesce(in))
	want := []string{"ev1@3:abc", "ev2@3:ab", "progress-1@4:", "ev1@6:de", "created3@6:", "ev1@7:f"}
	if !slices.Equal(got, want) {
		t.Fatalf("coalesce = %q, want %q", got, want)
	}
}

func TestCoalesceBoundsMergedResponses(t *testing.T) {
	var in []Response
	for i := range coalesceMaxEvents + 1 {
		in = append(in, evResp(1, int64(i+2), "k"))
	}
	out := coalesce(in)
	if len(out) != 2 || len(out[0].Message().GetEvents()) != coalesceMaxEvents || len(out[1].Message().GetEvents()) != 1 {
		t.Fatalf("coalesce of %d one-event responses gave %d responses", len(in), len(out))
	}
	if out[0].Message().GetHeader().GetRevision() != int64(coalesceMaxEvents+1) {
		t.Fatalf("merged response has header revision %d, want the last merged one", out[0].Message().GetHeader().GetRevision())
	}
}
