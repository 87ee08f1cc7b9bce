package api

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/admission"
)

// unaryAdmit passes every unary request through admission before its
// handler runs.
func unaryAdmit(ac *admission.Controller) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := admit(ctx, ac, info.FullMethod, req)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// streamAdmit passes every message a client sends on a stream through
// admission as the handler receives it. A refused message is reported as a
// *refusedMessage error; handlers that can refuse one message and go on
// (watch creation) do, others end the stream with the refusal.
func streamAdmit(ac *admission.Controller) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &admittingStream{ServerStream: ss, ac: ac, method: info.FullMethod})
	}
}

type admittingStream struct {
	grpc.ServerStream
	ac     *admission.Controller
	method string
}

func (s *admittingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if _, err := admit(s.Context(), s.ac, s.method, m); err != nil {
		return &refusedMessage{msg: m, err: err}
	}
	return nil
}

// refusedMessage is a stream message admission refused.
type refusedMessage struct {
	msg any
	err error // a gRPC status error
}

func (r *refusedMessage) Error() string { return r.err.Error() }

func (r *refusedMessage) Unwrap() error { return r.err }

// GRPCStatus makes the refusal end a stream with its own status.
func (r *refusedMessage) GRPCStatus() *status.Status { return status.Convert(r.err) }

func admit(ctx context.Context, ac *admission.Controller, method string, req any) (context.Context, error) {
	msg, ok := req.(proto.Message)
	if !ok {
		return ctx, toGRPC(admission.ErrNoRule)
	}
	ctx, err := ac.Admit(ctx, method, msg)
	return ctx, toGRPC(err)
}
