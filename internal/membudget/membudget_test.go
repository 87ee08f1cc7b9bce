package membudget

import "testing"

func TestSplitStaysWithinBudget(t *testing.T) {
	for _, total := range []int64{0, Min, Default, 1 << 30, 8 << 30} {
		b := Split(total)
		if total == 0 && b.Total != Default {
			t.Fatalf("Split(0).Total = %d, want the default %d", b.Total, int64(Default))
		}
		held := b.BlockCache + b.MemTableBytes() + b.LatestCache + b.KeyFilter + b.WatchRecent + b.RaftLog
		if held > b.Total*5/8 {
			t.Errorf("budget %d: the bounded parts take %d, more than 5/8, leaving too little for the rest of the Go heap", b.Total, held)
		}
		if b.GoLimit <= 0 || b.GoLimit > b.Total {
			t.Errorf("budget %d: Go limit %d outside (0, budget]", b.Total, b.GoLimit)
		}
		if engineOutsideGoHeap && b.GoLimit+b.BlockCache+b.MemTableBytes() != b.Total {
			t.Errorf("budget %d: Go limit %d plus engine memory does not add up to the budget", b.Total, b.GoLimit)
		}
		if b.MemTables < 2 {
			t.Errorf("budget %d: %d memtables; the engine needs at least 2 to write while one flushes", b.Total, b.MemTables)
		}
	}
}

func TestCheck(t *testing.T) {
	if err := Check(0); err != nil {
		t.Errorf("Check(0) (the default) = %v", err)
	}
	if err := Check(Min); err != nil {
		t.Errorf("Check(Min) = %v", err)
	}
	if err := Check(Min - 1); err == nil {
		t.Errorf("Check(Min-1) accepted a budget below the minimum")
	}
}
