package robustness

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/robustness"
	"github.com/kvorum/kvorum/internal/robustness/cluster"
)

// Short elections, and frequent raft snapshots so that restarted members
// also catch up by snapshot, not only from the log.
var serverFlags = []string{
	"--heartbeat-interval=50", "--election-timeout=500",
	"--snapshot-count=2000", "--snapshot-catchup-entries=500",
}

func TestRobustnessCrashesAndPauses(t *testing.T) {
	runScenario(t, scenario{
		members: 3,
		rounds:  1,
		round:   envDuration(t, "KVORUM_ROBUSTNESS_ROUND", 30*time.Second),
		faults:  crashFaults,
	})
}

func TestRobustnessPartitions(t *testing.T) {
	if err := cluster.NetnsAvailable(); err != nil {
		t.Skipf("partition tests need network namespaces (root, iproute2 and iptables): %v", err)
	}
	runScenario(t, scenario{
		members: 3,
		netns:   true,
		tls:     true,
		rounds:  1,
		round:   envDuration(t, "KVORUM_ROBUSTNESS_ROUND", 30*time.Second),
		faults:  append(slices.Clone(partitionFaults), killLeader, pauseMember),
	})
}

func TestRobustnessDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the disk-full test mounts a small tmpfs per member, which needs root")
	}
	runScenario(t, scenario{
		members: 3,
		diskMB:  1024, // room for the preallocated write-ahead logs and the disk reserve
		rounds:  1,
		round:   envDuration(t, "KVORUM_ROBUSTNESS_ROUND", 20*time.Second),
		faults:  []faultKind{diskFull, diskFull, killRandom},
	})
}

// TestSoak runs every fault kind for KVORUM_SOAK (a duration such as 30m),
// in rounds of KVORUM_SOAK_ROUND (default 1m) each checked on its own, on
// KVORUM_SOAK_MEMBERS members (default 3; 5 works too).
func TestSoak(t *testing.T) {
	total := envDuration(t, "KVORUM_SOAK", 0)
	if total == 0 {
		t.Skip("set KVORUM_SOAK to a duration (e.g. 30m) to run the soak")
	}
	round := envDuration(t, "KVORUM_SOAK_ROUND", time.Minute)
	members := 3
	if s := os.Getenv("KVORUM_SOAK_MEMBERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || (n != 3 && n != 5) {
			t.Fatalf("KVORUM_SOAK_MEMBERS=%q: want 3 or 5", s)
		}
		members = n
	}
	sc := scenario{members: members, round: round, rounds: max(1, int(total/round)), faults: slices.Clone(crashFaults)}
	if err := cluster.NetnsAvailable(); err != nil {
		t.Logf("soak without partitions (network namespaces unavailable: %v)", err)
	} else {
		sc.netns = true
		sc.faults = append(sc.faults, partitionFaults...)
	}
	if os.Geteuid() == 0 {
		sc.diskMB = 1024
		sc.faults = append(sc.faults, diskFull)
	} else {
		t.Log("soak without disk-full faults (mounting a tmpfs needs root)")
	}
	runScenario(t, sc)
}

// startCluster starts the built binary with serverFlags as cfg asks (Bin,
// Dir and Flags are filled in), stops it when the test ends, and shows the
// tail of every member's log if the test failed.
func startCluster(t *testing.T, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	cfg.Bin, cfg.Dir, cfg.Flags = kvorumBin, t.TempDir(), serverFlags
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c, err := cluster.Start(ctx, cfg)
	cancel()
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("----- %s log, last 40 lines -----\n%s", m.Name, cluster.Tail(m.LogText(), 40))
			}
		}
	})
	return c
}

// faultsFromEnv returns the fault kinds KVORUM_ROBUSTNESS_FAULTS lists
// (comma separated), or def when it is not set.
func faultsFromEnv(def []faultKind) []faultKind {
	s := os.Getenv("KVORUM_ROBUSTNESS_FAULTS")
	if s == "" {
		return def
	}
	var out []faultKind
	for _, k := range strings.Split(s, ",") {
		out = append(out, faultKind(strings.TrimSpace(k)))
	}
	return out
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return d
}

