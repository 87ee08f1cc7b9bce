//go:build !linux

package storage

import "os"

// allocate gives f size bytes of disk by writing zeros.
func allocate(f *os.File, size int64) error { return writeZeros(f, size) }
