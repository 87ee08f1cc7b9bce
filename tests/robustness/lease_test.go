package robustness

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/robustness/cluster"
)

// The lease workload's keys, apart from the linearizability workload's.
const (
	leasePrefix = "lease/"
	leaseEnd    = "lease0" // '0' follows '/': [lease/, lease0) is every lease key
)

// The lease workload: a few clients of every member, each granting leases
// of 2 to 4 seconds (above the servers' minimum, 1.5 election timeouts)
// and putting 1 to 3 keys with each.
const (
	leaseClients   = 4
	leaseMinTTL    = 2
	leaseMaxTTL    = 4
	leaseOpTimeout = 5 * time.Second
	leaseThink     = 400 * time.Millisecond // a client pauses up to this long between leases
	leaseRevokeLag = 500 * time.Millisecond // a revoked lease is revoked up to this long after its puts
)

// leaseFate is what the workload does with a lease once granted.
type leaseFate int

const (
	keptAlive    leaseFate = iota // a KeepAlive runs until the checks are done
	revoked                       // revoked after a short random delay
	leftToExpire                  // nobody touches it again
)

func (f leaseFate) String() string {
	return [...]string{"kept alive", "revoked", "left to expire"}[f]
}

// leaseRecord is what the workload knows about one lease it was granted.
// The fields above mu are written by the lease's client only, before the
// checks read them.
type leaseRecord struct {
	client     int
	id         clientv3.LeaseID
	ttl        int64 // as granted
	fate       leaseFate
	control    bool
	asked      time.Time         // when the Grant call began: the lease cannot expire before asked+TTL
	keys       map[string]string // acknowledged puts: key → value
	putsFailed int               // puts whose outcome is unknown or that were refused
	revokeAck  bool
	revokeErr  string
	kaStart    time.Time // when the KeepAlive began (kept-alive leases)
	kaErr      string    // KeepAlive refused to start

	// What the KeepAlive channel delivered.
	mu        sync.Mutex
	responses int
	lastResp  time.Time
	closedAt  time.Time // zero while the channel is open
}

// keepAlive returns the state of the lease's KeepAlive channel.
func (r *leaseRecord) keepAlive() (closedAt, lastResp time.Time, responses int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closedAt, r.lastResp, r.responses
}

// closeMargin absorbs the scheduling delays between the client library
// and the goroutine that reads a KeepAlive channel.
const closeMargin = 250 * time.Millisecond

// closedByServer tells whether the KeepAlive channel closed before the
// client's own deadline could have closed it — a TTL after the last
// answer, or for the first answer the client's dial timeout (2 s in
// cluster.Client) plus a second — so the server answered that the lease
// was gone.
func (r *leaseRecord) closedByServer() bool {
	closedAt, lastResp, responses := r.keepAlive()
	if closedAt.IsZero() || r.kaErr != "" {
		return false
	}
	if responses == 0 {
		return closedAt.Sub(r.kaStart) < 3*time.Second-closeMargin
	}
	return closedAt.Sub(lastResp) < time.Duration(r.ttl)*time.Second-closeMargin
}

// goneTooSoon tells whether the server answered that the lease was gone
// before its TTL had passed since the Grant call began: no leader may
// expire a lease that soon, renewed or not.
func (r *leaseRecord) goneTooSoon() bool {
	closedAt, _, _ := r.keepAlive()
	return r.closedByServer() && closedAt.Sub(r.asked) < time.Duration(r.ttl)*time.Second-closeMargin
}

func (r *leaseRecord) String(start time.Time) string {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprintf("+%.3fs", t.Sub(start).Seconds())
	}
	fate := r.fate.String()
	if r.control {
		fate = "control, " + fate
	}
	s := fmt.Sprintf("lease %x: client %d, TTL %ds, asked %s, %s, keys %v, failed puts %d",
		int64(r.id), r.client, r.ttl, at(r.asked), fate, slices.Sorted(maps.Keys(r.keys)), r.putsFailed)
	switch r.fate {
	case revoked:
		s += fmt.Sprintf(", revoke acknowledged %v %s", r.revokeAck, r.revokeErr)
	case keptAlive:
		closedAt, lastResp, responses := r.keepAlive()
		s += fmt.Sprintf(", keep-alive from %s: %d answers, last %s, closed %s %s", at(r.kaStart), responses, at(lastResp), at(closedAt), r.kaErr)
	}
	return s
}

