package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Wire format of a stream (and of the head of a snapshot request): a
// sequence of frames, each a uvarint length followed by that many bytes of a
// proto-encoded raftpb.Message. A frame of length zero carries no message;
// senders write one as a keepalive when they have nothing else to say.

// DefaultMaxMessageSize is the largest frame a receiver accepts unless
// Config.MaxMessageSize says otherwise.
const DefaultMaxMessageSize = 64 << 20

// maxRetainedBuf bounds the scratch buffers kept between frames, so that one
// huge message does not pin its size in memory for the life of a stream.
const maxRetainedBuf = 1 << 20

// errFrameTooLarge is wrapped by readFrame and appendFrame when a frame
// exceeds the limit.
var errFrameTooLarge = errors.New("raft message exceeds the size limit")

// appendFrame appends m's frame to buf.
func appendFrame(buf []byte, m *raftpb.Message, limit int) ([]byte, error) {
	size := proto.Size(m)
	if size > limit {
		return buf, fmt.Errorf("%w: %s to %x is %d bytes, limit %d", errFrameTooLarge, m.GetType(), m.GetTo(), size, limit)
	}
	buf = binary.AppendUvarint(buf, uint64(size))
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, m)
}

// readFrame reads one frame from r into buf (grown as needed) and returns
// its payload, which is empty for a keepalive. It returns io.EOF only at a
// frame boundary; a stream cut inside a frame gives io.ErrUnexpectedEOF.
// The length is checked against limit before anything is allocated, so a
// hostile length prefix costs nothing.
func readFrame(r *bufio.Reader, buf []byte, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, err
		}
		return nil, fmt.Errorf("read frame length: %w", err)
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: frame of %d bytes, limit %d", errFrameTooLarge, n, limit)
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read frame of %d bytes: %w", n, err)
	}
	return buf, nil
}

// decodeMessage unmarshals a frame payload. proto.Unmarshal copies bytes
// fields, so the payload buffer may be reused afterwards.
func decodeMessage(payload []byte) (*raftpb.Message, error) {
	m := new(raftpb.Message)
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, fmt.Errorf("malformed raft message (%d bytes): %w", len(payload), err)
	}
	return m, nil
}
