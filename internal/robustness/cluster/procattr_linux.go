package cluster

import "syscall"

// ChildAttr is the SysProcAttr of every server process a Cluster starts,
// exported for tests that run other programs beside it: the kernel kills
// the child with SIGKILL when the test process dies without cleaning up (a
// panic on -timeout), so no process outlives a run.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
