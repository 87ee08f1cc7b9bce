package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.etcd.io/etcd/client/pkg/v3/srv"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/grpclog"
)

// Defaults of the global flags, the same as etcdctl's.
const (
	defaultEndpoint         = "127.0.0.1:2379"
	defaultDialTimeout      = 2 * time.Second
	defaultCommandTimeout   = 5 * time.Second
	defaultKeepAliveTime    = 2 * time.Second
	defaultKeepAliveTimeout = 6 * time.Second
)

// Environment variable prefixes. A global flag --foo-bar can be given as
// ETCDCTL_FOO_BAR or KVORUMCTL_FOO_BAR; the KVORUMCTL_ one wins if both are
// set.
const (
	envPrefixEtcd   = "ETCDCTL"
	envPrefixKvorum = "KVORUMCTL"
)

// globalFlags are the flags every command accepts.
type globalFlags struct {
	endpoints          []string
	debug              bool
	writeOut           string
	hex                bool
	dialTimeout        time.Duration
	commandTimeout     time.Duration
	keepAliveTime      time.Duration
	keepAliveTimeout   time.Duration
	maxRequestBytes    int
	maxRecvBytes       int
	insecureTransport  bool
	insecureDiscovery  bool
	insecureSkipVerify bool
	cert               string
	key                string
	cacert             string
	jwtToken           string
	user               string
	password           string
	discoverySrv       string
	discoverySrvName   string
}

func (a *app) addGlobalFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	g := &a.g
	f.StringSliceVar(&g.endpoints, "endpoints", []string{defaultEndpoint}, "comma-separated gRPC endpoints of the cluster")
	f.BoolVar(&g.debug, "debug", false, "log client internals (gRPC) and the effective flags to stderr")
	f.StringVarP(&g.writeOut, "write-out", "w", "simple", "output format: simple, json, fields, table or protobuf")
	f.BoolVar(&g.hex, "hex", false, "print keys, values and IDs hex-encoded")
	f.DurationVar(&g.dialTimeout, "dial-timeout", defaultDialTimeout, "how long to wait for a connection to the cluster")
	f.DurationVar(&g.commandTimeout, "command-timeout", defaultCommandTimeout, "how long a short command may take, dialing excluded")
	f.DurationVar(&g.keepAliveTime, "keepalive-time", defaultKeepAliveTime, "interval of client keepalive pings")
	f.DurationVar(&g.keepAliveTimeout, "keepalive-timeout", defaultKeepAliveTimeout, "how long to wait for a keepalive answer before closing the connection")
	f.IntVar(&g.maxRequestBytes, "max-request-bytes", 0, "largest request the client sends, in bytes (0: 2 MiB)")
	f.IntVar(&g.maxRecvBytes, "max-recv-bytes", 0, "largest response the client accepts, in bytes (0: no limit below 2 GiB)")
	f.BoolVar(&g.insecureTransport, "insecure-transport", true, "connect without TLS unless certificates are given")
	f.BoolVar(&g.insecureDiscovery, "insecure-discovery", true, "also use http:// endpoints found through DNS SRV records")
	f.BoolVar(&g.insecureSkipVerify, "insecure-skip-tls-verify", false, "do not verify the server certificate (testing only)")
	f.StringVar(&g.cert, "cert", "", "client certificate file for TLS")
	f.StringVar(&g.key, "key", "", "client private key file for TLS")
	f.StringVar(&g.cacert, "cacert", "", "CA bundle that signs the servers' certificates")
	f.StringVar(&g.jwtToken, "auth-jwt-token", "", "JWT token to authenticate with (instead of --user)")
	f.StringVar(&g.user, "user", "", "user name, or name:password; asks for the password if it is missing")
	f.StringVar(&g.password, "password", "", "password of --user")
	f.StringVarP(&g.discoverySrv, "discovery-srv", "d", "", "DNS domain whose SRV records list the cluster's endpoints")
	f.StringVar(&g.discoverySrvName, "discovery-srv-name", "", "service name to use in the SRV lookup")
}

