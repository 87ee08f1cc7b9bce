package storage

import (
	"os"
	"path/filepath"
	"testing"
)

// newTestReserve is a reserve of size bytes in the data dir dir.
func newTestReserve(t *testing.T, dir string, size int64) *Reserve {
	t.Helper()
	if err := os.MkdirAll(dir+"/member", 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := NewReserve(dir, size)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReserveTakeAndRelease(t *testing.T) {
	dir := t.TempDir()
	r := newTestReserve(t, dir, 1<<20)
	if r.Held() {
		t.Fatal("a new reserve is held before Take")
	}
	if err := r.Take(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir + "/" + reserveFile)
	if err != nil || fi.Size() != 1<<20 || !r.Held() {
		t.Fatalf("after Take: file %v (err %v), held %v; want 1 MiB held", fi, err, r.Held())
	}
	if err := r.Release(); err != nil || r.Held() {
		t.Fatalf("after Release: err %v, held %v", err, r.Held())
	}
	if err := r.Release(); err != nil {
		t.Fatalf("a second Release: %v", err)
	}
	if free, err := r.Free(); err != nil || free <= 0 {
		t.Fatalf("Free = %d, %v", free, err)
	}
}

func TestReserveSizes(t *testing.T) {
	dir := t.TempDir()
	if r, err := NewReserve(dir, -1); err != nil || r.Size != 0 || r.Take() != nil {
		t.Fatalf("a negative size: %+v, %v; want no reserve", r, err)
	}
	r, err := NewReserve(dir, 0)
	if err != nil || r.Size <= 0 || r.Size > DefaultReserveBytes {
		t.Fatalf("the default: %+v, %v; want at most %d bytes", r, err, DefaultReserveBytes)
	}
}

func TestDiskAlarmRecordOutlivesTheReserve(t *testing.T) {
	dir := t.TempDir()
	r := newTestReserve(t, dir, 1<<20)
	if r.DiskAlarm() {
		t.Fatal("a new data dir records a disk alarm")
	}
	if err := r.MarkDiskAlarm(true); err != nil {
		t.Fatal(err)
	}
	again, err := NewReserve(dir, 1<<20) // as after a restart
	if err != nil || !again.DiskAlarm() {
		t.Fatalf("after a restart: disk alarm %v (err %v), want recorded", again.DiskAlarm(), err)
	}
	for range 2 { // clearing twice is no error
		if err := again.MarkDiskAlarm(false); err != nil || again.DiskAlarm() {
			t.Fatalf("after clearing: err %v, recorded %v", err, again.DiskAlarm())
		}
	}
}

func TestMemberUseCountsAllocatedBlocksButNotTheReserve(t *testing.T) {
	dir := t.TempDir()
	r := newTestReserve(t, dir, 4<<20)
	if err := os.Mkdir(dir+"/member/db", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.Take(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/member/db/000001.sst", make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	// A preallocated file, as the engine's logs are.
	f, err := os.Create(dir + "/member/db/000002.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := allocate(f, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/outside", make([]byte, 1<<20), 0o600); err != nil { // not the member's
		t.Fatal(err)
	}
	use, err := r.MemberUse()
	if err != nil {
		t.Fatal(err)
	}
	if use < (256<<10)+(1<<20) || use >= 4<<20 {
		t.Fatalf("MemberUse = %d KiB, want the table and the preallocated log (1280 KiB and a little), without the 4 MiB reserve", use>>10)
	}
}

// A path that does not exist yet is on the file system of its nearest
// existing ancestor; /proc is on another one than a temporary directory.
func TestSameFileSystem(t *testing.T) {
	dir := t.TempDir()
	if same, err := SameFileSystem(dir, filepath.Join(dir, "not", "yet")); err != nil || !same {
		t.Errorf("SameFileSystem(%s, a path below it that does not exist) = %v, %v; want true", dir, same, err)
	}
	if same, err := SameFileSystem(dir, "/proc/self"); err != nil || same {
		t.Errorf("SameFileSystem(%s, /proc/self) = %v, %v; want false", dir, same, err)
	}
}
