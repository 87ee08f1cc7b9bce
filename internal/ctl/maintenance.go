package ctl

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) alarmCommand() *cobra.Command {
	ac := &cobra.Command{
		Use:   "alarm <subcommand>",
		Short: "Lists and disarms alarms (NOSPACE, CORRUPT)",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists all alarms",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return failf(ExitBadArgs, "alarm list command accepts no arguments")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.commandCtx()
			resp, err := c.AlarmList(ctx)
			cancel()
			if err != nil {
				return fail(ExitError, err)
			}
			p, _ := a.printer()
			return p.Alarm(resp)
		}),
	}
	disarm := &cobra.Command{
		Use:   "disarm",
		Short: "Disarms all alarms",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return failf(ExitBadArgs, "alarm disarm command accepts no arguments")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.commandCtx()
			resp, err := c.AlarmDisarm(ctx, &clientv3.AlarmMember{})
			cancel()
			if err != nil {
				return fail(ExitError, err)
			}
			p, _ := a.printer()
			return p.Alarm(resp)
		}),
	}
	ac.AddCommand(disarm, list)
	return ac
}

func (a *app) defragCommand() *cobra.Command {
	var cluster bool
	dc := &cobra.Command{
		Use:   "defrag",
		Short: "Defragments the storage of each endpoint (or, with --cluster, every member)",
		Long: `Defragments the storage of each endpoint in turn. On Kvorum this returns at
once: its storage engine compacts online and has nothing to defragment.`,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			spec, err := a.clientSpec(cmd)
			if err != nil {
				return err
			}
			eps, err := a.targetEndpoints(cmd, spec, cluster)
			if err != nil {
				return err
			}
			failed := false
			for _, ep := range eps {
				one := spec.Clone()
				one.Endpoints = []string{ep}
				c, err := a.newClient(one, "etcd-client")
				if err != nil {
					return err
				}
				ctx, cancel := a.commandCtx()
				start := time.Now()
				_, err = c.Defragment(ctx, ep)
				took := time.Since(start)
				cancel()
				if err != nil {
					fmt.Fprintf(a.stderr, "Failed to defragment etcd member[%s]. took %s. (%v)\n", ep, took, err)
					failed = true
				} else {
					fmt.Fprintf(a.stdout, "Finished defragmenting etcd member[%s]. took %s\n", ep, took)
				}
				c.Close()
			}
			if failed {
				return fail(ExitError, nil)
			}
			return nil
		}),
	}
	dc.PersistentFlags().BoolVar(&cluster, "cluster", false, "use the client URLs of all members (from member list) instead of --endpoints")
	return dc
}

func (a *app) moveLeaderCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "move-leader <transferee-member-id>",
		Short: "Makes another member (ID in hex) the leader",
		Long: `Makes another member (ID in hex) the leader. The request goes to the current
leader, which must be among --endpoints.`,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return failf(ExitBadArgs, "move-leader command needs 1 argument")
			}
			target, err := strconv.ParseUint(args[0], 16, 64)
			if err != nil {
				return fail(ExitBadArgs, err)
			}
			spec, err := a.clientSpec(cmd)
			if err != nil {
				return err
			}
			// One command timeout covers finding the leader and the move.
			ctx, cancel := a.commandCtx()
			defer cancel()
			var leader *clientv3.Client
			var leaderID uint64
			for _, ep := range spec.Endpoints {
				one := spec.Clone()
				one.Endpoints = []string{ep}
				c, err := a.newClient(one, "etcd-client")
				if err != nil {
					return err
				}
				st, err := c.Status(ctx, ep)
				if err != nil {
					c.Close()
					return fail(ExitError, err)
				}
				if st.Header.GetMemberId() == st.Leader {
					leader, leaderID = c, st.Leader
					break
				}
				c.Close()
			}
			if leader == nil {
				return failf(ExitBadArgs, "no leader endpoint given at %v", spec.Endpoints)
			}
			defer leader.Close()
			resp, err := leader.MoveLeader(ctx, target)
			if err != nil {
				return fail(ExitError, err)
			}
			p, _ := a.printer()
			return p.MoveLeader(leaderID, target, resp)
		}),
	}
}