// applyEnv fills the global flags not given on the command line from
// ETCDCTL_* / KVORUMCTL_* variables, as etcdctl does just before it creates
// a client (so commands without a client, like version, ignore them).
//
// Like etcdctl: an empty variable counts as unset (and is warned about as
// unrecognized); a value the flag rejects is ignored; a variable for a flag that is also on the command line is a
// fatal conflict; other ETCDCTL_* (or KVORUMCTL_*) variables draw a warning.
func (a *app) applyEnv(cmd *cobra.Command) error {
	env := make(map[string]string, len(a.environ))
	for _, kv := range a.environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	used := make(map[string]bool)
	onCmdLine := make(map[string]bool)
	var conflict string
	cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
		for _, prefix := range []string{envPrefixEtcd, envPrefixKvorum} {
			key := flagToEnv(prefix, f.Name)
			if f.Changed {
				onCmdLine[key] = true
				if env[key] != "" && conflict == "" {
					conflict = key
				}
				continue
			}
			if env[key] != "" {
				used[key] = true
			}
		}
		if f.Changed {
			return
		}
		v := env[flagToEnv(envPrefixKvorum, f.Name)]
		if v == "" {
			v = env[flagToEnv(envPrefixEtcd, f.Name)]
		}
		if v == "" {
			return
		}
		old := f.Value.String()
		if f.Value.Set(v) != nil {
			// pflag may have stored a zero value (a duration becomes 0s,
			// which etcdctl then uses); keep the default instead.
			_ = f.Value.Set(old)
		}
	})
	if cmd.Name() == "watch" {
		// watch reads these itself (see watchCommand); etcdctl does not
		// warn about them either.
		for _, prefix := range []string{envPrefixEtcd, envPrefixKvorum} {
			used[prefix+"_WATCH_KEY"], used[prefix+"_WATCH_RANGE_END"] = true, true
		}
	}
	if conflict != "" {
		logLine(a.stderr, "fatal", "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))", "environment-variable", conflict)
		return fail(ExitError, nil)
	}
	for _, kv := range a.environ {
		k, _, _ := strings.Cut(kv, "=")
		if used[k] || onCmdLine[k] {
			continue
		}
		if strings.HasPrefix(k, envPrefixEtcd+"_") || strings.HasPrefix(k, envPrefixKvorum+"_") {
			logLine(a.stderr, "warn", "unrecognized environment variable", "environment-variable", kv)
		}
	}
	return nil
}

// flagToEnv names the environment variable of a flag: --dial-timeout with
// prefix ETCDCTL is ETCDCTL_DIAL_TIMEOUT.
func flagToEnv(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// logLine writes one JSON log line in the format of etcd's zap loggers.
func logLine(w io.Writer, level, msg string, kv ...string) {
	enc := logutil.DefaultZapLoggerConfig.EncoderConfig
	enc.CallerKey = ""
	if level == "fatal" {
		// etcdctl logs this one at fatal level and exits; kvorumctl writes
		// the same level name and returns the exit code instead.
		enc.EncodeLevel = func(_ zapcore.Level, e zapcore.PrimitiveArrayEncoder) { e.AppendString("fatal") }
	}
	lg := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), zapcore.DebugLevel))
	fields := make([]zap.Field, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		fields = append(fields, zap.String(kv[i], kv[i+1]))
	}
	switch level {
	case "fatal", "error":
		lg.Error(msg, fields...)
	default:
		lg.Warn(msg, fields...)
	}
	_ = lg.Sync()
}

// newZapLogger returns a logger in etcd's JSON log format writing to w.
func newZapLogger(w io.Writer, level zapcore.Level) *zap.Logger {
	enc := logutil.DefaultZapLoggerConfig.EncoderConfig
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), level)
	return zap.New(core, zap.AddCaller())
}

// clientSpec turns the global flags (after applying the environment) into
// a client configuration. It also validates the output format, at the same
// point of a command's run as etcdctl does.
func (a *app) clientSpec(cmd *cobra.Command) (*clientv3.ConfigSpec, error) {
	if err := a.applyEnv(cmd); err != nil {
		return nil, err
	}
	if a.g.debug {
		grpclog.SetLoggerV2(grpclog.NewLoggerV2WithVerbosity(a.stderr, a.stderr, a.stderr, 4))
		cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
			fmt.Fprintf(a.stderr, "%s=%v\n", flagToEnv(envPrefixEtcd, f.Name), f.Value)
		})
	}
	eps, err := a.endpoints()
	if err != nil {
		return nil, fail(ExitError, err)
	}
	sec, err := a.secureConfig(cmd)
	if err != nil {
		return nil, err
	}
	auth, err := a.authConfig()
	if err != nil {
		return nil, err
	}
	if _, err := a.printer(); err != nil {
		return nil, err
	}
	return &clientv3.ConfigSpec{
		Endpoints:          eps,
		DialTimeout:        a.g.dialTimeout,
		KeepAliveTime:      a.g.keepAliveTime,
		KeepAliveTimeout:   a.g.keepAliveTimeout,
		MaxCallSendMsgSize: a.g.maxRequestBytes,
		MaxCallRecvMsgSize: a.g.maxRecvBytes,
		Secure:             sec,
		Auth:               auth,
	}, nil
}

