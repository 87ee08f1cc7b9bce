package e2e

import (
	"encoding/base64"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Session leases of lock and elect are granted by the CLI, so their IDs
// are unknown to the test: they show in keys (name/<lease in hex>, also
// base64-encoded in JSON) and as JSON "lease" values.
var (
	sessionKeyRe   = regexp.MustCompile(`\b(mylock|myelection)/[0-9a-f]+`)
	sessionLeaseRe = regexp.MustCompile(`"lease":\d+`)
	jsonKeyRe      = regexp.MustCompile(`"key":"([A-Za-z0-9+/=]*)"`)
)

func normalizeSession(r ctlResult, l *ctlLane) ctlResult {
	// A CLI interrupted while a request is in flight may log the client
	// library's retry warning for the canceled context, or not: that is
	// timing, not behaviour.
	var kept []string
	for line := range strings.Lines(r.stderr) {
		if strings.Contains(line, "retrying of unary invoker failed") && strings.Contains(line, "context canceled") {
			continue
		}
		kept = append(kept, line)
	}
	r.stderr = strings.Join(kept, "")
	for _, s := range []*string{&r.stdout, &r.stderr} {
		*s = jsonKeyRe.ReplaceAllStringFunc(*s, func(m string) string {
			b, err := base64.StdEncoding.DecodeString(jsonKeyRe.FindStringSubmatch(m)[1])
			if err != nil {
				return m
			}
			return `"key":<base64 of ` + string(b) + `>`
		})
		*s = sessionKeyRe.ReplaceAllString(*s, "$1/<lease>")
		*s = sessionLeaseRe.ReplaceAllString(*s, `"lease":<lease>`)
	}
	return r.normalized(l.c.endpoints(), l.cli)
}

// compareLanes fails the test where a lane pair's results differ.
func compareLanes(t *testing.T, what string, results map[*ctlLane]ctlResult, pairs []lanePair) {
	t.Helper()
	for _, p := range pairs {
		if w, g := results[p.want], results[p.got]; w != g {
			t.Errorf("%s: %s differs\n===== %s:\n%s===== %s:\n%s", p.what, what, p.want.name, w, p.got.name, g)
		}
	}
}

// TestLockIsExclusiveAndMatchesEtcdctl: a second locker waits until the
// first releases the lock (on SIGINT), then runs its command under the
// lock; a holder that dies loses the lock when its --ttl runs out. The
// CLIs print the same on etcd and Kvorum.
func TestLockIsExclusiveAndMatchesEtcdctl(t *testing.T) {
	a, b, c, d := newLanes(t)
	lanes := []*ctlLane{a, b, c, d}
	type outcome struct{ holder, waiter, jsonHolder, exit3, missing, expiredHolder, afterExpiry ctlResult }
	outcomes := map[*ctlLane]*outcome{}
	for _, l := range lanes {
		o := &outcome{}
		outcomes[l] = o
		eps := l.c.endpoints()

		holder := startCtl(t, l.bin, eps, "lock", "mylock")
		holder.waitLines(2, 10*time.Second)
		waiter := startCtl(t, l.bin, eps, "lock", "mylock", "--", "sh", "-c", `echo "got $ETCD_LOCK_KEY at $ETCD_LOCK_REV"`)
		waiter.quiet(1500 * time.Millisecond)
		holder.signal(syscall.SIGINT)
		o.holder = holder.wait(10 * time.Second)
		o.waiter = waiter.wait(10 * time.Second)

		jsonHolder := startCtl(t, l.bin, eps, "-w", "json", "lock", "mylock")
		jsonHolder.waitLines(1, 10*time.Second)
		jsonHolder.signal(syscall.SIGTERM)
		o.jsonHolder = jsonHolder.wait(10 * time.Second)

		o.exit3 = runCtl(t, l.bin, eps, "", "lock", "mylock", "--", "sh", "-c", "echo failing; exit 3")
		o.missing = runCtl(t, l.bin, eps, "", "lock", "mylock", "--", "/nonexistent/command")

		// A holder killed without a chance to unlock keeps the lock
		// until its session lease (--ttl 2) expires.
		dead := startCtl(t, l.bin, eps, "lock", "--ttl=2", "mylock")
		dead.waitLines(2, 10*time.Second)
		next := startCtl(t, l.bin, eps, "lock", "mylock")
		dead.signal(syscall.SIGKILL)
		o.expiredHolder = dead.wait(10 * time.Second)
		next.quiet(500 * time.Millisecond)
		next.waitLines(2, 10*time.Second)
		next.signal(syscall.SIGINT)
		o.afterExpiry = next.wait(10 * time.Second)
	}
	for _, l := range lanes {
		o := outcomes[l]
		if o.holder.code != 0 || o.waiter.code != 0 || !strings.HasPrefix(o.waiter.stdout, "got mylock/") {
			t.Errorf("%s: holder %s\nwaiter %s", l.name, o.holder, o.waiter)
		}
	}
	for _, step := range []struct {
		what string
		get  func(*outcome) ctlResult
	}{
		{"holder (lock mylock, then SIGINT)", func(o *outcome) ctlResult { return o.holder }},
		{"waiter (lock mylock -- sh -c ...)", func(o *outcome) ctlResult { return o.waiter }},
		{"-w json lock mylock, then SIGTERM", func(o *outcome) ctlResult { return o.jsonHolder }},
		{"lock mylock -- sh -c 'echo failing; exit 3'", func(o *outcome) ctlResult { return o.exit3 }},
		{"lock mylock -- /nonexistent/command", func(o *outcome) ctlResult { return o.missing }},
		{"lock --ttl=2 mylock, then SIGKILL", func(o *outcome) ctlResult { return o.expiredHolder }},
		{"lock mylock after the holder's lease expired", func(o *outcome) ctlResult { return o.afterExpiry }},
	} {
		results := map[*ctlLane]ctlResult{}
		for _, l := range lanes {
			results[l] = normalizeSession(step.get(outcomes[l]), l)
		}
		compareLanes(t, step.what, results, lanePairs(a, b, c, d))
	}
}

// TestElectHandsOverAndMatchesEtcdctl: observers see each leader; a second
// candidate waits until the leader resigns (on SIGINT), then leads. The
// CLIs print the same on etcd and Kvorum.
func TestElectHandsOverAndMatchesEtcdctl(t *testing.T) {
	a, b, c, d := newLanes(t)
	lanes := []*ctlLane{a, b, c, d}
	type outcome struct{ observer, jsonObserver, first, second ctlResult }
	outcomes := map[*ctlLane]*outcome{}
	for _, l := range lanes {
		eps := l.c.endpoints()
		observer := startCtl(t, l.bin, eps, "elect", "-l", "myelection")
		jsonObserver := startCtl(t, l.bin, eps, "-w", "json", "elect", "--listen", "myelection")
		observer.quiet(time.Second) // no leader yet

		first := startCtl(t, l.bin, eps, "elect", "myelection", "proposal-1")
		first.waitLines(2, 10*time.Second)
		observer.waitLines(2, 10*time.Second)
		jsonObserver.waitLines(1, 10*time.Second)

		second := startCtl(t, l.bin, eps, "elect", "myelection", "proposal-2")
		second.quiet(time.Second)
		first.signal(syscall.SIGINT)
		second.waitLines(2, 10*time.Second)
		observer.waitLines(2, 10*time.Second)
		jsonObserver.waitLines(1, 10*time.Second)

		second.signal(syscall.SIGTERM)
		observer.signal(syscall.SIGINT)
		jsonObserver.signal(syscall.SIGTERM)
		outcomes[l] = &outcome{
			observer:     observer.wait(10 * time.Second),
			jsonObserver: jsonObserver.wait(10 * time.Second),
			first:        first.wait(10 * time.Second),
			second:       second.wait(10 * time.Second),
		}
	}
	for _, l := range lanes {
		o := outcomes[l]
		if !strings.Contains(o.observer.stdout, "proposal-1\n") || !strings.Contains(o.observer.stdout, "proposal-2\n") || o.observer.code != 0 {
			t.Errorf("%s: the observer did not see both leaders: %s", l.name, o.observer)
		}
	}
	for _, step := range []struct {
		what string
		get  func(*outcome) ctlResult
	}{
		{"elect -l myelection", func(o *outcome) ctlResult { return o.observer }},
		{"-w json elect --listen myelection", func(o *outcome) ctlResult { return o.jsonObserver }},
		{"elect myelection proposal-1, then SIGINT", func(o *outcome) ctlResult { return o.first }},
		{"elect myelection proposal-2, then SIGTERM", func(o *outcome) ctlResult { return o.second }},
	} {
		results := map[*ctlLane]ctlResult{}
		for _, l := range lanes {
			results[l] = normalizeSession(step.get(outcomes[l]), l)
		}
		compareLanes(t, step.what, results, lanePairs(a, b, c, d))
	}
}
