package api

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvorum/kvorum/internal/server"
	"github.com/kvorum/kvorum/internal/snapshot"
	"github.com/kvorum/kvorum/internal/version"
)

// snapshotChunkBytes is the size of each streamed piece, as etcd's.
const snapshotChunkBytes = 32 * 1024

// Snapshot streams a backup as etcd does: the database in chunks, each
// saying how many database bytes remain, then its sha256 in a last message
// with nothing remaining. Every message carries the storage version.
func (m *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, srv pb.Maintenance_SnapshotServer) error {
	start := time.Now()
	dbPath, cleanup, err := m.s.BuildSnapshot(srv.Context())
	if errors.Is(err, server.ErrStopped) {
		return toGRPC(err)
	}
	if err != nil {
		return status.Error(codes.Internal, fmt.Sprintf("build snapshot: %v", err))
	}
	defer cleanup()
	total, err := snapshot.Size(dbPath)
	if err != nil {
		return status.Error(codes.Internal, fmt.Sprintf("build snapshot: %v", err))
	}
	total -= sha256.Size
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		_, err := snapshot.WriteTo(pw, dbPath)
		pw.CloseWithError(err)
	}()
	m.s.Logger().Info("sending database snapshot to client", "total-bytes", total)
	for sent := int64(0); sent < total; {
		buf := make([]byte, min(snapshotChunkBytes, total-sent))
		n, err := io.ReadFull(pr, buf)
		if err != nil {
			return status.Error(codes.Internal, fmt.Sprintf("read snapshot: %v", err))
		}
		sent += int64(n)
		if err := srv.Send(&pb.SnapshotResponse{RemainingBytes: uint64(total - sent), Blob: buf, Version: version.StorageVersion}); err != nil {
			return err
		}
	}
	sum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(pr, sum); err != nil {
		return status.Error(codes.Internal, fmt.Sprintf("read snapshot checksum: %v", err))
	}
	if err := srv.Send(&pb.SnapshotResponse{Blob: sum, Version: version.StorageVersion}); err != nil {
		return err
	}
	m.s.Metrics().SnapshotSent(time.Since(start))
	return nil
}
