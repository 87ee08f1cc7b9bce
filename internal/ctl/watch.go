package ctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors of watch's arguments, with etcdctl's texts.
var (
	errBadArgsNum            = errors.New("bad number of arguments")
	errBadArgsNumConflictEnv = errors.New("bad number of arguments (found conflicting environment key)")
	errBadArgsNumSeparator   = errors.New("bad number of arguments (found separator --, but no commands)")
)

// watchOptions are the flags of watch.
type watchOptions struct {
	interactive    bool
	prefix         bool
	rev            int64
	prevKV         bool
	progressNotify bool
}

func (o *watchOptions) register(f *pflag.FlagSet) {
	f.BoolVarP(&o.interactive, "interactive", "i", false, "read watch and progress commands from stdin, one per line")
	f.BoolVar(&o.prefix, "prefix", false, "watch every key that starts with <key>")
	f.Int64Var(&o.rev, "rev", 0, "revision to start watching from (0: from now on)")
	f.BoolVar(&o.prevKV, "prev-kv", false, "also print each key's previous value")
	f.BoolVar(&o.progressNotify, "progress-notify", false, "ask the server for periodic progress notifications")
}

func (a *app) watchCommand() *cobra.Command {
	var o watchOptions
	cmd := &cobra.Command{
		Use:   "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
		Short: "Prints the changes of a key, a range or a prefix as they happen",
		Long: `Prints the changes of a key, a range or a prefix as they happen, until the
server ends the watch.

After "--", a command to run for every change, with ETCD_WATCH_REVISION,
ETCD_WATCH_EVENT_TYPE, ETCD_WATCH_KEY and ETCD_WATCH_VALUE set:
  kvorumctl watch config -- sh -c 'echo "$ETCD_WATCH_KEY changed"'
The key (and range end) may come from ETCDCTL_WATCH_KEY and
ETCDCTL_WATCH_RANGE_END instead.

With -i, lines "watch [options] <key> [range_end] [-- command]" and
"progress" are read from stdin.`,
	}
	o.register(cmd.Flags())
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		envKey, envRange := a.env("WATCH_KEY"), a.env("WATCH_RANGE_END")
		if envKey == "" && envRange != "" {
			return failf(ExitBadArgs, "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END=%q", envRange)
		}
		if o.interactive {
			return a.watchInteractive(cmd, o, envKey, envRange)
		}
		watchArgs, execArgs, err := splitWatchArgs(args, cmd.ArgsLenAtDash(), cmd.Flags().NFlag() > 0, envKey, envRange)
		if err != nil {
			return fail(ExitBadArgs, err)
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		wch, err := o.watch(c, watchArgs)
		if err != nil {
			c.Close()
			return fail(ExitBadArgs, err)
		}
		p, _ := a.printer()
		if err := a.printWatch(c, wch, execArgs, p, a.stderr); err != nil {
			c.Close()
			return err
		}
		if err := c.Close(); err != nil {
			return fail(ExitBadConnection, err)
		}
		return failf(ExitInterrupted, "watch is canceled by the server")
	})
	return cmd
}

// env reads ETCDCTL_<name>, or KVORUMCTL_<name>, which wins.
func (a *app) env(name string) string {
	var etcd, kvorum string
	for _, kv := range a.environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case envPrefixEtcd + "_" + name:
			etcd = v
		case envPrefixKvorum + "_" + name:
			kvorum = v
		}
	}
	if kvorum != "" {
		return kvorum
	}
	return etcd
}