// leaseWorkload is the lease clients and the leases they were granted.
type leaseWorkload struct {
	clients  []*clientv3.Client
	keepCtx  context.Context // KeepAlives run until it is cancelled
	stopKeep context.CancelFunc
	drains   sync.WaitGroup // the goroutines reading KeepAlive channels

	leases       []*leaseRecord // set by run
	grantsFailed int
}

func startLeaseWorkload(c *cluster.Cluster) (*leaseWorkload, error) {
	w := &leaseWorkload{}
	w.keepCtx, w.stopKeep = context.WithCancel(context.Background())
	for range leaseClients {
		cli, err := c.Client()
		if err != nil {
			w.close()
			return nil, err
		}
		w.clients = append(w.clients, cli)
	}
	return w, nil
}

// run runs the clients until ctx is done; the KeepAlives go on.
func (w *leaseWorkload) run(ctx context.Context, seed uint64) {
	leases := make([][]*leaseRecord, len(w.clients))
	failed := make([]int, len(w.clients))
	var wg sync.WaitGroup
	for i, cli := range w.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 0x1ea5e<<32|uint64(i)))
			for seq := 0; ctx.Err() == nil; seq++ {
				p := leasePlan{
					key:         fmt.Sprintf("%sc%d-%04d", leasePrefix, i, seq),
					client:      i,
					ttl:         leaseMinTTL + rng.Int64N(leaseMaxTTL-leaseMinTTL+1),
					fate:        leaseFate(rng.IntN(3)),
					keys:        1 + rng.IntN(3),
					revokeAfter: time.Duration(rng.Int64N(int64(leaseRevokeLag))),
				}
				if rec := w.lease(cli, p); rec != nil {
					leases[i] = append(leases[i], rec)
				} else {
					failed[i]++
				}
				time.Sleep(time.Duration(rng.Int64N(int64(leaseThink))))
			}
		}()
	}
	wg.Wait()
	for i := range leases {
		w.leases = append(w.leases, leases[i]...)
		w.grantsFailed += failed[i]
	}
}

// control grants each client one lease of the shortest TTL, kept alive,
// with one key: on a cluster that stays healthy, these must live until the
// KeepAlives stop, renewed several times meanwhile. It returns the
// problems of grants and puts that failed.
func (w *leaseWorkload) control() []string {
	var problems []string
	for i, cli := range w.clients {
		p := leasePlan{key: fmt.Sprintf("%scontrol-c%d", leasePrefix, i), client: i, ttl: leaseMinTTL, fate: keptAlive, keys: 1, control: true}
		rec := w.lease(cli, p)
		switch {
		case rec == nil:
			problems = append(problems, fmt.Sprintf("client %d: grant of a control lease failed on a healthy cluster", i))
		case rec.putsFailed > 0:
			problems = append(problems, fmt.Sprintf("client %d: put of a control lease's key failed on a healthy cluster", i))
		}
		if rec != nil {
			w.leases = append(w.leases, rec)
		}
	}
	return problems
}

// leasePlan is what a client does with one lease.
type leasePlan struct {
	key         string // the lease's keys are key-0, key-1...
	client      int
	ttl         int64
	fate        leaseFate
	keys        int
	revokeAfter time.Duration
	control     bool // granted after the faults (see control)
}

