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

func TestDiskSamplerKeepsItsVerdictOverTooShortAnInterval(t *testing.T) {
	const mib = 1 << 20
	var d diskSampler
	t0 := time.Unix(1000, 0)
	if !d.sample(50*mib, 10*mib, t0) {
		t.Fatal("a first sample, with nothing to compare it with, says nobody is filling the disk")
	}
	// Nothing changed over an interval: nobody writes.
	if d.sample(50*mib, 10*mib, t0.Add(spaceCheckInterval)) {
		t.Fatal("an unchanged disk counts as filling")
	}
	// 2 MiB in one interval: someone else writes.
	if !d.sample(48*mib, 10*mib, t0.Add(2*spaceCheckInterval)) {
		t.Fatal("2 MiB taken by another program in one interval not seen")
	}
	// The ticker caught up: a sample right after the last one sees little
	// change but keeps the verdict, and does not become the baseline.
	if !d.sample(48*mib-mib/8, 10*mib, t0.Add(2*spaceCheckInterval+time.Millisecond)) {
		t.Fatal("a sample 1 ms after the last one dropped the verdict")
	}
	if !d.sample(46*mib, 10*mib, t0.Add(3*spaceCheckInterval)) {
		t.Fatal("the next full interval compared against the wrong baseline")
	}
	// The member takes its reserve (4 MiB): that is not someone else.
	d.rebase(-4 * mib)
	if d.sample(42*mib, 10*mib, t0.Add(4*spaceCheckInterval)) {
		t.Fatal("the member's own reserve counted as another program's writes")
	}
}
