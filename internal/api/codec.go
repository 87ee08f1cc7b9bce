package api

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/kvorum/kvorum/internal/watch"
)

// codec is gRPC's protobuf codec, which it calls for everything, except
// that it encodes watch responses itself: event responses from the
// encodings of their events, which the watch hub makes once for all the
// watchers an event goes to (a put watched by a thousand clients is
// marshaled once, not a thousand times).
//
// It also counts the bytes of every message to and from clients
// (etcd_network_client_grpc_{sent,received}_bytes_total). Counting them
// here rather than in a gRPC stats handler saves gRPC building a stats
// event, with a copy of the metadata, for every header, message and end
// of every call.
type codec struct {
	encoding.CodecV2
	bytes byteCounter
}

// byteCounter is told the size of every message the codec encodes or
// decodes.
type byteCounter interface {
	ClientBytesSent(n int)
	ClientBytesReceived(n int)
}

func newCodec(bytes byteCounter) codec { return codec{encoding.GetCodecV2(proto.Name), bytes} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	data, err := c.marshal(v)
	if err == nil {
		c.bytes.ClientBytesSent(data.Len())
	}
	return data, err
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	c.bytes.ClientBytesReceived(data.Len())
	return c.CodecV2.Unmarshal(data, v)
}

// wireWatchResponse is a watch response the codec encodes from its parts.
type wireWatchResponse struct {
	r      watch.Response
	header *pb.ResponseHeader
}

func (c codec) marshal(v any) (mem.BufferSlice, error) {
	w, ok := v.(*wireWatchResponse)
	if !ok {
		return c.CodecV2.Marshal(v)
	}
	size, err := w.r.WireSize(w.header)
	if err != nil {
		return nil, err
	}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := w.r.AppendWire(make([]byte, 0, size), w.header)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	b, err := w.r.AppendWire((*buf)[:0], w.header)
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}
