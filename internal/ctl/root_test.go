package ctl

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

// run executes kvorumctl in-process with an empty environment (plus env)
// and returns its exit code, stdout and stderr.
func run(t *testing.T, stdin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Invocation{
		Args:    args,
		Stdin:   strings.NewReader(stdin),
		Stdout:  &out,
		Stderr:  &errOut,
		Environ: append([]string{"PATH=/bin"}, env...),
	}.Run()
	return code, out.String(), errOut.String()
}

// Every case fails before any connection is made. The expected stdout,
// stderr and exit code are what etcdctl v3.7 produces for the same
// arguments (with "etcdctl" read as "kvorumctl").
func TestErrorsAndExitCodesMatchEtcdctl(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		stdin  string
		env    []string
		code   int
		stderr string
		stdout string
	}{
		{args: []string{"put"}, code: 128, stderr: "Error: put command needs 1 argument and input from stdin or 2 arguments\n"},
		{args: []string{"put", "k"}, code: 128, stderr: "Error: put command needs 1 argument and input from stdin or 2 arguments\n"},
		{args: []string{"put", "k", "--ignore-value", "v"}, code: 128, stderr: "Error: put command needs only 1 argument when 'ignore-value' is set\n"},
		{args: []string{"put", "k", "v", "--lease", "zz"}, code: 128, stderr: "Error: bad lease ID (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex\n"},
		{args: []string{"get"}, code: 128, stderr: "Error: get command needs one argument as key and an optional argument as range_end\n"},
		{args: []string{"get", "a", "b", "--prefix"}, code: 128, stderr: "Error: too many arguments, only accept one argument when `--prefix` or `--from-key` is set\n"},
		{args: []string{"get", "a", "--prefix", "--from-key"}, code: 128, stderr: "Error: `--prefix` and `--from-key` cannot be set at the same time, choose one\n"},
		{args: []string{"get", "a", "--keys-only", "--count-only"}, code: 128, stderr: "Error: `--keys-only` and `--count-only` cannot be set at the same time, choose one\n"},
		{args: []string{"get", "foo", "--consistency", "x"}, code: 4, stderr: "Error: unknown consistency flag \"x\"\n"},
		{args: []string{"get", "foo", "--order", "x"}, code: 4, stderr: "Error: bad sort order x\n"},
		{args: []string{"get", "foo", "--sort-by", "x"}, code: 4, stderr: "Error: bad sort target x\n"},
		{args: []string{"get", "a", "--min-create-rev", "5", "--max-create-rev", "3"}, code: 4, stderr: "Error: getMinCreateRev(=5) > getMaxCreateRev(=3)\n"},
		{args: []string{"del"}, code: 128, stderr: "Error: del command needs one argument as key and an optional argument as range_end\n"},
		{args: []string{"del", "a", "b", "c"}, code: 128, stderr: "Error: del command needs one argument as key and an optional argument as range_end\n"},
		{args: []string{"compaction"}, code: 128, stderr: "Error: compaction command needs 1 argument\n"},
		{args: []string{"compaction", "abc"}, code: 1, stderr: "Error: strconv.ParseInt: parsing \"abc\": invalid syntax\n"},
		{args: []string{"txn", "a"}, code: 128, stderr: "Error: txn command does not accept argument\n"},
		{args: []string{"lease", "grant"}, code: 128, stderr: "Error: lease grant command needs TTL argument\n"},
		{args: []string{"lease", "grant", "1", "2"}, code: 128, stderr: "Error: lease grant command needs TTL argument\n"},
		{args: []string{"lease", "grant", "x"}, code: 128, stderr: "Error: bad TTL (strconv.ParseInt: parsing \"x\": invalid syntax)\n"},
		{args: []string{"lease", "revoke"}, code: 128, stderr: "Error: lease revoke command needs 1 argument\n"},
		{args: []string{"lease", "revoke", "zz"}, code: 128, stderr: "Error: bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex\n"},
		// revoke and keep-alive read the ID before the output format...
		{args: []string{"-w", "yaml", "lease", "revoke", "zz"}, code: 128, stderr: "Error: bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex\n"},
		{args: []string{"-w", "yaml", "lease", "keep-alive", "zz"}, code: 128, stderr: "Error: bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex\n"},
		// ...timetolive after it.
		{args: []string{"-w", "yaml", "lease", "timetolive", "zz"}, code: 4, stderr: "Error: unsupported output format\n"},
		{args: []string{"lease", "timetolive"}, code: 128, stderr: "Error: lease timetolive command needs lease ID as argument\n"},
		{args: []string{"lease", "timetolive", "zz"}, code: 128, stderr: "Error: bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex\n"},
		{args: []string{"lease", "keep-alive"}, code: 128, stderr: "Error: lease keep-alive command needs lease ID as argument\n"},
		{args: []string{"lease", "keep-alive", "--once", "a", "b"}, code: 128, stderr: "Error: lease keep-alive command needs lease ID as argument\n"},
		{args: []string{"-w", "yaml", "lease", "list"}, code: 4, stderr: "Error: unsupported output format\n"},
		{args: []string{"lock"}, code: 128, stderr: "Error: lock takes a lock name argument and an optional command to execute\n"},
		{args: []string{"elect"}, code: 128, stderr: "Error: elect takes one election name argument and an optional proposal argument\n"},
		{args: []string{"elect", "a", "b", "c"}, code: 128, stderr: "Error: elect takes one election name argument and an optional proposal argument\n"},
		// elect creates its client (which does not connect yet) before it
		// checks -l against the proposal.
		{args: []string{"-w", "yaml", "elect", "a"}, code: 4, stderr: "Error: unsupported output format\n"},
		{args: []string{"--endpoints", "127.0.0.1:1", "elect", "a"}, code: 128, stderr: "Error: no proposal argument but -l not set\n"},
		{args: []string{"--endpoints", "127.0.0.1:1", "elect", "-l", "a", "b"}, code: 128, stderr: "Error: proposal given but -l is set\n"},
		{args: []string{"member", "list", "--consistency", "x"}, code: 4, stderr: "Error: unknown consistency flag \"l\"\n"},
		{args: []string{"-w", "yaml", "get", "foo"}, code: 4, stderr: "Error: unsupported output format\n"},
		{args: []string{"--cert", "", "get", "k"}, code: 128, stderr: "Error: empty string is passed to --cert option\n"},
		{args: []string{"--cacert", "", "get", "k"}, code: 128, stderr: "Error: empty string is passed to --cacert option\n"},
		{args: []string{"--cacert", "/nonexistent/ca.pem", "get", "k"}, code: 128, stderr: "Error: open /nonexistent/ca.pem: no such file or directory\n"},
		{args: []string{"bogus"}, code: 1, stderr: "Error: unknown command \"bogus\" for \"kvorumctl\"\nRun 'kvorumctl --help' for usage.\n"},
		{args: []string{"--bogus", "get", "foo"}, code: 1, stderr: "Error: unknown command \"foo\" for \"kvorumctl\"\nRun 'kvorumctl --help' for usage.\n"},
		{args: []string{"member", "add"}, code: 128, stderr: "Error: member name not provided\n"},
		{args: []string{"member", "add", "x", "http://a:1", "b"}, code: 128, stderr: "Error: too many arguments, did you mean --peer-urls=http://a:1\n"},
		{args: []string{"member", "add", "x"}, code: 128, stderr: "Error: member peer urls not provided\n"},
		{args: []string{"member", "remove"}, code: 128, stderr: "Error: member ID is not provided\n"},
		{args: []string{"member", "promote", "zz"}, code: 128, stderr: "Error: bad member ID arg (strconv.ParseUint: parsing \"zz\": invalid syntax), expecting ID in Hex\n"},
		{args: []string{"member", "update", "1"}, code: 128, stderr: "Error: member peer urls not provided\n"},
		{args: []string{"alarm", "list", "x"}, code: 128, stderr: "Error: alarm list command accepts no arguments\n"},
		{args: []string{"move-leader"}, code: 128, stderr: "Error: move-leader command needs 1 argument\n"},
		{args: []string{"move-leader", "zz"}, code: 128, stderr: "Error: strconv.ParseUint: parsing \"zz\": invalid syntax\n"},
		{args: []string{"auth", "enable", "x"}, code: 128, stderr: "Error: auth enable command does not accept any arguments\n"},
		{args: []string{"user", "add", ":pw"}, code: 128, stderr: "Error: empty user name is not allowed\n"},
		{args: []string{"user", "add", "u"}, stdin: "a\nb\n", code: 128, stderr: "Error: given passwords are different\n", stdout: "Password of u: \nType password of u again for confirmation: \n"},
		{args: []string{"user", "grant-role", "u"}, code: 128, stderr: "Error: user grant command requires user name and role name as its argument\n"},
		{args: []string{"role", "grant-permission", "r", "bogus", "k"}, code: 128, stderr: "Error: invalid permission type: bogus\n"},
		{args: []string{"role", "grant-permission", "r", "read", "k", "--prefix", "--from-key"}, code: 128, stderr: "Error: --from-key and --prefix flags are mutually exclusive\n"},
		{args: []string{"role", "revoke-permission", "r", "a", "b", "--from-key"}, code: 128, stderr: "Error: unexpected endkey argument with --from-key flag\n"},
		// An environment variable is only a default: the format is still checked.
		{args: []string{"get", "foo"}, env: []string{"ETCDCTL_WRITE_OUT=yaml"}, code: 4, stderr: "Error: unsupported output format\n"},
		{args: []string{"get", "foo"}, env: []string{"KVORUMCTL_WRITE_OUT=yaml"}, code: 4, stderr: "Error: unsupported output format\n"},
	} {
		code, stdout, stderr := run(t, tc.stdin, tc.env, tc.args...)
		if code != tc.code || stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("kvorumctl %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
				tc.args, code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
}

func TestUnknownFlagPrintsErrorAndUsage(t *testing.T) {
	code, stdout, stderr := run(t, "", nil, "get", "foo", "--bogus")
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	if !strings.HasPrefix(stderr, "Error: unknown flag: --bogus\nUsage:\n  kvorumctl get [options] <key> [range_end] [flags]\n") {
		t.Fatalf("stderr %q", stderr)
	}
}

func TestVersionPrintsKvorumAndAPIVersion(t *testing.T) {
	// etcdctl prints "etcdctl version: 3.7.3\nAPI version: 3.7\n".
	code, stdout, _ := run(t, "", []string{"ETCDCTL_WRITE_OUT=yaml"}, "version")
	if want := "kvorumctl version: 0.1.0\nAPI version: 3.7\n"; code != 0 || stdout != want {
		t.Fatalf("exit %d, stdout %q; want %q", code, stdout, want)
	}
}

// parseGlobals parses args for the get command and applies env the way a
// command does before it creates its client.
func parseGlobals(t *testing.T, env []string, args ...string) (*app, string, error) {
	t.Helper()
	var errOut bytes.Buffer
	a := newApp(Invocation{Environ: env, Stderr: &errOut, Stdout: &bytes.Buffer{}})
	root := a.rootCommand()
	cmd, rest, err := root.Find(append([]string{"get"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	err = a.applyEnv(cmd)
	return a, errOut.String(), err
}

func TestGlobalFlagDefaultsAreEtcdctls(t *testing.T) {
	a, warnings, err := parseGlobals(t, nil)
	if err != nil || warnings != "" {
		t.Fatalf("err %v, warnings %q", err, warnings)
	}
	g := a.g
	if !reflect.DeepEqual(g.endpoints, []string{"127.0.0.1:2379"}) || g.dialTimeout != 2*time.Second ||
		g.commandTimeout != 5*time.Second || g.keepAliveTime != 2*time.Second || g.keepAliveTimeout != 6*time.Second ||
		g.writeOut != "simple" || g.hex || !g.insecureTransport || !g.insecureDiscovery || g.insecureSkipVerify {
		t.Fatalf("defaults: %+v", g)
	}
}

func TestEnvironmentSetsGlobalFlags(t *testing.T) {
	a, warnings, err := parseGlobals(t, []string{
		"ETCDCTL_ENDPOINTS=http://a:1,http://b:2",
		"ETCDCTL_DIAL_TIMEOUT=7s",
		"KVORUMCTL_COMMAND_TIMEOUT=9s",
		"ETCDCTL_HEX=true",
		"ETCDCTL_INSECURE_SKIP_TLS_VERIFY=true",
		"ETCDCTL_USER=root:pw",
		"ETCDCTL_KEEPALIVE_TIME=", // empty counts as unset, and draws a warning as in etcdctl
	}, "-w", "json")
	if err != nil || strings.Count(warnings, "\n") != 1 || !strings.Contains(warnings, `"environment-variable":"ETCDCTL_KEEPALIVE_TIME="`) {
		t.Fatalf("err %v, warnings %q", err, warnings)
	}
	g := a.g
	if !reflect.DeepEqual(g.endpoints, []string{"http://a:1", "http://b:2"}) || g.dialTimeout != 7*time.Second ||
		g.commandTimeout != 9*time.Second || !g.hex || !g.insecureSkipVerify || g.user != "root:pw" ||
		g.keepAliveTime != 2*time.Second || g.writeOut != "json" {
		t.Fatalf("flags after env: %+v", g)
	}
}

func TestKvorumctlVariableWinsOverEtcdctlVariable(t *testing.T) {
	a, _, err := parseGlobals(t, []string{"ETCDCTL_ENDPOINTS=http://etcd:1", "KVORUMCTL_ENDPOINTS=http://kvorum:1"})
	if err != nil || !reflect.DeepEqual(a.g.endpoints, []string{"http://kvorum:1"}) {
		t.Fatalf("err %v, endpoints %q", err, a.g.endpoints)
	}
}

// A value the flag cannot parse is silently ignored. (etcdctl ignores the
// error too, but pflag has already set the duration to 0 by then.)
func TestBadEnvironmentValueIsIgnored(t *testing.T) {
	a, warnings, err := parseGlobals(t, []string{"ETCDCTL_DIAL_TIMEOUT=abc"})
	if err != nil || warnings != "" || a.g.dialTimeout != 2*time.Second {
		t.Fatalf("err %v, warnings %q, dial timeout %v", err, warnings, a.g.dialTimeout)
	}
}

// Like etcdctl: variables that name no global flag (command flags like
// --prefix included) draw a warning log line and are otherwise ignored.
func TestUnknownVariablesAreWarnedAbout(t *testing.T) {
	a, warnings, err := parseGlobals(t, []string{"ETCDCTL_PREFIX=1", "KVORUMCTL_BOGUS=x", "OTHER=1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"ETCDCTL_PREFIX=1", "KVORUMCTL_BOGUS=x"} {
		if !strings.Contains(warnings, `"level":"warn"`) || !strings.Contains(warnings, `"msg":"unrecognized environment variable","environment-variable":"`+v+`"`) {
			t.Errorf("no warning about %s in %q", v, warnings)
		}
	}
	if strings.Contains(warnings, "OTHER") || strings.Count(warnings, "\n") != 2 {
		t.Errorf("warnings %q", warnings)
	}
	if a.g.writeOut != "simple" {
		t.Errorf("write-out %q", a.g.writeOut)
	}
}

// Like etcdctl: a variable for a flag that is also given on the command
// line is a fatal conflict (exit 1, one fatal log line).
func TestVariableShadowedByFlagIsFatal(t *testing.T) {
	code, stdout, stderr := run(t, "", []string{"ETCDCTL_ENDPOINTS=127.0.0.1:1"}, "--endpoints", "127.0.0.1:2", "get", "k")
	if code != 1 || stdout != "" || !strings.Contains(stderr, `"level":"fatal"`) ||
		!strings.Contains(stderr, `"environment-variable":"ETCDCTL_ENDPOINTS"`) || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestDelRangeWarnsAndPausesUnlessRangeFlag(t *testing.T) {
	var stderr bytes.Buffer
	var slept time.Duration
	o := delOptions{}
	if _, _, err := o.op([]string{"a", "c"}, &stderr, func(d time.Duration) { slept += d }); err != nil {
		t.Fatal(err)
	}
	// etcdctl --endpoints ... del a c (stderr)
	want := "Warning: Keys between \"a\" and \"c\" will be deleted. Please interrupt the command within next 2 seconds to cancel. You can provide `--range` flag to avoid the delay.\n"
	if stderr.String() != want || slept != 2*time.Second {
		t.Fatalf("stderr %q, slept %v", stderr.String(), slept)
	}
	stderr.Reset()
	slept = 0
	o.isRange = true
	if _, _, err := o.op([]string{"a", "c"}, &stderr, func(d time.Duration) { slept += d }); err != nil || stderr.Len() != 0 || slept != 0 {
		t.Fatalf("with --range: err %v, stderr %q, slept %v", err, stderr.String(), slept)
	}
}

func TestPutReadsValueFromStdin(t *testing.T) {
	o := putOptions{lease: "0"}
	key, value, _, err := o.op([]string{"k"}, strings.NewReader("line1\nline2\n"))
	if err != nil || key != "k" || value != "line1\nline2\n" {
		t.Fatalf("key %q, value %q, err %v", key, value, err)
	}
}
