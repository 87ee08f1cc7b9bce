package raftnode

import (
	"log/slog"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TestLateHeartbeatsAreCounted checks etcd's rule for
// etcd_server_heartbeat_send_failures_total: a heartbeat to a peer more
// than two heartbeat intervals after the previous one to that peer counts;
// the first to a peer, other messages, and heartbeats after a spell
// without leadership do not.
func TestLateHeartbeatsAreCounted(t *testing.T) {
	n := &Node{heartbeatSent: make(map[uint64]time.Time), lg: slog.New(slog.DiscardHandler)}
	n.cfg.TickInterval = time.Millisecond
	hb := func(to uint64) *pb.Message { return &pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), To: new(to)} }
	app := &pb.Message{Type: pb.MessageType_MsgApp.Enum(), To: new(uint64(2))}

	n.checkHeartbeats([]*pb.Message{hb(2), hb(3), app})
	if got := n.HeartbeatsLate(); got != 0 {
		t.Fatalf("first heartbeats counted late: %d", got)
	}
	time.Sleep(5 * time.Millisecond) // past two intervals of 1 ms
	n.checkHeartbeats([]*pb.Message{hb(2), app})
	if got := n.HeartbeatsLate(); got != 1 {
		t.Fatalf("after 5 intervals: %d late, want 1", got)
	}
	n.cfg.TickInterval = time.Hour
	n.checkHeartbeats([]*pb.Message{hb(2), hb(3)})
	if got := n.HeartbeatsLate(); got != 1 {
		t.Fatalf("heartbeats on time counted late: %d, want 1", got)
	}
	// Leadership lost and won again: the Ready loop clears the map.
	clear(n.heartbeatSent)
	n.cfg.TickInterval = time.Millisecond
	time.Sleep(5 * time.Millisecond)
	n.checkHeartbeats([]*pb.Message{hb(2)})
	if got := n.HeartbeatsLate(); got != 1 {
		t.Fatalf("the first heartbeat of a new term counted late: %d, want 1", got)
	}
}
