package ctl

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// putOptions are the flags of put.
type putOptions struct {
	lease       string
	prevKV      bool
	ignoreValue bool
	ignoreLease bool
}

func (o *putOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.lease, "lease", "0", "attach the key to this lease (ID in hex)")
	cmd.Flags().BoolVar(&o.prevKV, "prev-kv", false, "also print the key-value pair as it was before")
	cmd.Flags().BoolVar(&o.ignoreValue, "ignore-value", false, "keep the current value (only the lease changes)")
	cmd.Flags().BoolVar(&o.ignoreLease, "ignore-lease", false, "keep the current lease (only the value changes)")
}

func newPutCommand(o *putOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "put [options] <key> <value>",
		Short: "Writes a key-value pair",
		Long: `Writes a key-value pair.

Without a <value> argument the value is read from standard input, all of it:
  kvorumctl put config < config.yaml
A value starting with '-' must follow '--':  kvorumctl put -- key -value`,
	}
	o.register(cmd)
	return cmd
}

func (a *app) putCommand() *cobra.Command {
	var o putOptions
	cmd := newPutCommand(&o)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		key, value, opts, err := o.op(args, a.stdin)
		if err != nil {
			return err
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := a.commandCtx()
		resp, err := c.Put(ctx, key, value, opts...)
		cancel()
		if err != nil {
			return fail(ExitError, err)
		}
		p, _ := a.printer()
		return p.Put(resp)
	})
	return cmd
}

// op validates put's arguments and builds the request; the value comes
// from stdin when there is no second argument.
func (o *putOptions) op(args []string, stdin io.Reader) (key, value string, opts []clientv3.OpOption, err error) {
	const usage = "put command needs 1 argument and input from stdin or 2 arguments"
	if len(args) == 0 {
		return "", "", nil, failf(ExitBadArgs, usage)
	}
	key = args[0]
	if o.ignoreValue && len(args) > 1 {
		return "", "", nil, failf(ExitBadArgs, "put command needs only 1 argument when 'ignore-value' is set")
	}
	if !o.ignoreValue {
		if value, err = argOrStdin(args, stdin, 1); err != nil {
			return "", "", nil, failf(ExitBadArgs, usage)
		}
	}
	id, err := strconv.ParseInt(o.lease, 16, 64)
	if err != nil {
		return "", "", nil, failf(ExitBadArgs, "bad lease ID (%w), expecting ID in Hex", err)
	}
	if id != 0 {
		opts = append(opts, clientv3.WithLease(clientv3.LeaseID(id)))
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if o.ignoreValue {
		opts = append(opts, clientv3.WithIgnoreValue())
	}
	if o.ignoreLease {
		opts = append(opts, clientv3.WithIgnoreLease())
	}
	return key, value, opts, nil
}

// getOptions are the flags of get.
type getOptions struct {
	consistency  string
	order        string
	sortBy       string
	limit        int64
	prefix       bool
	fromKey      bool
	rev          int64
	keysOnly     bool
	countOnly    bool
	valueOnly    bool
	minCreateRev int64
	maxCreateRev int64
	minModRev    int64
	maxModRev    int64
}

func (o *getOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.consistency, "consistency", "l", "l: linearizable read, s: serializable read (may be stale)")
	f.StringVar(&o.order, "order", "", "ASCEND or DESCEND (default ASCEND)")
	f.StringVar(&o.sortBy, "sort-by", "", "sort by CREATE, KEY, MODIFY, VALUE or VERSION")
	f.Int64Var(&o.limit, "limit", 0, "return at most this many keys (0: no limit)")
	f.BoolVar(&o.prefix, "prefix", false, "all keys that start with <key>")
	f.BoolVar(&o.fromKey, "from-key", false, "all keys byte-wise greater than or equal to <key>")
	f.Int64Var(&o.rev, "rev", 0, "read at this revision (0: latest)")
	f.BoolVar(&o.keysOnly, "keys-only", false, "return keys without values")
	f.BoolVar(&o.countOnly, "count-only", false, "return only the number of keys (-w fields only)")
	f.BoolVar(&o.valueOnly, "print-value-only", false, "print values without keys (-w simple only)")
	f.Int64Var(&o.minCreateRev, "min-create-rev", 0, "only keys created at or after this revision")
	f.Int64Var(&o.maxCreateRev, "max-create-rev", 0, "only keys created at or before this revision")
	f.Int64Var(&o.minModRev, "min-mod-rev", 0, "only keys last modified at or after this revision")
	f.Int64Var(&o.maxModRev, "max-mod-rev", 0, "only keys last modified at or before this revision")
}

