package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/robustness/cluster"
)

// faultKind names one kind of fault.
type faultKind string

const (
	killRandom        faultKind = "kill-random"        // SIGKILL a random member, restart it from its data dir
	killLeader        faultKind = "kill-leader"        // SIGKILL the leader, restart it
	pauseMember       faultKind = "pause"              // SIGSTOP the leader (70%) or a random member, then SIGCONT
	restartAll        faultKind = "restart-all"        // SIGKILL every member at once, restart them all
	partitionMinority faultKind = "partition-minority" // cut a minority of followers off from the rest
	partitionLeader   faultKind = "partition-leader"   // cut the leader off from every other member
	partitionBridge   faultKind = "partition-bridge"   // two sides that each see a different majority through one bridge member
	diskFull          faultKind = "disk-full"          // fill a member's (tmpfs) data dir, free it; the member must not have stopped
	replaceMember     faultKind = "replace-member"     // SIGKILL a member, member remove it, member add it back with an empty data dir
)

var (
	crashFaults     = []faultKind{killRandom, killLeader, pauseMember, restartAll, replaceMember}
	partitionFaults = []faultKind{partitionMinority, partitionLeader, partitionBridge}
)

// injector applies faults to a cluster on a randomized schedule and keeps
// the schedule it ran.
type injector struct {
	c     *cluster.Cluster
	cli   *clientv3.Client // all endpoints, for finding the leader
	rng   *rand.Rand
	kinds []faultKind
	start time.Time

	mu       sync.Mutex
	schedule []string
	counts   map[faultKind]int
}

func newInjector(c *cluster.Cluster, seed uint64, round int, kinds []faultKind, start time.Time) (*injector, error) {
	cli, err := c.Client()
	if err != nil {
		return nil, err
	}
	return &injector{
		c: c, cli: cli, kinds: kinds, start: start,
		rng:    rand.New(rand.NewPCG(seed, uint64(round)<<32|0xfa17)),
		counts: map[faultKind]int{},
	}, nil
}

func (in *injector) close() { in.cli.Close() }

func (in *injector) logf(format string, args ...any) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.schedule = append(in.schedule, fmt.Sprintf("%7.3fs ", time.Since(in.start).Seconds())+fmt.Sprintf(format, args...))
}

// Schedule is the list of faults run so far, one per line.
func (in *injector) Schedule() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return strings.Join(in.schedule, "\n")
}

// run injects faults until ctx is done. Each fault is held for a random
// time and then healed, even when ctx ends meanwhile; then the injector
// waits for every member to be healthy before the next one, so that faults
// do not pile up into an outage no real cluster is expected to survive.
func (in *injector) run(ctx context.Context) error {
	if len(in.kinds) == 0 {
		<-ctx.Done()
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(in.duration(500*time.Millisecond, 2*time.Second)):
		}
		kind := in.kinds[in.rng.IntN(len(in.kinds))]
		if err := in.inject(ctx, kind); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		in.mu.Lock()
		in.counts[kind]++
		in.mu.Unlock()
		rctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := in.c.WaitHealthy(rctx, in.c.Members...)
		cancel()
		if err != nil {
			state := in.c.Describe(context.Background())
			dumped := in.c.DumpUnhealthy()
			return fmt.Errorf("the cluster did not recover within 60s of %s: %w\n%s(goroutine stacks of %v are in their logs)", kind, err, state, dumped)
		}
		in.logf("  healthy again")
	}
}

func (in *injector) duration(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(in.rng.Int64N(int64(hi-lo)))
}

