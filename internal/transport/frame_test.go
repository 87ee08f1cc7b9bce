package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestFrameRoundTrip(t *testing.T) {
	in := []*raftpb.Message{
		msg(raftpb.MsgApp, 1, 2, 7),
		{Type: new(raftpb.MsgHeartbeat), To: new(uint64(2))},
		{Type: new(raftpb.MsgApp), To: new(uint64(2)), Entries: []*raftpb.Entry{{Data: bytes.Repeat([]byte("e"), 100_000)}}},
	}
	var buf []byte
	for _, m := range in {
		var err error
		if buf, err = appendFrame(buf, m, DefaultMaxMessageSize); err != nil {
			t.Fatal(err)
		}
	}
	buf = append(buf, 0) // keepalive
	r := bufio.NewReader(bytes.NewReader(buf))
	var scratch []byte
	for i, want := range in {
		payload, err := readFrame(r, scratch, DefaultMaxMessageSize)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		scratch = payload[:0]
		got, err := decodeMessage(payload)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("frame %d: got %v, want %v", i, got, want)
		}
	}
	if payload, err := readFrame(r, nil, DefaultMaxMessageSize); err != nil || len(payload) != 0 {
		t.Fatalf("keepalive: payload %d bytes, err %v", len(payload), err)
	}
	if _, err := readFrame(r, nil, DefaultMaxMessageSize); err != io.EOF {
		t.Fatalf("at the end: err %v, want io.EOF", err)
	}
}

func TestReadFrameRefusesBadInput(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"length over limit", []byte{0x81, 0x08}, errFrameTooLarge}, // 1025 > 1024
		{"cut inside the length", []byte{0x81}, io.ErrUnexpectedEOF},
		{"cut inside the payload", []byte{5, 1, 2}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tt.input)), nil, 1024)
			if !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := appendFrame(nil, &raftpb.Message{Context: make([]byte, 2000)}, 1024); !errors.Is(err, errFrameTooLarge) {
		t.Errorf("appendFrame of an oversize message: err %v", err)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the receive path: it must never
// panic nor return a payload over the limit.
func FuzzReadFrame(f *testing.F) {
	good, _ := appendFrame(nil, msg(raftpb.MsgApp, 1, 2, 3), DefaultMaxMessageSize)
	f.Add(good)
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{4, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 4096
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			payload, err := readFrame(r, nil, limit)
			if err != nil {
				return
			}
			if len(payload) > limit {
				t.Fatalf("payload of %d bytes over the limit", len(payload))
			}
			if m, err := decodeMessage(payload); err == nil {
				(&Transport{cfg: Config{LocalID: 2}}).refuse(m, 1)
			}
		}
	})
}