// splitWatchArgs separates the watch's key arguments from the command
// after "--" (dash is how many arguments came before it, -1 if none), with
// etcdctl's checks. flags reports that flags were given, which etcdctl
// counts as arguments when it checks for none.
func splitWatchArgs(args []string, dash int, flags bool, envKey, envRange string) (watchArgs, execArgs []string, err error) {
	watchArgs = args
	if dash >= 0 {
		if dash == len(args) {
			return nil, nil, errBadArgsNumSeparator
		}
		watchArgs, execArgs = args[:dash], args[dash:]
	}
	if dash < 0 && len(args) == 0 && !flags && envKey == "" {
		return nil, nil, errBadArgsNum
	}
	if envKey != "" {
		if len(watchArgs) > 0 {
			return nil, nil, errBadArgsNumConflictEnv
		}
		watchArgs = []string{envKey}
		if envRange != "" {
			watchArgs = append(watchArgs, envRange)
		}
	}
	return watchArgs, execArgs, nil
}

// watch starts the watch that args (key and optional range end) and o
// describe. Like etcdctl, it requires a leader and ignores arguments after
// the range end.
func (o *watchOptions) watch(c *clientv3.Client, args []string) (clientv3.WatchChan, error) {
	if len(args) < 1 {
		return nil, errBadArgsNum
	}
	opts := []clientv3.OpOption{clientv3.WithRev(o.rev)}
	if len(args) == 2 {
		if o.prefix {
			return nil, errors.New("`range_end` and `--prefix` are mutually exclusive")
		}
		opts = append(opts, clientv3.WithRange(args[1]))
	}
	if o.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if o.progressNotify {
		opts = append(opts, clientv3.WithProgressNotify())
	}
	return c.Watch(clientv3.WithRequireLeader(context.Background()), args[0], opts...), nil
}

// printWatch prints every response of wch until it closes, running
// execArgs (if any) once per event.
func (a *app) printWatch(c *clientv3.Client, wch clientv3.WatchChan, execArgs []string, p *printer, stderr io.Writer) error {
	for resp := range wch {
		if resp.Canceled {
			fmt.Fprintf(stderr, "watch was canceled (%v)\n", resp.Err())
		}
		if resp.IsProgressNotify() {
			fmt.Fprintf(p.out, "progress notify: %d\n", resp.Header.GetRevision())
		}
		if err := p.Watch(&resp); err != nil {
			return err
		}
		if len(execArgs) == 0 {
			continue
		}
		for _, ev := range resp.Events {
			cmd := exec.CommandContext(c.Ctx(), execArgs[0], execArgs[1:]...)
			cmd.Env = append(append([]string(nil), a.environ...),
				fmt.Sprintf("ETCD_WATCH_REVISION=%d", resp.Header.GetRevision()),
				fmt.Sprintf("ETCD_WATCH_EVENT_TYPE=%q", ev.GetType()),
				fmt.Sprintf("ETCD_WATCH_KEY=%q", ev.GetKv().GetKey()),
				fmt.Sprintf("ETCD_WATCH_VALUE=%q", ev.GetKv().GetValue()))
			cmd.Stdout, cmd.Stderr = p.out, stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(stderr, "command %q error (%v)\n", execArgs, err)
				return fail(ExitError, nil)
			}
		}
	}
	return nil
}

