package ctl

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

func (a *app) leaseCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease <subcommand>",
		Short: "Grants, renews, inspects and revokes leases",
		Long: `Grants, renews, inspects and revokes leases.

A lease is a time-to-live in seconds granted by the cluster; keys attached to
it (put --lease=<ID>) are deleted when it expires or is revoked. Lease IDs
are printed and given in hex:
  id=$(kvorumctl lease grant 60 | awk '{print $2}')
  kvorumctl put session alive --lease=$id
  kvorumctl lease keep-alive $id`,
	}
	cmd.AddCommand(
		a.leaseGrantCommand(),
		a.leaseRevokeCommand(),
		a.leaseTimeToLiveCommand(),
		a.leaseListCommand(),
		a.leaseKeepAliveCommand(),
	)
	return cmd
}

func (a *app) leaseGrantCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "grant <ttl>",
		Short: "Grants a lease with a time-to-live in seconds",
	}
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return failf(ExitBadArgs, "lease grant command needs TTL argument")
		}
		ttl, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return failf(ExitBadArgs, "bad TTL (%w)", err)
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := a.commandCtx()
		resp, err := c.Grant(ctx, ttl)
		cancel()
		if err != nil {
			return failf(ExitError, "failed to grant lease (%w)", err)
		}
		p, _ := a.printer()
		return p.Grant(resp)
	})
	return cmd
}

func (a *app) leaseRevokeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke <leaseID>",
		Short: "Revokes a lease, deleting the keys attached to it",
	}
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return failf(ExitBadArgs, "lease revoke command needs 1 argument")
		}
		id, err := parseLeaseID(args[0])
		if err != nil {
			return err
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := a.commandCtx()
		resp, err := c.Revoke(ctx, id)
		cancel()
		if err != nil {
			return failf(ExitError, "failed to revoke lease (%w)", err)
		}
		p, _ := a.printer()
		return p.Revoke(id, resp)
	})
	return cmd
}

func (a *app) leaseTimeToLiveCommand() *cobra.Command {
	var keys bool
	cmd := &cobra.Command{
		Use:   "timetolive <leaseID> [options]",
		Short: "Shows a lease's granted and remaining time-to-live",
	}
	cmd.Flags().BoolVar(&keys, "keys", false, "also list the keys attached to the lease")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return failf(ExitBadArgs, "lease timetolive command needs lease ID as argument")
		}
		var opts []clientv3.LeaseOption
		if keys {
			opts = append(opts, clientv3.WithAttachedKeys())
		}
		// etcdctl creates the client before it reads the ID, so a bad
		// output format is reported before a bad ID.
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		id, err := parseLeaseID(args[0])
		if err != nil {
			return err
		}
		// No --command-timeout here, as in etcdctl.
		resp, err := c.TimeToLive(context.Background(), id, opts...)
		if err != nil {
			return fail(ExitBadConnection, err)
		}
		p, _ := a.printer()
		return p.TimeToLive(resp, keys)
	})
	return cmd
}

func (a *app) leaseListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Lists the IDs of all leases",
	}
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		resp, err := c.Leases(context.Background())
		if err != nil {
			return fail(ExitBadConnection, err)
		}
		p, _ := a.printer()
		return p.Leases(resp)
	})
	return cmd
}

func (a *app) leaseKeepAliveCommand() *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keep-alive [options] <leaseID>",
		Short: "Renews a lease until it expires or is revoked",
		Long: `Renews a lease every third of its time-to-live, printing each renewal, until
the lease expires or is revoked (or kvorumctl is interrupted). With --once it
renews the lease one time and exits.`,
	}
	cmd.Flags().BoolVar(&once, "once", false, "renew the lease once and exit")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return failf(ExitBadArgs, "lease keep-alive command needs lease ID as argument")
		}
		id, err := parseLeaseID(args[0])
		if err != nil {
			return err
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		p, _ := a.printer()
		if once {
			resp, err := c.KeepAliveOnce(context.Background(), id)
			if err != nil {
				return fail(ExitBadConnection, err)
			}
			return p.KeepAlive(resp)
		}
		respc, err := c.KeepAlive(context.Background(), id)
		if err != nil {
			return fail(ExitBadConnection, err)
		}
		for resp := range respc {
			if err := p.KeepAlive(resp); err != nil {
				return err
			}
		}
		// The client closes the channel once the server answers that the
		// lease is gone (or has not answered within its TTL). Only the
		// simple format says so, as in etcdctl.
		if p.format == formatSimple {
			fmt.Fprintf(p.out, "lease %016x expired or revoked.\n", id)
		}
		return nil
	})
	return cmd
}

// parseLeaseID reads a lease ID argument, in hex.
func parseLeaseID(s string) (clientv3.LeaseID, error) {
	id, err := strconv.ParseInt(s, 16, 64)
	if err != nil {
		return 0, failf(ExitBadArgs, "bad lease ID arg (%w), expecting ID in Hex", err)
	}
	return clientv3.LeaseID(id), nil
}