// lease grants one lease, starts its KeepAlive if it is to be kept alive,
// puts its keys and revokes it if it is to be revoked. It returns nil if
// the grant failed.
func (w *leaseWorkload) lease(cli *clientv3.Client, p leasePlan) *leaseRecord {
	ctx, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
	asked := time.Now()
	resp, err := cli.Grant(ctx, p.ttl)
	cancel()
	if err != nil {
		return nil
	}
	rec := &leaseRecord{
		client: p.client, id: resp.ID, ttl: resp.TTL, fate: p.fate, control: p.control,
		asked: asked, keys: map[string]string{},
	}
	if rec.fate == keptAlive {
		// Before the puts, so that slow puts under faults do not let the
		// lease expire first.
		w.keepAlive(cli, rec)
	}
	for k := range p.keys {
		key := fmt.Sprintf("%s-%d", p.key, k)
		value := fmt.Sprintf("lease %x", int64(resp.ID))
		ctx, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
		_, err := cli.Put(ctx, key, value, clientv3.WithLease(resp.ID))
		cancel()
		if err != nil {
			rec.putsFailed++
		} else {
			rec.keys[key] = value
		}
	}
	if rec.fate == revoked {
		time.Sleep(p.revokeAfter)
		ctx, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
		_, err := cli.Revoke(ctx, resp.ID)
		cancel()
		if err != nil {
			rec.revokeErr = err.Error()
		} else {
			rec.revokeAck = true
		}
	}
	return rec
}

func (w *leaseWorkload) keepAlive(cli *clientv3.Client, rec *leaseRecord) {
	rec.kaStart = time.Now()
	ch, err := cli.KeepAlive(w.keepCtx, rec.id)
	if err != nil {
		rec.kaErr, rec.closedAt = err.Error(), rec.kaStart
		return
	}
	w.drains.Add(1)
	go func() {
		defer w.drains.Done()
		for range ch {
			rec.mu.Lock()
			rec.responses++
			rec.lastResp = time.Now()
			rec.mu.Unlock()
		}
		rec.mu.Lock()
		rec.closedAt = time.Now()
		rec.mu.Unlock()
	}()
}

// stopKeepAlives ends every KeepAlive and returns when it did so.
func (w *leaseWorkload) stopKeepAlives() time.Time {
	stop := time.Now()
	w.stopKeep()
	return stop
}

func (w *leaseWorkload) close() {
	w.stopKeep()
	for _, cli := range w.clients {
		cli.Close()
	}
	w.drains.Wait()
}

// leaseFigures are what the lease test reports.
type leaseFigures struct {
	granted, grantsFailed, control             int
	keptAlive, lostUnderFaults, closedByServer int
	revoked, revokeAcked, leftToExpire         int
	keys, putsFailed                           int
	faults                                     map[faultKind]int
	goneAfter                                  time.Duration // after the KeepAlives stopped; 0 if never
	violations                                 int
}

func (f leaseFigures) String() string {
	var fs []string
	for _, k := range slices.Sorted(maps.Keys(f.faults)) {
		fs = append(fs, fmt.Sprintf("%s=%d", k, f.faults[k]))
	}
	gone := "never"
	if f.goneAfter > 0 {
		gone = f.goneAfter.Round(10 * time.Millisecond).String()
	}
	return fmt.Sprintf("leases granted %d (grants failed %d) and %d control leases after the faults: kept alive %d (lost during the faults %d, of which %d ended by the server's answer that the lease was gone), revoked %d (acknowledged %d), left to expire %d; keys put %d (puts failed %d); faults [%s]; all leases and keys gone %s after the keep-alives stopped; violations %d",
		f.granted, f.grantsFailed, f.control, f.keptAlive, f.lostUnderFaults, f.closedByServer, f.revoked, f.revokeAcked, f.leftToExpire,
		f.keys, f.putsFailed, strings.Join(fs, " "), gone, f.violations)
}

