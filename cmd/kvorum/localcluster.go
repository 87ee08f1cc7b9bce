package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// layoutFile, in the local cluster's directory, records the members' names
// and ports, so that a later run restarts the same cluster from its data.
const layoutFile = "local-cluster.json"

// layout is what layoutFile holds.
type layout struct {
	Token   string        `json:"token"`
	Members []localMember `json:"members"`
}

type localMember struct {
	Name       string `json:"name"`
	ClientPort int    `json:"client-port"`
	PeerPort   int    `json:"peer-port"`
}

func (m localMember) clientURL() string { return fmt.Sprintf("http://127.0.0.1:%d", m.ClientPort) }
func (m localMember) peerURL() string   { return fmt.Sprintf("http://127.0.0.1:%d", m.PeerPort) }

const localClusterUsage = `Usage: kvorum local-cluster [--members N] [--dir DIR] [--wipe] [-- member flags...]

Starts a cluster of N members of this kvorum binary on free loopback ports,
with data dirs and logs under DIR, and prints the endpoints. Ctrl-C (or
SIGTERM) stops every member. Running it again with the same DIR restarts
the same cluster from its data. Flags after -- are given to every member.

`

// runLocalCluster runs `kvorum local-cluster`.
func runLocalCluster(args []string) int {
	fs := pflag.NewFlagSet("local-cluster", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	n := fs.Int("members", 3, "Number of members.")
	dir := fs.String("dir", "local-cluster.kvorum", "Directory for the members' data dirs, logs and "+layoutFile+".")
	wipe := fs.Bool("wipe", false, "Delete DIR once the members have stopped (by default the data is kept).")
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Print(localClusterUsage + fs.FlagUsages())
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvorum local-cluster: %v (see kvorum local-cluster --help)\n", err)
		return 1
	}
	var memberFlags []string
	if at := fs.ArgsLenAtDash(); at >= 0 {
		memberFlags = fs.Args()[at:]
		if at > 0 {
			fmt.Fprintf(os.Stderr, "kvorum local-cluster: unexpected argument %q; member flags go after --\n", fs.Args()[0])
			return 1
		}
	} else if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "kvorum local-cluster: unexpected argument %q; member flags go after --\n", fs.Arg(0))
		return 1
	}
	if *n < 1 {
		fmt.Fprintf(os.Stderr, "kvorum local-cluster: --members %d: want 1 or more (3 or 5 for a cluster that survives failures)\n", *n)
		return 1
	}
	if err := localCluster(*n, *dir, *wipe, memberFlags); err != nil {
		fmt.Fprintf(os.Stderr, "kvorum local-cluster: %v\n", err)
		return 1
	}
	return 0
}

func localCluster(n int, dir string, wipe bool, memberFlags []string) error {
	// Signals are caught from the start, so a Ctrl-C during start-up stops
	// the members started so far instead of leaving them behind.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	l, err := loadLayout(dir, n)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find this program's path to start the members: %v", err)
	}

	procs := make([]*exec.Cmd, len(l.Members))
	exited := make(chan int, len(l.Members))
	var wg sync.WaitGroup
	stopAll := func() {
		for _, p := range procs {
			if p != nil {
				p.Process.Signal(syscall.SIGTERM)
			}
		}
		// A member hands its leadership away and closes its data dir; one
		// still running after this long is killed.
		t := time.AfterFunc(20*time.Second, func() {
			for _, p := range procs {
				if p != nil {
					p.Process.Kill()
				}
			}
		})
		wg.Wait()
		t.Stop()
		if wipe {
			if err := os.RemoveAll(dir); err != nil {
				fmt.Fprintf(os.Stderr, "kvorum local-cluster: cannot wipe %s: %v\n", dir, err)
			} else {
				fmt.Printf("stopped; removed %s\n", dir)
			}
			return
		}
		fmt.Printf("stopped; data kept in %s (run the same command to start the cluster again, or add --wipe to delete it on stop)\n", dir)
	}

	for i, m := range l.Members {
		cmd, err := startLocalMember(self, dir, l, m, memberFlags)
		if err != nil {
			stopAll()
			return err
		}
		procs[i] = cmd
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd.Wait()
			exited <- i
		}()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	healthy := make(chan error, 1)
	go func() { healthy <- waitLocalHealthy(ctx, l.Members) }()

	var endpoints []string
	for _, m := range l.Members {
		endpoints = append(endpoints, m.clientURL())
	}
	for {
		select {
		case err := <-healthy:
			if err != nil {
				stopAll()
				return err
			}
			fmt.Printf("kvorum local-cluster: %d members running; data and logs in %s\n", len(l.Members), dir)
			for i, m := range l.Members {
				fmt.Printf("  %s  client %s  peer %s  pid %d  log %s\n", m.Name, m.clientURL(), m.peerURL(), procs[i].Process.Pid, filepath.Join(dir, m.Name+".log"))
			}
			fmt.Printf("endpoints: %s\n", strings.Join(endpoints, ","))
			fmt.Printf("kvorumctl --endpoints=%s endpoint status -w table\n", strings.Join(endpoints, ","))
			fmt.Println("Press Ctrl-C to stop.")
		case i := <-exited:
			procs[i] = nil
			m := l.Members[i]
			fmt.Fprintf(os.Stderr, "kvorum local-cluster: member %s exited; stopping the others (see %s)\n", m.Name, filepath.Join(dir, m.Name+".log"))
			cancel()
			stopAll()
			return fmt.Errorf("member %s exited on its own", m.Name)
		case s := <-sigs:
			fmt.Printf("received %v, stopping %d members\n", s, len(l.Members))
			cancel()
			stopAll()
			return nil
		}
	}
}