// Grant prints the answer to lease grant.
//
// The lease answers of the client library embed *pb.ResponseHeader, and
// with it the header's ProtoReflect method: etcdctl's -w protobuf prints the
// encoding of the header alone, and so does p.protobuf.
func (p *printer) Grant(r *clientv3.LeaseGrantResponse) error {
	return p.leaseTTL(r, r.ResponseHeader, r.ID, r.TTL, fmt.Sprintf("lease %016x granted with TTL(%ds)\n", r.ID, r.TTL))
}

// leaseTTL prints a lease answer that carries a lease ID and a TTL (grant
// and keep-alive); simple is its line in the simple format.
func (p *printer) leaseTTL(r proto.Message, h *pb.ResponseHeader, id clientv3.LeaseID, ttl int64, simple string) error {
	switch p.format {
	case formatSimple:
		fmt.Fprint(p.out, simple)
		return nil
	case formatFields:
		p.fieldsHeader(h)
		p.fieldsLeaseID(id)
		fmt.Fprintln(p.out, `"TTL" :`, ttl)
		return nil
	case formatJSON:
		return p.json(r)
	case formatProtobuf:
		return p.protobuf(r)
	}
	return p.unsupported()
}

// Revoke prints the answer to lease revoke of lease id. Its answer type
// is not a protobuf message (unlike the other lease answers), so -w
// protobuf fails as it does in etcdctl, describing the answer with %v.
func (p *printer) Revoke(id clientv3.LeaseID, r *clientv3.LeaseRevokeResponse) error {
	switch p.format {
	case formatSimple:
		fmt.Fprintf(p.out, "lease %016x revoked\n", id)
		return nil
	case formatFields:
		p.fieldsHeader((*pb.LeaseRevokeResponse)(r).GetHeader())
		return nil
	case formatJSON:
		return p.json(r)
	case formatProtobuf:
		return failf(ExitBadFeature, "marshal unsupported for type %T (%v)", r, r)
	}
	return p.unsupported()
}

// KeepAlive prints one renewal of lease keep-alive.
func (p *printer) KeepAlive(r *clientv3.LeaseKeepAliveResponse) error {
	return p.leaseTTL(r, r.ResponseHeader, r.ID, r.TTL, fmt.Sprintf("lease %016x keepalived with TTL(%d)\n", r.ID, r.TTL))
}

// TimeToLive prints the answer to lease timetolive; keys is its --keys. A
// lease that does not exist (any more) is answered with TTL -1 and no
// granted TTL.
func (p *printer) TimeToLive(r *clientv3.LeaseTimeToLiveResponse, keys bool) error {
	switch p.format {
	case formatSimple:
		if r.GrantedTTL == 0 && r.TTL == -1 {
			fmt.Fprintf(p.out, "lease %016x already expired\n", r.ID)
			return nil
		}
		line := fmt.Sprintf("lease %016x granted with TTL(%ds), remaining(%ds)", r.ID, r.GrantedTTL, r.TTL)
		if keys {
			ks := make([]string, len(r.Keys))
			for i, k := range r.Keys {
				ks[i] = string(k)
			}
			line += fmt.Sprintf(", attached keys(%v)", ks)
		}
		fmt.Fprintln(p.out, line)
		return nil
	case formatFields:
		p.fieldsHeader(r.ResponseHeader)
		p.fieldsLeaseID(r.ID)
		fmt.Fprintln(p.out, `"TTL" :`, r.TTL)
		fmt.Fprintln(p.out, `"GrantedTTL" :`, r.GrantedTTL)
		for _, k := range r.Keys {
			fmt.Fprintf(p.out, "\"Key\" : %q\n", string(k))
		}
		return nil
	case formatJSON:
		return p.json(r)
	case formatProtobuf:
		return p.protobuf(r)
	}
	return p.unsupported()
}

// Leases prints the answer to lease list.
func (p *printer) Leases(r *clientv3.LeaseLeasesResponse) error {
	switch p.format {
	case formatSimple:
		fmt.Fprintf(p.out, "found %d leases\n", len(r.Leases))
		for _, l := range r.Leases {
			fmt.Fprintf(p.out, "%016x\n", l.ID)
		}
		return nil
	case formatFields:
		p.fieldsHeader(r.ResponseHeader)
		for _, l := range r.Leases {
			p.fieldsLeaseID(l.ID)
		}
		return nil
	case formatJSON:
		return p.json(r)
	case formatProtobuf:
		return p.protobuf(r)
	}
	return p.unsupported()
}

// fieldsLeaseID prints a lease ID in the fields format: decimal, or hex
// padded to 16 digits with --hex.
func (p *printer) fieldsLeaseID(id clientv3.LeaseID) {
	if p.hex {
		fmt.Fprintf(p.out, "\"ID\" : %016x\n", id)
	} else {
		fmt.Fprintln(p.out, `"ID" :`, id)
	}
}
