package api

import (
	"context"
	"errors"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/auth"
	"github.com/kvorum/kvorum/internal/metrics"
	"github.com/kvorum/kvorum/internal/server"
	"github.com/kvorum/kvorum/internal/watch"
)

// watchServer serves etcd's Watch service: each gRPC stream is one
// watch.Stream of the member's hub. One goroutine reads the client's
// requests, one sends the stream's responses in queue order, one ticks
// progress notifications.
type watchServer struct {
	pb.UnimplementedWatchServer
	s *server.Server
}

func (ws *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	st := ws.s.WatchHub().NewStream()
	defer st.Close()

	go st.RunProgress(ctx)
	go ws.revalidate(ctx, st)
	sendc := make(chan error, 1)
	go func() { sendc <- ws.sendLoop(ctx, stream, st) }()
	recvc := make(chan error, 1)
	go func() { recvc <- recvLoop(ctx, stream, st) }()

	var err error
	select {
	case err = <-recvc:
		if err == nil {
			// The client closed its side; as in etcd, the watches go on
			// until the stream ends.
			select {
			case err = <-sendc:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
	case err = <-sendc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	// A stream canceled by the require-leader monitor says why.
	if cause := context.Cause(stream.Context()); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	if errors.Is(err, context.Canceled) {
		return rpctypes.ErrGRPCWatchCanceled
	}
	return err
}

func recvLoop(ctx context.Context, stream pb.Watch_WatchServer, st *watch.Stream) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var refused *refusedMessage
		if errors.As(err, &refused) {
			// A watch the user may not open is answered "created and
			// canceled" with the reason, as etcd answers it; the stream
			// and its other watches go on.
			if wr, ok := refused.msg.(*pb.WatchRequest); ok && wr.GetCreateRequest() != nil {
				st.Refuse(status.Convert(refused.err).Message())
				continue
			}
			return refused.err
		}
		if err != nil {
			return err
		}
		if err := st.WaitControlRoom(ctx); err != nil {
			return err
		}
		switch r := req.GetRequestUnion().(type) {
		case *pb.WatchRequest_CreateRequest:
			if r.CreateRequest != nil {
				st.Watch(r.CreateRequest)
			}
		case *pb.WatchRequest_CancelRequest:
			if r.CancelRequest != nil {
				st.Cancel(r.CancelRequest.GetWatchId())
			}
		case *pb.WatchRequest_ProgressRequest:
			if r.ProgressRequest != nil {
				st.RequestProgress()
			}
		}
		// Unknown request kinds are ignored, as etcd ignores them, rather
		// than ending a stream that carries other watches.
	}
}

func (ws *watchServer) sendLoop(ctx context.Context, stream pb.Watch_WatchServer, st *watch.Stream) error {
	limit := ws.s.MaxRequestBytes() + grpcOverheadBytes
	var out watch.Outbox
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	take := func(wait bool) error {
		var rs []watch.Response
		var err error
		if wait {
			rs, err = st.Next(ctx)
		} else {
			rs, err = st.TryNext()
		}
		if errors.Is(err, watch.ErrClosed) {
			// The member is stopping; clients resume on another member.
			return rpctypes.ErrGRPCStopped
		}
		out.Add(rs)
		return err
	}
	for {
		select {
		case <-st.Done():
			// Stopping (see take): what still waits here is not owed,
			// clients resume from what they have seen.
			return rpctypes.ErrGRPCStopped
		default:
		}
		// Take what queued up during the last send, waiting only when
		// nothing is left to send, so it can merge with what is waiting;
		// but hold a bounded amount here, so a client that reads slowly
		// leaves the rest in the stream's queue, whose bounds make its
		// watchers fall back to catching up from storage.
		if out.Len() == 0 || out.HasRoom(st) {
			if err := take(out.Len() == 0); err != nil {
				return err
			}
		}
		// Over the stream's message budget, wait, and let what arrives
		// meanwhile merge into the responses waiting. What the stream
		// queues during the wait is taken at once, while there is room:
		// left in the stream's queue it would fill it, and its watchers
		// would fall back to catching up from storage.
		if d := out.Delay(time.Now()); d > 0 {
			timer.Reset(d)
			for waiting := true; waiting; {
				ready := st.Ready()
				if !out.HasRoom(st) {
					ready = nil
				}
				select {
				case <-timer.C:
					waiting = false
				case <-ready:
				case <-st.Done():
					return rpctypes.ErrGRPCStopped
				case <-ctx.Done():
					return ctx.Err()
				}
				if out.HasRoom(st) {
					if err := take(false); err != nil {
						return err
					}
				}
				if out.Delay(time.Now()) == 0 {
					waiting = false // a control response came, or the budget refilled
				}
			}
		}
		r, _ := out.Pop()
		h := ws.s.Header(r.Revision())
		start := time.Now()
		var err error
		if r.Fragment() {
			m := r.Message()
			m.Header = h
			err = sendFragments(m, limit, stream.Send)
		} else {
			err = stream.SendMsg(&wireWatchResponse{r: r, header: h})
		}
		if err != nil {
			return err
		}
		ws.s.Metrics().WatchSent(sendKind(r), r.NumEvents(), time.Since(start))
	}
}

// sendKind tells which of etcd's send loop series times r: a response with
// events, a progress notification (a control response that neither
// creates nor cancels a watcher), or another control response.
func sendKind(r watch.Response) string {
	if !r.Control() {
		return metrics.WatchEvents
	}
	// etcd sends a watcher's cancellation for a compacted revision from
	// its watch stream, like events, and the other control responses
	// from its control stream.
	m := r.Message()
	switch {
	case m.GetCompactRevision() != 0:
		return metrics.WatchEvents
	case m.GetCreated() || m.GetCanceled():
		return metrics.WatchControl
	}
	return metrics.WatchProgress
}

// sendFragments sends a response of a watch created with fragment set in
// pieces of at most limit bytes each (a single event larger than that goes
// alone), every piece but the last marked Fragment; clients join them back
// into one response. As in etcd, a response under the limit or with a
// single event is sent whole.
func sendFragments(m *pb.WatchResponse, limit int, send func(*pb.WatchResponse) error) error {
	if proto.Size(m) < limit || len(m.GetEvents()) < 2 {
		return send(m)
	}
	evs := m.GetEvents()
	for len(evs) > 0 {
		cur := &pb.WatchResponse{
			Header:          m.GetHeader(),
			WatchId:         m.GetWatchId(),
			Created:         m.GetCreated(),
			Canceled:        m.GetCanceled(),
			CompactRevision: m.GetCompactRevision(),
			CancelReason:    m.GetCancelReason(),
			Fragment:        true,
			Events:          []*mvccpb.Event{evs[0]},
		}
		n := 1
		for n < len(evs) {
			cur.Events = append(cur.Events, evs[n])
			if proto.Size(cur) >= limit {
				cur.Events = cur.Events[:n]
				break
			}
			n++
		}
		evs = evs[n:]
		cur.Fragment = len(evs) > 0
		if err := send(cur); err != nil {
			return err
		}
	}
	return nil
}

// revalidate cancels the stream's watches its user may no longer read
// whenever access control changes (a permission or role revoked, auth
// turned on), with etcd's "permission denied" as the reason: a revoked
// permission stops the events at once, not only new watches.
func (ws *watchServer) revalidate(ctx context.Context, st *watch.Stream) {
	user, _ := ws.s.Identify(ctx) // "" without credentials: nothing is readable once auth is on
	for {
		changed := ws.s.AuthChanged()
		select {
		case <-ctx.Done():
			return
		case <-st.Done():
			return
		case <-changed:
		}
		if !ws.s.AuthEnabled() {
			continue
		}
		st.CancelUnless(func(key, end []byte) bool {
			return ws.s.CheckAccess(user, auth.Access{Read: []auth.Range{{Key: key, End: end}}}) == nil
		}, status.Convert(rpctypes.ErrGRPCPermissionDenied).Message())
	}
}
