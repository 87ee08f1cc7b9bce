package api

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/admission"
)

// unaryAdmit passes every unary request through admission before its
// handler runs.
func unaryAdmit(ac *admission.Controller) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := admit(ctx, ac, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// streamAdmit passes every message a client sends on a stream through
// admission as the handler receives it; a refused message ends the stream
// with the refusal.
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
	return admit(s.Context(), s.ac, s.method, m)
}

func admit(ctx context.Context, ac *admission.Controller, method string, req any) error {
	msg, ok := req.(proto.Message)
	if !ok {
		return toGRPC(admission.ErrNoRule)
	}
	return toGRPC(ac.Admit(ctx, method, msg))
}
