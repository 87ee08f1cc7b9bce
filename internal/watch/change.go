package watch

import (
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// change is one committed event as the hub shares it between the watchers
// it goes to: the event (with its PrevKv, if it has one) and, made once on
// first use by any stream's sender, its wire encoding with and without
// PrevKv. A thousand watchers of one key then cost one encoding of each
// event, not a thousand. Changes are never modified after wrap.
type change struct {
	ev   *mvccpb.Event
	size int // eventSize(ev)
	// Encodings of ev with PrevKv (full) and without it (bare); bare is
	// unused when ev has no PrevKv.
	full, bare atomic.Pointer[[]byte]
}

// wrap turns events into changes. Each change is an allocation of its own:
// a watcher that keeps one change of a batch queued must not keep the
// others alive with it.
func wrap(evs []*mvccpb.Event) []*change {
	if len(evs) == 0 {
		return nil
	}
	out := make([]*change, len(evs))
	for i, ev := range evs {
		out[i] = &change{ev: ev, size: eventSize(ev)}
	}
	return out
}

func (c *change) key() []byte { return c.ev.GetKv().GetKey() }

func (c *change) rev() int64 { return c.ev.GetKv().GetModRevision() }

// event is the event as a watcher with or without prev_kv is sent it.
func (c *change) event(prevKV bool) *mvccpb.Event {
	if prevKV || c.ev.GetPrevKv() == nil {
		return c.ev
	}
	return &mvccpb.Event{Type: c.ev.GetType(), Kv: c.ev.GetKv()}
}

// wire is the protobuf encoding of event(prevKV), made on first use.
// Senders of several streams may race to make it; they make the same bytes.
func (c *change) wire(prevKV bool) ([]byte, error) {
	p := &c.full
	if !prevKV && c.ev.GetPrevKv() != nil {
		p = &c.bare
	}
	if b := p.Load(); b != nil {
		return *b, nil
	}
	b, err := proto.Marshal(c.event(prevKV))
	if err != nil {
		return nil, err
	}
	p.Store(&b)
	return b, nil
}

// Field numbers of the WatchResponse fields an event response sets.
var (
	respFields   = (&pb.WatchResponse{}).ProtoReflect().Descriptor().Fields()
	fieldHeader  = respFields.ByName("header").Number()
	fieldWatchID = respFields.ByName("watch_id").Number()
	fieldEvents  = respFields.ByName("events").Number()
)

// WireSize is the size of the response's protobuf encoding with header h.
func (r Response) WireSize(h *pb.ResponseHeader) (int, error) {
	if r.ctl != nil {
		return proto.Size(r.withHeader(h)), nil
	}
	n := protowire.SizeTag(fieldHeader) + protowire.SizeBytes(proto.Size(h))
	if r.watchID != 0 {
		n += protowire.SizeTag(fieldWatchID) + protowire.SizeVarint(uint64(r.watchID))
	}
	for _, c := range r.changes {
		b, err := c.wire(r.prevKV)
		if err != nil {
			return 0, err
		}
		n += protowire.SizeTag(fieldEvents) + protowire.SizeBytes(len(b))
	}
	return n, nil
}

// AppendWire appends the response's protobuf encoding, with header h, to
// b: a pb.WatchResponse equal to Message with that header. Event responses
// are put together from their events' cached encodings.
func (r Response) AppendWire(b []byte, h *pb.ResponseHeader) ([]byte, error) {
	if r.ctl != nil {
		return proto.MarshalOptions{}.MarshalAppend(b, r.withHeader(h))
	}
	b = protowire.AppendTag(b, fieldHeader, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(proto.Size(h)))
	b, err := proto.MarshalOptions{}.MarshalAppend(b, h)
	if err != nil {
		return nil, err
	}
	if r.watchID != 0 {
		b = protowire.AppendTag(b, fieldWatchID, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.watchID))
	}
	for _, c := range r.changes {
		ev, err := c.wire(r.prevKV)
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, fieldEvents, protowire.BytesType)
		b = protowire.AppendBytes(b, ev)
	}
	return b, nil
}

// withHeader is a shallow copy of control response r.ctl with header h.
func (r Response) withHeader(h *pb.ResponseHeader) *pb.WatchResponse {
	return &pb.WatchResponse{
		Header:          h,
		WatchId:         r.ctl.GetWatchId(),
		Created:         r.ctl.GetCreated(),
		Canceled:        r.ctl.GetCanceled(),
		CompactRevision: r.ctl.GetCompactRevision(),
		CancelReason:    r.ctl.GetCancelReason(),
	}
}
