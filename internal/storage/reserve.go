package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// reserveFile is the file in a data dir that holds the disk reserve.
const reserveFile = "member/disk-reserve"

// diskAlarmFile records that this member last raised its NOSPACE alarm
// because of its disk (not its quota), so that a restarted member still
// clears that alarm once space returns. It stays after the alarm is
// cleared, until a raise for the quota removes it.
const diskAlarmFile = "member/nospace-raised-for-disk"

// DefaultReserveBytes is the disk reserve when none is configured: 64 MiB,
// but at most a twentieth of the file system, so a small disk is not
// mostly reserve.
const DefaultReserveBytes = 64 << 20

// Reserve is space a member holds on its data dir's file system, in a
// file of its own, so that it is not the one that finds the disk full.
// When the space left beside it runs low (someone else filled the disk),
// the member refuses what grows the store and releases the reserve: Pebble
// then still has room for what the member must write anyway (raft entries
// of deletes and keep-alives, flushes, its manifest), since an engine that
// cannot write stops the process. Once space returns, the reserve is taken
// again.
type Reserve struct {
	path      string
	alarmPath string
	Size      int64 // bytes
}

// NewReserve is the reserve for dataDir. size 0 means the default; a
// negative size means no reserve (Size is then 0).
func NewReserve(dataDir string, size int64) (*Reserve, error) {
	r := &Reserve{path: filepath.Join(dataDir, reserveFile), alarmPath: filepath.Join(dataDir, diskAlarmFile)}
	switch {
	case size < 0:
		return r, nil
	case size > 0:
		r.Size = size
		return r, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dataDir, &st); err != nil {
		return nil, fmt.Errorf("disk reserve: measure the file system of %s: %w", dataDir, err)
	}
	r.Size = min(DefaultReserveBytes, int64(st.Blocks)*int64(st.Bsize)/20)
	return r, nil
}

// Free is the space left on the file system for an unprivileged writer,
// not counting the reserve.
func (r *Reserve) Free() (int64, error) { return FreeBytes(filepath.Dir(r.path)) }

// FreeBytes is the space left for an unprivileged writer on the file
// system that holds dir.
func FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// SameFileSystem tells whether a and b are on one file system. A path
// that does not exist yet is taken to be where its nearest existing
// ancestor is, as what creates it will put it there.
func SameFileSystem(a, b string) (bool, error) {
	da, err := deviceOf(a)
	if err != nil {
		return false, err
	}
	db, err := deviceOf(b)
	if err != nil {
		return false, err
	}
	return da == db, nil
}

func deviceOf(path string) (uint64, error) {
	path = filepath.Clean(path)
	for {
		var st unix.Stat_t
		err := unix.Stat(path, &st)
		if err == nil {
			return st.Dev, nil
		}
		parent := filepath.Dir(path)
		if !errors.Is(err, unix.ENOENT) || parent == path {
			return 0, fmt.Errorf("file system of %s: %w", path, err)
		}
		path = parent
	}
}

// MemberUse is the disk space the member's own files take (everything
// under the data dir's member directory but the reserve): the blocks
// allocated to them, which counts what the engine has preallocated and
// what a flush is still writing, as the file system's free space does.
func (r *Reserve) MemberUse() (int64, error) {
	var total int64
	err := filepath.WalkDir(filepath.Dir(r.path), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted meanwhile (the engine removes obsolete files)
			}
			return err
		}
		if d.IsDir() || path == r.path {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		total += allocatedBytes(fi)
		return nil
	})
	return total, err
}

// Held reports whether the reserve's file holds its full size.
func (r *Reserve) Held() bool {
	fi, err := os.Stat(r.path)
	return err == nil && fi.Size() >= r.Size
}

// Take allocates the reserve's space (again). A partly written file is
// removed, so a failed Take holds nothing.
func (r *Reserve) Take() error {
	if r.Size == 0 || r.Held() {
		return nil
	}
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("disk reserve: %w", err)
	}
	err = allocate(f, r.Size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(r.path)
		return fmt.Errorf("disk reserve: take %d bytes in %s: %w", r.Size, r.path, err)
	}
	return nil
}

// writeZeros gives f size bytes of disk the portable way.
func writeZeros(f *os.File, size int64) error {
	_, err := io.CopyN(f, zeros{}, size)
	return err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Release gives the reserve's space back to the file system.
func (r *Reserve) Release() error {
	err := os.Remove(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// DiskAlarm reports whether the member's NOSPACE alarm was raised for its
// disk, as MarkDiskAlarm last recorded it (before a restart too).
func (r *Reserve) DiskAlarm() bool {
	_, err := os.Stat(r.alarmPath)
	return err == nil
}

// MarkDiskAlarm records whether the member's NOSPACE alarm was raised for
// its disk. The record is an empty file: it needs no free block.
func (r *Reserve) MarkDiskAlarm(raised bool) error {
	if !raised {
		err := os.Remove(r.alarmPath)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	f, err := os.OpenFile(r.alarmPath, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}
