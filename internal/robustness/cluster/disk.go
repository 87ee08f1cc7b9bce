package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ballast is the file that fills a member's disk; Kvorum ignores unknown
// files in its data dir once the engine exists there.
const ballast = "robustness-ballast"

func (m *Member) mountDisk(mb int) error {
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return err
	}
	if err := run("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mb), "tmpfs", m.DataDir); err != nil {
		return err
	}
	m.mounted = true
	return nil
}

// FillDisk fills the member's tmpfs data dir until no byte is left, and
// returns how many bytes it wrote. It needs Config.DiskMB.
func (m *Member) FillDisk() (int64, error) { return m.FillDiskPaced(0, 0) }

// FillDiskPaced is FillDisk by a slower writer: once less than slowBelow
// bytes are free, it waits pause after each MiB, as a program writing a
// log does.
func (m *Member) FillDiskPaced(slowBelow int64, pause time.Duration) (int64, error) {
	if !m.mounted {
		return 0, errors.New("FillDisk needs a cluster started with DiskMB")
	}
	f, err := os.OpenFile(filepath.Join(m.DataDir, ballast), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	var n int64
	for len(chunk) > 0 {
		w, err := f.Write(chunk)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			chunk = chunk[:len(chunk)/2] // fill the last pages too
			continue
		}
		if err != nil {
			return n, err
		}
		if pause > 0 {
			var st syscall.Statfs_t
			if err := syscall.Statfs(m.DataDir, &st); err != nil {
				return n, err
			}
			if int64(st.Bavail)*st.Bsize < slowBelow {
				time.Sleep(pause)
			}
		}
	}
	return n, nil
}

// FreeDisk removes what FillDisk wrote.
func (m *Member) FreeDisk() error {
	err := os.Remove(filepath.Join(m.DataDir, ballast))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
