// Command kvorumctl is the command-line client for Kvorum (and any etcd v3
// server), compatible with etcdctl. See package internal/ctl.
package main

import (
	"os"

	"github.com/kvorum/kvorum/internal/ctl"
)

func main() {
	os.Exit(ctl.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
