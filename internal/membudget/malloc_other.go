//go:build !cgo || !linux

package membudget

// Without cgo the engine allocates nothing outside the Go heap; on other
// systems the C allocator is left as it is.
func allocatorTuned() bool { return false }

func glibc() bool { return false }

func trimAllocator() {}
