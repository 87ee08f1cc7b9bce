package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// network is the namespaces and links of a netns-mode cluster (see the
// package doc). Names carry the test process's pid, so namespaces that a
// killed test left behind are recognised and removed by the next run.
type network struct {
	prefix    string // "kvr<pid>c<n>"
	switchNS  string // holds the bridge
	rootVeth  string // the test process's link to the bridge
	memberNS  []string
	memberIPs []string

	mu  sync.Mutex
	cut map[[2]int]bool // member index pairs whose traffic is dropped
}

var networks atomic.Int64

// NetnsAvailable tells why netns mode cannot run here, or nil if it can:
// it needs root, ip and iptables, and creates and removes a probe
// namespace.
func NetnsAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed: %w", bin, err)
		}
	}
	probe := fmt.Sprintf("kvr%dprobe", os.Getpid())
	if err := run("ip", "netns", "add", probe); err != nil {
		return err
	}
	defer run("ip", "netns", "del", probe)
	return run("ip", "netns", "exec", probe, "iptables", "-L", "-n")
}

func newNetwork(members int) (*network, error) {
	removeStale()
	pid := os.Getpid()
	k := networks.Add(1)
	n := &network{
		prefix: fmt.Sprintf("kvr%dc%d", pid, k),
		cut:    map[[2]int]bool{},
	}
	n.switchNS = n.prefix + "-sw"
	n.rootVeth = n.prefix + "r"
	subnet, err := freeSubnet(pid, int(k))
	if err != nil {
		return nil, err
	}
	steps := [][]string{
		{"ip", "netns", "add", n.switchNS},
		{"ip", "-n", n.switchNS, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", n.switchNS, "link", "set", "br0", "up"},
	}
	for i := range members {
		ns := fmt.Sprintf("%s-m%d", n.prefix, i+1)
		ip := fmt.Sprintf("%s.%d", subnet, i+1)
		n.memberNS = append(n.memberNS, ns)
		n.memberIPs = append(n.memberIPs, ip)
		port := fmt.Sprintf("p%d", i+1)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", n.switchNS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "-n", n.switchNS, "link", "set", port, "master", "br0", "up"},
			[]string{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
		)
	}
	steps = append(steps,
		[]string{"ip", "link", "add", n.rootVeth, "type", "veth", "peer", "name", "uplink", "netns", n.switchNS},
		[]string{"ip", "-n", n.switchNS, "link", "set", "uplink", "master", "br0", "up"},
		[]string{"ip", "addr", "add", subnet + ".254/24", "dev", n.rootVeth},
		[]string{"ip", "link", "set", n.rootVeth, "up"},
	)
	for _, s := range steps {
		if err := run(s...); err != nil {
			n.close()
			return nil, err
		}
	}
	return n, nil
}

// freeSubnet picks a 10.213.X.0/24 that no address of this host uses.
func freeSubnet(pid, k int) (string, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return "", fmt.Errorf("ip addr show: %w", err)
	}
	for i := range 250 {
		subnet := fmt.Sprintf("10.213.%d", (pid+7*k+i)%250+1)
		if !bytes.Contains(out, []byte(" "+subnet+".")) {
			return subnet, nil
		}
	}
	return "", errors.New("no free subnet in 10.213.0.0/16")
}

func (n *network) close() {
	for _, ns := range append([]string{n.switchNS}, n.memberNS...) {
		run("ip", "netns", "del", ns)
	}
	// The root veth goes with its peer in the switch namespace.
}

// removeStale removes the namespaces of test processes that are gone.
func removeStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "kvr")
		if !ok {
			continue
		}
		digits := rest[:len(rest)-len(strings.TrimLeft(rest, "0123456789"))]
		pid, err := strconv.Atoi(digits)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		run("ip", "netns", "del", name)
	}
}

// setCut makes the set of dropped member pairs exactly cut: traffic
// between the two members of each pair is dropped in both directions.
func (n *network) setCut(cut [][2]int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	want := map[[2]int]bool{}
	for _, p := range cut {
		a, b := min(p[0], p[1]), max(p[0], p[1])
		want[[2]int{a, b}] = true
	}
	for i, ns := range n.memberNS {
		if err := run("ip", "netns", "exec", ns, "iptables", "-F"); err != nil {
			return err
		}
		for j, ip := range n.memberIPs {
			if !want[[2]int{min(i, j), max(i, j)}] || i == j {
				continue
			}
			if err := run("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", ip, "-j", "DROP"); err != nil {
				return err
			}
			if err := run("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-d", ip, "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	n.cut = want
	return nil
}

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Partition drops all traffic between members of different groups (a
// member in no group keeps its links to everyone). It needs netns mode.
func (c *Cluster) Partition(groups ...[]*Member) error {
	if c.net == nil {
		return errors.New("partitions need netns mode")
	}
	group := map[*Member]int{}
	for g, ms := range groups {
		for _, m := range ms {
			group[m] = g + 1
		}
	}
	var cut [][2]int
	for i, a := range c.Members {
		for j, b := range c.Members {
			if i < j && group[a] != 0 && group[b] != 0 && group[a] != group[b] {
				cut = append(cut, [2]int{i, j})
			}
		}
	}
	return c.net.setCut(cut)
}

// Cut drops the traffic between each given pair of members.
func (c *Cluster) Cut(pairs ...[2]*Member) error {
	if c.net == nil {
		return errors.New("partitions need netns mode")
	}
	index := map[*Member]int{}
	for i, m := range c.Members {
		index[m] = i
	}
	var cut [][2]int
	for _, p := range pairs {
		cut = append(cut, [2]int{index[p[0]], index[p[1]]})
	}
	return c.net.setCut(cut)
}

// Heal restores every link between members.
func (c *Cluster) Heal() error {
	if c.net == nil {
		return nil
	}
	return c.net.setCut(nil)
}

// BringBack undoes every fault: it resumes paused members, starts stopped
// ones from their data dirs and heals the network. It returns the members
// that failed to start, joined.
func (c *Cluster) BringBack() error {
	var errs []error
	for _, m := range c.Members {
		if m.Paused() {
			m.Resume()
		}
		if !m.Running() {
			errs = append(errs, m.Start())
		}
	}
	c.Heal()
	return errors.Join(errs...)
}

// Netns tells whether the cluster runs in network namespaces.
func (c *Cluster) Netns() bool { return c.net != nil }
