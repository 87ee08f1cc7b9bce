package server

import "testing"

func TestOthersWritingIsTheFreeSpaceTheEngineDidNotTake(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name                         string
		lastFree, free, lastUse, use int64
		want                         bool
	}{
		{"first check", -1, 0, 0, 0, false},
		{"nothing changed", 10 * mib, 10 * mib, 50 * mib, 50 * mib, false},
		{"the engine took it", 30 * mib, 10 * mib, 50 * mib, 70 * mib, false},
		{"small files beside the engine", 10 * mib, 10*mib - mib/4, 50 * mib, 50 * mib, false},
		{"another program took it", 30 * mib, 10 * mib, 50 * mib, 50 * mib, true},
		{"another program took more than the engine", 30 * mib, 10 * mib, 50 * mib, 55 * mib, true},
		{"the engine freed some while another program wrote", 30 * mib, 10 * mib, 50 * mib, 40 * mib, true},
		{"space came back", 10 * mib, 30 * mib, 50 * mib, 50 * mib, false},
		{"a full disk that stays full", 0, 0, 50 * mib, 50 * mib, false},
	} {
		if got := othersWriting(tc.lastFree, tc.free, tc.lastUse, tc.use); got != tc.want {
			t.Errorf("%s: othersWriting = %v, want %v", tc.name, got, tc.want)
		}
	}
}
