package raftnode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/kvorum/kvorum/internal/storage"
)

// A snapshot stream carries the whole state machine span of the engine as
// read from one consistent Pebble snapshot:
//
//	magic "KVSNAP1\n"
//	repeated: uvarint(len key) key uvarint(len value) value
//	uvarint(0) (a zero-length key ends the records)
//	crc32c (4 bytes, big endian) of everything before it
//
// The state it carries may be newer than the raft snapshot metadata it is
// sent with; the applied index inside it says how new, and the apply step
// skips entries at or below it.
const snapshotMagic = "KVSNAP1\n"

// maxSnapshotKV bounds one key or value in a snapshot stream, so a corrupt
// or hostile stream cannot make the receiver allocate without limit.
const maxSnapshotKV = 256 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// snapshotter writes outgoing and stores incoming snapshot streams. It
// implements transport.SnapshotStore.
type snapshotter struct {
	db       *pebble.DB
	dir      string   // where received streams are kept until installed
	observer Observer // nil: none
}

func newSnapshotter(db *pebble.DB, dataDir string) (*snapshotter, error) {
	dir := filepath.Join(dataDir, "member", "snap")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &snapshotter{db: db, dir: dir}, nil
}

// Open streams the current state machine.
func (s *snapshotter) Open(*pb.Message) (io.ReadCloser, error) {
	snap := s.db.NewSnapshot()
	pr, pw := io.Pipe()
	go func() {
		defer snap.Close()
		pw.CloseWithError(writeSnapshot(snap, pw))
	}()
	return pr, nil
}

func writeSnapshot(r pebble.Reader, w io.Writer) error {
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return err
	}
	iter, err := r.NewIter(&pebble.IterOptions{LowerBound: storage.StateMachineStart, UpperBound: storage.StateMachineEnd})
	if err != nil {
		return err
	}
	defer iter.Close()
	var lenBuf [binary.MaxVarintLen64]byte
	for iter.First(); iter.Valid(); iter.Next() {
		v, err := iter.ValueAndErr()
		if err != nil {
			return err
		}
		for _, part := range [][]byte{iter.Key(), v} {
			n := binary.PutUvarint(lenBuf[:], uint64(len(part)))
			if _, err := bw.Write(lenBuf[:n]); err != nil {
				return err
			}
			if _, err := bw.Write(part); err != nil {
				return err
			}
		}
	}
	if err := iter.Error(); err != nil {
		return err
	}
	if err := bw.WriteByte(0); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	_, err = w.Write(sum[:])
	return err
}

func (s *snapshotter) path(meta *pb.SnapshotMetadata) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x-%016x.snap", meta.GetTerm(), meta.GetIndex()))
}

// Receive stores an incoming stream durably after checking it end to end.
func (s *snapshotter) Receive(msg *pb.Message, data io.Reader) error {
	start := time.Now()
	final := s.path(msg.GetSnapshot().GetMetadata())
	tmp := final + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	var synced time.Duration
	_, err = io.Copy(f, data)
	if err == nil {
		syncStart := time.Now()
		err = f.Sync()
		synced = time.Since(syncStart)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store snapshot: %w", err)
	}
	if err := verifySnapshotFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if s.observer != nil {
		s.observer.SnapshotReceived(time.Since(start), synced)
	}
	return nil
}

func verifySnapshotFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return readSnapshot(bufio.NewReaderSize(f, 1<<20), func(k, v []byte) error { return nil })
}

// readSnapshot parses a stream, calling fn for every record, and fails on
// any malformation or checksum mismatch. fn's data is only valid during the
// call.
func readSnapshot(r *bufio.Reader, fn func(k, v []byte) error) error {
	crc := crc32.New(crcTable)
	tr := &teeByteReader{r: r, h: crc}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(tr, magic); err != nil || string(magic) != snapshotMagic {
		return errors.New("snapshot stream: bad header (not a Kvorum snapshot)")
	}
	var k, v []byte
	for {
		klen, err := binary.ReadUvarint(tr)
		if err != nil {
			return fmt.Errorf("snapshot stream truncated: %w", err)
		}
		if klen == 0 {
			break
		}
		if k, err = readPart(tr, klen, k); err != nil {
			return err
		}
		vlen, err := binary.ReadUvarint(tr)
		if err != nil {
			return fmt.Errorf("snapshot stream truncated: %w", err)
		}
		if v, err = readPart(tr, vlen, v); err != nil {
			return err
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	want := crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return fmt.Errorf("snapshot stream truncated: %w", err)
	}
	if binary.BigEndian.Uint32(sum[:]) != want {
		return errors.New("snapshot stream: checksum mismatch")
	}
	return nil
}

func readPart(r io.Reader, n uint64, buf []byte) ([]byte, error) {
	if n > maxSnapshotKV {
		return nil, fmt.Errorf("snapshot stream: record of %d bytes exceeds the limit", n)
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("snapshot stream truncated: %w", err)
	}
	return buf, nil
}

type teeByteReader struct {
	r *bufio.Reader
	h io.Writer
}

func (t *teeByteReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.h.Write(p[:n])
	return n, err
}

func (t *teeByteReader) ReadByte() (byte, error) {
	b, err := t.r.ReadByte()
	if err == nil {
		t.h.Write([]byte{b})
	}
	return b, err
}

// install replaces the state machine span with the stored stream for meta.
// The pending marker makes it restartable: a crash half-way leaves the
// marker, and startup installs the same file again before anything else.
// The marker stays until finish: the raft log records the snapshot in
// between, and a member that crashed before it did must install it again.
func (s *snapshotter) install(meta *pb.SnapshotMetadata) error {
	path := s.path(meta)
	if err := s.db.Set(storage.PendingSnapshotKey, []byte(filepath.Base(path)), pebble.NoSync); err != nil {
		return err
	}
	if err := s.db.Flush(); err != nil { // the engine writes no log: a flush makes it durable
		return err
	}
	return s.installFile(path)
}

func (s *snapshotter) installFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("install snapshot: %w", err)
	}
	defer f.Close()
	if err := s.db.DeleteRange(storage.StateMachineStart, storage.StateMachineEnd, pebble.NoSync); err != nil {
		return err
	}
	b := s.db.NewBatch()
	err = readSnapshot(bufio.NewReaderSize(f, 1<<20), func(k, v []byte) error {
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		if b.Len() < 8<<20 {
			return nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		b.Close()
		b = s.db.NewBatch()
		return nil
	})
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	b.Close()
	if err == nil {
		err = s.db.Flush()
	}
	if err != nil {
		return fmt.Errorf("install snapshot %s: %w", path, err)
	}
	return nil
}

// resumePending finishes an installation a crash interrupted. It reports
// whether it installed anything.
func (s *snapshotter) resumePending() (bool, error) {
	name, err := storage.Get(s.db, storage.PendingSnapshotKey)
	if err != nil || name == nil {
		return false, err
	}
	path := filepath.Join(s.dir, string(name))
	if err := s.installFile(path); err != nil {
		return false, err
	}
	return true, s.finishInstall(path)
}

// finish ends the installation of the snapshot for meta (see install).
func (s *snapshotter) finish(meta *pb.SnapshotMetadata) error {
	return s.finishInstall(s.path(meta))
}

// finishInstall removes the pending marker, durably, and then the
// installed file.
func (s *snapshotter) finishInstall(path string) error {
	if err := s.db.Delete(storage.PendingSnapshotKey, pebble.NoSync); err != nil {
		return err
	}
	if err := s.db.Flush(); err != nil {
		return err
	}
	return os.Remove(path)
}
