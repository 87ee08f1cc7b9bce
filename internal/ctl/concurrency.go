package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// defaultLockTTL is lock's default --ttl, in seconds.
const defaultLockTTL = 10

func (a *app) lockCommand() *cobra.Command {
	ttl := defaultLockTTL
	cmd := &cobra.Command{
		Use:   "lock <lockname> [exec-command arg1 arg2 ...]",
		Short: "Acquires a named lock, and holds it until interrupted or while a command runs",
		Long: `Acquires the distributed lock <lockname>, waiting for its current holders.

Without a command, prints the lock's key and holds the lock until kvorumctl
receives SIGINT or SIGTERM, then releases it. With a command, runs it while
holding the lock, with ETCD_LOCK_KEY and ETCD_LOCK_REV set, releases the lock
when it exits, and exits with its exit code:
  kvorumctl lock backup -- sh -c 'make-backup && echo done'

The lock is held through a lease of --ttl seconds that kvorumctl keeps alive;
if kvorumctl dies, the lock is released when the lease expires.`,
	}
	cmd.Flags().IntVar(&ttl, "ttl", ttl, "time-to-live of the lock's lease, in seconds")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return failf(ExitBadArgs, "lock takes a lock name argument and an optional command to execute")
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		return lockError(a.lock(c, ttl, args[0], args[1:]))
	})
	return cmd
}

// lockError gives an error of lock its exit code: the command's own if the
// command failed (-1, read as 255, if a signal ended it), else 1.
func lockError(err error) error {
	var ce *exec.ExitError
	if errors.As(err, &ce) {
		return fail(ce.ExitCode(), err)
	}
	return err
}

// lock acquires the lock name with a session of ttl seconds, then runs
// command under it or, without one, prints the lock's key and holds it
// until interrupted. An error of command is returned as its *exec.ExitError.
//
// Like etcdctl, it does not revoke the session's lease when it is done: the
// lock key is deleted, the lease expires after ttl.
func (a *app) lock(c *clientv3.Client, ttl int, name string, command []string) error {
	s, err := concurrency.NewSession(c, concurrency.WithTTL(ttl))
	if err != nil {
		return err
	}
	m := concurrency.NewMutex(s, name)
	ctx, stop := interruptContext()
	defer stop()
	if err := m.Lock(ctx); err != nil {
		return err
	}

	if len(command) > 0 {
		cmd := exec.Command(command[0], command[1:]...)
		cmd.Env = append([]string{
			"ETCD_LOCK_KEY=" + m.Key(),
			fmt.Sprintf("ETCD_LOCK_REV=%d", m.Header().GetRevision()),
		}, a.environ...)
		cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
		runErr := cmd.Run()
		unlockErr := m.Unlock(context.Background())
		if runErr != nil {
			return runErr
		}
		return unlockErr
	}

	resp, err := c.Get(ctx, m.Key())
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return errors.New("lock lost on init")
	}
	p, _ := a.printer()
	if err := p.Get(resp); err != nil {
		// etcdctl exits on the spot, leaving the lock to its lease.
		return err
	}
	select {
	case <-ctx.Done():
		return m.Unlock(context.Background())
	case <-s.Done():
	}
	return errors.New("session expired")
}

func (a *app) electCommand() *cobra.Command {
	var listen bool
	cmd := &cobra.Command{
		Use:   "elect <election-name> [proposal]",
		Short: "Campaigns in a leader election, or watches who leads it",
		Long: `With a proposal, campaigns to lead the election <election-name>: waits until
elected, prints the leader key and the proposal, and leads until kvorumctl
receives SIGINT or SIGTERM, then resigns.

With -l and no proposal, prints the leader key and proposal of every leader
the election has, until interrupted.`,
	}
	cmd.Flags().BoolVarP(&listen, "listen", "l", false, "watch the election's leaders instead of campaigning")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 && len(args) != 2 {
			return failf(ExitBadArgs, "elect takes one election name argument and an optional proposal argument")
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		if len(args) == 1 {
			if !listen {
				return failf(ExitBadArgs, "no proposal argument but -l not set")
			}
			err = a.observe(c, args[0])
		} else {
			if listen {
				return failf(ExitBadArgs, "proposal given but -l is set")
			}
			err = a.campaign(c, args[0], args[1])
		}
		return err
	})
	return cmd
}

// observe prints every leader of the election until interrupted. Like
// etcdctl, it opens a session (a lease) although it never uses it.
func (a *app) observe(c *clientv3.Client, election string) error {
	s, err := concurrency.NewSession(c)
	if err != nil {
		return err
	}
	e := concurrency.NewElection(s, election)
	ctx, stop := interruptContext()
	defer stop()
	p, _ := a.printer()
	for resp := range e.Observe(ctx) {
		if err := p.Get(resp); err != nil {
			return err
		}
	}
	if ctx.Err() == nil {
		return errors.New("elect: observer lost")
	}
	return nil
}

// campaign waits until proposal is elected, prints the leader key and
// leads until interrupted, then resigns.
func (a *app) campaign(c *clientv3.Client, election, proposal string) error {
	s, err := concurrency.NewSession(c)
	if err != nil {
		return err
	}
	e := concurrency.NewElection(s, election)
	ctx, stop := interruptContext()
	defer stop()
	if err := e.Campaign(ctx, proposal); err != nil {
		return err
	}
	resp, err := c.Get(ctx, e.Key())
	if err != nil {
		return err
	}
	p, _ := a.printer()
	if err := p.Get(resp); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.Done():
		return errors.New("elect: session expired")
	}
	return e.Resign(context.Background())
}

// interruptContext returns a context canceled on the first SIGINT or
// SIGTERM, and the function that stops listening for them.
func interruptContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
