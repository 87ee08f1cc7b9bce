//go:build cgo

package membudget

// The storage engine allocates its block cache and memtables with C's
// allocator when cgo is available (pebble/internal/manual), outside the Go
// heap.
const engineOutsideGoHeap = true
