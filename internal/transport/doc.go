// Package transport carries raft messages and snapshots between the members
// of one cluster over HTTP on their peer URLs, delivering each message at
// most once, in order within a stream, and never blocking the raft loop.
//
// # Driving it
//
// Create a Transport with New, mount Handler on the peer listener (under
// PathPrefix), AddPeer every other member, and hand each Ready's messages to
// Send. Received messages arrive through Config.Raft.Process. On membership
// changes call AddPeer/RemovePeer; Close on shutdown.
//
// # Guarantees
//
//   - Send never blocks: each peer has a bounded queue; a message that does
//     not fit, or that is queued while the peer is unreachable, is dropped
//     and the peer reported through Raft.ReportUnreachable. Raft retransmits,
//     so loss is safe; reordering across message classes is too.
//   - Per peer, MsgApp messages are delivered in the order sent, and so are
//     all other messages; the latter (heartbeats, votes, responses) are
//     written before any queued MsgApp, so a replication backlog never
//     starves them.
//   - Raft and SnapshotStore are never called from within a Transport
//     method, and not at all once Close has returned.
//   - A snapshot's MsgSnap reaches the receiving raft only after
//     SnapshotStore.Receive has stored its data; the sender hears the
//     outcome through Raft.ReportSnapshot. A MsgSnap arriving any other way
//     is dropped.
//   - Every request carries the cluster ID and both member IDs; a request
//     from another cluster, or meant for another member, is refused with
//     HTTP 412 and a log line naming both sides. Each message's To and From
//     are checked again on arrival, and message types that only exist
//     inside a member are dropped.
//   - Nothing a peer sends can make the receiver panic or allocate more than
//     Config.MaxMessageSize for one frame; garbage ends the stream with a
//     log line.
//
// # Wire protocol
//
// A sender keeps one long-lived HTTP/1.1 request per peer, POST
// /raft/stream, whose body is a sequence of frames: a uvarint length and a
// proto-encoded raftpb.Message; length 0 is a keepalive, sent when the
// stream is idle. The receiver answers 200 at once and then writes one byte
// per keepalive interval to the response, so each end notices within
// seconds when the other is gone, even without a TCP reset. A broken stream
// is logged once ("peer lost") and redialed with backoff over all the
// peer's URLs ("peer connected" when it is back). A snapshot is one POST
// /raft/snapshot: the framed MsgSnap followed by the data from
// SnapshotStore.Open. GET /raft/probe answers with the cluster and member
// IDs.
//
// With Config.TLS set the same requests go over TLS (https peer URLs).
package transport
