package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// table is a table printed with -w table: the header's column names and the
// rows, each cell trimmed.
type table struct {
	header []string
	rows   [][]string
}

// parseTable reads etcdctl's tables, drawn with box characters (3.6 and
// later) or ASCII (before).
func parseTable(s string) (table, error) {
	var tb table
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		var sep string
		switch {
		case strings.HasPrefix(line, "│"):
			sep = "│"
		case strings.HasPrefix(line, "|"):
			sep = "|"
		default:
			continue
		}
		cells := strings.Split(strings.Trim(line, sep), sep)
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if tb.header == nil {
			tb.header = cells
			continue
		}
		if len(cells) != len(tb.header) {
			return tb, fmt.Errorf("row %q has %d cells, the header %d", line, len(cells), len(tb.header))
		}
		tb.rows = append(tb.rows, cells)
	}
	if tb.header == nil {
		return tb, fmt.Errorf("no table in %q", s)
	}
	return tb, nil
}

// column returns the cells of the named column.
func (tb table) column(name string) ([]string, error) {
	i := slices.Index(tb.header, name)
	if i < 0 {
		return nil, fmt.Errorf("no column %q in %q", name, tb.header)
	}
	var out []string
	for _, r := range tb.rows {
		out = append(out, r[i])
	}
	return out, nil
}

// ctlTable runs a CLI command that prints a table and parses it.
func ctlTable(t *testing.T, bin string, endpoints []string, args ...string) table {
	t.Helper()
	r := runCtl(t, bin, endpoints, "", args...)
	if r.code != 0 {
		t.Fatalf("%s: %v", strings.Join(args, " "), r)
	}
	tb, err := parseTable(r.stdout)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return tb
}

// statusTable is what `endpoint status -w table` tells about the leader.
type statusTable struct {
	leaders []string // IDs of the rows with IS LEADER true
	terms   []uint64 // RAFT TERM of every row
	ids     []string
}

func readStatusTable(t *testing.T, bin string, endpoints []string, args ...string) statusTable {
	t.Helper()
	tb := ctlTable(t, bin, endpoints, append([]string{"endpoint", "status", "-w", "table"}, args...)...)
	ids, err1 := tb.column("ID")
	leader, err2 := tb.column("IS LEADER")
	terms, err3 := tb.column("RAFT TERM")
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			t.Fatal(err)
		}
	}
	var st statusTable
	st.ids = ids
	for i := range tb.rows {
		if leader[i] == "true" {
			st.leaders = append(st.leaders, ids[i])
		}
		term, err := strconv.ParseUint(terms[i], 10, 64)
		if err != nil {
			t.Fatalf("RAFT TERM %q of %s is not a number", terms[i], ids[i])
		}
		st.terms = append(st.terms, term)
	}
	return st
}

func TestEtcdctlClusterCommandsShowLeaderAndTerm(t *testing.T) {
	etcd := officialEtcd(t)
	c := newCluster(t, kvorumBin, 3)
	type cli struct{ name, bin string }
	clis := []cli{{"etcdctl", etcd.Ctl}, {"kvorumctl", kvorumctlBin}}
	// forEachCLI runs check with each CLI.
	forEachCLI := func(phase string, check func(t *testing.T, bin string)) {
		for _, cl := range clis {
			t.Run(phase+"/"+cl.name, func(t *testing.T) {
				if r := runCtl(t, cl.bin, c.endpoints(), "", "endpoint", "status", "--help"); unsupported(r) || r.code != 0 {
					t.Fatalf("%s has no endpoint status: %v", cl.name, r)
				}
				check(t, cl.bin)
			})
		}
	}

	// Member IDs as the tables print them.
	ids := map[*member]string{}
	kv := c.client()
	for _, m := range c.members {
		st, err := m.Status(context.Background(), kv)
		if err != nil {
			t.Fatal(err)
		}
		ids[m] = fmt.Sprintf("%x", st.GetHeader().GetMemberId())
	}
	leader, term := c.leader()

	forEachCLI("all members up", func(t *testing.T, bin string) {
		st := readStatusTable(t, bin, c.endpoints(c.members[0]), "--cluster")
		if len(st.ids) != 3 {
			t.Errorf("endpoint status --cluster shows %d members, want 3", len(st.ids))
		}
		if len(st.leaders) != 1 || st.leaders[0] != ids[leader] {
			t.Errorf("endpoint status --cluster shows leaders %v, want exactly %s (%s)", st.leaders, ids[leader], leader.Name)
		}
		for i, tm := range st.terms {
			if tm != term {
				t.Errorf("member %s shows raft term %d, the cluster is in term %d", st.ids[i], tm, term)
			}
		}

		tb := ctlTable(t, bin, c.endpoints(), "member", "list", "-w", "table")
		if len(tb.rows) != 3 {
			t.Fatalf("member list shows %d members, want 3: %v", len(tb.rows), tb.rows)
		}
		for _, m := range c.members {
			want := []string{ids[m], "started", m.Name, m.PeerURL, m.ClientURL, "false"}
			if !slices.ContainsFunc(tb.rows, func(r []string) bool { return slices.Equal(r, want) }) {
				t.Errorf("member list has no row %q; header %q, rows %q", want, tb.header, tb.rows)
			}
		}

		r := runCtl(t, bin, c.endpoints(c.members[0]), "", "endpoint", "health", "--cluster")
		if r.code != 0 {
			t.Errorf("endpoint health --cluster: %v", r)
		}
		for _, m := range c.members {
			if !strings.Contains(r.stdout, m.ClientURL+" is healthy: successfully committed proposal") {
				t.Errorf("endpoint health --cluster does not report %s healthy: %v", m.ClientURL, r)
			}
		}
	})

	leader.kill()
	newLeader, newTerm := c.leader()
	rest := c.running()
	forEachCLI("leader killed", func(t *testing.T, bin string) {
		st := readStatusTable(t, bin, c.endpoints(rest...))
		if len(st.leaders) != 1 || st.leaders[0] != ids[newLeader] || st.leaders[0] == ids[leader] {
			t.Errorf("after killing leader %s, endpoint status shows leaders %v, want exactly %s (%s)", ids[leader], st.leaders, ids[newLeader], newLeader.Name)
		}
		for i, tm := range st.terms {
			if tm <= term {
				t.Errorf("after the leader was killed, member %s shows raft term %d, want above %d", st.ids[i], tm, term)
			}
		}
	})

	// The old leader rejoins as a follower and reports the current term.
	leader.start()
	c.waitHealthy(leader)
	forEachCLI("old leader restarted", func(t *testing.T, bin string) {
		st := readStatusTable(t, bin, c.endpoints(), "--cluster")
		if len(st.ids) != 3 || len(st.leaders) != 1 {
			t.Errorf("endpoint status --cluster shows %d members and leaders %v, want 3 members and one leader", len(st.ids), st.leaders)
		}
		for i, tm := range st.terms {
			if tm != newTerm {
				t.Errorf("member %s shows raft term %d, the cluster is in term %d", st.ids[i], tm, newTerm)
			}
		}
	})

	// A follower restarted while nothing is written learns nothing new from
	// the log, and must still report the term it persisted.
	_, newTerm = c.leader()
	follower := leader
	follower.stop()
	follower.start()
	c.waitHealthy(follower)
	forEachCLI("idle follower restarted", func(t *testing.T, bin string) {
		st := readStatusTable(t, bin, c.endpoints(), "--cluster")
		for i, tm := range st.terms {
			if tm != newTerm {
				t.Errorf("member %s shows raft term %d, the cluster is in term %d", st.ids[i], tm, newTerm)
			}
		}
	})
	c.checkLogs()
}
