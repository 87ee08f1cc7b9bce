package integration

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvorum/kvorum/internal/snapshot"
	"github.com/kvorum/kvorum/internal/testcluster"
)

// Maintenance.Snapshot streams as etcd's does: 32 KiB chunks of the
// database, each saying how many database bytes remain, then one message
// with the sha256 of those bytes and nothing remaining; every message
// carries the storage version. The result is a snapshot file whose
// revision is the member's at the time.
func TestSnapshotStreamsDatabaseChunksThenChecksum(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	c.WaitLeader(waitTimeout)
	cli := c.Members[0].Client()
	// More than one chunk of data.
	put := mustPut(t, cli, "big", strings.Repeat("x", 200_000))
	mustPut(t, cli, "small", "y")

	stream, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(ctxFor(t, 30*time.Second), &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*pb.SnapshotResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) < 3 {
		t.Fatalf("%d messages, want several chunks and a checksum", len(msgs))
	}
	var db []byte
	for i, m := range msgs[:len(msgs)-1] {
		db = append(db, m.GetBlob()...)
		last := i == len(msgs)-2
		if (!last && len(m.GetBlob()) != 32*1024) || m.GetVersion() != "3.6.0" {
			t.Errorf("chunk %d: %d bytes, version %q; want 32768 bytes (but the last) and version 3.6.0", i, len(m.GetBlob()), m.GetVersion())
		}
	}
	for i, m := range msgs[:len(msgs)-1] {
		sent := 0
		for _, p := range msgs[:i+1] {
			sent += len(p.GetBlob())
		}
		if m.GetRemainingBytes() != uint64(len(db)-sent) {
			t.Errorf("chunk %d says %d bytes remain, %d do", i, m.GetRemainingBytes(), len(db)-sent)
		}
	}
	sum := msgs[len(msgs)-1]
	want := sha256.Sum256(db)
	if !bytes.Equal(sum.GetBlob(), want[:]) || sum.GetRemainingBytes() != 0 || sum.GetVersion() != "3.6.0" {
		t.Errorf("last message: blob %x remaining %d version %q; want the sha256 %x, 0 and 3.6.0", sum.GetBlob(), sum.GetRemainingBytes(), sum.GetVersion(), want)
	}

	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, append(db, sum.GetBlob()...), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := snapshot.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != put.Header.Revision+1 || st.TotalKey != 2 {
		t.Errorf("snapshot status %+v, want revision %d and 2 keys", st, put.Header.Revision+1)
	}
}
