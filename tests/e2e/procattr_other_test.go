//go:build !linux

package e2e

import "syscall"

// childAttr has nothing to add where the parent's death cannot be signalled
// to children; t.Cleanup still kills every member on a normal exit.
func childAttr() *syscall.SysProcAttr { return nil }
