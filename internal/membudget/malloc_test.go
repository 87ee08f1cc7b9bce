package membudget

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The settings must be in place when the program loads: set later, the
// arenas glibc made for the threads started before stay (see malloc.go).
func TestAllocatorIsTunedWhenTheProgramLoads(t *testing.T) {
	for _, v := range []string{"MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} {
		if os.Getenv(v) != "" {
			t.Skipf("%s is set in the environment, so the allocator is the operator's", v)
		}
	}
	if want := engineOutsideGoHeap && glibc(); allocatorTuned() != want {
		t.Fatalf("allocator tuned = %v, want %v (engine outside the Go heap %v, glibc %v)", allocatorTuned(), want, engineOutsideGoHeap, glibc())
	}
}

func TestOperatorsAllocatorSettingsWin(t *testing.T) {
	if os.Getenv("KVORUM_MALLOC_CHILD") != "" {
		// The child: report what the constructor decided under the
		// environment the parent gave it.
		if allocatorTuned() {
			t.Fatal("tuned")
		}
		return
	}
	if !glibc() || !engineOutsideGoHeap {
		t.Skip("the allocator is tuned only with cgo on glibc")
	}
	for _, v := range []string{"MALLOC_ARENA_MAX=4", "MALLOC_MMAP_THRESHOLD_=262144", "MALLOC_TRIM_THRESHOLD_=1048576"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOperatorsAllocatorSettingsWin$", "-test.count=1")
		cmd.Env = append(os.Environ(), "KVORUM_MALLOC_CHILD=1", v)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("with %s the allocator was still tuned (%v): %s", v, err, strings.TrimSpace(string(out)))
		}
	}
}
