package mvcc

import (
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Stats counts what a store did, for metrics. One Stats may outlive the
// stores it is attached to (a snapshot install opens a new Store), so the
// counts of a member keep growing across restores.
type Stats struct {
	// Puts, Deletes and Ranges count requests, each op of a txn counted
	// as one; Txns counts the txns holding more than one op.
	Puts, Deletes, Ranges, Txns atomic.Uint64
	// PutBytes sums the size of the key and value of every put committed
	// (etcd's etcd_debugging_mvcc_total_put_size_in_bytes).
	PutBytes atomic.Uint64
	// CommitDuration, if set, is told how long each commit of a write
	// batch took. It is called on the applying goroutine.
	CommitDuration func(time.Duration)
	// CompactStep, if set, is told of each compaction step: how long it
	// took and how many deletions it made (a range deletion counts once);
	// for the last step of a compaction, finished is set and total is the
	// time since its first step. It is called on the compaction goroutine.
	CompactStep func(took time.Duration, deletions int, finished bool, total time.Duration)
}

// SetStats attaches st to s; it may be called at any time, also while
// reads run.
func (s *Store) SetStats(st *Stats) { s.stats.Store(st) }

func (s *Store) countRange() {
	if st := s.stats.Load(); st != nil {
		st.Ranges.Add(1)
	}
}

func (s *Store) countPut() {
	if st := s.stats.Load(); st != nil {
		st.Puts.Add(1)
	}
}

func (s *Store) countPutBytes(n int64) {
	if st := s.stats.Load(); st != nil && n > 0 {
		st.PutBytes.Add(uint64(n))
	}
}

func (s *Store) countDelete() {
	if st := s.stats.Load(); st != nil {
		st.Deletes.Add(1)
	}
}

// countTxn counts the ops on the path a txn took, nested txns included.
func (s *Store) countTxn(p *txnPlan) {
	st := s.stats.Load()
	if st == nil {
		return
	}
	var ops int
	var walk func(p *txnPlan)
	walk = func(p *txnPlan) {
		for i, op := range p.ops {
			switch op.GetRequest().(type) {
			case *etcdserverpb.RequestOp_RequestRange:
				st.Ranges.Add(1)
			case *etcdserverpb.RequestOp_RequestPut:
				st.Puts.Add(1)
			case *etcdserverpb.RequestOp_RequestDeleteRange:
				st.Deletes.Add(1)
			case *etcdserverpb.RequestOp_RequestTxn:
				if i < len(p.nested) && p.nested[i] != nil {
					walk(p.nested[i])
				}
				continue
			}
			ops++
		}
	}
	walk(p)
	if ops > 1 {
		st.Txns.Add(1)
	}
}

func (s *Store) observeCommit(d time.Duration) {
	if st := s.stats.Load(); st != nil && st.CommitDuration != nil {
		st.CommitDuration(d)
	}
}

func (s *Store) observeCompactStep(took time.Duration, deletions int, finished bool, started time.Time) {
	st := s.stats.Load()
	if st == nil || st.CompactStep == nil {
		return
	}
	var total time.Duration
	if finished {
		total = time.Since(started)
	}
	st.CompactStep(took, max(deletions, 0), finished, total)
}
