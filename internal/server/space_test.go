package server

import (
	"testing"
	"time"
)

func TestOthersWritingIsTheFreeSpaceTheMemberDidNotTake(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name                         string
		lastFree, free, lastUse, use int64
		want                         bool
	}{
		{"nothing changed", 10 * mib, 10 * mib, 50 * mib, 50 * mib, false},
		{"the member took it", 30 * mib, 10 * mib, 50 * mib, 70 * mib, false},
		{"measured a moment apart", 10 * mib, 10*mib - mib/8, 50 * mib, 50 * mib, false},
		{"another program took it", 30 * mib, 10 * mib, 50 * mib, 50 * mib, true},
		{"another program took more than the member", 30 * mib, 10 * mib, 50 * mib, 55 * mib, true},
		{"the engine deleted files while another program wrote more", 30 * mib, 10 * mib, 50 * mib, 40 * mib, true},
		{"the engine deleted as much as another program wrote", 10 * mib, 10 * mib, 50 * mib, 40 * mib, true},
		{"the engine deleted files", 10 * mib, 20 * mib, 50 * mib, 40 * mib, false},
		{"space came back", 10 * mib, 30 * mib, 50 * mib, 50 * mib, false},
		{"a full disk that stays full", 0, 0, 50 * mib, 50 * mib, false},
	} {
		if got := othersWriting(tc.lastFree, tc.free, tc.lastUse, tc.use); got != tc.want {
			t.Errorf("%s: othersWriting = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSampleDiskKeepsItsVerdictOverTooShortAnInterval(t *testing.T) {
	const mib = 1 << 20
	var sp space
	t0 := time.Unix(1000, 0)
	if sp.sampleDisk(50*mib, 10*mib, t0) {
		t.Fatal("the first sample says someone is filling the disk")
	}
	// 2 MiB in one interval: someone else writes.
	if !sp.sampleDisk(48*mib, 10*mib, t0.Add(spaceCheckInterval)) {
		t.Fatal("2 MiB taken by another program in one interval not seen")
	}
	// The ticker caught up: a sample right after the last one sees little
	// change but keeps the verdict, and does not become the baseline.
	if !sp.sampleDisk(48*mib-mib/8, 10*mib, t0.Add(spaceCheckInterval+time.Millisecond)) {
		t.Fatal("a sample 1 ms after the last one dropped the verdict")
	}
	if !sp.sampleDisk(46*mib, 10*mib, t0.Add(2*spaceCheckInterval)) {
		t.Fatal("the next full interval compared against the wrong baseline")
	}
	// The writer stopped.
	if sp.sampleDisk(46*mib, 10*mib, t0.Add(3*spaceCheckInterval)) {
		t.Fatal("a disk that stopped filling still counts as filling")
	}
}
