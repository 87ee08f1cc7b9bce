package raftnode

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/storage"
)

func memDB(t *testing.T) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func fill(t *testing.T, db *pebble.DB, n int, tag string) {
	t.Helper()
	b := db.NewBatch()
	for i := 0; i < n; i++ {
		b.Set(storage.LatestKey([]byte(fmt.Sprintf("k%05d", i))), []byte(tag+strings.Repeat("v", i%300)), nil)
	}
	b.Set(storage.AppliedIndexKey, storage.PutUint64(uint64(n)), nil)
	b.Set(storage.HardStateKey, []byte("local, must not travel"), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func streamOf(t *testing.T, db *pebble.DB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := writeSnapshot(db, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotStreamInstallsExactlyTheStateMachineSpan(t *testing.T) {
	src, dst := memDB(t), memDB(t)
	fill(t, src, 2000, "new")
	fill(t, dst, 3000, "old") // more keys than src: the extra ones must go
	dst.Set(storage.EntryKey(7), []byte("raft log stays"), pebble.Sync)

	dir := t.TempDir()
	s := &snapshotter{db: dst, dir: dir}
	meta := &pb.SnapshotMetadata{Index: proto.Uint64(10), Term: proto.Uint64(2)}
	msg := &pb.Message{Snapshot: &pb.Snapshot{Metadata: meta}}
	if err := s.Receive(msg, bytes.NewReader(streamOf(t, src))); err != nil {
		t.Fatal(err)
	}
	if err := s.install(meta); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, dst, storage.StateMachineStart, storage.StateMachineEnd), dump(t, src, storage.StateMachineStart, storage.StateMachineEnd); got != want {
		t.Fatalf("installed state differs from the source state (%d vs %d bytes)", len(got), len(want))
	}
	if v, _ := storage.Get(dst, storage.HardStateKey); string(v) != "local, must not travel" {
		t.Fatalf("local hard state was overwritten: %q", v)
	}
	if v, _ := storage.Get(dst, storage.EntryKey(7)); string(v) != "raft log stays" {
		t.Fatalf("raft log was touched: %q", v)
	}
	// The marker stays until the raft log recorded the snapshot (finish).
	if v, _ := storage.Get(dst, storage.PendingSnapshotKey); v == nil {
		t.Fatal("pending marker gone before finish")
	}
	if err := s.finish(meta); err != nil {
		t.Fatal(err)
	}
	if v, _ := storage.Get(dst, storage.PendingSnapshotKey); v != nil {
		t.Fatal("pending marker left behind")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("snapshot files left behind: %v", ents)
	}
}

func dump(t *testing.T, db *pebble.DB, lo, hi []byte) string {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var sb strings.Builder
	for it.First(); it.Valid(); it.Next() {
		fmt.Fprintf(&sb, "%x=%x\n", it.Key(), it.Value())
	}
	return sb.String()
}

func TestSnapshotStreamRejectsDamage(t *testing.T) {
	src := memDB(t)
	fill(t, src, 500, "x")
	good := streamOf(t, src)
	cases := map[string][]byte{
		"empty":          nil,
		"foreign header": append([]byte("NOTASNAP"), good[8:]...),
		"truncated":      good[:len(good)/2],
		"no checksum":    good[:len(good)-4],
		"flipped byte":   flip(good, len(good)/3),
		"huge length":    append([]byte(snapshotMagic), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			err := readSnapshot(bufio.NewReader(bytes.NewReader(data)), func(k, v []byte) error { return nil })
			if err == nil {
				t.Fatal("damaged stream accepted")
			}
		})
	}
	if err := readSnapshot(bufio.NewReader(bytes.NewReader(good)), func(k, v []byte) error { return nil }); err != nil {
		t.Fatalf("intact stream refused: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x40
	return out
}

func TestReceiveKeepsNothingOfADamagedStream(t *testing.T) {
	dir := t.TempDir()
	s := &snapshotter{db: memDB(t), dir: dir}
	meta := &pb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(1)}
	err := s.Receive(&pb.Message{Snapshot: &pb.Snapshot{Metadata: meta}}, io.LimitReader(strings.NewReader(snapshotMagic+"garbage"), 20))
	if err == nil {
		t.Fatal("damaged stream stored")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("files left behind: %v", m)
	}
}

func TestInterruptedInstallIsFinishedOnRestart(t *testing.T) {
	src, dst := memDB(t), memDB(t)
	fill(t, src, 300, "snap")
	fill(t, dst, 100, "old")
	s := &snapshotter{db: dst, dir: t.TempDir()}
	meta := &pb.SnapshotMetadata{Index: proto.Uint64(9), Term: proto.Uint64(3)}
	if err := s.Receive(&pb.Message{Snapshot: &pb.Snapshot{Metadata: meta}}, bytes.NewReader(streamOf(t, src))); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash after the marker was set and half the old state was
	// wiped: resumePending must redo the whole installation.
	dst.Set(storage.PendingSnapshotKey, []byte(filepath.Base(s.path(meta))), pebble.Sync)
	dst.DeleteRange(storage.LatestKey([]byte("k00050")), storage.StateMachineEnd, pebble.Sync)
	done, err := s.resumePending()
	if err != nil || !done {
		t.Fatalf("resumePending = %v, %v", done, err)
	}
	if got, want := dump(t, dst, storage.StateMachineStart, storage.StateMachineEnd), dump(t, src, storage.StateMachineStart, storage.StateMachineEnd); got != want {
		t.Fatal("state after resumed installation differs from the snapshot")
	}
}