// watchInteractive serves watch -i: "watch ..." lines start watches (all
// printing concurrently), "progress" asks for a progress notification. It
// ends when stdin does, with etcdctl's error.
func (a *app) watchInteractive(cmd *cobra.Command, o watchOptions, envKey, envRange string) error {
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	p, _ := a.printer()
	out, errOut := &lockedWriter{w: a.stdout}, &lockedWriter{w: a.stderr}
	p.out, p.errOut = out, errOut

	type line struct {
		s   string
		err error
	}
	lines := make(chan line)
	go func() {
		r := bufio.NewReader(a.stdin)
		for {
			s, err := r.ReadString('\n')
			lines <- line{s, err}
			if err != nil {
				return
			}
		}
	}()
	fatal := make(chan error, 1)
	for {
		var l line
		select {
		case l = <-lines:
		case err := <-fatal:
			return err
		}
		if l.err != nil {
			return failf(ExitInvalidInput, "error reading watch request line: %w", l.err)
		}
		text := strings.TrimSuffix(l.s, "\n")
		args, err := splitArgs(text)
		if err != nil {
			return fail(ExitInvalidInput, err)
		}
		if len(args) < 1 {
			fmt.Fprintf(errOut, "Invalid command: %s (watch and progress supported)\n", text)
			continue
		}
		switch args[0] {
		case "watch":
			if len(args) < 2 && envKey == "" {
				fmt.Fprintf(errOut, "Invalid command %s (command type or key is not provided)\n", text)
				continue
			}
			lo, watchArgs, execArgs, err := parseWatchLine(args[1:], o, envKey, envRange)
			if err != nil {
				return fail(ExitBadArgs, err)
			}
			wch, err := lo.watch(c, watchArgs)
			if err != nil {
				fmt.Fprintf(errOut, "Invalid command %s (%v)\n", text, err)
				continue
			}
			go func() {
				if err := a.printWatch(c, wch, execArgs, p, errOut); err != nil {
					select {
					case fatal <- err:
					default:
					}
				}
			}()
		case "progress":
			if err := c.RequestProgress(clientv3.WithRequireLeader(context.Background())); err != nil {
				return fail(ExitError, err)
			}
		default:
			fmt.Fprintf(errOut, "Invalid command %s (only support watch)\n", text)
		}
	}
}

// parseWatchLine reads the arguments of an interactive "watch" line. The
// line sets --prefix, --rev and --prev-kv; --progress-notify comes from
// the command line, as in etcdctl.
func parseWatchLine(args []string, cmdLine watchOptions, envKey, envRange string) (o watchOptions, watchArgs, execArgs []string, err error) {
	o.progressNotify = cmdLine.progressNotify
	fs := pflag.NewFlagSet("watch", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var ignored watchOptions
	ignored.register(fs)
	if err := fs.Parse(args); err != nil {
		return o, nil, nil, err
	}
	o.prefix, o.rev, o.prevKV = ignored.prefix, ignored.rev, ignored.prevKV
	watchArgs = fs.Args()
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		if dash == len(watchArgs) {
			return o, nil, nil, errBadArgsNumSeparator
		}
		watchArgs, execArgs = watchArgs[:dash], watchArgs[dash:]
	} else if envKey == "" && len(watchArgs) < 1 {
		return o, nil, nil, errBadArgsNum
	}
	if envKey != "" {
		if execArgs == nil && len(watchArgs) > 0 {
			return o, nil, nil, errBadArgsNumConflictEnv
		}
		ranges := []string{envKey}
		if envRange != "" {
			ranges = append(ranges, envRange)
		}
		watchArgs = append(ranges, watchArgs...)
	}
	return o, watchArgs, execArgs, nil
}

// Watch prints one watch response (events only; progress notifications
// and cancellations are reported by printWatch).
func (p *printer) Watch(r *clientv3.WatchResponse) error {
	switch p.format {
	case formatSimple:
		for _, ev := range r.Events {
			fmt.Fprintln(p.out, ev.GetType())
			if ev.GetPrevKv() != nil {
				p.simpleKV(ev.GetPrevKv())
			}
			p.simpleKV(ev.GetKv())
		}
		return nil
	case formatFields:
		p.fieldsHeader(r.Header)
		for _, ev := range r.Events {
			fmt.Fprintln(p.out, `"Type" :`, ev.GetType())
			if ev.GetPrevKv() != nil {
				p.fieldsKV("Prev", ev.GetPrevKv())
			}
			p.fieldsKV("", ev.GetKv())
		}
		return nil
	case formatJSON:
		return p.json(r)
	case formatProtobuf:
		return p.protobuf(&pb.WatchResponse{
			Header:          r.Header,
			Events:          r.Events,
			CompactRevision: r.CompactRevision,
			Canceled:        r.Canceled,
			Created:         r.Created,
		})
	}
	return p.unsupported()
}

// lockedWriter serializes writes of concurrent watches to one stream.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