func newGetCommand(o *getOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get [options] <key> [range_end]",
		Short: "Reads a key or the keys in [key, range_end)",
	}
	o.register(cmd)
	return cmd
}

func (a *app) getCommand() *cobra.Command {
	var o getOptions
	cmd := newGetCommand(&o)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		key, opts, err := o.op(args)
		if err != nil {
			return err
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := a.commandCtx()
		resp, err := c.Get(ctx, key, opts...)
		cancel()
		if err != nil {
			return fail(ExitError, err)
		}
		p, _ := a.printer()
		if o.countOnly && p.format != formatFields {
			return failf(ExitBadArgs, "--count-only is only for `--write-out=fields`")
		}
		if o.valueOnly {
			if p.format != formatSimple {
				return failf(ExitBadArgs, "print-value-only is only for `--write-out=simple`")
			}
			p.valueOnly = true
		}
		return p.Get(resp)
	})
	return cmd
}

// op validates get's arguments and builds the request.
func (o *getOptions) op(args []string) (string, []clientv3.OpOption, error) {
	if len(args) == 0 {
		return "", nil, failf(ExitBadArgs, "get command needs one argument as key and an optional argument as range_end")
	}
	if o.prefix && o.fromKey {
		return "", nil, failf(ExitBadArgs, "`--prefix` and `--from-key` cannot be set at the same time, choose one")
	}
	if o.keysOnly && o.countOnly {
		return "", nil, failf(ExitBadArgs, "`--keys-only` and `--count-only` cannot be set at the same time, choose one")
	}
	var opts []clientv3.OpOption
	serializable, err := parseConsistency(o.consistency, o.consistency)
	if err != nil {
		return "", nil, err
	}
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	key := args[0]
	if len(args) > 1 {
		if o.prefix || o.fromKey {
			return "", nil, failf(ExitBadArgs, "too many arguments, only accept one argument when `--prefix` or `--from-key` is set")
		}
		opts = append(opts, clientv3.WithRange(args[1]))
	}
	opts = append(opts, clientv3.WithLimit(o.limit))
	if o.rev > 0 {
		opts = append(opts, clientv3.WithRev(o.rev))
	}

	order := clientv3.SortNone
	switch strings.ToUpper(o.order) {
	case "ASCEND":
		order = clientv3.SortAscend
	case "DESCEND":
		order = clientv3.SortDescend
	case "":
	default:
		return "", nil, failf(ExitBadFeature, "bad sort order %v", o.order)
	}
	target := clientv3.SortByKey
	switch strings.ToUpper(o.sortBy) {
	case "CREATE":
		target = clientv3.SortByCreateRevision
	case "KEY", "":
		target = clientv3.SortByKey
	case "MODIFY":
		target = clientv3.SortByModRevision
	case "VALUE":
		target = clientv3.SortByValue
	case "VERSION":
		target = clientv3.SortByVersion
	default:
		return "", nil, failf(ExitBadFeature, "bad sort target %v", o.sortBy)
	}
	opts = append(opts, clientv3.WithSort(target, order))

	key, opts = rangeOpts(key, o.prefix, o.fromKey, opts)
	if o.keysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	if o.countOnly {
		opts = append(opts, clientv3.WithCountOnly())
	}
	if o.minCreateRev > 0 {
		opts = append(opts, clientv3.WithMinCreateRev(o.minCreateRev))
	}
	if o.maxCreateRev > 0 {
		if o.minCreateRev > o.maxCreateRev {
			return "", nil, failf(ExitBadFeature, "getMinCreateRev(=%v) > getMaxCreateRev(=%v)", o.minCreateRev, o.maxCreateRev)
		}
		opts = append(opts, clientv3.WithMaxCreateRev(o.maxCreateRev))
	}
	if o.minModRev > 0 {
		opts = append(opts, clientv3.WithMinModRev(o.minModRev))
	}
	if o.maxModRev > 0 {
		if o.minModRev > o.maxModRev {
			return "", nil, failf(ExitBadFeature, "getMinModRev(=%v) > getMaxModRev(=%v)", o.minModRev, o.maxModRev)
		}
		opts = append(opts, clientv3.WithMaxModRev(o.maxModRev))
	}
	return key, opts, nil
}

