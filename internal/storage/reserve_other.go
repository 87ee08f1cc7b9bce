//go:build !linux

package storage

import (
	"io/fs"
	"os"
)

// allocate gives f size bytes of disk by writing zeros.
func allocate(f *os.File, size int64) error { return writeZeros(f, size) }

// allocatedBytes is the disk space allocated to a file, taken to be its
// size.
func allocatedBytes(fi fs.FileInfo) int64 { return fi.Size() }
