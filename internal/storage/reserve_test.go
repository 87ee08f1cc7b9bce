package storage

import (
	"os"
	"testing"
)

func TestReserveTakeAndRelease(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/member", 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := NewReserve(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
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
	if err := os.MkdirAll(dir+"/member", 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := NewReserve(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
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
