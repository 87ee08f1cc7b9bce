//go:build !linux

package main

import "syscall"

// memberProcAttr: outside Linux a member is an ordinary child process.
func memberProcAttr() *syscall.SysProcAttr { return nil }
