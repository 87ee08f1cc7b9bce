//go:build cgo && linux

package membudget

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>

static int kvorum_malloc_tuned;

// Runs when the program is loaded, before the Go runtime starts its
// threads: glibc gives each new thread that allocates an arena of its own
// until it first counts the arenas, so a limit set later leaves the
// arenas made before it.
__attribute__((constructor)) static void kvorum_malloc_tune(void) {
	if (getenv("MALLOC_ARENA_MAX") != NULL || getenv("MALLOC_MMAP_THRESHOLD_") != NULL ||
	    getenv("MALLOC_TRIM_THRESHOLD_") != NULL) {
		return; // the operator tuned the allocator
	}
	kvorum_malloc_tuned = mallopt(M_ARENA_MAX, 2) && mallopt(M_MMAP_THRESHOLD, 1 << 20) &&
		mallopt(M_TRIM_THRESHOLD, 64 << 20);
}
static int kvorum_malloc_trim(void) { return malloc_trim(0); }
static int kvorum_malloc_was_tuned(void) { return kvorum_malloc_tuned; }
static int kvorum_glibc(void) { return 1; }
#else
static int kvorum_malloc_trim(void) { return 0; }
static int kvorum_malloc_was_tuned(void) { return 0; }
static int kvorum_glibc(void) { return 0; }
#endif
*/
import "C"

func allocatorTuned() bool { return C.kvorum_malloc_was_tuned() == 1 }

// glibc reports whether the C library is glibc.
func glibc() bool { return C.kvorum_glibc() == 1 }

func trimAllocator() { C.kvorum_malloc_trim() }
