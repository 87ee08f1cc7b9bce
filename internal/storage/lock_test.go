package storage

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A data dir another process has open is refused with a message that says
// so, not as a corrupt or foreign data dir. The second process is this test
// binary again, which tries to open the engine and prints the error.
func TestDataDirInUseIsNamedAsSuch(t *testing.T) {
	if dir := os.Getenv("KVORUM_TEST_OPEN_DIR"); dir != "" {
		if e, err := Open(dir); err != nil {
			fmt.Println("open error:", err)
		} else {
			e.Close()
			fmt.Println("opened")
		}
		return
	}
	dir := t.TempDir()
	e, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDataDirInUseIsNamedAsSuch$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KVORUM_TEST_OPEN_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "open error:") {
		t.Fatalf("a second process opened a data dir that is in use:\n%s", got)
	}
	if !strings.Contains(got, "is in use by another process") || strings.Contains(got, "corrupt") {
		t.Fatalf("error for a data dir in use:\n%s", got)
	}
}