// TestRobustnessLeases checks the lease guarantees of docs/architecture.md
// ("Leases") under faults. Clients grant short leases and put keys with
// them; a third of the leases are kept alive, a third revoked, the rest
// left to expire, while single members are killed, paused and (with
// network namespaces) cut off. After the faults:
//
//  1. a lease whose KeepAlive was still open a TTL after the faults
//     stopped is alive, with every acknowledged key attached, on every
//     member, and its KeepAlive goes on being answered until the test
//     stops it — and so do those of a few control leases granted on the
//     healed cluster; no KeepAlive is told that its lease is gone less
//     than a TTL after the lease was asked for; an acknowledged revoke
//     left neither the lease nor any of its keys anywhere;
//  2. once the KeepAlives stop, every lease and every lease key is gone on
//     every member within the longest TTL, two election timeouts and some
//     slack;
//  3. every member lists the same leases, and no member holds a key whose
//     lease it does not list;
//  4. the members converge to the same HashKV, with clean logs.
func TestRobustnessLeases(t *testing.T) {
	seed := seed(t)
	round := envDuration(t, "KVORUM_ROBUSTNESS_ROUND", 20*time.Second)
	faults := []faultKind{killLeader, killRandom, pauseMember}
	netns := cluster.NetnsAvailable() == nil
	if netns {
		faults = append(faults, partitionFaults...)
	}
	faults = faultsFromEnv(faults)
	et := electionTimeout(t)
	t.Logf("seed %d (replay with KVORUM_ROBUSTNESS_SEED=%d); 3 members, netns %v, one round of %v, faults %v",
		seed, seed, netns, round, faults)

	c := startCluster(t, cluster.Config{Members: 3, Netns: netns})
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var members []*clientv3.Client
	for _, m := range c.Members {
		mc, err := c.Client(m)
		if err != nil {
			t.Fatal(err)
		}
		defer mc.Close()
		members = append(members, mc)
	}

	w, err := startLeaseWorkload(c)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	start := time.Now()
	in, err := newInjector(c, seed, 0, faults, start)
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	var faultErr error
	var wg sync.WaitGroup
	clientCtx, stopClients := context.WithTimeout(context.Background(), round)
	defer stopClients()
	faultCtx, stopFaults := context.WithTimeout(context.Background(), round)
	defer stopFaults()
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.run(clientCtx, seed)
	}()
	go func() {
		defer wg.Done()
		faultErr = in.run(faultCtx)
	}()
	wg.Wait()
	t.Logf("schedule:\n%s", in.Schedule())

	f := leaseFigures{granted: len(w.leases), grantsFailed: w.grantsFailed, faults: in.counts}
	for _, r := range w.leases {
		f.keys += len(r.keys)
		f.putsFailed += r.putsFailed
		switch r.fate {
		case keptAlive:
			f.keptAlive++
		case revoked:
			f.revoked++
			if r.revokeAck {
				f.revokeAcked++
			}
		case leftToExpire:
			f.leftToExpire++
		}
	}
	var problems []string
	defer func() {
		f.violations = len(problems)
		if len(problems) > 0 {
			leaseFail(t, c, seed, in, start, w.leases, problems)
		}
		t.Logf("FIGURES seed %d: %s", seed, f)
	}()

	// Quiesce: every member up and healthy, all applied the same.
	qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer qcancel()
	if faultErr != nil {
		problems = append(problems, fmt.Sprintf("fault injection: %v", faultErr))
	}
	if err := c.BringBack(); err != nil {
		problems = append(problems, err.Error())
	}
	if err := c.WaitHealthy(qctx, c.Members...); err != nil {
		problems = append(problems, fmt.Sprintf("after the faults stopped: %v", err))
	} else if _, err := c.WaitConverged(qctx); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		problems = append(problems, "cluster state:\n"+c.Describe(context.Background()))
		return
	}
	healthy := time.Now()
	problems = append(problems, w.control()...)
	f.control = len(w.leases) - f.granted

	// A KeepAlive that lost the cluster during the faults ends when its
	// client has had no answer for a TTL, noticed within the client's
	// one-second deadline check. Past that, every KeepAlive still open is
	// one its client renews through the healed cluster: its lease must
	// live, and its channel must stay open until the KeepAlives stop. The
	// control leases, granted on the healed cluster, are renewed a few
	// times meanwhile.
	settled := healthy.Add(leaseMaxTTL*time.Second + 2*time.Second)
	time.Sleep(time.Until(settled))
	var open []*leaseRecord
	for _, r := range w.leases {
		if r.fate != keptAlive {
			continue
		}
		switch closedAt, _, _ := r.keepAlive(); {
		case closedAt.IsZero():
			open = append(open, r)
		case r.control:
			problems = append(problems, fmt.Sprintf("the keep-alive of control lease %x ended although the cluster was healthy all along: %s", int64(r.id), r.String(start)))
		default:
			f.lostUnderFaults++
			if r.closedByServer() {
				f.closedByServer++
				t.Logf("the server answered that a kept-alive lease was gone: %s", r.String(start))
			}
			if r.goneTooSoon() {
				problems = append(problems, fmt.Sprintf("the server answered that lease %x was gone less than its TTL after it was asked for: %s", int64(r.id), r.String(start)))
			}
		}
	}

	// Check 1: kept-alive leases live, with their keys, everywhere;
	// acknowledged revokes left nothing behind.
	checked := time.Now()
	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	problems = append(problems, checkLeasesAlive(cctx, cli, open)...)
	problems = append(problems, checkRevoked(cctx, cli, w.leases)...)
	for i, mc := range members {
		problems = append(problems, checkMemberLeaseKeys(cctx, c.Members[i].Name, mc, open, w.leases)...)
	}
	// Check 3, while leases live: same lease lists, no key of a dead lease.
	problems = append(problems, checkLeaseLists(cctx, c, members)...)

	// Each open keep-alive is renewed once more after check 1 began, so
	// that a lease the checks saw in its last second (TTL 0) is seen
	// renewed, or its keep-alive ends and is reported.
	problems = append(problems, waitRenewed(open, checked, 5*time.Second)...)
	stop := w.stopKeepAlives()
	for _, r := range open {
		if closedAt, lastResp, _ := r.keepAlive(); !closedAt.IsZero() && closedAt.Before(stop) {
			problems = append(problems, fmt.Sprintf("the keep-alive of lease %x ended at +%.3fs although the cluster was healthy from +%.3fs and it had been renewed at +%.3fs: %s",
				int64(r.id), closedAt.Sub(start).Seconds(), healthy.Sub(start).Seconds(), lastResp.Sub(start).Seconds(), r.String(start)))
		}
	}

	// Check 2: with no KeepAlive left, everything expires in time.
	bound := leaseMaxTTL*time.Second + 2*et + 3*time.Second
	var gp []string
	f.goneAfter, gp = waitLeasesGone(cctx, cli, c, members, w.leases, stop, bound, 20*time.Second)
	problems = append(problems, gp...)

	// Check 4: the same key-value history everywhere, clean logs.
	rev, err := c.WaitConverged(cctx)
	if err != nil {
		problems = append(problems, err.Error())
	} else if _, err := c.HashKV(cctx, rev); err != nil {
		problems = append(problems, err.Error())
	}
	if probs := c.LogProblems(); len(probs) > 0 {
		problems = append(problems, "server logs report a panic, fatal error, race or corruption:\n"+strings.Join(probs, "\n"))
	}
	if len(problems) == 0 {
		leaseChecksCanFail(t, cctx, cli, c.Members[0].Name, members[0], w.leases)
	}
}

