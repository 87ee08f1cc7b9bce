//go:build !cgo

package membudget

// Without cgo the storage engine's block cache and memtables are ordinary
// Go allocations, counted by the Go runtime's memory limit.
const engineOutsideGoHeap = false