// endpoints returns the endpoints found by DNS SRV discovery if
// --discovery-srv is set and finds any, else those of --endpoints.
func (a *app) endpoints() ([]string, error) {
	if a.g.discoverySrv != "" {
		srvs, err := srv.GetClient("etcd-client", a.g.discoverySrv, a.g.discoverySrvName)
		if err != nil {
			return nil, err
		}
		var eps []string
		for _, ep := range srvs.Endpoints {
			if !a.g.insecureDiscovery && strings.HasPrefix(ep, "http://") {
				fmt.Fprintf(a.stderr, "ignoring discovered insecure endpoint %q\n", ep)
				continue
			}
			eps = append(eps, ep)
		}
		if len(eps) > 0 {
			return eps, nil
		}
	}
	eps := make([]string, len(a.g.endpoints))
	for i, ep := range a.g.endpoints {
		eps[i] = strings.TrimSpace(ep)
	}
	return eps, nil
}

// secureConfig collects the TLS flags. An explicitly empty file name is an
// error, as in etcdctl.
func (a *app) secureConfig(cmd *cobra.Command) (*clientv3.SecureConfig, error) {
	for _, name := range []string{"cert", "key", "cacert"} {
		f := cmd.Flags().Lookup(name)
		if f != nil && f.Changed && f.Value.String() == "" {
			return nil, failf(ExitBadArgs, "empty string is passed to --%s option", name)
		}
	}
	serverName := a.g.discoverySrv
	if a.g.insecureDiscovery {
		serverName = ""
	}
	return &clientv3.SecureConfig{
		Cert:               a.g.cert,
		Key:                a.g.key,
		Cacert:             a.g.cacert,
		ServerName:         serverName,
		InsecureTransport:  a.g.insecureTransport,
		InsecureSkipVerify: a.g.insecureSkipVerify,
	}, nil
}

// authConfig collects --user, --password and --auth-jwt-token, asking for
// the password on the terminal when --user has none.
func (a *app) authConfig() (*clientv3.AuthConfig, error) {
	if a.g.user == "" && a.g.jwtToken == "" {
		return nil, nil
	}
	if a.g.jwtToken != "" {
		return &clientv3.AuthConfig{Token: a.g.jwtToken}, nil
	}
	if a.g.password != "" {
		return &clientv3.AuthConfig{Username: a.g.user, Password: a.g.password}, nil
	}
	if name, pw, ok := strings.Cut(a.g.user, ":"); ok {
		return &clientv3.AuthConfig{Username: name, Password: pw}, nil
	}
	pw, err := askPassword(a.stdin, a.stdout, "Password: ")
	if err != nil {
		return nil, fail(ExitError, err)
	}
	return &clientv3.AuthConfig{Username: a.g.user, Password: pw}, nil
}

// newClient creates a client from spec; logs of the client go to the
// invocation's stderr under the logger name logName.
func (a *app) newClient(spec *clientv3.ConfigSpec, logName string) (*clientv3.Client, error) {
	cfg, err := a.clientConfig(spec, logName)
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(*cfg)
	if err != nil {
		return nil, fail(ExitBadConnection, err)
	}
	return c, nil
}

// clientConfig turns spec into a client configuration (reading the TLS
// files) with a logger writing to the invocation's stderr.
func (a *app) clientConfig(spec *clientv3.ConfigSpec, logName string) (*clientv3.Config, error) {
	cfg, err := clientv3.NewClientConfig(spec, nil)
	if err != nil {
		return nil, fail(ExitBadArgs, err)
	}
	cfg.Logger = newZapLogger(a.stderr, clientv3.ClientLogLevel()).Named(logName)
	return cfg, nil
}

// client is clientSpec followed by newClient: the client of a command
// that talks to the cluster through all endpoints.
func (a *app) client(cmd *cobra.Command) (*clientv3.Client, error) {
	spec, err := a.clientSpec(cmd)
	if err != nil {
		return nil, err
	}
	return a.newClient(spec, "etcd-client")
}

// commandCtx is the context of one short request: --command-timeout.
func (a *app) commandCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.g.commandTimeout)
}

// argOrStdin returns args[i], or all of stdin if there is no such argument.
func argOrStdin(args []string, stdin io.Reader, i int) (string, error) {
	if i < len(args) {
		return args[i], nil
	}
	b, err := io.ReadAll(stdin)
	if err != nil || len(b) == 0 {
		return "", errors.New("no available argument and stdin")
	}
	return string(b), nil
}

// askPassword prints prompt to out and reads one line from in, with the
// terminal's echo off when in is a terminal.
func askPassword(in io.Reader, out io.Writer, prompt string) (string, error) {
	fmt.Fprint(out, prompt)
	if f, ok := in.(*os.File); ok {
		if restore, err := echoOff(f); err == nil {
			defer restore()
		}
	}
	var line []byte
	b := make([]byte, 1)
	for {
		n, err := in.Read(b)
		if n == 0 || b[0] == '\n' {
			if err != nil && err != io.EOF {
				return "", fmt.Errorf("failed during password entry: %w", err)
			}
			break
		}
		line = append(line, b[0])
	}
	fmt.Fprintln(out)
	return strings.TrimSpace(string(line)), nil
}
