package ctl

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/kvorum/kvorum/internal/membership"
)

// addMemberChangeCommands adds member add, remove, update and promote to
// the member command.
func (a *app) addMemberChangeCommands(mc *cobra.Command) {
	var peerURLs string
	var learner, autoPromote bool
	add := &cobra.Command{
		Use:   "add <memberName> [options]",
		Short: "Adds a member (or, with --learner, a non-voting learner) to the cluster",
		Long: `Adds a member to the cluster. In the simple format it also prints the
ETCD_NAME, ETCD_INITIAL_CLUSTER, ETCD_INITIAL_ADVERTISE_PEER_URLS and
ETCD_INITIAL_CLUSTER_STATE settings to start the new member with.`,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.memberAdd(cmd, args, peerURLs, learner, autoPromote)
		}),
	}
	add.Flags().StringVar(&peerURLs, "peer-urls", "", "comma-separated peer URLs of the new member")
	add.Flags().BoolVar(&learner, "learner", false, "add the member as a raft learner (non-voting until promoted)")
	add.Flags().BoolVar(&autoPromote, "auto-promote", false, "with --learner: Kvorum promotes the learner by itself once it has caught up (Kvorum servers only)")

	remove := &cobra.Command{
		Use:   "remove <memberID>",
		Short: "Removes a member (ID in hex) from the cluster",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id, err := memberIDArg(args)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.commandCtx()
			resp, err := c.MemberRemove(ctx, id)
			cancel()
			if err != nil {
				return fail(ExitError, err)
			}
			p, _ := a.printer()
			return p.MemberRemove(id, resp)
		}),
	}

	var updateURLs string
	update := &cobra.Command{
		Use:   "update <memberID> [options]",
		Short: "Changes the peer URLs of a member (ID in hex)",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id, err := memberIDArg(args)
			if err != nil {
				return err
			}
			if updateURLs == "" {
				return failf(ExitBadArgs, "member peer urls not provided")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.commandCtx()
			resp, err := c.MemberUpdate(ctx, id, strings.Split(updateURLs, ","))
			cancel()
			if err != nil {
				return fail(ExitError, err)
			}
			p, _ := a.printer()
			return p.MemberUpdate(id, resp)
		}),
	}
	update.Flags().StringVar(&updateURLs, "peer-urls", "", "comma-separated new peer URLs of the member")

	promote := &cobra.Command{
		Use:   "promote <memberID>",
		Short: "Promotes a learner (ID in hex) to a voting member",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id, err := memberIDArg(args)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.commandCtx()
			resp, err := c.MemberPromote(ctx, id)
			cancel()
			if err != nil {
				return fail(ExitError, err)
			}
			p, _ := a.printer()
			return p.MemberPromote(id, resp)
		}),
	}
	mc.AddCommand(add, remove, update, promote)
}

// memberIDArg reads the one argument of remove, update and promote: a
// member ID in hex.
func memberIDArg(args []string) (uint64, error) {
	if len(args) != 1 {
		return 0, failf(ExitBadArgs, "member ID is not provided")
	}
	id, err := strconv.ParseUint(args[0], 16, 64)
	if err != nil {
		return 0, failf(ExitBadArgs, "bad member ID arg (%w), expecting ID in Hex", err)
	}
	return id, nil
}

func (a *app) memberAdd(cmd *cobra.Command, args []string, peerURLs string, learner, autoPromote bool) error {
	if len(args) < 1 {
		return fail(ExitBadArgs, errors.New("member name not provided"))
	}
	if len(args) > 1 {
		msg := "too many arguments"
		for _, s := range args {
			if strings.HasPrefix(strings.ToLower(s), "http") {
				msg += ", did you mean --peer-urls=" + s
			}
		}
		return fail(ExitBadArgs, errors.New(msg))
	}
	name := args[0]
	if peerURLs == "" {
		return failf(ExitBadArgs, "member peer urls not provided")
	}
	if autoPromote && !learner {
		return failf(ExitBadArgs, "--auto-promote needs --learner (a voting member needs no promotion)")
	}
	urls := strings.Split(peerURLs, ",")
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := a.commandCtx()
	if autoPromote {
		ctx = metadata.AppendToOutgoingContext(ctx, membership.AutoPromoteMetadata, "true")
	}
	var resp *clientv3.MemberAddResponse
	if learner {
		resp, err = c.MemberAddAsLearner(ctx, urls)
	} else {
		resp, err = c.MemberAdd(ctx, urls)
	}
	cancel()
	if err != nil {
		return fail(ExitError, err)
	}
	p, _ := a.printer()
	if err := p.MemberAdd(resp); err != nil {
		return err
	}
	if p.format != formatSimple {
		return nil
	}
	// The settings to start the new member with. Members that have not
	// started yet have no name; they are listed with an empty one.
	var initial []string
	for _, m := range resp.Members {
		n := m.Name
		if m.ID == resp.Member.GetID() {
			n = name
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	fmt.Fprintln(a.stdout)
	fmt.Fprintf(a.stdout, "ETCD_NAME=%q\n", name)
	fmt.Fprintf(a.stdout, "ETCD_INITIAL_CLUSTER=%q\n", strings.Join(initial, ","))
	fmt.Fprintf(a.stdout, "ETCD_INITIAL_ADVERTISE_PEER_URLS=%q\n", peerURLs)
	fmt.Fprintln(a.stdout, `ETCD_INITIAL_CLUSTER_STATE="existing"`)
	return nil
}
