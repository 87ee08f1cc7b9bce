package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/kvorum/kvorum/internal/testbin"
)

var browserOnce struct {
	sync.Once
	path string
	err  error
}

// browser returns a headless-capable Chromium, installing it on first use
// (see testbin.Chromium). Without one the test is skipped, or fails when
// KVORUM_E2E_REQUIRE_BROWSER=1 (set it in CI so a broken install is
// noticed); an install that was attempted and failed always fails.
func browser(t *testing.T) string {
	t.Helper()
	browserOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		browserOnce.path, browserOnce.err = testbin.Chromium(ctx, func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
		})
	})
	if err := browserOnce.err; err != nil {
		if errors.Is(err, testbin.ErrNoBrowser) && os.Getenv("KVORUM_E2E_REQUIRE_BROWSER") != "1" {
			t.Skipf("browser test skipped: %v", err)
		}
		t.Fatal(err)
	}
	return browserOnce.path
}

// statusDOM is what the test reads from the status page as the browser
// rendered it.
type statusDOM struct {
	leaderName, leaderID string
	term                 uint64
	rows                 map[string]map[string]string // member name -> data-* attributes of its row
}

// loadStatusPage loads url in headless Chromium and reads the DOM it built.
func loadStatusPage(t *testing.T, chromium, url string) (statusDOM, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dom, err := testbin.DumpDOM(ctx, chromium, url)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(dom))
	if err != nil {
		t.Fatalf("parse the DOM of %s: %v\n%s", url, err, dom)
	}
	st := statusDOM{rows: make(map[string]map[string]string)}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			a := make(map[string]string)
			for _, at := range n.Attr {
				a[at.Key] = at.Val
			}
			switch {
			case a["id"] == "leader":
				st.leaderName, st.leaderID = a["data-leader-name"], a["data-leader-id"]
			case a["id"] == "raft-term":
				st.term, _ = strconv.ParseUint(a["data-term"], 10, 64)
			case n.Data == "tr" && a["class"] == "member":
				st.rows[a["data-name"]] = a
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return st, dom
}

// TestStatusPageInBrowserFollowsLeaderChange loads a member's /status in a
// real headless browser: it shows the leader the cluster reports through
// clientv3, and after the leader's process is killed, a survivor's page
// shows the new leader and a higher term, and the old leader as
// unreachable.
func TestStatusPageInBrowserFollowsLeaderChange(t *testing.T) {
	chromium := browser(t)
	c := newCluster(t, kvorumBin, 3)
	leader, term := c.leader()
	var watcher *member // a member that survives the leader's kill
	for _, m := range c.members {
		if m != leader {
			watcher = m
			break
		}
	}
	// refresh=0: one load per check, no reload while the browser reads it.
	url := watcher.ClientURL + "/status?refresh=0"

	st, dom := loadStatusPage(t, chromium, url)
	if st.leaderName != leader.Name || st.term != term {
		t.Fatalf("%s shows leader %q term %d, the cluster reports %s term %d; DOM:\n%s", url, st.leaderName, st.term, leader.Name, term, dom)
	}
	if len(st.rows) != 3 {
		t.Fatalf("%s lists members %v, want 3; DOM:\n%s", url, st.rows, dom)
	}
	if role := st.rows[leader.Name]["data-role"]; role != "leader" {
		t.Errorf("%s: %s's row has role %q, want leader", url, leader.Name, role)
	}

	leader.kill()
	newLeader, newTerm := c.leader()
	if newLeader == leader {
		t.Fatalf("%s still reported as leader after its process was killed", leader.Name)
	}
	// The page reflects the member's state when loaded; the survivors
	// agree on the new leader already, but the watcher's transport may
	// take a moment to mark the killed member's stream as down.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, dom = loadStatusPage(t, chromium, url)
		if st.leaderName == newLeader.Name && st.term >= newTerm && st.rows[leader.Name]["data-reachable"] == "no" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the leader was killed, %s shows leader %q term %d, %s reachable %q; want leader %s, term %d or later (> %d), unreachable; DOM:\n%s",
				url, st.leaderName, st.term, leader.Name, st.rows[leader.Name]["data-reachable"], newLeader.Name, newTerm, term, dom)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.term <= term {
		t.Errorf("%s shows term %d after a leader change, was %d", url, st.term, term)
	}
	if role := st.rows[newLeader.Name]["data-role"]; role != "leader" {
		t.Errorf("%s: %s's row has role %q, want leader", url, newLeader.Name, role)
	}
	c.checkLogs()
}