// leaseChecksCanFail demands that check 1 refuses a lease that is gone
// when it is passed off as kept alive, so a run that passes shows that its
// checks could have failed on this very cluster.
func leaseChecksCanFail(t *testing.T, ctx context.Context, cli *clientv3.Client, name string, mc *clientv3.Client, leases []*leaseRecord) {
	t.Helper()
	i := slices.IndexFunc(leases, func(r *leaseRecord) bool { return r.revokeAck && len(r.keys) > 0 })
	if i < 0 {
		return
	}
	gone := leases[i]
	if p := checkLeasesAlive(ctx, cli, []*leaseRecord{gone}); len(p) == 0 {
		t.Errorf("check 1 accepted the revoked lease %x as alive", int64(gone.id))
	}
	if p := checkMemberLeaseKeys(ctx, name, mc, []*leaseRecord{gone}, nil); len(p) == 0 {
		t.Errorf("check 1 accepted the deleted keys %v of lease %x as present", slices.Sorted(maps.Keys(gone.keys)), int64(gone.id))
	}
}

// waitRenewed waits until every keep-alive of leases has had an answer
// after since, or ended, and reports those that had neither within timeout
// (a client asks again a third of a TTL after each answer).
func waitRenewed(leases []*leaseRecord, since time.Time, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		var problems []string
		for _, r := range leases {
			if closedAt, lastResp, _ := r.keepAlive(); closedAt.IsZero() && !lastResp.After(since) {
				problems = append(problems, fmt.Sprintf("the keep-alive of lease %x (TTL %ds) had no answer for %v on a healthy cluster",
					int64(r.id), r.ttl, time.Since(lastResp).Round(time.Millisecond)))
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			return problems
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// electionTimeout is serverFlags' --election-timeout.
func electionTimeout(t *testing.T) time.Duration {
	for _, fl := range serverFlags {
		if v, ok := strings.CutPrefix(fl, "--election-timeout="); ok {
			ms, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("serverFlags: %s: %v", fl, err)
			}
			return time.Duration(ms) * time.Millisecond
		}
	}
	t.Fatal("serverFlags set no --election-timeout")
	return 0
}

// checkLeasesAlive demands that each lease is alive at the leader, with
// its granted TTL and every acknowledged key attached.
func checkLeasesAlive(ctx context.Context, cli *clientv3.Client, leases []*leaseRecord) []string {
	var problems []string
	for _, r := range leases {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cli.TimeToLive(tctx, r.id, clientv3.WithAttachedKeys())
		cancel()
		if err != nil {
			problems = append(problems, fmt.Sprintf("TimeToLive of lease %x on a healthy cluster: %v", int64(r.id), err))
			continue
		}
		// TTL is in whole seconds, rounded down: 0 is a lease with less
		// than a second left; -1 is a lease that is gone.
		if resp.TTL < 0 || resp.GrantedTTL != r.ttl {
			problems = append(problems, fmt.Sprintf("lease %x, kept alive and its keep-alive never ended, has TTL %d (granted %d), want alive with granted TTL %d",
				int64(r.id), resp.TTL, resp.GrantedTTL, r.ttl))
			continue
		}
		attached := map[string]bool{}
		for _, k := range resp.Keys {
			attached[string(k)] = true
		}
		for _, k := range slices.Sorted(maps.Keys(r.keys)) {
			if !attached[k] {
				problems = append(problems, fmt.Sprintf("lease %x is alive but its acknowledged key %s is not attached to it (attached: %d keys)", int64(r.id), k, len(resp.Keys)))
			}
		}
	}
	return problems
}

// checkRevoked demands that each lease whose revoke was acknowledged is
// gone at the leader.
func checkRevoked(ctx context.Context, cli *clientv3.Client, leases []*leaseRecord) []string {
	var problems []string
	for _, r := range leases {
		if !r.revokeAck {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cli.TimeToLive(tctx, r.id)
		cancel()
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("TimeToLive of lease %x on a healthy cluster: %v", int64(r.id), err))
		case resp.TTL != -1:
			problems = append(problems, fmt.Sprintf("lease %x, whose revoke was acknowledged, has TTL %d, want -1", int64(r.id), resp.TTL))
		}
	}
	return problems
}

// checkMemberLeaseKeys reads one member's lease keys (serializable) and
// demands that every acknowledged key of a live lease is there with its
// lease and value, and no key of an acknowledged revoke is.
func checkMemberLeaseKeys(ctx context.Context, name string, mc *clientv3.Client, alive, all []*leaseRecord) []string {
	kvs, err := memberLeaseKeys(ctx, mc)
	if err != nil {
		return []string{fmt.Sprintf("read %s's lease keys: %v", name, err)}
	}
	var problems []string
	for _, r := range alive {
		for _, k := range slices.Sorted(maps.Keys(r.keys)) {
			kv, ok := kvs[k]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s lost the acknowledged key %s of lease %x, which was kept alive", name, k, int64(r.id)))
			case kv.Lease != int64(r.id) || string(kv.Value) != r.keys[k]:
				problems = append(problems, fmt.Sprintf("%s holds %s with lease %x and value %q, want lease %x and value %q", name, k, kv.Lease, kv.Value, int64(r.id), r.keys[k]))
			}
		}
	}
	for _, r := range all {
		if !r.revokeAck {
			continue
		}
		for k := range r.keys {
			if kv, ok := kvs[k]; ok {
				problems = append(problems, fmt.Sprintf("%s still holds %s (lease %x, mod revision %d) although the revoke of lease %x was acknowledged", name, k, kv.Lease, kv.ModRevision, int64(r.id)))
			}
		}
	}
	return problems
}

