package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Values from SeparateValuesFrom bytes go to blob files, smaller ones stay
// in the tables. Overwritten values leave garbage in a blob file that
// other keys still reference; CompactAll (defragment) copies the live
// values out and the space goes, and every key still reads its value.
func TestCompactAllReclaimsOverwrittenSeparatedValues(t *testing.T) {
	e, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const keys, overwritten, size = 100, 10, 8 << 10
	want := map[string][]byte{}
	put := func(k string, n int) {
		v := make([]byte, n)
		rand.Read(v)
		if err := e.DB.Set([]byte(k), v, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	for i := range keys {
		put(fmt.Sprintf("big%03d", i), size)
		put(fmt.Sprintf("small%03d", i), SeparateValuesFrom/4)
	}
	if err := e.DB.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range overwritten {
		put(fmt.Sprintf("big%03d", i), size)
	}
	if err := e.DB.Flush(); err != nil {
		t.Fatal(err)
	}
	m := e.DB.Metrics()
	if m.BlobFiles.ValueSize < keys*size || m.BlobFiles.ValueSize > (keys+overwritten)*size+keys*SeparateValuesFrom/4 {
		t.Fatalf("blob files hold %d bytes of values, want the big values' %d to %d", m.BlobFiles.ValueSize, keys*size, (keys+overwritten)*size)
	}

	// An ordinary compaction drops the overwritten keys but keeps the
	// references of the rest, so the first blob file stays, mostly garbage.
	if err := e.DB.Compact(context.Background(), []byte("a"), []byte("z"), false); err != nil {
		t.Fatal(err)
	}
	garbage := UnreferencedValueBytes(e.DB.Metrics())
	if garbage < overwritten*size/2 {
		t.Fatalf("after a compaction: %d unreferenced bytes, want about %d (the overwritten values)", garbage, overwritten*size)
	}

	if err := e.CompactAll(context.Background(), []byte("a"), []byte("z")); err != nil {
		t.Fatal(err)
	}
	m = e.DB.Metrics()
	if g := UnreferencedValueBytes(m); g != 0 {
		t.Errorf("after CompactAll: %d unreferenced bytes, want 0", g)
	}
	if m.BlobFiles.LiveSize > keys*size*11/10 {
		t.Errorf("after CompactAll: blob files take %d bytes, want about %d (one copy of each live value)", m.BlobFiles.LiveSize, keys*size)
	}
	for k, v := range want {
		got, err := Get(e.DB, []byte(k))
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("%s: read %d bytes (err %v), want the %d written last", k, len(got), err, len(v))
		}
	}
}

// The engine's size counts its blob files after a restart too (Pebble's
// own local figure starts from zero when it opens).
func TestDiskUsageCountsBlobFilesAfterARestart(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 10
	v := make([]byte, size)
	rand.Read(v)
	if err := e.DB.Set([]byte("big"), v, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil { // flushes
		t.Fatal(err)
	}
	if e, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := DiskUsage(e.DB.Metrics()); got < size {
		t.Errorf("after a restart the engine measures %d bytes, less than the %d-byte value it holds", got, size)
	}
}
