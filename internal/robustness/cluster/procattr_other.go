//go:build !linux

package cluster

import "syscall"

// ChildAttr has nothing to add where a parent's death cannot be signalled
// to its children; Close, or the caller, must kill what was started.
func ChildAttr() *syscall.SysProcAttr { return nil }
