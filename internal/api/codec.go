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
type codec struct {
	encoding.CodecV2
}

func newCodec() codec { return codec{encoding.GetCodecV2(proto.Name)} }

// wireWatchResponse is a watch response the codec encodes from its parts.
type wireWatchResponse struct {
	r      watch.Response
	header *pb.ResponseHeader
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
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
