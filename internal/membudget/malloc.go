package membudget

import "time"

// Built with cgo, the engine's block cache and memtables come from C's
// allocator. glibc's defaults keep much of what the engine frees: up to
// eight arenas a core, each holding on to the free space between the
// cache's blocks, and an mmap threshold that rises to the size of the
// largest block freed, after which a new 16 MiB memtable is carved out of
// an arena and zeroed there, all of it resident at once. A member loaded
// with 1M keys and then read from held 175 MB in C allocations for the
// 80 MB of its cache and memtables, and its RSS went past its budget
// (docs/benchmarks.md). So when the program loads (malloc_glibc.go) it
// sets glibc to 2 arenas (M_ARENA_MAX), a fixed mmap threshold of 1 MiB
// (M_MMAP_THRESHOLD: each memtable gets its own mapping, returned whole
// when it is freed) and a trim threshold of 64 MiB (M_TRIM_THRESHOLD:
// frees do not shrink an arena each time; TrimAllocator does it now and
// then, which in the standard put run cost CPU otherwise), unless the
// operator set MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ or
// MALLOC_TRIM_THRESHOLD_: then glibc is left to them.
const trimEvery = 10 * time.Second

// TrimAllocator, if the C allocator was tuned as above, returns the memory
// freed inside its arenas to the operating system every few seconds, for
// the life of the process. It reports whether the allocator was tuned:
// not without cgo, on a C library other than glibc, or when the operator
// tuned it. Call it once.
func TrimAllocator() bool {
	if !allocatorTuned() {
		return false
	}
	go func() {
		for range time.Tick(trimEvery) {
			trimAllocator()
		}
	}()
	return true
}
