package watch

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unsafe"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

func kv(key, val string, rev int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: 2, ModRevision: rev, Version: rev - 1, Lease: 7}
}

// The hand-built encoding of an event response decodes to exactly the
// message Message describes, with or without prev_kv, for every kind of
// event and watch ID.
func TestWireEncodingDecodesToTheMessage(t *testing.T) {
	evs := []*mvccpb.Event{
		{Type: mvccpb.Event_PUT, Kv: kv("a", "1", 5)},                          // a create: no PrevKv
		{Type: mvccpb.Event_PUT, Kv: kv("b", "2", 5), PrevKv: kv("b", "0", 3)}, // an update
		{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: []byte("c"), ModRevision: 6}, PrevKv: kv("c", "x", 4)},
		{Type: mvccpb.Event_PUT, Kv: kv("big", strings.Repeat("v", 300_000), 7)}, // length prefixes over one byte
	}
	header := &pb.ResponseHeader{ClusterId: 11, MemberId: 22, Revision: 7, RaftTerm: 3}
	for _, prevKV := range []bool{false, true} {
		for _, id := range []int64{0, 1, 1 << 40} {
			cs := wrap(evs)
			r := Response{watchID: id, rev: 7, changes: cs, prevKV: prevKV}
			want := r.Message()
			want.Header = header
			size, err := r.WireSize(header)
			if err != nil {
				t.Fatal(err)
			}
			b, err := r.AppendWire([]byte("prefix"), header)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("prefix")) || len(b)-len("prefix") != size {
				t.Fatalf("prev_kv %v id %d: appended %d bytes, WireSize says %d", prevKV, id, len(b)-len("prefix"), size)
			}
			var got pb.WatchResponse
			if err := proto.Unmarshal(b[len("prefix"):], &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, want) {
				t.Fatalf("prev_kv %v id %d: decoded\n%v\nwant\n%v", prevKV, id, &got, want)
			}
			for i, ev := range got.GetEvents() {
				if (ev.GetPrevKv() != nil) != (prevKV && evs[i].GetPrevKv() != nil) {
					t.Fatalf("prev_kv %v: event %d has PrevKv %v", prevKV, i, ev.GetPrevKv())
				}
			}
		}
	}
	// The events themselves are never modified by being shared.
	if evs[1].GetPrevKv() == nil || evs[2].GetPrevKv() == nil {
		t.Fatal("stripping PrevKv for one watcher changed the shared event")
	}
}

func TestControlResponseEncodesWithHeader(t *testing.T) {
	r := Response{ctl: &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 4}, WatchId: 3, Canceled: true, CompactRevision: 2, CancelReason: "x"}}
	h := &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 4, RaftTerm: 5}
	b, err := r.AppendWire(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.WatchResponse
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := &pb.WatchResponse{Header: h, WatchId: 3, Canceled: true, CompactRevision: 2, CancelReason: "x"}
	if !proto.Equal(&got, want) {
		t.Fatalf("decoded %v, want %v", &got, want)
	}
	if n, _ := r.WireSize(h); n != len(b) {
		t.Fatalf("WireSize %d, encoding %d bytes", n, len(b))
	}
}

// Merging into a response whose events are shared with another watcher's
// response copies them first: the other watcher's events stay as they were.
func TestMergeNeverWritesIntoSharedEvents(t *testing.T) {
	cs := wrap([]*mvccpb.Event{{Kv: kv("k", "1", 2)}, {Kv: kv("k", "2", 3)}})
	shared := cs[:1] // spare capacity: an append in place would overwrite cs[1]
	other := Response{watchID: 2, rev: 2, changes: shared}
	var o Outbox
	o.Add([]Response{{watchID: 1, rev: 2, changes: shared}, other})
	o.Add([]Response{evResp(1, 4, "x")})
	if got := string(cs[1].key()); got != "k" {
		t.Fatalf("the shared backing array was written to: cs[1] is now %q", got)
	}
	first, _ := o.Pop()
	if n := first.NumEvents(); n != 2 {
		t.Fatalf("merged response has %d events, want 2", n)
	}
	second, _ := o.Pop()
	if second.NumEvents() != 1 || string(second.changes[0].key()) != "k" {
		t.Fatalf("the other watcher's response changed: %v", second.Message())
	}
}

// The message budget: a burst passes at once; beyond it the sender waits,
// for up to sendRefill messages' worth, and time refills the budget.
func TestOutboxMessageBudget(t *testing.T) {
	var o Outbox
	now := time.Unix(1000, 0)
	for i := range sendBurst {
		if d := o.Delay(now); d != 0 {
			t.Fatalf("message %d of a burst delayed %v", i, d)
		}
		o.Add([]Response{evResp(int64(i), 2, "k")})
		o.Pop()
	}
	for i := range 2 * sendRefill {
		o.Add([]Response{evResp(int64(i), 3, "k")})
	}
	want := time.Duration(float64(sendRefill) / sendRate * float64(time.Second))
	if d := o.Delay(now); d != want {
		t.Fatalf("out of budget with %d waiting: delay %v, want %v", o.Len(), d, want)
	}
	now = now.Add(want)
	for i := range sendRefill {
		if d := o.Delay(now); d != 0 {
			t.Fatalf("after the refill, message %d delayed %v", i, d)
		}
		o.Pop()
	}
	if d := o.Delay(now); d <= 0 {
		t.Fatal("the refill was spent, yet no delay")
	}
	now = now.Add(time.Hour)
	if d := o.Delay(now); d != 0 || o.tokens != sendBurst {
		t.Fatalf("after an idle hour: delay %v, %v messages of budget, want 0 and %d", d, o.tokens, sendBurst)
	}

	// Out of budget with a single response waiting, the sender waits for
	// one message's worth only.
	var one Outbox
	for range sendBurst {
		one.Delay(now)
		one.Add([]Response{evResp(1, 2, "k")})
		one.Pop()
	}
	one.Add([]Response{evResp(1, 3, "k")})
	if d, want := one.Delay(now), time.Second/sendRate; d != want {
		t.Fatalf("one response waiting: delay %v, want %v", d, want)
	}
}