// rangeOpts applies --prefix or --from-key. An empty key means the whole
// key space: it becomes "\x00" with from-key semantics.
func rangeOpts(key string, prefix, fromKey bool, opts []clientv3.OpOption) (string, []clientv3.OpOption) {
	switch {
	case prefix && key == "":
		return "\x00", append(opts, clientv3.WithFromKey())
	case prefix:
		return key, append(opts, clientv3.WithPrefix())
	case fromKey && key == "":
		return "\x00", append(opts, clientv3.WithFromKey())
	case fromKey:
		return key, append(opts, clientv3.WithFromKey())
	}
	return key, opts
}

// parseConsistency reads a --consistency value: true for serializable.
// shown is the value the error message quotes; etcdctl's member list quotes
// get's default ("l") rather than its own flag, and kvorumctl keeps that.
func parseConsistency(value, shown string) (bool, error) {
	switch value {
	case "s":
		return true, nil
	case "l":
		return false, nil
	}
	return false, failf(ExitBadFeature, "unknown consistency flag %q", shown)
}

// delOptions are the flags of del.
type delOptions struct {
	prefix  bool
	prevKV  bool
	fromKey bool
	isRange bool
}

func (o *delOptions) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.prefix, "prefix", false, "delete all keys that start with <key>")
	cmd.Flags().BoolVar(&o.prevKV, "prev-kv", false, "also print the deleted key-value pairs")
	cmd.Flags().BoolVar(&o.fromKey, "from-key", false, "delete all keys byte-wise greater than or equal to <key>")
	cmd.Flags().BoolVar(&o.isRange, "range", false, "confirm deleting [key, range_end) without the 2 second pause")
}

func newDelCommand(o *delOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "del [options] <key> [range_end]",
		Short: "Deletes a key or the keys in [key, range_end)",
	}
	o.register(cmd)
	return cmd
}

func (a *app) delCommand() *cobra.Command {
	var o delOptions
	cmd := newDelCommand(&o)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		key, opts, err := o.op(args, a.stderr, time.Sleep)
		if err != nil {
			return err
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := a.commandCtx()
		resp, err := c.Delete(ctx, key, opts...)
		cancel()
		if err != nil {
			return fail(ExitError, err)
		}
		p, _ := a.printer()
		return p.Del(resp)
	})
	return cmd
}

// op validates del's arguments and builds the request. Deleting an explicit
// range without --range first warns on stderr and pauses 2 seconds (via
// sleep) so that the user can interrupt, as etcdctl does.
func (o *delOptions) op(args []string, stderr io.Writer, sleep func(time.Duration)) (string, []clientv3.OpOption, error) {
	if len(args) == 0 || len(args) > 2 {
		return "", nil, failf(ExitBadArgs, "del command needs one argument as key and an optional argument as range_end")
	}
	if o.prefix && o.fromKey {
		return "", nil, failf(ExitBadArgs, "`--prefix` and `--from-key` cannot be set at the same time, choose one")
	}
	var opts []clientv3.OpOption
	key := args[0]
	if len(args) > 1 {
		if o.prefix || o.fromKey {
			return "", nil, failf(ExitBadArgs, "too many arguments, only accept one argument when `--prefix` or `--from-key` is set")
		}
		opts = append(opts, clientv3.WithRange(args[1]))
		if !o.isRange {
			fmt.Fprintf(stderr, "Warning: Keys between %q and %q will be deleted. Please interrupt the command within next 2 seconds to cancel. "+
				"You can provide `--range` flag to avoid the delay.\n", args[0], args[1])
			sleep(2 * time.Second)
		}
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	key, opts = rangeOpts(key, o.prefix, o.fromKey, opts)
	return key, opts, nil
}

func (a *app) compactionCommand() *cobra.Command {
	var physical bool
	cmd := &cobra.Command{
		Use:   "compaction [options] <revision>",
		Short: "Discards the key-value history before a revision",
	}
	cmd.Flags().BoolVar(&physical, "physical", false, "return only once the old revisions are physically removed")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return failf(ExitBadArgs, "compaction command needs 1 argument")
		}
		rev, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return fail(ExitError, err)
		}
		var opts []clientv3.CompactOption
		if physical {
			opts = append(opts, clientv3.WithCompactPhysical())
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := a.commandCtx()
		_, err = c.Compact(ctx, rev, opts...)
		cancel()
		if err != nil {
			return fail(ExitError, err)
		}
		fmt.Fprintln(a.stdout, "compacted revision", rev)
		return nil
	})
	return cmd
}
