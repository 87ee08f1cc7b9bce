package server

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func writeBytes(b string) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		n, err := io.WriteString(w, b)
		return int64(n), err
	}
}

// A backup that fails to write or to verify leaves the dir as it was: no
// temporary file, the good backups untouched. A verified one gets its
// final name and the oldest beyond the retention go, other files stay.
func TestSaveVerifiedKeepsGoodBackupsOnFailure(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	ok := func(string) error { return nil }
	var saved []string
	for i := range 3 {
		b, err := saveVerified(dir, int64(10+i), t0.Add(time.Duration(i)*time.Second), writeBytes("good"), ok)
		if err != nil {
			t.Fatal(err)
		}
		saved = append(saved, filepath.Base(b.Path))
	}
	if saved[0] != "kvorum-20260102T030405.006Z-rev10.db" {
		t.Errorf("backup named %s", saved[0])
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := dirNames(t, dir)

	unverified := errors.New("hash differs")
	if _, err := saveVerified(dir, 20, t0.Add(time.Hour), writeBytes("bad"), func(p string) error {
		if b, _ := os.ReadFile(p); string(b) != "bad" {
			t.Errorf("verify saw %q, want the bytes written", b)
		}
		return unverified
	}); !errors.Is(err, unverified) {
		t.Fatalf("unverifiable backup: %v", err)
	}
	if _, err := saveVerified(dir, 21, t0.Add(time.Hour), func(io.Writer) (int64, error) { return 0, errors.New("disk full") }, ok); err == nil {
		t.Fatal("failed write reported saved")
	}
	// Same name as an existing backup: refused, the existing one kept.
	if _, err := saveVerified(dir, 10, t0, writeBytes("other"), ok); err == nil {
		t.Fatal("a backup replaced an existing one")
	}
	if after := dirNames(t, dir); !slices.Equal(after, before) {
		t.Fatalf("failed backups changed the dir: %v, was %v", after, before)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, saved[0])); string(b) != "good" {
		t.Errorf("existing backup now holds %q", b)
	}

	if err := PruneBackups(dir, 2); err != nil {
		t.Fatal(err)
	}
	if got, want := dirNames(t, dir), []string{saved[1], saved[2], "notes.txt"}; !slices.Equal(got, want) {
		t.Errorf("after pruning to 2: %v, want %v", got, want)
	}
	if err := PruneBackups(dir, 0); err != nil || len(dirNames(t, dir)) != 3 {
		t.Errorf("retention 0 deleted backups (%v)", err)
	}
}

// Temporary files a crash left behind go; a fresh one (a backup being
// written) stays.
func TestRemoveStaleBackupTemps(t *testing.T) {
	dir := t.TempDir()
	old, fresh := filepath.Join(dir, backupTempPrefix+"1"), filepath.Join(dir, backupTempPrefix+"2")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * staleBackupTemp)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	removeStaleBackupTemps(dir, time.Now().Add(-staleBackupTemp))
	if got := dirNames(t, dir); !slices.Equal(got, []string{filepath.Base(fresh)}) {
		t.Errorf("left %v, want only the fresh temporary file", got)
	}
}
