package server

import (
	"context"
	"crypto/tls"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kvorum/kvorum/internal/admission"
	"github.com/kvorum/kvorum/internal/auth"
)

// AuthEnabled reports whether access control is on.
func (s *Server) AuthEnabled() bool { return s.auth.Enabled() }

// AuthRevision is the current auth revision.
func (s *Server) AuthRevision() uint64 { return s.auth.Revision() }

// GatewayMetadataKey marks the gRPC requests of the member's JSON gateway.
const GatewayMetadataKey = "kvorum-gateway"

// Identify names the user a request comes from: the owner of its token,
// or else the common name of its verified client certificate; "" for
// neither. An unknown or expired token is an error.
func (s *Server) Identify(ctx context.Context) (string, error) {
	// Key by key: FromIncomingContext would copy all the metadata of every
	// request.
	ts := metadata.ValueFromIncomingContext(ctx, rpctypes.TokenFieldNameGRPC)
	if len(ts) == 0 {
		// The JSON gateway passes the Authorization header on.
		ts = metadata.ValueFromIncomingContext(ctx, rpctypes.TokenFieldNameSwagger)
	}
	if len(ts) > 0 {
		user, ok := s.tokens.User(ts[0])
		if !ok {
			// The token may come from an Authenticate entry this
			// member has not applied yet (another member answered
			// it): catch up with what is committed and look again.
			if err := s.linearizableBarrier(ctx); err != nil {
				return "", err
			}
			user, ok = s.tokens.User(ts[0])
		}
		if !ok || !s.auth.HasUser(user) {
			return "", auth.ErrInvalidAuthToken
		}
		return user, nil
	}
	if len(metadata.ValueFromIncomingContext(ctx, GatewayMetadataKey)) > 0 {
		// The JSON gateway's connection carries the member's own
		// certificate, not the HTTP client's: without a token a gateway
		// request has no user, as in etcd.
		return "", nil
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			return commonName(ti.State), nil
		}
	}
	return "", nil
}

func commonName(st tls.ConnectionState) string {
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return ""
	}
	return st.VerifiedChains[0][0].Subject.CommonName
}

// CheckAccess reports whether user may do what a needs.
func (s *Server) CheckAccess(user string, a auth.Access) error { return s.auth.Check(user, a) }

// UserHasRole reports whether user was granted role.
func (s *Server) UserHasRole(user, role string) bool { return s.auth.UserHasRole(user, role) }

// LeaseKeys lists the keys attached to a lease, for access checks.
func (s *Server) LeaseKeys(id int64) ([][]byte, error) { return s.lessor.Keys(id) }

// proposeAuth replicates an auth request and returns its response.
func (s *Server) proposeAuth(ctx context.Context, req *pb.InternalRaftRequest) (proto.Message, error) {
	resp, err := s.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Authenticate checks a user's password and issues a token every member
// accepts once the Authenticate entry is applied.
func (s *Server) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	if err := s.linearizableBarrier(ctx); err != nil {
		return nil, err
	}
	if err := s.auth.CheckPassword(r.GetName(), r.GetPassword()); err != nil {
		return nil, err
	}
	token, err := s.tokens.New(r.GetName())
	if err != nil {
		return nil, err
	}
	// The entry orders the authentication with auth changes around it; a
	// simple token travels in it and is valid on every member once it
	// applies, a JWT is valid by its signature and stays out of the log.
	req := &pb.InternalAuthenticateRequest{Name: r.GetName()}
	if s.tokens.Replicated() {
		req.SimpleToken = token
	}
	if _, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{Authenticate: req}); err != nil {
		return nil, err
	}
	return &pb.AuthenticateResponse{Header: s.header(nil), Token: token}, nil
}

// hashPassword hashes a password as the request leaves the API, so that
// applying it stays cheap and the same on every member.
func (s *Server) hashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.cfg.BcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// AuthRequest replicates one auth change (enable, disable, users, roles,
// permissions) and returns its response with this member's header.
func (s *Server) AuthRequest(ctx context.Context, req *pb.InternalRaftRequest) (proto.Message, error) {
	switch {
	case req.AuthUserAdd != nil:
		r := proto.Clone(req.AuthUserAdd).(*pb.AuthUserAddRequest)
		if !r.GetOptions().GetNoPassword() {
			h, err := s.hashPassword(r.GetPassword())
			if err != nil {
				return nil, err
			}
			r.HashedPassword = h
		}
		r.Password = ""
		req = &pb.InternalRaftRequest{AuthUserAdd: r}
	case req.AuthUserChangePassword != nil:
		r := proto.Clone(req.AuthUserChangePassword).(*pb.AuthUserChangePasswordRequest)
		h, err := s.hashPassword(r.GetPassword())
		if err != nil {
			return nil, err
		}
		r.HashedPassword, r.Password = h, ""
		req = &pb.InternalRaftRequest{AuthUserChangePassword: r}
	}
	resp, err := s.proposeAuth(ctx, req)
	if err != nil {
		return nil, err
	}
	switch {
	case req.AuthUserDelete != nil:
		s.tokens.Forget(req.AuthUserDelete.GetName())
	case req.AuthUserChangePassword != nil:
		s.tokens.Forget(req.AuthUserChangePassword.GetName())
	}
	setHeader(resp, s.header(nil))
	return resp, nil
}

// AuthRead answers the auth queries (status, users, roles) from this
// member's copy after a linearizable barrier.
func (s *Server) AuthRead(ctx context.Context, req proto.Message) (proto.Message, error) {
	if err := s.linearizableBarrier(ctx); err != nil {
		return nil, err
	}
	var resp proto.Message
	var err error
	switch r := req.(type) {
	case *pb.AuthStatusRequest:
		resp = s.auth.Status()
	case *pb.AuthUserGetRequest:
		resp, err = s.auth.UserGet(r.GetName())
	case *pb.AuthUserListRequest:
		resp = s.auth.UserList()
	case *pb.AuthRoleGetRequest:
		resp, err = s.auth.RoleGet(r.GetRole())
	case *pb.AuthRoleListRequest:
		resp = s.auth.RoleList()
	default:
		return nil, fmt.Errorf("auth read: unexpected request %T", req)
	}
	if err != nil {
		return nil, err
	}
	setHeader(resp, s.header(nil))
	return resp, nil
}

// setHeader sets the header field every auth response has.
func setHeader(m proto.Message, h *pb.ResponseHeader) {
	f := m.ProtoReflect().Descriptor().Fields().ByName("header")
	if f != nil {
		m.ProtoReflect().Set(f, protoreflect.ValueOfMessage(h.ProtoReflect()))
	}
}

// identityHeader is the request header of a proposal made for the
// identity admission found in ctx: its user and the auth revision its
// access was checked at.
func identityHeader(ctx context.Context) *pb.RequestHeader {
	id, ok := admission.IdentityFrom(ctx)
	if !ok || id.User == "" {
		return nil
	}
	return &pb.RequestHeader{Username: id.User, AuthRevision: id.Revision}
}

// AuthChanged is closed at the next change of users, roles, permissions or
// of whether auth is on; call it again for the change after.
func (s *Server) AuthChanged() <-chan struct{} { return s.authChanged.Changed() }

// signalAuthChanged wakes the waiters of AuthChanged.
func (s *Server) signalAuthChanged() { s.authChanged.Notify() }
