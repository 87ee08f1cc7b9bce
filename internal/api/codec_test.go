package api

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/mvcc"
	"github.com/kvorum/kvorum/internal/watch"
)

type noHistory struct{}

func (noHistory) Events(mvcc.EventsRequest) (mvcc.EventsResult, error) {
	return mvcc.EventsResult{}, nil
}
func (noHistory) CompactRev() int64 { return 0 }

type countBytes struct{ sent, received int }

func (c *countBytes) ClientBytesSent(n int)     { c.sent += n }
func (c *countBytes) ClientBytesReceived(n int) { c.received += n }

// What the codec sends for a watch event response is what gRPC's own
// protobuf codec sends for the same response as a message; everything
// else goes through gRPC's codec unchanged.
func TestCodecEncodesWatchResponsesAsProtobuf(t *testing.T) {
	h := watch.New(watch.Config{Source: noHistory{}, Rev: 1})
	st := h.NewStream()
	defer st.Close()
	st.Watch(&pb.WatchCreateRequest{Key: []byte("k"), PrevKv: true})
	h.Notify(2, []*mvccpb.Event{{Type: mvccpb.Event_PUT, Kv: &mvccpb.KeyValue{Key: []byte("k"), Value: []byte("v"), ModRevision: 2, CreateRevision: 2, Version: 1}}})
	rs, err := st.TryNext()
	if err != nil || len(rs) != 2 || rs[1].Control() {
		t.Fatalf("want a created response and an event response, got %d responses, %v", len(rs), err)
	}
	header := &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 2, RaftTerm: 3}
	c := newCodec(&countBytes{})
	data, err := c.Marshal(&wireWatchResponse{r: rs[1], header: header})
	if err != nil {
		t.Fatal(err)
	}
	var got pb.WatchResponse
	if err := c.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	data.Free()
	want := rs[1].Message()
	want.Header = header
	if !proto.Equal(&got, want) || len(got.GetEvents()) != 1 {
		t.Fatalf("decoded %v, want %v", &got, want)
	}

	plain := &pb.RangeResponse{Header: header, Count: 5}
	data, err = c.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	var back pb.RangeResponse
	if err := c.Unmarshal(data, &back); err != nil || !proto.Equal(&back, plain) {
		t.Fatalf("a plain message through the codec: %v, %v", &back, err)
	}
	if c.Name() != "proto" {
		t.Fatalf("codec name %q: clients ask for proto", c.Name())
	}
}

// The codec counts the bytes of every message it encodes and decodes, for
// etcd_network_client_grpc_{sent,received}_bytes_total: the encoded size
// of the message, watch responses included.
func TestCodecCountsMessageBytes(t *testing.T) {
	var n countBytes
	c := newCodec(&n)
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 3, RaftTerm: 4}}
	data, err := c.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if n.sent != proto.Size(resp) || n.received != 0 {
		t.Fatalf("after encoding a %d-byte response: counted %d sent, %d received", proto.Size(resp), n.sent, n.received)
	}
	var back pb.PutResponse
	if err := c.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	data.Free()
	if n.received != proto.Size(resp) {
		t.Fatalf("after decoding a %d-byte message: counted %d received", proto.Size(resp), n.received)
	}

	h := watch.New(watch.Config{Source: noHistory{}, Rev: 1})
	st := h.NewStream()
	defer st.Close()
	st.Watch(&pb.WatchCreateRequest{Key: []byte("k")})
	h.Notify(2, []*mvccpb.Event{{Type: mvccpb.Event_PUT, Kv: &mvccpb.KeyValue{Key: []byte("k"), Value: []byte("v"), ModRevision: 2, CreateRevision: 2, Version: 1}}})
	rs, err := st.TryNext()
	if err != nil || len(rs) != 2 {
		t.Fatalf("want a created response and an event response, got %d responses, %v", len(rs), err)
	}
	before := n.sent
	header := &pb.ResponseHeader{ClusterId: 1, Revision: 2}
	data, err = c.Marshal(&wireWatchResponse{r: rs[1], header: header})
	if err != nil {
		t.Fatal(err)
	}
	want := rs[1].Message()
	want.Header = header
	if got := n.sent - before; got != data.Len() || got != proto.Size(want) {
		t.Errorf("a watch event response of %d bytes counted as %d sent", proto.Size(want), got)
	}
	data.Free()
}
