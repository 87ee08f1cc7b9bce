package api

import (
	"context"
	"errors"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/kvorum/kvorum/internal/admission"
)

// Every method the client plane serves must have an admission rule for
// its request type; otherwise its requests are refused. This is what keeps
// a newly registered RPC from bypassing admission.
func TestEveryServedMethodHasAnAdmissionRule(t *testing.T) {
	g := grpc.NewServer()
	registerServices(g, nil, admission.New(admission.Config{}))
	methods := 0
	for svc, info := range g.GetServiceInfo() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Fatalf("service %s: %v", svc, err)
		}
		sd := d.(protoreflect.ServiceDescriptor)
		for _, m := range info.Methods {
			md := sd.Methods().ByName(protoreflect.Name(m.Name))
			if md == nil {
				t.Fatalf("%s/%s: no descriptor", svc, m.Name)
			}
			methods++
			if in := md.Input().FullName(); !admission.Knows(in) {
				t.Errorf("/%s/%s: requests of type %s have no admission rule", svc, m.Name, in)
			}
		}
	}
	// KV 5, Watch 1, Lease 5, Cluster 5, Maintenance 8, Lock 2, Election
	// 5, Health 2 (or more).
	if methods < 33 {
		t.Errorf("only %d methods registered; the walk is broken", methods)
	}
	if !strings.Contains(strings.Join(serviceNames(g), " "), "etcdserverpb.KV") {
		t.Errorf("KV service not among %v", serviceNames(g))
	}
}

func serviceNames(g *grpc.Server) []string {
	var out []string
	for name := range g.GetServiceInfo() {
		out = append(out, name)
	}
	return out
}

// fakeStream is a server stream whose client sent one message.
type fakeStream struct {
	grpc.ServerStream
}

func (fakeStream) Context() context.Context { return context.Background() }
func (fakeStream) RecvMsg(any) error        { return nil }

func TestStreamMessagesPassAdmission(t *testing.T) {
	ac := admission.New(admission.Config{MaxTxnOps: 1})
	var received []error
	handler := func(_ any, ss grpc.ServerStream) error {
		received = append(received, ss.RecvMsg(&pb.WatchRequest{}), ss.RecvMsg(&pb.TxnRequest{Success: []*pb.RequestOp{{}, {}}}))
		return nil
	}
	if err := streamAdmit(ac)(nil, fakeStream{}, &grpc.StreamServerInfo{FullMethod: "/etcdserverpb.Watch/Watch"}, handler); err != nil {
		t.Fatal(err)
	}
	if received[0] != nil {
		t.Errorf("a watch request was refused: %v", received[0])
	}
	if !errors.Is(received[1], rpctypes.ErrGRPCTooManyOps) {
		t.Errorf("an oversized txn inside a stream: err %v, want %v", received[1], rpctypes.ErrGRPCTooManyOps)
	}
}

func TestUnaryRequestsPassAdmission(t *testing.T) {
	ac := admission.New(admission.Config{})
	called := false
	_, err := unaryAdmit(ac)(context.Background(), &pb.PutRequest{}, &grpc.UnaryServerInfo{FullMethod: "/etcdserverpb.KV/Put"},
		func(context.Context, any) (any, error) { called = true; return nil, nil })
	if !errors.Is(err, rpctypes.ErrGRPCEmptyKey) || called {
		t.Errorf("put without a key: err %v, handler called %v; want %v before the handler", err, called, rpctypes.ErrGRPCEmptyKey)
	}
}
