package ctl

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes, the same numbers etcdctl uses.
const (
	ExitSuccess       = 0
	ExitError         = 1
	ExitBadConnection = 2
	ExitInvalidInput  = 3
	ExitBadFeature    = 4
	ExitInterrupted   = 5
	ExitBadArgs       = 128
)

// cliName is the name kvorumctl calls itself in messages.
const cliName = "kvorumctl"

func init() {
	// Like etcdctl, accept unambiguous prefixes of command names
	// ("kvorumctl mem list"). The switch is global to cobra.
	cobra.EnablePrefixMatching = true
}

// exitError ends an invocation with a given exit code. A nil err exits
// without printing an "Error:" line (etcdctl does that where it has already
// reported the failures on stderr itself).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// fail wraps err so that the invocation exits with code after printing
// "Error: <err>".
func fail(code int, err error) error { return &exitError{code: code, err: err} }

// failf is fail with a formatted message.
func failf(code int, format string, args ...any) error {
	return fail(code, fmt.Errorf(format, args...))
}

// flagError is a command-line parsing error found by cobra; like etcdctl,
// kvorumctl answers it with the error and the command's usage.
type flagError struct {
	cmd *cobra.Command
	err error
}

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// Invocation is one run of kvorumctl: its arguments (without the program
// name), its standard streams and its environment.
type Invocation struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Environ is the environment as "KEY=value" entries; nil means the
	// process environment (os.Environ()).
	Environ []string
}

// Main runs kvorumctl with the given arguments (without the program name)
// and streams and the process environment, and returns the exit code. It
// never calls os.Exit, so it can be called in-process.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Invocation{Args: args, Stdin: stdin, Stdout: stdout, Stderr: stderr}.Run()
}

// Run executes the invocation and returns its exit code; everything it
// prints goes to inv.Stdout and inv.Stderr (gRPC client logs included).
func (inv Invocation) Run() int {
	a := newApp(inv)
	root := a.rootCommand()
	root.SetArgs(inv.Args)
	cmd, err := root.ExecuteC()
	return a.exitCode(cmd, err)
}

// NewRootCommand returns the kvorumctl command tree bound to the given
// streams and the process environment. Executing it returns errors without
// printing them; use [Main] or [Invocation.Run] to get etcdctl's messages
// and exit codes.
func NewRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return newApp(Invocation{Stdin: stdin, Stdout: stdout, Stderr: stderr}).rootCommand()
}

// exitCode reports err the way etcdctl does and returns the exit code.
func (a *app) exitCode(cmd *cobra.Command, err error) int {
	if err == nil {
		return ExitSuccess
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(a.stderr, "Error:", ee.err)
		}
		return ee.code
	}
	var fe *flagError
	if errors.As(err, &fe) {
		fmt.Fprintln(a.stderr, "Error:", fe.err)
		fmt.Fprintln(a.stderr, fe.cmd.UsageString())
		return ExitError
	}
	// Errors from cobra's command lookup (unknown command and the like).
	fmt.Fprintln(a.stderr, "Error:", err)
	if cmd != nil {
		fmt.Fprintf(a.stderr, "Run '%v --help' for usage.\n", cmd.CommandPath())
	}
	return ExitError
}

// app is the state of one invocation: streams, environment and the values of
// the global flags.
type app struct {
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	environ []string

	g globalFlags
}

func newApp(inv Invocation) *app {
	a := &app{stdin: inv.Stdin, stdout: inv.Stdout, stderr: inv.Stderr, environ: inv.Environ}
	if a.stdin == nil {
		a.stdin = os.Stdin
	}
	if a.stdout == nil {
		a.stdout = os.Stdout
	}
	if a.stderr == nil {
		a.stderr = os.Stderr
	}
	if a.environ == nil {
		a.environ = os.Environ()
	}
	return a
}

// rootCommand builds the command tree.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   cliName,
		Short: "Command-line client for Kvorum and other etcd v3 servers",
		Long: `kvorumctl talks to a Kvorum (or etcd v3) cluster over the etcd v3 gRPC API.
Its commands, flags and output formats are those of etcdctl, so scripts
written for etcdctl work unchanged.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &flagError{cmd: c, err: err}
	})
	root.CompletionOptions.DisableDefaultCmd = true
	a.addGlobalFlags(root)

	root.AddCommand(
		a.getCommand(),
		a.putCommand(),
		a.delCommand(),
		a.txnCommand(),
		a.watchCommand(),
		a.compactionCommand(),
		a.leaseCommand(),
		a.lockCommand(),
		a.electCommand(),
		a.memberCommand(),
		a.endpointCommand(),
		a.snapshotCommand(),
		a.versionCommand(),
		a.alarmCommand(),
		a.defragCommand(),
		a.moveLeaderCommand(),
		a.authCommand(),
		a.userCommand(),
		a.roleCommand(),
		a.pkiCommand(),
	)
	return root
}

// runE adapts a command body to cobra: errors it returns are reported by
// exitCode, never by cobra's own printing.
func runE(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := f(cmd, args); err != nil {
			var ee *exitError
			if !errors.As(err, &ee) {
				err = fail(ExitError, err)
			}
			return err
		}
		return nil
	}
}
