package ctl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/snapshot"
	"github.com/kvorum/kvorum/internal/storage"
)

// emptySnapshot is the snapshot file of an empty member.
func emptySnapshot(t *testing.T) []byte {
	t.Helper()
	eng, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if err := eng.DB.Set(storage.AppliedIndexKey, storage.PutUint64(3), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "db")
	if err := snapshot.Build(path, eng.DB, snapshot.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := snapshot.WriteTo(&b, path); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSnapshotStatusPrintsAsEtcdutl(t *testing.T) {
	data := emptySnapshot(t)
	path := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// An empty member: revision 0 (no key record), no keys, etcd's
	// minimal database size for its buckets.
	code, out, errOut := run(t, "", nil, "snapshot", "status", path)
	if code != 0 || !strings.HasSuffix(out, ", 0, 0, 20 kB, 3.6.0\n") || errOut != "" {
		t.Fatalf("snapshot status: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = run(t, "", nil, "snapshot", "status", path, "-w", "json")
	if code != 0 || !strings.Contains(out, `"revision":0,"totalKey":0,"totalSize":20480,"version":"3.6.0"}`) {
		t.Fatalf("snapshot status -w json: code %d, stdout %q", code, out)
	}
}

// A restore that fails says why in one line, exits 1 and leaves no data
// dir behind.
func TestSnapshotRestoreRefusesDamagedFilesInOneLine(t *testing.T) {
	data := emptySnapshot(t)
	flipped := append([]byte(nil), data...)
	flipped[5000] ^= 0xff
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		data  []byte
		extra []string
		want  string
	}{
		{"wrong checksum", flipped, nil, "has a wrong sha256 checksum"},
		{"truncated", data[:len(data)-5000], nil, "is truncated"},
		{"not a snapshot", []byte(strings.Repeat("not a database\n", 1000)), nil, "is not an etcd snapshot"},
		{"no checksum", data[:len(data)-32], nil, "has no sha256 checksum"},
		{"bump without mark", data, []string{"--bump-revision", "10"}, "--mark-compacted required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			dataDir := filepath.Join(dir, "restored")
			code, out, errOut := run(t, "", nil, append([]string{"snapshot", "restore", path, "--data-dir", dataDir}, tc.extra...)...)
			if code == 0 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("code %d, stdout %q, stderr %q; want one error line containing %q", code, out, errOut, tc.want)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Fatalf("refused restore left %s (%v)", dataDir, err)
			}
		})
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 5 {
		t.Fatalf("%s holds %d entries after the refused restores, want only the 5 inputs", dir, len(ents))
	}
}
