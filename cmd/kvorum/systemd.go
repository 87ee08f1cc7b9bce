package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/kvorum/kvorum/internal/member"
)

// notifySystemd speaks systemd's notify protocol when the member runs as a
// unit with Type=notify (NOTIFY_SOCKET set; otherwise it does nothing):
// READY=1 once the member has joined a quorum and published itself, as
// etcd does, so units ordered after it start against a serving cluster;
// and, with WatchdogSec, WATCHDOG=1 at half the interval for as long as the
// member's raft node runs. The returned function sends STOPPING=1 and ends
// the pings; call it before stopping the member.
func notifySystemd(lg *slog.Logger, m *member.Member) (stopping func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-m.Server.ReadyNotify():
		case <-done:
			return
		case <-m.Done():
			return
		}
		if sent, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
			lg.Warn("cannot notify systemd that the member is ready", "err", err)
		} else if sent {
			lg.Info("notified systemd that the member is ready")
		}
	}()
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		lg.Warn("ignoring systemd's watchdog settings", "err", err)
	}
	if interval > 0 {
		lg.Info("pinging systemd's watchdog", "interval", interval/2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(interval / 2)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					daemon.SdNotify(false, daemon.SdNotifyWatchdog)
				case <-done:
					return
				case <-m.Done():
					return
				}
			}
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			daemon.SdNotify(false, daemon.SdNotifyStopping)
		})
	}
}
