package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kvorum/kvorum/internal/snapshot"
	"github.com/kvorum/kvorum/internal/testcluster"
)

var backupName = regexp.MustCompile(`^kvorum-\d{8}T\d{6}\.\d{3}Z-rev(\d+)\.db$`)

func backupsSaved(c *testcluster.Cluster) int {
	n := 0
	for _, m := range c.Members {
		n += m.LogCount("scheduled backup saved")
	}
	return n
}

// The leader saves a backup every --backup-interval into --backup-dir;
// each is a verified etcd snapshot file that restores, newer ones hold
// later revisions, and only --backup-retention of them stay.
func TestScheduledBackupsAreVerifiedRotatedAndRestore(t *testing.T) {
	dir := t.TempDir()
	c := testcluster.Start(t, testcluster.Options{Args: []string{
		"--backup-dir", dir, "--backup-interval", "500ms", "--backup-retention", "2"}})
	leader, _ := c.WaitLeader(waitTimeout)
	cli := leader.Client()
	for i := range 10 {
		mustPut(t, cli, fmt.Sprintf("k%d", i), "v")
	}
	// Keep writing (to the same ten keys) until four backups were saved
	// after the ten keys existed.
	before := backupsSaved(c)
	i := 0
	waitFor(t, 6*waitTimeout, "four scheduled backups", func() error {
		mustPut(t, cli, fmt.Sprintf("k%d", i%10), strconv.Itoa(i))
		i++
		if n := backupsSaved(c) - before; n < 4 {
			return fmt.Errorf("%d saved", n)
		}
		return nil
	})
	c.StopAll()

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("backup dir holds %d files, want the 2 of --backup-retention: %v", len(entries), entries)
	}
	var prevRev int64
	for _, e := range entries {
		m := backupName.FindStringSubmatch(e.Name())
		if m == nil {
			t.Fatalf("unexpected file %s in the backup dir", e.Name())
		}
		nameRev, _ := strconv.ParseInt(m[1], 10, 64)
		path := filepath.Join(dir, e.Name())
		f, err := snapshot.Open(path, false)
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Status()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if st.TotalKey != 10 || st.Revision > nameRev || st.Revision < prevRev {
			t.Errorf("%s: %d keys at revision %d; want 10 keys, a revision at most the name's and no older than the older backup's %d",
				e.Name(), st.TotalKey, st.Revision, prevRev)
		}
		prevRev = st.Revision
		res, err := snapshot.Restore(snapshot.RestoreConfig{SnapshotPath: path, DataDir: filepath.Join(t.TempDir(), "restored"),
			Name: "r1", InitialCluster: "r1=http://127.0.0.1:2380", ClusterToken: "restored", PeerURLs: []string{"http://127.0.0.1:2380"}})
		if err != nil {
			t.Fatalf("restore %s: %v", e.Name(), err)
		}
		if res.Keys != 10 || res.Revision != st.Revision {
			t.Errorf("restore %s: %d keys at revision %d, want 10 at %d", e.Name(), res.Keys, res.Revision, st.Revision)
		}
	}
}

// A backup dir that cannot be written to makes each scheduled backup fail
// with a warning and a count in kvorum_backup_failures_total, and nothing
// is created.
func TestBackupIntoUnwritableDirFailsAndCreatesNothing(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "missing") // never created by the member
	c := testcluster.Start(t, testcluster.Options{Size: 1, Args: []string{
		"--backup-dir", dir, "--backup-interval", "500ms"}})
	m := c.Members[0]
	c.WaitLeader(waitTimeout)
	mustPut(t, m.Client(), "k", "v")
	waitFor(t, 3*waitTimeout, "a failed backup", func() error {
		if m.LogCount("scheduled backup failed; older backups kept") == 0 {
			return fmt.Errorf("no failure logged")
		}
		return nil
	})
	failures := scrapeValue(t, m.ClientURL, "kvorum_backup_failures_total")
	c.StopAll()
	if failures < 1 {
		t.Errorf("kvorum_backup_failures_total = %v after a failed backup", failures)
	}
	if m.LogCount("scheduled backup saved") != 0 {
		t.Error("a backup was reported saved into a missing dir")
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("the failed backups left %v", entries)
	}
}

// scrapeValue reads one unlabelled series from a member's /metrics.
func scrapeValue(t *testing.T, clientURL, name string) float64 {
	t.Helper()
	v, ok := scrapeLookup(t, clientURL, name)
	if !ok {
		t.Fatalf("%s is not exported", name)
	}
	return v
}

// scrapeLookup reads one unlabelled series from a member's /metrics, and
// whether it is there.
func scrapeLookup(t *testing.T, clientURL, name string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(clientURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f, true
		}
	}
	return 0, false
}
