package metrics

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backups are the series of scheduled backups (Kvorum-only).
type Backups struct {
	lastSuccess prometheus.Gauge
	failures    prometheus.Counter
}

// Backups registers the scheduled-backup series in m (once; later calls
// return the same series).
func (m *Metrics) Backups() *Backups {
	b := &Backups{
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvorum_backup_last_success_timestamp_seconds",
			Help: "Unix time of this member's last verified scheduled backup (0: none yet).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvorum_backup_failures_total",
			Help: "Scheduled backups this member attempted that failed or could not be verified.",
		}),
	}
	b.lastSuccess = register(m.reg, b.lastSuccess)
	b.failures = register(m.reg, b.failures)
	return b
}

func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

// Succeeded records a verified backup taken at t.
func (b *Backups) Succeeded(t time.Time) { b.lastSuccess.Set(float64(t.UnixNano()) / 1e9) }

// Failed counts a failed backup.
func (b *Backups) Failed() { b.failures.Inc() }
