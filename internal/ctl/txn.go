package ctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) txnCommand() *cobra.Command {
	var interactive bool
	cmd := &cobra.Command{
		Use:   "txn [options]",
		Short: "Applies compares and requests read from stdin as one atomic transaction",
		Long: `Reads a transaction from standard input and applies it atomically.

The input has three blocks, each ended by an empty line:
  1. compares, one per line:   mod("key1") > "0"
       targets: c/create, m/mod, ver/version (revisions and versions),
                val/value (a quoted string), lease (a decimal lease ID)
       operators: = != < >
  2. requests to apply if every compare holds
  3. requests to apply otherwise
Requests are put, get and del lines with the same arguments and flags as
those commands; quote values with spaces ("a b" or 'a b', Go escapes in "").

With -i the blocks are prompted for.`,
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "prompt for each block of the transaction")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if len(args) != 0 {
			return failf(ExitBadArgs, "txn command does not accept argument")
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		var prompt io.Writer = io.Discard
		if interactive {
			prompt = a.stdout
		}
		t, err := readTxn(bufio.NewReader(a.stdin), prompt, a.stderr)
		if err != nil {
			return err
		}
		ctx, cancel := a.commandCtx()
		resp, err := c.Txn(ctx).If(t.compares...).Then(t.success...).Else(t.failure...).Commit()
		cancel()
		if err != nil {
			return fail(ExitError, err)
		}
		p, _ := a.printer()
		return p.Txn(resp)
	})
	return cmd
}

// txnInput is a transaction as read from stdin.
type txnInput struct {
	compares []clientv3.Cmp
	success  []clientv3.Op
	failure  []clientv3.Op
}

