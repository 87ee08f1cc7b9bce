package metrics

import (
	"os"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// fdCollector reports the process's open file descriptors and their limit
// under etcd's names (os_fd_used, os_fd_limit); a number that cannot be
// read (no /proc) is left out.
type fdCollector struct{ used, limit *prometheus.Desc }

func newFDCollector() fdCollector {
	return fdCollector{
		used:  prometheus.NewDesc("os_fd_used", "Open file descriptors of this process.", nil, nil),
		limit: prometheus.NewDesc("os_fd_limit", "The limit of open file descriptors of this process (RLIMIT_NOFILE).", nil, nil),
	}
}

func (c fdCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.used; ch <- c.limit }
func (c fdCollector) Collect(ch chan<- prometheus.Metric) {
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(len(fds)))
	}
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil {
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(l.Cur))
	}
}
