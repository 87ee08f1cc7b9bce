package e2e

import "syscall"

// childAttr makes the kernel kill a server process if the test binary dies
// without cleaning up (a panic on -timeout), so no member outlives a run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