// readTxn reads the three blocks of a transaction, each ended by an empty
// line, writing the prompts of interactive mode to prompt. Input that ends
// before the third block's empty line is an error ("EOF"), as in etcdctl.
//
// A request line with a bad flag also prints that command's usage to
// usage.
func readTxn(r *bufio.Reader, prompt, usage io.Writer) (*txnInput, error) {
	var t txnInput
	fmt.Fprintln(prompt, "compares:")
	err := readBlock(r, func(line string) error {
		cmp, err := parseCompare(line)
		if err == nil {
			t.compares = append(t.compares, *cmp)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, block := range []struct {
		prompt string
		ops    *[]clientv3.Op
	}{
		{"success requests (get, put, del):", &t.success},
		{"failure requests (get, put, del):", &t.failure},
	} {
		fmt.Fprintln(prompt, block.prompt)
		err := readBlock(r, func(line string) error {
			op, err := parseRequest(line, usage)
			if err == nil {
				*block.ops = append(*block.ops, op)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return &t, nil
}

// readBlock hands each trimmed line to f up to the first empty line.
func readBlock(r *bufio.Reader, f func(line string) error) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fail(ExitInvalidInput, err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			return nil
		}
		if err := f(line); err != nil {
			var ee *exitError
			if errors.As(err, &ee) {
				return err
			}
			return fail(ExitInvalidInput, err)
		}
	}
}

// parseCompare parses one compare line: target("key") op "value", where
// key and value are Go-quoted strings.
func parseCompare(line string) (*clientv3.Cmp, error) {
	target, rest, ok := strings.Cut(line, "(")
	if !ok {
		return nil, fmt.Errorf("malformed comparison: %s", line)
	}
	var key, op, val string
	n, serr := fmt.Sscanf(rest, "%q) %s %q", &key, &op, &val)
	if n != 3 {
		return nil, fmt.Errorf("malformed comparison: %s; got %s(%q) %s %q", line, target, key, op, val)
	}
	if serr != nil {
		return nil, fmt.Errorf("malformed comparison: %s (%w)", line, serr)
	}
	switch op {
	case "=", "!=", "<", ">":
	default:
		// etcdctl panics here; kvorumctl reports it.
		return nil, fmt.Errorf("malformed comparison: %s (unknown operator %s)", line, op)
	}
	invalid := fmt.Errorf("invalid txn compare request: %s", line)
	number := func() (int64, error) {
		v, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return 0, invalid
		}
		return v, nil
	}
	var cmp clientv3.Cmp
	switch target {
	case "ver", "version":
		v, err := number()
		if err != nil {
			return nil, err
		}
		cmp = clientv3.Compare(clientv3.Version(key), op, v)
	case "c", "create":
		v, err := number()
		if err != nil {
			return nil, err
		}
		cmp = clientv3.Compare(clientv3.CreateRevision(key), op, v)
	case "m", "mod":
		v, err := number()
		if err != nil {
			return nil, err
		}
		cmp = clientv3.Compare(clientv3.ModRevision(key), op, v)
	case "val", "value":
		cmp = clientv3.Compare(clientv3.Value(key), op, val)
	case "lease":
		// etcdctl passes the string on and panics; the documented form is
		// a decimal lease ID, which kvorumctl accepts.
		v, err := number()
		if err != nil {
			return nil, err
		}
		cmp = clientv3.Compare(clientv3.LeaseValue(key), op, v)
	default:
		return nil, fmt.Errorf("malformed comparison: %s (unknown target %s)", line, target)
	}
	return &cmp, nil
}

// parseRequest parses one request line of a txn: a put, get or del command
// line with that command's arguments and flags. On a flag error the usage
// of the command goes to usage, as etcdctl does.
func parseRequest(line string, usage io.Writer) (clientv3.Op, error) {
	args, err := splitArgs(line)
	if err != nil {
		return clientv3.Op{}, fail(ExitInvalidInput, err)
	}
	if len(args) < 2 {
		return clientv3.Op{}, fmt.Errorf("invalid txn compare request: %s", line)
	}
	var (
		op    clientv3.Op
		opErr error
		po    putOptions
		gOpts getOptions
		do    delOptions
	)
	put := newPutCommand(&po)
	put.RunE = func(_ *cobra.Command, args []string) error {
		key, value, opts, err := po.op(args, strings.NewReader(""))
		op, opErr = clientv3.OpPut(key, value, opts...), err
		return nil
	}
	get := newGetCommand(&gOpts)
	get.RunE = func(_ *cobra.Command, args []string) error {
		key, opts, err := gOpts.op(args)
		op, opErr = clientv3.OpGet(key, opts...), err
		return nil
	}
	del := newDelCommand(&do)
	del.RunE = func(_ *cobra.Command, args []string) error {
		// No warning and no pause inside a transaction: the whole
		// transaction is reviewed before it is sent.
		key, opts, err := do.op(args, io.Discard, func(time.Duration) {})
		op, opErr = clientv3.OpDelete(key, opts...), err
		return nil
	}
	// The unnamed root makes usage lines read " put ...", as in etcdctl.
	root := &cobra.Command{SilenceErrors: true, SilenceUsage: true}
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.AddCommand(put, get, del)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &flagError{cmd: c, err: err}
	})
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var fe *flagError
		if errors.As(err, &fe) {
			fmt.Fprintln(usage, fe.cmd.UsageString())
		}
		return clientv3.Op{}, fmt.Errorf("invalid txn request: %s", line)
	}
	if opErr != nil {
		return clientv3.Op{}, opErr
	}
	return op, nil
}

// splitArgs splits a request line into arguments: runs of non-space
// characters, 'single-quoted' strings taken literally and "double-quoted"
// strings with Go escapes. An unterminated quote character is skipped.
func splitArgs(s string) ([]string, error) {
	var args []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				i++
				continue
			}
			args = append(args, s[i+1:i+1+end])
			i += end + 2
		case c == '"':
			end := closingQuote(s, i)
			if end < 0 {
				i++
				continue
			}
			v, err := strconv.Unquote(s[i : end+1])
			if err != nil {
				return nil, fmt.Errorf("bad quoted string %s: %w", s[i:end+1], err)
			}
			args = append(args, v)
			i = end + 1
		default:
			j := i
			for j < len(s) && !isSpace(s[j]) {
				j++
			}
			args = append(args, s[i:j])
			i = j
		}
	}
	return args, nil
}

// closingQuote returns the index of the '"' that closes the one at start,
// skipping backslash escapes, or -1.
func closingQuote(s string, start int) int {
	for i := start + 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// isSpace reports whether c separates arguments: space, \t, \n, \f, \r.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}
