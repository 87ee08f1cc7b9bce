package main

import "syscall"

// memberProcAttr puts a local cluster's member in a process group of its
// own, so that Ctrl-C reaches only local-cluster, which stops the members
// in order, and has the kernel stop the member if local-cluster dies
// without doing so.
func memberProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