// seed is KVORUM_ROBUSTNESS_SEED if set (to replay a failure), else the
// current time.
func seed(t *testing.T) uint64 {
	if s := os.Getenv("KVORUM_ROBUSTNESS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KVORUM_ROBUSTNESS_SEED=%q: %v", s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// scenario is one cluster, run for some rounds of workload under faults,
// each round checked on its own.
type scenario struct {
	members int
	netns   bool
	tls     bool // mutual TLS on the client and peer ports (links are cut and healed under TLS)
	diskMB  int  // each member's data dir is a tmpfs of this size (for disk-full faults)
	rounds  int
	round   time.Duration
	faults  []faultKind
}

// figures are what a scenario reports (and docs/robustness.md quotes).
type figures struct {
	ops, checked, unknown, unknownApplied, unknownNotApplied int
	faults                                                   map[faultKind]int
	violations, lostWrites                                   int
	watchEvents                                              int
}

func (f figures) String() string {
	var fs []string
	for _, k := range slices.Sorted(maps.Keys(f.faults)) {
		fs = append(fs, fmt.Sprintf("%s=%d", k, f.faults[k]))
	}
	return fmt.Sprintf("operations %d (checked %d; unknown outcome %d: %d applied, %d not applied), faults [%s], violations %d, acknowledged writes lost %d, watch events checked %d",
		f.ops, f.checked, f.unknown, f.unknownApplied, f.unknownNotApplied, strings.Join(fs, " "), f.violations, f.lostWrites, f.watchEvents)
}

func runScenario(t *testing.T, sc scenario) {
	seed := seed(t)
	sc.faults = faultsFromEnv(sc.faults)
	t.Logf("seed %d (replay with KVORUM_ROBUSTNESS_SEED=%d); %d members, netns %v, %d round(s) of %v, faults %v",
		seed, seed, sc.members, sc.netns, sc.rounds, sc.round, sc.faults)
	c := startCluster(t, cluster.Config{Members: sc.members, Netns: sc.netns, DiskMB: sc.diskMB, TLS: sc.tls})
	total := figures{faults: map[faultKind]int{}}
	for r := range sc.rounds {
		f, ok := runRound(t, c, sc, seed, r)
		total.ops += f.ops
		total.checked += f.checked
		total.unknown += f.unknown
		total.unknownApplied += f.unknownApplied
		total.unknownNotApplied += f.unknownNotApplied
		total.violations += f.violations
		total.lostWrites += f.lostWrites
		total.watchEvents += f.watchEvents
		for k, n := range f.faults {
			total.faults[k] += n
		}
		if !ok {
			break
		}
	}
	var allowed []*regexp.Regexp
	if slices.Contains(sc.faults, diskFull) {
		// Pebble reports the compactions it could not write on a full
		// disk; it retries them once there is space.
		allowed = append(allowed, regexp.MustCompile(`no space left on device`))
	}
	if probs := c.LogProblems(allowed...); len(probs) > 0 {
		total.violations += len(probs)
		t.Errorf("server logs report a panic, fatal error, race or corruption:\n%s", strings.Join(probs, "\n"))
	}
	t.Logf("FIGURES seed %d: %s", seed, total)
}

// runRound runs one round of workload and faults, then checks it. It
// returns the round's figures and whether it passed.
func runRound(t *testing.T, c *cluster.Cluster, sc scenario, seed uint64, round int) (figures, bool) {
	f := figures{faults: map[faultKind]int{}}
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	init, err := readState(cli)
	if err != nil {
		t.Fatalf("round %d: read the initial state: %v", round, err)
	}

	watchers, err := startWatchers(c, init.Rev+1)
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.stop()

	start := time.Now()
	in, err := newInjector(c, seed, round, sc.faults, start)
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	var ops []robustness.Op
	var clientErr, faultErr error
	var wg sync.WaitGroup
	clientCtx, stopClients := context.WithTimeout(context.Background(), sc.round+2*time.Second)
	defer stopClients()
	faultCtx, stopFaults := context.WithTimeout(context.Background(), sc.round)
	defer stopFaults()
	wg.Add(2)
	go func() {
		defer wg.Done()
		ops, clientErr = runClients(clientCtx, c, defaultWorkload, seed, round, start)
	}()
	go func() {
		defer wg.Done()
		faultErr = in.run(faultCtx)
	}()
	wg.Wait()
	f.faults = in.counts
	t.Logf("round %d schedule:\n%s", round, in.Schedule())
	if clientErr != nil {
		t.Fatalf("round %d: clients: %v", round, clientErr)
	}

	// Quiesce: every member up and healthy, all applied the same, then
	// once more after a pause so that a late proposal has landed too.
	var problems []string
	qctx, qcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer qcancel()
	if faultErr != nil {
		problems = append(problems, fmt.Sprintf("fault injection: %v", faultErr))
	}
	if err := c.BringBack(); err != nil {
		problems = append(problems, err.Error())
	}
	var finalRev int64
	if err := c.WaitHealthy(qctx, c.Members...); err != nil {
		problems = append(problems, fmt.Sprintf("after the faults stopped: %v", err))
	} else if _, err := c.WaitConverged(qctx); err != nil {
		problems = append(problems, err.Error())
	} else {
		time.Sleep(time.Second)
		if finalRev, err = c.WaitConverged(qctx); err != nil {
			problems = append(problems, err.Error())
		}
	}
	h := &robustness.History{Init: init, Ops: ops}
	if len(problems) > 0 {
		problems = append(problems, "cluster state:\n"+c.Describe(context.Background()))
		f.violations += len(problems)
		fail(t, c, seed, round, in, h, nil, problems)
		return f, false
	}

	// The final read is part of the history: it anchors the end state.
	call := time.Since(start)
	final := execute(qctx, cli, robustness.Request{Kind: robustness.Range, Key: keyPrefix, End: keyEnd})
	h.Ops = append(h.Ops, robustness.Op{
		Client: defaultWorkload.clients, Endpoint: "all", Req: robustness.Request{Kind: robustness.Range, Key: keyPrefix, End: keyEnd},
		Resp: final, Call: call.Nanoseconds(), Return: time.Since(start).Nanoseconds(),
	})
	if final.Unknown {
		problems = append(problems, fmt.Sprintf("final read failed on a healthy cluster: %s", final.Err))
	}

	changes, err := readChanges(qctx, c, init, finalRev)
	if err != nil {
		problems = append(problems, fmt.Sprintf("read the revision history: %v", err))
	}
	report := robustness.Check(h, changes, 3*time.Minute)
	t.Logf("round %d: %s", round, report)
	f.ops, f.checked, f.unknown = report.Ops, report.Checked, report.Unknown
	f.unknownApplied, f.unknownNotApplied = report.UnknownApplied, report.UnknownNotApplied
	problems = append(problems, report.Problems...)

	// Every member holds what the revision history says, so no
	// acknowledged write is lost on any of them.
	want := robustness.Replay(init, changes)
	for _, m := range c.Members {
		got, err := readMemberState(qctx, c, m)
		if err != nil {
			problems = append(problems, fmt.Sprintf("read %s's final state: %v", m.Name, err))
			continue
		}
		if d := robustness.DiffStates(want, got); d != "" {
			problems = append(problems, fmt.Sprintf("%s's final state differs from the revision history: %s", m.Name, d))
		}
		lost := robustness.LostWrites(h, changes, got.KVs)
		f.lostWrites += len(lost)
		for _, l := range lost[:min(len(lost), 10)] {
			problems = append(problems, fmt.Sprintf("%s lost an acknowledged write: %s", m.Name, l))
		}
	}
	if _, err := c.HashKV(qctx, finalRev); err != nil {
		problems = append(problems, err.Error())
	}
	if err == nil && len(changes) > 0 {
		watchers.waitFor(finalRev, 30*time.Second)
		wp, events := watchers.check(changes)
		f.watchEvents += events
		problems = append(problems, wp...)
	}
	f.violations += len(problems)
	if len(problems) > 0 {
		fail(t, c, seed, round, in, h, report, problems)
		return f, false
	}
	checkerCanFail(t, h, changes)
	return f, true
}

// checkerCanFail corrupts a history that passed — the final read loses one
// key — and demands that the checker rejects it, so a round that passes
// shows that the checker could have failed on this very history.
func checkerCanFail(t *testing.T, h *robustness.History, changes []robustness.Change) {
	t.Helper()
	last := len(h.Ops) - 1
	if len(h.Ops[last].Resp.KVs) == 0 {
		return
	}
	bad := &robustness.History{Init: h.Init, Ops: slices.Clone(h.Ops)}
	bad.Ops[last].Resp.KVs = slices.Clone(bad.Ops[last].Resp.KVs[1:])
	if r := robustness.Check(bad, changes, time.Minute); r.OK() {
		t.Errorf("the checker accepted the history with %s missing from the final read: %s", h.Ops[last].Resp.KVs[0].Key, r)
	}
}

// fail reports a failed round with everything needed to study it.
func fail(t *testing.T, c *cluster.Cluster, seed uint64, round int, in *injector, h *robustness.History, report *robustness.Report, problems []string) {
	t.Helper()
	base := os.Getenv("KVORUM_ROBUSTNESS_OUT")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, fmt.Sprintf("kvorum-robustness-%s-seed%d-round%d", strings.ReplaceAll(t.Name(), "/", "_"), seed, round))
	notes := fmt.Sprintf("test %s\nseed %d (replay with KVORUM_ROBUSTNESS_SEED=%d)\nround %d\n\nfault schedule:\n%s\n\nproblems:\n%s\n",
		t.Name(), seed, seed, round, in.Schedule(), strings.Join(problems, "\n"))
	var werr error
	if report != nil {
		werr = report.WriteArtifacts(dir, h, notes)
	} else if werr = os.MkdirAll(dir, 0o755); werr == nil {
		werr = h.WriteFile(filepath.Join(dir, "history.json"))
		if werr == nil {
			werr = os.WriteFile(filepath.Join(dir, "notes.txt"), []byte(notes), 0o644)
		}
	}
	for _, m := range c.Members {
		if werr == nil {
			werr = os.WriteFile(filepath.Join(dir, m.Name+".log"), []byte(m.LogText()), 0o644)
		}
	}
	shown := problems[:min(len(problems), 30)]
	t.Errorf("round %d FAILED (seed %d, replay with KVORUM_ROBUSTNESS_SEED=%d)\nfault schedule:\n%s\n%d problem(s):\n%s\nhistory, revision history and linearizability visualization in %s (write error: %v)",
		round, seed, seed, in.Schedule(), len(problems), strings.Join(shown, "\n"), dir, werr)
}

// readState reads the key space with a linearizable range, retrying for a
// while (the cluster may just have recovered).
func readState(cli *clientv3.Client) (robustness.State, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp := execute(ctx, cli, robustness.Request{Kind: robustness.Range, Key: keyPrefix, End: keyEnd})
		cancel()
		if !resp.Unknown {
			return stateOf(resp), nil
		}
		if time.Now().After(deadline) {
			return robustness.State{}, fmt.Errorf("linearizable range: %s", resp.Err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func stateOf(resp robustness.Response) robustness.State {
	s := robustness.State{Rev: resp.Rev, KVs: map[string]robustness.KV{}}
	for _, kv := range resp.KVs {
		s.KVs[kv.Key] = kv
	}
	return s
}

// readMemberState reads m's own key space (serializable).
func readMemberState(ctx context.Context, c *cluster.Cluster, m *cluster.Member) (robustness.State, error) {
	cli, err := c.Client(m)
	if err != nil {
		return robustness.State{}, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp := execute(ctx, cli, robustness.Request{Kind: robustness.Range, Key: keyPrefix, End: keyEnd}, clientv3.WithSerializable())
	if resp.Unknown {
		return robustness.State{}, fmt.Errorf("serializable range: %s", resp.Err)
	}
	return stateOf(resp), nil
}

// readChanges reads what each revision after init did, from ranges of the
// key space at each revision on the first member (the HashKV check shows
// the others hold the same history). A put is the key whose mod revision
// is the revision; a delete is the key that the revision before had.
func readChanges(ctx context.Context, c *cluster.Cluster, init robustness.State, to int64) ([]robustness.Change, error) {
	cli, err := c.Client(c.Members[0])
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	n := int(to - init.Rev)
	states := make([]robustness.State, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				resp := execute(rctx, cli, robustness.Request{Kind: robustness.Range, Key: keyPrefix, End: keyEnd},
					clientv3.WithSerializable(), clientv3.WithRev(init.Rev+int64(i)+1))
				cancel()
				if resp.Unknown {
					errs[i] = fmt.Errorf("range at revision %d: %s", init.Rev+int64(i)+1, resp.Err)
					continue
				}
				states[i] = stateOf(resp)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	var changes []robustness.Change
	prev := init
	for i, s := range states {
		if errs[i] != nil {
			return nil, errs[i]
		}
		rev := init.Rev + int64(i) + 1
		var found []robustness.Change
		for k, kv := range s.KVs {
			if kv.Mod == rev {
				found = append(found, robustness.Change{Rev: rev, Key: k, Value: kv.Value})
			}
		}
		for k := range prev.KVs {
			if _, ok := s.KVs[k]; !ok {
				found = append(found, robustness.Change{Rev: rev, Key: k, Delete: true})
			}
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("revision %d changed %d keys (%v), want exactly one", rev, len(found), found)
		}
		changes = append(changes, found[0])
		prev = s
	}
	return changes, nil
}
