package server

import (
	"errors"

	"github.com/kvorum/kvorum/internal/membership"
)

// Errors a request can fail with at the server level. The api package maps
// them (and mvcc's) to etcd's gRPC errors.
var (
	ErrNoLeader               = errors.New("server: no leader")
	ErrTimeout                = errors.New("server: request timed out")
	ErrTimeoutDueToLeaderFail = errors.New("server: request timed out, possibly due to previous leader failure")
	ErrStopped                = errors.New("server: server stopped")
	ErrRequestTooLarge        = errors.New("server: request is too large")
	ErrMemberNotFound         = membership.ErrNotFound
	ErrNotCapable             = errors.New("server: not capable")
	ErrNotLeader              = errors.New("server: not leader")
	ErrBadLeaderTransferee    = errors.New("server: bad leader transferee")
)