// hold waits d, or less if ctx ends.
func hold(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (in *injector) leader(ctx context.Context) *cluster.Member {
	if m := in.c.Leader(ctx, in.cli); m != nil {
		return m
	}
	return in.random()
}

func (in *injector) random() *cluster.Member {
	return in.c.Members[in.rng.IntN(len(in.c.Members))]
}

func (in *injector) inject(ctx context.Context, kind faultKind) error {
	switch kind {
	case killRandom, killLeader:
		m := in.random()
		if kind == killLeader {
			m = in.leader(ctx)
		}
		down := in.duration(200*time.Millisecond, 3*time.Second)
		in.logf("%s: SIGKILL %s, restart after %v", kind, m.Name, down.Round(time.Millisecond))
		m.Kill()
		hold(ctx, down)
		return m.Start()
	case pauseMember:
		m := in.random()
		if in.rng.IntN(10) < 7 {
			m = in.leader(ctx)
		}
		d := in.duration(700*time.Millisecond, 3*time.Second)
		in.logf("%s: SIGSTOP %s for %v", kind, m.Name, d.Round(time.Millisecond))
		if err := m.Pause(); err != nil {
			return err
		}
		hold(ctx, d)
		return m.Resume()
	case restartAll:
		down := in.duration(0, time.Second)
		in.logf("%s: SIGKILL every member, restart after %v", kind, down.Round(time.Millisecond))
		for _, m := range in.c.Members {
			m.Kill()
		}
		hold(ctx, down)
		var errs []error
		for _, m := range in.c.Members {
			errs = append(errs, m.Start())
		}
		return errors.Join(errs...)
	case partitionMinority, partitionLeader, partitionBridge:
		leader := in.leader(ctx)
		others := slices.DeleteFunc(slices.Clone(in.c.Members), func(m *cluster.Member) bool { return m == leader })
		in.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
		d := in.duration(time.Second, 4*time.Second)
		var err error
		switch kind {
		case partitionMinority:
			minority := others[:(len(in.c.Members)-1)/2]
			rest := append([]*cluster.Member{leader}, others[len(minority):]...)
			in.logf("%s: %s | %s for %v", kind, names(minority), names(rest), d.Round(time.Millisecond))
			err = in.c.Partition(minority, rest)
		case partitionLeader:
			in.logf("%s: %s | %s for %v", kind, leader.Name, names(others), d.Round(time.Millisecond))
			err = in.c.Partition([]*cluster.Member{leader}, others)
		case partitionBridge:
			// The bridge sees everyone; the leader's side and the other
			// side do not see each other.
			bridge, rest := others[0], others[1:]
			sideA := append([]*cluster.Member{leader}, rest[:len(rest)/2]...)
			sideB := rest[len(rest)/2:]
			in.logf("%s: %s | %s, bridged by %s, for %v", kind, names(sideA), names(sideB), bridge.Name, d.Round(time.Millisecond))
			err = in.c.Partition(sideA, sideB)
		}
		if err != nil {
			return err
		}
		hold(ctx, d)
		return in.c.Heal()
	case diskFull:
		m := in.random()
		d := in.duration(time.Second, 4*time.Second)
		n, err := m.FillDisk()
		in.logf("%s: filled %s's data dir with %d MiB for %v", kind, m.Name, n>>20, d.Round(time.Millisecond))
		if err != nil {
			return err
		}
		hold(ctx, d)
		if err := m.FreeDisk(); err != nil {
			return err
		}
		// A full disk must not stop a member: it refuses growth and
		// releases its disk reserve instead.
		if err := m.ExitedOnItsOwn(); err != nil {
			return fmt.Errorf("%s stopped while its disk was full: %w", m.Name, err)
		}
		return nil
	case replaceMember:
		m := in.random()
		in.logf("%s: SIGKILL %s, member remove, empty data dir, member add with the same peer URL, start", kind, m.Name)
		m.Kill()
		return in.replace(ctx, m)
	}
	return fmt.Errorf("unknown fault kind %q", kind)
}

// replace removes the killed member m from the cluster and adds it back as
// a new member with an empty data dir. A call whose answer was lost is
// retried; its second answer (not found, URL exists) says it was done.
func (in *injector) replace(ctx context.Context, m *cluster.Member) error {
	// Like every fault, the replacement is completed even when the round
	// ends meanwhile: a member removed and not added back would stay out.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	retry := func(what string, call func(context.Context) error) error {
		for {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			err := call(cctx)
			ccancel()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s %s: %w", what, m.Name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	err := retry("member remove", func(ctx context.Context) error {
		list, err := in.cli.MemberList(ctx)
		if err != nil {
			return err
		}
		for _, mem := range list.Members {
			if slices.Contains(mem.PeerURLs, m.PeerURL) {
				_, err := in.cli.MemberRemove(ctx, mem.ID)
				if errors.Is(err, rpctypes.ErrMemberNotFound) {
					return nil
				}
				return err
			}
		}
		return nil // gone already
	})
	if err != nil {
		return err
	}
	if err := m.Replace(); err != nil {
		return err
	}
	err = retry("member add", func(ctx context.Context) error {
		_, err := in.cli.MemberAdd(ctx, []string{m.PeerURL})
		if errors.Is(err, rpctypes.ErrPeerURLExist) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	return m.Start()
}

func names(ms []*cluster.Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return "{" + strings.Join(s, ",") + "}"
}
