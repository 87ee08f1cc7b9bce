package metrics

import "github.com/prometheus/client_golang/prometheus"

// Memory describes what a member holds in memory by design (Kvorum-only
// series): each part's use, read when scraped, and its limit from the
// memory budget (--memory-budget-bytes). Every function must be safe to
// call at any time from any goroutine.
type Memory struct {
	Budget int64 // the whole budget in bytes
	Parts  []MemoryPart
	// RaftLogEntries is how many raft log entries are kept in memory.
	RaftLogEntries func() uint64
}

// MemoryPart is one user of memory.
type MemoryPart struct {
	Name  string       // the part label: block_cache, memtables, ...
	Limit int64        // bytes the budget gives it; 0: bounded otherwise
	Used  func() int64 // bytes it holds now
}

// WatchMemory registers kvorum_memory_budget_bytes,
// kvorum_memory_used_bytes{part}, kvorum_memory_limit_bytes{part} and
// kvorum_memory_raft_log_entries.
func (m *Metrics) WatchMemory(src Memory) {
	m.reg.MustRegister(memoryCollector{
		src:     src,
		budget:  prometheus.NewDesc("kvorum_memory_budget_bytes", "This member's memory budget (--memory-budget-bytes).", nil, nil),
		used:    prometheus.NewDesc("kvorum_memory_used_bytes", "Bytes each part of this member that holds memory on purpose holds now.", []string{"part"}, nil),
		limit:   prometheus.NewDesc("kvorum_memory_limit_bytes", "Bytes the memory budget gives each part (parts bounded otherwise are not listed).", []string{"part"}, nil),
		entries: prometheus.NewDesc("kvorum_memory_raft_log_entries", "Raft log entries kept in memory (since the last compaction point plus the catch-up entries).", nil, nil),
	})
}

type memoryCollector struct {
	src                          Memory
	budget, used, limit, entries *prometheus.Desc
}

func (c memoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.budget
	ch <- c.used
	ch <- c.limit
	ch <- c.entries
}

func (c memoryCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.budget, prometheus.GaugeValue, float64(c.src.Budget))
	for _, p := range c.src.Parts {
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(p.Used()), p.Name)
		if p.Limit > 0 {
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(p.Limit), p.Name)
		}
	}
	if c.src.RaftLogEntries != nil {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(c.src.RaftLogEntries()))
	}
}