func memberLeaseKeys(ctx context.Context, mc *clientv3.Client) (map[string]*mvccpb.KeyValue, error) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := mc.Get(gctx, leasePrefix, clientv3.WithRange(leaseEnd), clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	kvs := map[string]*mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = kv
	}
	return kvs, nil
}

func memberLeases(ctx context.Context, mc *clientv3.Client) (map[int64]bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := mc.Leases(lctx)
	if err != nil {
		return nil, err
	}
	ids := map[int64]bool{}
	for _, l := range resp.Leases {
		ids[int64(l.ID)] = true
	}
	return ids, nil
}

// checkLeaseLists demands that every member lists the same leases and
// holds no lease key whose lease it does not list. Leases may still expire
// meanwhile, applied by one member a moment before the next, so it looks
// again until the check passes or 5 s have passed. Each member's list is
// read before its keys: a revoke between the two reads removes the keys
// too, and nobody grants leases any more.
func checkLeaseLists(ctx context.Context, c *cluster.Cluster, members []*clientv3.Client) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var problems []string
		var lists []map[int64]bool
		for i, mc := range members {
			name := c.Members[i].Name
			ids, err := memberLeases(ctx, mc)
			if err != nil {
				problems = append(problems, fmt.Sprintf("list %s's leases: %v", name, err))
				continue
			}
			lists = append(lists, ids)
			kvs, err := memberLeaseKeys(ctx, mc)
			if err != nil {
				problems = append(problems, fmt.Sprintf("read %s's lease keys: %v", name, err))
				continue
			}
			for _, k := range slices.Sorted(maps.Keys(kvs)) {
				if kv := kvs[k]; !ids[kv.Lease] {
					problems = append(problems, fmt.Sprintf("%s holds %s with lease %x, which it does not list (%d leases listed)", name, k, kv.Lease, len(ids)))
				}
			}
			if len(lists) > 1 && !maps.Equal(lists[0], ids) {
				problems = append(problems, fmt.Sprintf("%s lists %d leases, %s lists %d; differing: %s",
					c.Members[0].Name, len(lists[0]), name, len(ids), symmetricDifference(lists[0], ids)))
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			return problems
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func symmetricDifference(a, b map[int64]bool) string {
	var d []string
	for id := range a {
		if !b[id] {
			d = append(d, fmt.Sprintf("%x", id))
		}
	}
	for id := range b {
		if !a[id] {
			d = append(d, fmt.Sprintf("%x", id))
		}
	}
	slices.Sort(d)
	return strings.Join(d[:min(len(d), 10)], " ")
}

// waitLeasesGone waits until no lease of the workload is alive at the
// leader and no member lists a lease or holds a lease key, looking until
// limit after stop. It returns how long after stop that happened (0 if it
// did not) and a problem if it took longer than bound.
func waitLeasesGone(ctx context.Context, cli *clientv3.Client, c *cluster.Cluster, members []*clientv3.Client, leases []*leaseRecord, stop time.Time, bound, limit time.Duration) (time.Duration, []string) {
	pending := slices.Clone(leases)
	for {
		var left []string
		pending = slices.DeleteFunc(pending, func(r *leaseRecord) bool {
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := cli.TimeToLive(tctx, r.id)
			cancel()
			switch {
			case err != nil:
				left = append(left, fmt.Sprintf("TimeToLive of lease %x: %v", int64(r.id), err))
			case resp.TTL != -1:
				left = append(left, fmt.Sprintf("lease %x (%s, TTL %ds) has TTL %d", int64(r.id), r.fate, r.ttl, resp.TTL))
			default:
				return true
			}
			return false
		})
		for i, mc := range members {
			name := c.Members[i].Name
			ids, err := memberLeases(ctx, mc)
			if err != nil {
				left = append(left, fmt.Sprintf("list %s's leases: %v", name, err))
			} else if len(ids) > 0 {
				left = append(left, fmt.Sprintf("%s lists %d leases: %s", name, len(ids), symmetricDifference(ids, nil)))
			}
			kvs, err := memberLeaseKeys(ctx, mc)
			if err != nil {
				left = append(left, fmt.Sprintf("read %s's lease keys: %v", name, err))
			} else if len(kvs) > 0 {
				keys := slices.Sorted(maps.Keys(kvs))
				left = append(left, fmt.Sprintf("%s holds %d lease keys: %s", name, len(kvs), strings.Join(keys[:min(len(keys), 10)], " ")))
			}
		}
		after := time.Since(stop)
		if len(left) == 0 {
			if after > bound {
				return after, []string{fmt.Sprintf("the leases and their keys were gone only %v after the keep-alives stopped, want within %v (the longest TTL, two election timeouts and 3 s)", after.Round(time.Millisecond), bound)}
			}
			return after, nil
		}
		if after > limit {
			return 0, []string{fmt.Sprintf("%v after the keep-alives stopped (want everything gone within %v), %d things remain:\n%s",
				after.Round(time.Millisecond), bound, len(left), strings.Join(left[:min(len(left), 20)], "\n"))}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// leaseFail reports a failed lease test with what is needed to study it:
// the fault schedule, every lease's record and the members' logs.
func leaseFail(t *testing.T, c *cluster.Cluster, seed uint64, in *injector, start time.Time, leases []*leaseRecord, problems []string) {
	t.Helper()
	base := os.Getenv("KVORUM_ROBUSTNESS_OUT")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, fmt.Sprintf("kvorum-robustness-%s-seed%d", strings.ReplaceAll(t.Name(), "/", "_"), seed))
	notes := fmt.Sprintf("test %s\nseed %d (replay with KVORUM_ROBUSTNESS_SEED=%d)\n\nfault schedule:\n%s\n\nproblems:\n%s\n",
		t.Name(), seed, seed, in.Schedule(), strings.Join(problems, "\n"))
	var records strings.Builder
	for _, r := range leases {
		fmt.Fprintln(&records, r.String(start))
	}
	werr := os.MkdirAll(dir, 0o755)
	if werr == nil {
		werr = os.WriteFile(filepath.Join(dir, "notes.txt"), []byte(notes), 0o644)
	}
	if werr == nil {
		werr = os.WriteFile(filepath.Join(dir, "leases.txt"), []byte(records.String()), 0o644)
	}
	for _, m := range c.Members {
		if werr == nil {
			werr = os.WriteFile(filepath.Join(dir, m.Name+".log"), []byte(m.LogText()), 0o644)
		}
	}
	shown := problems[:min(len(problems), 30)]
	t.Errorf("FAILED (seed %d, replay with KVORUM_ROBUSTNESS_SEED=%d)\nfault schedule:\n%s\n%d problem(s):\n%s\nlease records and member logs in %s (write error: %v)",
		seed, seed, in.Schedule(), len(problems), strings.Join(shown, "\n"), dir, werr)
}