// loadLayout reads the layout of an existing local cluster in dir, or makes
// one for n members on free ports.
func loadLayout(dir string, n int) (*layout, error) {
	path := filepath.Join(dir, layoutFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var l layout
		if err := json.Unmarshal(b, &l); err != nil || len(l.Members) == 0 {
			return nil, fmt.Errorf("%s is not a local cluster's layout (%v); remove %s to start a new cluster", path, err, dir)
		}
		if len(l.Members) != n {
			return nil, fmt.Errorf("%s holds a cluster of %d members; pass --members %d, or remove %s to start a new cluster", dir, len(l.Members), len(l.Members), dir)
		}
		return &l, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ports, err := freeLoopbackPorts(2 * n)
	if err != nil {
		return nil, err
	}
	l := &layout{Token: fmt.Sprintf("local-cluster-%08x", rand.Uint32())}
	for i := range n {
		l.Members = append(l.Members, localMember{Name: fmt.Sprintf("m%d", i+1), ClientPort: ports[2*i], PeerPort: ports[2*i+1]})
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	b, _ = json.MarshalIndent(l, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	return l, nil
}

// freeLoopbackPorts finds n distinct free ports on 127.0.0.1 in
// 10000-29999, below Linux's ephemeral range, so that outgoing connections
// do not take them before the members bind them, now or on a later run.
func freeLoopbackPorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("found no free ports on 127.0.0.1 in 10000-29999")
		}
		p := 10000 + rand.IntN(20000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	return ports, nil
}

func startLocalMember(self, dir string, l *layout, m localMember, extra []string) (*exec.Cmd, error) {
	var initial []string
	for _, o := range l.Members {
		initial = append(initial, o.Name+"="+o.peerURL())
	}
	args := []string{
		"--name=" + m.Name,
		"--data-dir=" + filepath.Join(dir, m.Name),
		"--listen-client-urls=" + m.clientURL(),
		"--advertise-client-urls=" + m.clientURL(),
		"--listen-peer-urls=" + m.peerURL(),
		"--initial-advertise-peer-urls=" + m.peerURL(),
		"--initial-cluster=" + strings.Join(initial, ","),
		"--initial-cluster-token=" + l.Token,
		"--initial-cluster-state=new",
	}
	args = append(args, extra...)
	logPath := filepath.Join(dir, m.Name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = memberProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start member %s: %v", m.Name, err)
	}
	return cmd, nil
}

// waitLocalHealthy waits until every member answers /health with true.
func waitLocalHealthy(ctx context.Context, ms []localMember) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(time.Minute)
	for _, m := range ms {
		for !localHealthy(hc, m.clientURL()) {
			if time.Now().After(deadline) {
				return fmt.Errorf("member %s at %s is not healthy after a minute; see its log", m.Name, m.clientURL())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func localHealthy(hc *http.Client, url string) bool {
	resp, err := hc.Get(url + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}