// One applied batch whose changes interleave keys: each watcher gets its
// own changes, in order, in one response, whether they are consecutive in
// the batch or not, and sharing them changes nothing for the others.
func TestNotifyGivesEachWatcherItsChangesOfABatch(t *testing.T) {
	e := newEnv(t, Config{})
	c := newClient(t, e.h)
	a := c.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b")}).WatchId
	b := c.create(&pb.WatchCreateRequest{Key: []byte("b")}).WatchId
	all := c.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true}).WatchId
	e.batch(put("a1", "x"), put("b", "y"), put("a2", "z"), put("a1", "w"))
	resps := c.drain()
	if len(resps) != 3 {
		t.Fatalf("%d responses for one batch and three watchers, want 3", len(resps))
	}
	keys := func(id int64) string {
		var s []string
		for _, ev := range c.evs[id] {
			s = append(s, string(ev.GetKv().GetKey())+"="+string(ev.GetKv().GetValue()))
		}
		return strings.Join(s, " ")
	}
	if got, want := keys(a), "a1=x a2=z a1=w"; got != want {
		t.Errorf("watcher of a*: %s, want %s", got, want)
	}
	if got, want := keys(b), "b=y"; got != want {
		t.Errorf("watcher of b: %s, want %s", got, want)
	}
	if got, want := keys(all), "a1=x b=y a2=z a1=w"; got != want {
		t.Errorf("watcher of everything: %s, want %s", got, want)
	}
	// prev_kv only for the watcher that asked: the second put of a1 has one.
	if prev := c.evs[all][3].GetPrevKv(); string(prev.GetValue()) != "x" {
		t.Errorf("prev_kv watcher: previous version %v, want a1=x", prev)
	}
	if prev := c.evs[a][2].GetPrevKv(); prev != nil {
		t.Errorf("watcher without prev_kv was sent a previous version %v", prev)
	}
}

// A watcher given only part of an applied batch holds a copy of its part:
// sharing the batch's array would keep every other change of the batch in
// memory for as long as its response waits (the queue bounds count only
// its own events). A watcher given the whole batch shares it.
func TestPartOfABatchIsCopiedTheWholeBatchShared(t *testing.T) {
	e := newEnv(t, Config{})
	st := e.h.NewStream()
	defer st.Close()
	st.Watch(&pb.WatchCreateRequest{Key: []byte("k")})
	st.Watch(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}})
	e.batch(put("x", "1"), put("k", "2"), put("y", "3"))
	rs, err := st.TryNext()
	if err != nil {
		t.Fatal(err)
	}
	var part, whole []*change
	for _, r := range rs {
		switch {
		case r.Control():
		case len(r.changes) == 1:
			part = r.changes
		case len(r.changes) == 3:
			whole = r.changes
		}
	}
	if part == nil || whole == nil {
		t.Fatalf("want one response with the key's change and one with all three, got %d responses", len(rs))
	}
	within := func(p *[]*change) bool {
		// Addresses as integers: a pointer one past the array would
		// fail the race detector's pointer checks (checkptr).
		start := uintptr(unsafe.Pointer(unsafe.SliceData(whole)))
		end := start + uintptr(len(whole))*unsafe.Sizeof(whole[0])
		at := uintptr(unsafe.Pointer(unsafe.SliceData(*p)))
		return at >= start && at < end
	}
	if within(&part) {
		t.Fatal("the watcher of one key shares the batch's array")
	}
	if part[0] != whole[1] {
		t.Fatal("the copy does not hold the shared change itself")
	}
}

// A control response in the outbox suspends the message budget until it
// is sent, and what goes out meanwhile is not charged.
func TestControlResponseIsNotPaced(t *testing.T) {
	var o Outbox
	now := time.Unix(1000, 0)
	for range sendBurst {
		o.Delay(now)
		o.Add([]Response{evResp(1, 2, "k")})
		o.Pop()
	}
	o.Add([]Response{evResp(1, 3, "k"), evResp(2, 3, "k")})
	if o.Delay(now) == 0 {
		t.Fatal("out of budget, yet no delay")
	}
	o.Add([]Response{{ctl: &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 3}, WatchId: -1}}})
	before := o.tokens
	for i := range 3 {
		if d := o.Delay(now); d != 0 {
			t.Fatalf("response %d ahead of or at a progress notification delayed %v", i, d)
		}
		o.Pop()
	}
	if o.tokens != before {
		t.Fatalf("budget %v after sending up to the control response, was %v: charged", o.tokens, before)
	}
	o.Add([]Response{evResp(1, 4, "k")})
	if o.Delay(now) == 0 {
		t.Fatal("after the control response went out, the budget no longer applies")
	}
}

func TestOutboxBoundsControlResponses(t *testing.T) {
	e := newEnv(t, Config{})
	st := e.h.NewStream()
	defer st.Close()
	var o Outbox
	for i := range maxQueuedControl {
		if !o.HasRoom(st) {
			t.Fatalf("no room after %d control responses", i)
		}
		o.Add([]Response{{ctl: &pb.WatchResponse{WatchId: -1}}})
	}
	if o.HasRoom(st) {
		t.Fatalf("room for more after %d control responses", maxQueuedControl)
	}
}
