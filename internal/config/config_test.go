package config

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func urls(t *testing.T, ss ...string) []url.URL {
	t.Helper()
	var out []url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *u)
	}
	return out
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func mustParse(t *testing.T, args []string, getenv func(string) string) *Config {
	t.Helper()
	c, err := Parse(args, getenv)
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return c
}

func TestDefaultsEqualEtcds(t *testing.T) {
	c := mustParse(t, nil, nil)
	want := &Config{
		Name:                     "default",
		DataDir:                  "default.kvorum", // etcd: default.etcd
		ListenClientURLs:         urls(t, "http://localhost:2379"),
		AdvertiseClientURLs:      urls(t, "http://localhost:2379"),
		ListenPeerURLs:           urls(t, "http://localhost:2380"),
		InitialAdvertisePeerURLs: urls(t, "http://localhost:2380"),
		InitialCluster:           []Member{{Name: "default", PeerURLs: urls(t, "http://localhost:2380")}},
		InitialClusterState:      "new",
		InitialClusterToken:      "etcd-cluster",
		HeartbeatInterval:        100 * time.Millisecond,
		ElectionTimeout:          1000 * time.Millisecond,
		SnapshotCount:            10000,
		MaxWALs:                  5,
		SnapshotCatchUpEntries:   5000,
		MaxRequestBytes:          1572864,
		MaxTxnOps:                128,
		StrictReconfigCheck:      true,
		MaxLearners:              1,
		InitialCorruptCheck:      true,
		CompactHashCheck:         true,
		CompactHashCheckTime:     time.Minute,
		AuthToken:                "simple",
		AuthTokenTTL:             300 * time.Second,
		BcryptCost:               10,
		AutoCompactionMode:       "periodic",
		CompactionBatchLimit:     10000,
		CompactionSleepInterval:  130 * time.Millisecond,
		BackupRetention:          7,
		LogFormat:                "json",
		LogLevel:                 "info",
		Logger:                   "zap",
		LogOutputs:               []string{"default"},
		TLSMinVersion:            "TLS1.2",
		SelfSignedCertValidity:   1,
		EnableGRPCGateway:        true,
	}
	c.Warnings = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(nil) =\n%+v\nwant\n%+v", c, want)
	}
	if !reflect.DeepEqual(Default(), want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", Default(), want)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestDefaultsFollowName(t *testing.T) {
	c := mustParse(t, []string{"--name=infra0", "--initial-advertise-peer-urls=http://10.0.0.1:2380,http://10.0.0.2:2380"}, nil)
	if c.DataDir != "infra0.kvorum" {
		t.Errorf("DataDir = %q, want infra0.kvorum", c.DataDir)
	}
	want := []Member{{Name: "infra0", PeerURLs: urls(t, "http://10.0.0.1:2380", "http://10.0.0.2:2380")}}
	if !reflect.DeepEqual(c.InitialCluster, want) {
		t.Errorf("InitialCluster = %+v, want %+v", c.InitialCluster, want)
	}
}

func TestInitialClusterKeepsOrderAndMergesRepeatedNames(t *testing.T) {
	c := mustParse(t, []string{
		"--name=b",
		"--initial-advertise-peer-urls=http://10.0.0.2:2380,http://10.0.1.2:2380",
		"--initial-cluster=c=http://10.0.0.3:2380,b=http://10.0.0.2:2380,a=http://10.0.0.1:2380,b=http://10.0.1.2:2380",
	}, nil)
	want := []Member{
		{Name: "c", PeerURLs: urls(t, "http://10.0.0.3:2380")},
		{Name: "b", PeerURLs: urls(t, "http://10.0.0.2:2380", "http://10.0.1.2:2380")},
		{Name: "a", PeerURLs: urls(t, "http://10.0.0.1:2380")},
	}
	if !reflect.DeepEqual(c.InitialCluster, want) {
		t.Errorf("InitialCluster = %+v, want %+v", c.InitialCluster, want)
	}
}

func TestFlagSyntaxIsGoFlagSyntaxAsInEtcd(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want func(*Config) bool
	}{
		{"two dashes and equals", []string{"--name=a"}, func(c *Config) bool { return c.Name == "a" }},
		{"one dash and equals", []string{"-name=a"}, func(c *Config) bool { return c.Name == "a" }},
		{"value as next argument", []string{"-name", "a"}, func(c *Config) bool { return c.Name == "a" }},
		{"value that starts with a dash", []string{"--initial-cluster-token", "-tok"}, func(c *Config) bool { return c.InitialClusterToken == "-tok" }},
		{"bool alone means true", []string{"--enable-pprof", "--name", "a"}, func(c *Config) bool { return c.EnablePprof && c.Name == "a" }},
		{"bool with a value", []string{"--enable-pprof=false"}, func(c *Config) bool { return !c.EnablePprof }},
		{"gateway off", []string{"--enable-grpc-gateway=false"}, func(c *Config) bool { return !c.EnableGRPCGateway && len(c.Ignored) == 0 }},
		{"last one wins", []string{"--name=a", "--name=b"}, func(c *Config) bool { return c.Name == "b" }},
		{"empty value keeps the default", []string{"--name=", "--data-dir="}, func(c *Config) bool { return c.Name == "default" && c.DataDir == "default.kvorum" }},
		{"double dash ends the flags", []string{"--name=a", "--"}, func(c *Config) bool { return c.Name == "a" }},
		{"retired etcd flag alone", []string{"-v", "--snapshot"}, func(c *Config) bool { return slices.Equal(c.Ignored, []string{"snapshot", "v"}) }},
		{"hex number as Go parses it", []string{"--max-txn-ops=0x10"}, func(c *Config) bool { return c.MaxTxnOps == 16 }},
		{"repeated URLs collapse", []string{"--listen-metrics-urls=http://127.0.0.1:9000,http://127.0.0.1:9000"}, func(c *Config) bool { return len(c.ListenMetricsURLs) == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.args, nil)
			if !tc.want(c) {
				t.Errorf("Parse(%q) = %+v", tc.args, c)
			}
		})
	}
}

func TestSettingsReachTheConfig(t *testing.T) {
	c := mustParse(t, []string{
		"--name=m1", "--data-dir=/var/lib/kvorum",
		"--listen-client-urls=https://10.0.0.1:2379,unix://localhost:0",
		"--advertise-client-urls=https://m1.example.com:2379",
		"--listen-peer-urls=https://10.0.0.1:2380",
		"--initial-advertise-peer-urls=https://m1.example.com:2380",
		"--initial-cluster=m1=https://m1.example.com:2380,m2=https://m2.example.com:2380",
		"--initial-cluster-state=existing", "--initial-cluster-token=tok",
		"--heartbeat-interval=50", "--election-timeout=500", "--snapshot-count=7",
		"--quota-backend-bytes=-1", "--max-request-bytes=1024", "--max-txn-ops=9",
		"--strict-reconfig-check=false", "--max-learners=3",
		"--auto-compaction-mode=revision", "--auto-compaction-retention=1000",
		"--log-level=debug", "--logger=zap", "--log-outputs=stderr,/var/log/k.log", "--log-format=console",
		"--listen-metrics-urls=http://127.0.0.1:2381", "--enable-pprof",
		"--cert-file=c.pem", "--key-file=k.pem", "--trusted-ca-file=ca.pem", "--client-cert-auth",
		"--client-crl-file=crl.pem", "--client-cert-allowed-hostname=a.example,b.example",
		"--client-cert-file=cc.pem", "--client-key-file=ck.pem",
		"--peer-auto-tls", "--peer-client-cert-auth=true", "--peer-trusted-ca-file=pca.pem",
		"--peer-crl-file=pcrl.pem", "--peer-cert-allowed-cn=m1,m2", "--peer-skip-client-san-verification",
		"--peer-client-cert-file=pcc.pem", "--peer-client-key-file=pck.pem",
		"--listen-client-http-urls=http://127.0.0.1:2382", "--self-signed-cert-validity=3",
		"--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"--tls-min-version=TLS1.2", "--tls-max-version=TLS1.3",
	}, nil)
	want := &Config{
		Name: "m1", DataDir: "/var/lib/kvorum",
		ListenClientURLs:         urls(t, "https://10.0.0.1:2379", "unix://localhost:0"),
		AdvertiseClientURLs:      urls(t, "https://m1.example.com:2379"),
		ListenPeerURLs:           urls(t, "https://10.0.0.1:2380"),
		InitialAdvertisePeerURLs: urls(t, "https://m1.example.com:2380"),
		ListenMetricsURLs:        urls(t, "http://127.0.0.1:2381"),
		InitialCluster: []Member{
			{Name: "m1", PeerURLs: urls(t, "https://m1.example.com:2380")},
			{Name: "m2", PeerURLs: urls(t, "https://m2.example.com:2380")},
		},
		InitialClusterState: "existing", InitialClusterToken: "tok",
		HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		SnapshotCount: 7, MaxWALs: 5, SnapshotCatchUpEntries: 5000, QuotaBackendBytes: -1, MaxRequestBytes: 1024, MaxTxnOps: 9,
		MaxLearners:         3,
		InitialCorruptCheck: true, CompactHashCheck: true, CompactHashCheckTime: time.Minute,
		AuthToken: "simple", AuthTokenTTL: 300 * time.Second, BcryptCost: 10,
		AutoCompactionMode: "revision", AutoCompactionRevisions: 1000,
		CompactionBatchLimit: 10000, CompactionSleepInterval: 130 * time.Millisecond,
		BackupRetention: 7,
		LogLevel:        "debug", Logger: "zap", LogOutputs: []string{"stderr", "/var/log/k.log"}, LogFormat: "console",
		EnablePprof: true, EnableGRPCGateway: true,
		ClientTLS: TLSInfo{CertFile: "c.pem", KeyFile: "k.pem", TrustedCAFile: "ca.pem", ClientCertAuth: true,
			CRLFile: "crl.pem", AllowedHostnames: []string{"a.example", "b.example"}, ClientCertFile: "cc.pem", ClientKeyFile: "ck.pem"},
		PeerTLS: TLSInfo{TrustedCAFile: "pca.pem", ClientCertAuth: true, AutoTLS: true, CRLFile: "pcrl.pem",
			AllowedCNs: []string{"m1", "m2"}, SkipClientSANVerify: true, ClientCertFile: "pcc.pem", ClientKeyFile: "pck.pem"},
		ListenClientHTTPURLs:   urls(t, "http://127.0.0.1:2382"),
		SelfSignedCertValidity: 3,
		CipherSuites:           []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
		TLSMinVersion:          "TLS1.2", TLSMaxVersion: "TLS1.3",
		Warnings: []string{"--listen-client-urls has unix://localhost:0, which is plain text; TLS and client certificates do not apply to it (use https)"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
}

func TestAutoCompactionRetentionIsReadAsEtcdReadsIt(t *testing.T) {
	for _, tc := range []struct {
		mode, retention string
		period          time.Duration
		revisions       int64
	}{
		{"periodic", "1", time.Hour, 0},
		{"periodic", "30m", 30 * time.Minute, 0},
		{"periodic", "0", 0, 0},
		{"revision", "1000", 0, 1000},
	} {
		c := mustParse(t, []string{"--auto-compaction-retention=" + tc.retention, "--auto-compaction-mode=" + tc.mode}, nil)
		if c.AutoCompactionRetention != tc.period || c.AutoCompactionRevisions != tc.revisions {
			t.Errorf("%s %s: got %v and %d revisions, want %v and %d", tc.mode, tc.retention,
				c.AutoCompactionRetention, c.AutoCompactionRevisions, tc.period, tc.revisions)
		}
	}
}

func TestEachInvalidInputIsRefusedInOneLineNamingIt(t *testing.T) {
	peer := "--initial-advertise-peer-urls=http://10.0.0.1:2380"
	for _, tc := range []struct {
		name string
		args []string
		want string // the error contains this
	}{
		{"unknown flag", []string{"--foo"}, "unknown flag: --foo"},
		{"unknown flag with value", []string{"--foo=1"}, "unknown flag: --foo"},
		{"positional argument", []string{"--name=a", "extra"}, `unexpected argument "extra"`},
		{"argument after double dash", []string{"--", "x"}, `unexpected argument "x"`},
		{"three dashes", []string{"---name=a"}, "bad flag syntax"},
		{"missing value", []string{"--name"}, "--name needs a value"},
		{"not a number", []string{"--heartbeat-interval=fast"}, `invalid value "fast" for --heartbeat-interval`},
		{"negative heartbeat", []string{"--heartbeat-interval=-1"}, `invalid value "-1" for --heartbeat-interval`},
		{"negative snapshot count", []string{"--snapshot-count=-5"}, `invalid value "-5" for --snapshot-count`},
		{"negative max txn ops", []string{"--max-txn-ops=-1"}, "--max-txn-ops"},
		{"bad bool", []string{"--client-cert-auth=yes-please"}, `invalid value "yes-please" for --client-cert-auth`},
		{"bad value of an ignored flag", []string{"--max-wals=many"}, `invalid value "many" for --max-wals`},
		{"bad duration of an ignored flag", []string{"--grpc-keepalive-interval=5"}, "want a duration"},
		{"bad watch progress interval", []string{"--experimental-watch-progress-notify-interval=5"}, "want a duration"},
		{"zero heartbeat", []string{"--heartbeat-interval=0"}, "--heartbeat-interval must be at least 1"},
		{"zero election timeout", []string{"--election-timeout=0"}, "--election-timeout must be at least 1"},
		{"election under 5 heartbeats", []string{"--heartbeat-interval=100", "--election-timeout=499"}, "--election-timeout (499ms) must be at least 5 times --heartbeat-interval (100ms)"},
		{"election too long", []string{"--heartbeat-interval=1000", "--election-timeout=50001"}, "--election-timeout (50001ms) must be at most 50000"},
		{"zero max request bytes", []string{"--max-request-bytes=0"}, "--max-request-bytes must be more than 0"},
		{"zero max txn ops", []string{"--max-txn-ops=0"}, "--max-txn-ops must be more than 0"},
		{"bad cluster state", []string{"--initial-cluster-state=old"}, `invalid value "old" for --initial-cluster-state`},
		{"bad log level", []string{"--log-level=loud"}, `invalid value "loud" for --log-level`},
		{"capnslog logger", []string{"--logger=capnslog"}, `invalid value "capnslog" for --logger`},
		{"default log output with others", []string{"--log-outputs=default,stderr"}, "'default' cannot be combined"},
		{"bad compaction mode", []string{"--auto-compaction-mode=hourly"}, `invalid value "hourly" for --auto-compaction-mode`},
		{"bad compaction retention", []string{"--auto-compaction-retention=soon"}, `invalid value "soon" for --auto-compaction-retention`},
		{"revision retention as duration", []string{"--auto-compaction-mode=revision", "--auto-compaction-retention=1h"}, "want a number of revisions"},
		{"URL scheme", []string{"--listen-client-urls=ftp://127.0.0.1:2379", "--advertise-client-urls=http://a:2379"}, `--listen-client-urls: "ftp://127.0.0.1:2379" has scheme "ftp"`},
		{"URL without port", []string{"--listen-client-urls=http://127.0.0.1", "--advertise-client-urls=http://a:2379"}, "must have the form http://host:port"},
		{"URL with path", []string{"--advertise-client-urls=http://a:2379/v3"}, "must not have a path"},
		{"not a URL", []string{"--advertise-client-urls=http://a:2379/%zz"}, "is not a URL"},
		{"listen on a host name", []string{"--listen-peer-urls=http://example.com:2380"}, "must name an IP address or localhost"},
		{"advertise without host", []string{"--advertise-client-urls=http://:2379"}, "has no host"},
		{"listen without advertise", []string{"--listen-client-urls=http://10.0.0.1:2379"}, "--listen-client-urls is given without --advertise-client-urls"},
		{"name missing from cluster", []string{"--name=a", "--initial-cluster=b=http://10.0.0.2:2380"}, `--initial-cluster has no member named "a"`},
		{"name missing from cluster when joining", []string{"--name=a", "--initial-cluster-state=existing", "--initial-cluster=b=http://10.0.0.2:2380"}, `--initial-cluster has no member named "a"`},
		{"cluster entry without URL", []string{"--initial-cluster=default"}, `entry "default" must be name=peerURL`},
		{"cluster entry without name", []string{"--initial-cluster==http://localhost:2380"}, "has no name"},
		{"cluster URL scheme", []string{"--initial-cluster=default=localhost:2380"}, `--initial-cluster: "localhost:2380" has scheme "localhost"`},
		{"same URL for two members", []string{"--name=a", peer, "--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.1:2380"}, `gives http://10.0.0.1:2380 to both "a" and "b"`},
		{"same URL twice for one member", []string{"--name=a", peer, "--initial-cluster=a=http://10.0.0.1:2380,a=http://10.0.0.1:2380"}, `lists http://10.0.0.1:2380 twice for member "a"`},
		{"advertised URLs differ from cluster", []string{"--name=a", peer, "--initial-cluster=a=http://10.0.0.9:2380"}, "--initial-advertise-peer-urls http://10.0.0.1:2380 differs from this member's URLs in --initial-cluster (a=http://10.0.0.9:2380)"},
		{"advertised URLs a subset of cluster", []string{"--name=a", peer, "--initial-cluster=a=http://10.0.0.1:2380,a=http://10.0.0.2:2380"}, "differs from this member's URLs"},
		{"name with comma", []string{"--name=a,b"}, "must not contain ','"},
		{"cert without key", []string{"--cert-file=c.pem"}, "--cert-file and --key-file must be given together"},
		{"peer key without cert", []string{"--peer-key-file=k.pem"}, "--peer-cert-file and --peer-key-file must be given together"},
		{"client cert without key", []string{"--peer-client-cert-file=c.pem"}, "--peer-client-cert-file and --peer-client-key-file must be given together"},
		{"allowed CN and hostname", []string{"--peer-cert-allowed-cn=a", "--peer-cert-allowed-hostname=b"}, "--peer-cert-allowed-cn and --peer-cert-allowed-hostname exclude each other"},
		{"peer auto TLS with client auth and no CA", []string{"--peer-auto-tls", "--peer-client-cert-auth"}, "--peer-client-cert-auth with --peer-auto-tls needs --peer-trusted-ca-file"},
		{"auto TLS with client auth and no CA", []string{"--auto-tls", "--client-cert-auth"}, "--client-cert-auth with --auto-tls needs --trusted-ca-file"},
		{"bad TLS version", []string{"--tls-min-version=TLS1.1"}, `--tls-min-version "TLS1.1": want TLS1.2 or TLS1.3`},
		{"TLS min above max", []string{"--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"}, "--tls-min-version TLS1.3 is above --tls-max-version TLS1.2"},
		{"cipher suites with TLS 1.3 only", []string{"--tls-min-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, "--cipher-suites cannot be set with --tls-min-version TLS1.3"},
		{"unknown cipher suite", []string{"--cipher-suites=TLS_RSA_WITH_RC4"}, `unknown cipher suite "TLS_RSA_WITH_RC4"`},
		{"zero certificate validity", []string{"--self-signed-cert-validity=0"}, "want a number of years, 1 or more"},
		{"https HTTP URL without certificate", []string{"--listen-client-http-urls=https://127.0.0.1:2382"}, "--listen-client-http-urls has https://127.0.0.1:2382, which needs TLS"},
		{"https without certificate", []string{"--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379"}, "--listen-client-urls has https://127.0.0.1:2379, which needs TLS"},
		{"peer https without certificate", []string{"--listen-peer-urls=https://127.0.0.1:2380"}, "--listen-peer-urls has https://127.0.0.1:2380, which needs TLS"},
		{"discovery by DNS", []string{"--discovery-srv=example.com"}, "bootstrap by discovery is not supported"},
		{"v3 discovery", []string{"--discovery-endpoints=http://d:2379", "--discovery-token=t"}, "bootstrap by discovery is not supported"},
		{"v2 discovery", []string{"--discovery=https://discovery.etcd.io/x"}, "bootstrap by discovery is not supported"},
		{"v2 proxy", []string{"--proxy=on"}, "the v2 proxy is not supported"},
		{"proxy fallback", []string{"--discovery-fallback=proxy"}, "the v2 proxy is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.args, nil)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error containing %q", tc.args, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %q, want it to contain %q", tc.args, err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has more than one line: %q", err)
			}
		})
	}
}

func TestValidateRefusesABuiltConfigWithARepeatedMember(t *testing.T) {
	c := Default()
	c.InitialCluster = append(c.InitialCluster, Member{Name: "default", PeerURLs: urls(t, "http://10.0.0.2:2380")})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `lists member "default" twice`) {
		t.Errorf("Validate() = %v, want a repeated member error", err)
	}
}

func TestHelpReturnsErrHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"--name=a", "-h"}} {
		if _, err := Parse(args, nil); !errors.Is(err, ErrHelp) {
			t.Errorf("Parse(%q) = %v, want ErrHelp", args, err)
		}
	}
}

func TestVersionSkipsEverythingElse(t *testing.T) {
	c, err := Parse([]string{"--version", "--initial-cluster-state=bogus"}, env(map[string]string{"KVORUM_NAME": "x"}))
	if err != nil || !c.PrintVersion {
		t.Errorf("Parse(--version ...) = %+v, %v; want PrintVersion and no error", c, err)
	}
}

func TestUsageListsEveryFlag(t *testing.T) {
	u := Usage()
	for _, name := range flagNames() {
		if !strings.Contains(u, "--"+name+" ") && !strings.Contains(u, "--"+name+"\n") {
			t.Errorf("Usage() does not mention --%s", name)
		}
	}
}

func TestEnvironmentVariables(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		want     func(*Config) bool
		warnings []string // each is contained in one of the warnings
	}{
		{
			name: "KVORUM_ variable sets a flag",
			env:  map[string]string{"KVORUM_NAME": "a", "KVORUM_DATA_DIR": "/d", "KVORUM_CLIENT_CERT_AUTH": "true", "KVORUM_HEARTBEAT_INTERVAL": "10"},
			want: func(c *Config) bool {
				return c.Name == "a" && c.DataDir == "/d" && c.ClientTLS.ClientCertAuth && c.HeartbeatInterval == 10*time.Millisecond
			},
		},
		{
			name: "ETCD_ variable sets a flag",
			env:  map[string]string{"ETCD_NAME": "a", "ETCD_INITIAL_CLUSTER_TOKEN": "t"},
			want: func(c *Config) bool { return c.Name == "a" && c.InitialClusterToken == "t" },
		},
		{
			name:     "KVORUM_ wins over ETCD_",
			env:      map[string]string{"KVORUM_NAME": "k", "ETCD_NAME": "e"},
			want:     func(c *Config) bool { return c.Name == "k" },
			warnings: []string{"environment variable ETCD_NAME is ignored: KVORUM_NAME is set too"},
		},
		{
			name:     "command line wins over the environment",
			args:     []string{"--name=flag"},
			env:      map[string]string{"KVORUM_NAME": "k", "ETCD_NAME": "e"},
			want:     func(c *Config) bool { return c.Name == "flag" },
			warnings: []string{"environment variable KVORUM_NAME is ignored: --name on the command line wins"},
		},
		{
			name: "equal values on both sides are no conflict",
			args: []string{"--name=a"},
			env:  map[string]string{"ETCD_NAME": "a"},
			want: func(c *Config) bool { return c.Name == "a" && len(c.Warnings) == 0 },
		},
		{
			name: "empty variable counts as unset",
			env:  map[string]string{"ETCD_NAME": "", "ETCD_DATA_DIR": ""},
			want: func(c *Config) bool { return c.Name == "default" && c.DataDir == "default.kvorum" },
		},
		{
			name: "variable for an ignored flag is listed",
			env:  map[string]string{"ETCD_ENABLE_V2": "true", "KVORUM_MAX_SNAPSHOTS": "3"},
			want: func(c *Config) bool {
				return slices.Equal(c.Ignored, []string{"enable-v2", "max-snapshots"})
			},
		},
		{
			name:     "version variable does not print the version",
			env:      map[string]string{"ETCD_VERSION": "3.5.0"},
			want:     func(c *Config) bool { return !c.PrintVersion },
			warnings: []string{"environment variable ETCD_VERSION is ignored"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.args, env(tc.env))
			if !tc.want(c) {
				t.Errorf("got %+v", c)
			}
			for _, w := range tc.warnings {
				if !slices.ContainsFunc(c.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
					t.Errorf("Warnings = %q, want one containing %q", c.Warnings, w)
				}
			}
		})
	}
}

func TestBadEnvironmentValueNamesTheVariable(t *testing.T) {
	_, err := Parse(nil, env(map[string]string{"ETCD_ELECTION_TIMEOUT": "long"}))
	if err == nil || !strings.Contains(err.Error(), `invalid value "long" for environment variable ETCD_ELECTION_TIMEOUT`) {
		t.Errorf("Parse = %v, want an error naming ETCD_ELECTION_TIMEOUT", err)
	}
}

func TestParseEnvironWarnsAboutUnknownVariables(t *testing.T) {
	c, err := ParseEnviron([]string{"--name=a"}, []string{
		"PATH=/bin", "KVORUM_NAME=b", "KVORUM_NMAE=x", "ETCD_FOO=1", "ETCDCTL_API=3",
		"ETCD_UNSUPPORTED_ARCH=arm64", "ETCD_DATA_DIR=/d",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "a" || c.DataDir != "/d" {
		t.Errorf("Name, DataDir = %q, %q; want a, /d", c.Name, c.DataDir)
	}
	want := []string{
		"environment variable KVORUM_NAME is ignored: --name on the command line wins",
		"environment variable KVORUM_NMAE matches no flag and is ignored",
		"environment variable ETCD_FOO matches no flag and is ignored",
	}
	if !reflect.DeepEqual(c.Warnings, want) {
		t.Errorf("Warnings =\n%q\nwant\n%q", c.Warnings, want)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kvorum.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFile(t *testing.T) {
	const full = `
name: infra1
data-dir: /var/lib/etcd
listen-peer-urls: https://10.0.0.1:2380
listen-client-urls: https://10.0.0.1:2379,https://127.0.0.1:2379
initial-advertise-peer-urls: https://10.0.0.1:2380
advertise-client-urls: https://10.0.0.1:2379
listen-metrics-urls: http://127.0.0.1:2381
initial-cluster: infra0=https://10.0.0.0:2380,infra1=https://10.0.0.1:2380
initial-cluster-state: existing
initial-cluster-token: tok
heartbeat-interval: 200
election-timeout: 2000
snapshot-count: 5000
quota-backend-bytes: 8589934592
max-request-bytes: 2097152
max-txn-ops: 256
auto-compaction-mode: periodic
auto-compaction-retention: "8"
log-level: warn
logger: zap
log-outputs: [stderr]
enable-pprof: true
enable-v2: false
experimental-initial-corrupt-check: true
wal-dir:
discovery-srv: ""
client-transport-security:
  cert-file: /c.pem
  key-file: /k.pem
  client-cert-auth: true
  trusted-ca-file: /ca.pem
  auto-tls: false
  allowed-cn: [admin, kube-apiserver]
peer-transport-security:
  cert-file: /pc.pem
  key-file: /pk.pem
  client-cert-auth: true
  trusted-ca-file: /pca.pem
  allowed-cn: [etcd]
`
	c := mustParse(t, []string{"--config-file=" + writeFile(t, full)}, nil)
	want := &Config{
		Name: "infra1", DataDir: "/var/lib/etcd",
		ListenPeerURLs:           urls(t, "https://10.0.0.1:2380"),
		ListenClientURLs:         urls(t, "https://10.0.0.1:2379", "https://127.0.0.1:2379"),
		InitialAdvertisePeerURLs: urls(t, "https://10.0.0.1:2380"),
		AdvertiseClientURLs:      urls(t, "https://10.0.0.1:2379"),
		ListenMetricsURLs:        urls(t, "http://127.0.0.1:2381"),
		InitialCluster: []Member{
			{Name: "infra0", PeerURLs: urls(t, "https://10.0.0.0:2380")},
			{Name: "infra1", PeerURLs: urls(t, "https://10.0.0.1:2380")},
		},
		InitialClusterState: "existing", InitialClusterToken: "tok",
		HeartbeatInterval: 200 * time.Millisecond, ElectionTimeout: 2 * time.Second,
		SnapshotCount: 5000, MaxWALs: 5, SnapshotCatchUpEntries: 5000, QuotaBackendBytes: 8 << 30, MaxRequestBytes: 2 << 20, MaxTxnOps: 256,
		StrictReconfigCheck: true, MaxLearners: 1,
		InitialCorruptCheck: true, CompactHashCheck: true, CompactHashCheckTime: time.Minute,
		AuthToken: "simple", AuthTokenTTL: 300 * time.Second, BcryptCost: 10,
		AutoCompactionMode: "periodic", AutoCompactionRetention: 8 * time.Hour,
		CompactionBatchLimit: 10000, CompactionSleepInterval: 130 * time.Millisecond,
		BackupRetention: 7,
		LogLevel:        "warn", Logger: "zap", LogOutputs: []string{"stderr"}, LogFormat: "json",
		EnablePprof: true, EnableGRPCGateway: true,
		ClientTLS: TLSInfo{CertFile: "/c.pem", KeyFile: "/k.pem", TrustedCAFile: "/ca.pem", ClientCertAuth: true,
			AllowedCNs: []string{"admin", "kube-apiserver"}},
		PeerTLS:                TLSInfo{CertFile: "/pc.pem", KeyFile: "/pk.pem", TrustedCAFile: "/pca.pem", ClientCertAuth: true, AllowedCNs: []string{"etcd"}},
		Ignored:                []string{"enable-v2"},
		TLSMinVersion:          "TLS1.2",
		SelfSignedCertValidity: 1,
	}
	want.ConfigFile = c.ConfigFile
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
}

func TestConfigFileMakesFlagsAndEnvironmentIgnored(t *testing.T) {
	p := writeFile(t, "name: fromfile\n")
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"given as a flag", []string{"--name=fromflag", "--config-file", p}, map[string]string{"ETCD_DATA_DIR": "/env"}},
		{"given as KVORUM_CONFIG_FILE", []string{"--name=fromflag"}, map[string]string{"KVORUM_CONFIG_FILE": p, "ETCD_DATA_DIR": "/env"}},
		{"given as ETCD_CONFIG_FILE", []string{"--name=fromflag"}, map[string]string{"ETCD_CONFIG_FILE": p, "ETCD_DATA_DIR": "/env"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.args, env(tc.env))
			if c.Name != "fromfile" || c.DataDir != "fromfile.kvorum" || c.ConfigFile != p {
				t.Errorf("Name, DataDir, ConfigFile = %q, %q, %q; want the file's", c.Name, c.DataDir, c.ConfigFile)
			}
			want := []string{
				"--name is ignored: settings come only from the config file " + p,
				"environment variable ETCD_DATA_DIR is ignored: settings come only from the config file " + p,
			}
			for _, w := range want {
				if !slices.Contains(c.Warnings, w) {
					t.Errorf("Warnings = %q, want %q among them", c.Warnings, w)
				}
			}
		})
	}
}

func TestConfigFileErrorsNameTheFileAndKey(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"unknown key", "name: a\nnmae: b\n", `unknown key "nmae"`},
		{"TLS key at the top level", "peer-cert-file: /x.pem\n", `unknown key "peer-cert-file" (write it as cert-file under peer-transport-security)`},
		{"unknown TLS key", "client-transport-security:\n  cert: /x.pem\n", `unknown key "cert" in client-transport-security`},
		{"TLS section not a map", "client-transport-security: yes\n", "client-transport-security must be a map"},
		{"wrong type", "heartbeat-interval: fast\n", `invalid value "fast" for heartbeat-interval in config file`},
		{"map where a value belongs", "name: {a: b}\n", "name must be a single value"},
		{"not YAML", "name: [a\n", "config file"},
		{"not a map", "- a\n- b\n", "want a map of etcd config keys"},
		{"validation", "election-timeout: 10\n", "config file"},
		{"discovery", "discovery-config:\n  endpoints: [http://d:2379]\n  token: t\n", "bootstrap by discovery is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.content)
			_, err := Parse([]string{"--config-file=" + p}, nil)
			if err == nil {
				t.Fatalf("Parse succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse = %q, want one line naming %s and containing %q", err, p, tc.want)
			}
		})
	}
	_, err := Parse([]string{"--config-file=/nonexistent/kvorum.yaml"}, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/kvorum.yaml") {
		t.Errorf("missing file: Parse = %v, want an error naming the file", err)
	}
}

func TestWatchProgressNotifyIntervalTakesEffectUnderBothNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want time.Duration
	}{
		{"not given", nil, 0},
		{"flag", []string{"--watch-progress-notify-interval=5s"}, 5 * time.Second},
		{"experimental flag (kubeadm)", []string{"--experimental-watch-progress-notify-interval=250ms"}, 250 * time.Millisecond},
		{"config file, nanoseconds as etcd encodes it", []string{"--config-file", writeFile(t, "watch-progress-notify-interval: 2000000000\n")}, 2 * time.Second},
		{"config file, duration text", []string{"--config-file", writeFile(t, "experimental-watch-progress-notify-interval: 3s\n")}, 3 * time.Second},
	} {
		c := mustParse(t, tc.args, nil)
		if c.WatchProgressNotifyInterval != tc.want || slices.Contains(c.Ignored, "watch-progress-notify-interval") ||
			slices.Contains(c.Ignored, "experimental-watch-progress-notify-interval") {
			t.Errorf("%s: interval %v, ignored %q; want %v and not ignored", tc.name, c.WatchProgressNotifyInterval, c.Ignored, tc.want)
		}
	}
}

func TestConfigFileWithoutListenAdvertisePairIsAcceptedAsInEtcd(t *testing.T) {
	p := writeFile(t, "listen-client-urls: http://10.0.0.1:2379\n")
	c := mustParse(t, []string{"--config-file", p}, nil)
	if !reflect.DeepEqual(c.AdvertiseClientURLs, urls(t, "http://localhost:2379")) {
		t.Errorf("AdvertiseClientURLs = %v, want the default", c.AdvertiseClientURLs)
	}
}

// Command lines that run etcd in the field must start Kvorum unchanged.
func TestRealWorldEtcdCommandLinesParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{
			name: "kubeadm static pod manifest",
			args: []string{
				"--advertise-client-urls=https://192.168.1.10:2379",
				"--cert-file=/etc/kubernetes/pki/etcd/server.crt",
				"--client-cert-auth=true",
				"--data-dir=/var/lib/etcd",
				"--experimental-initial-corrupt-check=true",
				"--experimental-watch-progress-notify-interval=5s",
				"--initial-advertise-peer-urls=https://192.168.1.10:2380",
				"--initial-cluster=cp1=https://192.168.1.10:2380",
				"--key-file=/etc/kubernetes/pki/etcd/server.key",
				"--listen-client-urls=https://127.0.0.1:2379,https://192.168.1.10:2379",
				"--listen-metrics-urls=http://127.0.0.1:2381",
				"--listen-peer-urls=https://192.168.1.10:2380",
				"--name=cp1",
				"--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
				"--peer-client-cert-auth=true",
				"--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
				"--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
				"--snapshot-count=10000",
				"--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
			},
		},
		{
			name: "kubeadm joining member with feature gates (etcd 3.6)",
			args: []string{
				"--advertise-client-urls=https://192.168.1.11:2379",
				"--cert-file=/etc/kubernetes/pki/etcd/server.crt", "--key-file=/etc/kubernetes/pki/etcd/server.key",
				"--client-cert-auth=true", "--data-dir=/var/lib/etcd",
				"--feature-gates=InitialCorruptCheck=true",
				"--watch-progress-notify-interval=5s",
				"--initial-advertise-peer-urls=https://192.168.1.11:2380",
				"--initial-cluster=cp1=https://192.168.1.10:2380,cp2=https://192.168.1.11:2380",
				"--initial-cluster-state=existing",
				"--listen-client-urls=https://127.0.0.1:2379,https://192.168.1.11:2379",
				"--listen-metrics-urls=http://127.0.0.1:2381",
				"--listen-peer-urls=https://192.168.1.11:2380", "--name=cp2",
				"--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt", "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
				"--peer-client-cert-auth=true", "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
				"--snapshot-count=10000", "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
			},
		},
		{
			name: "etcd clustering guide, static, single dash",
			args: []string{
				"-name", "infra0", "-initial-advertise-peer-urls", "http://10.0.1.10:2380",
				"-listen-peer-urls", "http://10.0.1.10:2380",
				"-listen-client-urls", "http://10.0.1.10:2379,http://127.0.0.1:2379",
				"-advertise-client-urls", "http://10.0.1.10:2379",
				"-initial-cluster-token", "etcd-cluster-1",
				"-initial-cluster", "infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380,infra2=http://10.0.1.12:2380",
				"-initial-cluster-state", "new",
			},
		},
		{
			name: "etcd clustering guide, TLS with auto-tls",
			args: []string{
				"--name", "infra0", "--data-dir", "infra0",
				"--auto-tls", "--peer-auto-tls",
				"--initial-advertise-peer-urls=https://10.0.1.10:2380",
				"--listen-peer-urls=https://10.0.1.10:2380",
				"--listen-client-urls=https://10.0.1.10:2379,https://127.0.0.1:2379",
				"--advertise-client-urls=https://10.0.1.10:2379",
				"--initial-cluster-token=etcd-cluster-1",
				"--initial-cluster=infra0=https://10.0.1.10:2380,infra1=https://10.0.1.11:2380,infra2=https://10.0.1.12:2380",
				"--initial-cluster-state=new",
			},
		},
		{
			name: "local single member for development",
			args: []string{"--listen-client-urls=http://0.0.0.0:2379", "--advertise-client-urls=http://0.0.0.0:2379"},
		},
		{
			name: "tuned member with etcd 3.5 flags",
			args: []string{
				"--name=etcd-0", "--quota-backend-bytes=8589934592", "--auto-compaction-mode=revision",
				"--auto-compaction-retention=1000", "--heartbeat-interval=250", "--election-timeout=2500",
				"--max-request-bytes=33554432", "--max-txn-ops=1024", "--logger=zap", "--log-level=info",
				"--log-outputs=stderr", "--enable-v2=false", "--experimental-enable-lease-checkpoint=true",
				"--experimental-compact-hash-check-enabled=true", "--experimental-compact-hash-check-time=1m",
				"--experimental-compaction-batch-limit=1000", "--experimental-compaction-sleep-interval=10ms",
				"--experimental-enable-distributed-tracing=false", "--unsafe-no-fsync=false",
				"--pre-vote=true", "--strict-reconfig-check=true", "--enable-grpc-gateway=true",
				"--initial-cluster=etcd-0=http://localhost:2380",
				"--enable-pprof", "--metrics=extensive", "--max-snapshots=5", "--max-wals=5",
				"--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "--tls-min-version=TLS1.2",
			},
		},
		{
			name: "systemd unit passing unset variables as flags (RHEL style)",
			args: []string{"--name=", "--data-dir=", "--listen-client-urls=", "--discovery-srv="},
			env:  map[string]string{"ETCD_LISTEN_PEER_URLS": "http://localhost:2380"},
		},
		{
			name: "environment only, as a Bitnami-style container",
			env: map[string]string{
				"ETCD_NAME": "etcd-0", "ETCD_DATA_DIR": "/bitnami/etcd/data",
				"ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:2379", "ETCD_ADVERTISE_CLIENT_URLS": "http://etcd-0.etcd:2379",
				"ETCD_LISTEN_PEER_URLS": "http://0.0.0.0:2380", "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://etcd-0.etcd:2380",
				"ETCD_INITIAL_CLUSTER":       "etcd-0=http://etcd-0.etcd:2380,etcd-1=http://etcd-1.etcd:2380,etcd-2=http://etcd-2.etcd:2380",
				"ETCD_INITIAL_CLUSTER_STATE": "new", "ETCD_INITIAL_CLUSTER_TOKEN": "etcd-cluster-k8s",
				"ETCD_AUTO_COMPACTION_RETENTION": "1", "ETCD_ENABLE_V2": "false",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustParse(t, tc.args, env(tc.env))
		})
	}
}

// etcdFlags reads testdata/etcd-flags.txt: flag name -> etcd's Go type.
func etcdFlags(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("testdata/etcd-flags.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(line, "#") {
			continue
		}
		m[f[0]] = f[1]
	}
	if len(m) < 150 {
		t.Fatalf("testdata/etcd-flags.txt lists only %d flags", len(m))
	}
	return m
}

// sampleArgs returns a command line that gives flag a value etcd accepts,
// plus whatever other flags that value needs.
func sampleArgs(name, etcdType string) (value string, extra []string) {
	switch name {
	case "initial-cluster":
		return "default=http://localhost:2380", nil
	case "initial-cluster-state":
		return "existing", nil
	case "election-timeout":
		return "2000", nil
	case "auto-compaction-mode":
		return "revision", nil
	case "auto-compaction-retention":
		return "1", nil
	case "log-level":
		return "debug", nil
	case "logger":
		return "zap", nil
	case "log-outputs":
		return "stderr", nil
	case "metrics":
		return "extensive", nil
	case "log-format":
		return "console", nil
	case "discovery-fallback":
		return "exit", nil
	case "auth-token":
		return "simple", nil
	case "bcrypt-cost":
		return "12", nil
	case "proxy":
		return "off", nil
	case "v2-deprecation":
		return "write-only", nil
	case "listen-client-urls":
		return "http://127.0.0.1:2379", []string{"--advertise-client-urls=http://127.0.0.1:2379"}
	case "cert-file", "key-file":
		return "x.pem", []string{"--cert-file=c.pem", "--key-file=k.pem"}
	case "peer-cert-file", "peer-key-file":
		return "x.pem", []string{"--peer-cert-file=c.pem", "--peer-key-file=k.pem"}
	case "client-cert-file", "client-key-file":
		return "x.pem", []string{"--client-cert-file=c.pem", "--client-key-file=k.pem"}
	case "peer-client-cert-file", "peer-client-key-file":
		return "x.pem", []string{"--peer-client-cert-file=c.pem", "--peer-client-key-file=k.pem"}
	case "cipher-suites":
		return "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", nil
	case "tls-min-version", "tls-max-version":
		return "TLS1.2", nil
	case "listen-client-http-urls":
		return "http://127.0.0.1:2381", nil
	}
	switch etcdType {
	case "BoolVar", "ignored":
		return "true", nil
	case "DurationVar":
		return "1s", nil
	case "UintVar", "Uint64Var", "NewUint32Value", "IntVar", "Int64Var":
		return "1", nil
	case "NewUniqueURLsWithExceptions":
		return "http://127.0.0.1:2379", nil
	}
	return "x", nil
}

// refusedValues are flags whose sample value Kvorum refuses on purpose
// (see refusals); the flag is still known.
var refusedValues = map[string]bool{"discovery": true, "discovery-srv": true, "discovery-endpoints": true, "force-new-cluster": true}

func TestEveryEtcdFlagIsAccepted(t *testing.T) {
	for name, etcdType := range etcdFlags(t) {
		if name == "config-file" {
			continue // TestConfigFile
		}
		value, extra := sampleArgs(name, etcdType)
		for _, src := range []string{"flag", "KVORUM_", "ETCD_"} {
			args := slices.Clone(extra)
			vars := map[string]string{}
			if src == "flag" {
				args = append(args, "--"+name+"="+value)
			} else {
				vars[envName(strings.TrimSuffix(src, "_"), name)] = value
			}
			c, err := Parse(args, env(vars))
			if refusedValues[name] {
				if err == nil || !strings.Contains(err.Error(), "not supported") {
					t.Errorf("%s %s=%s: Parse = %v, want a refusal", src, name, value, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %s=%s: %v", src, name, value, err)
				continue
			}
			if lookupOption(name) == nil && !slices.Contains(c.Ignored, name) {
				t.Errorf("%s %s: Ignored = %q, want it listed", src, name, c.Ignored)
			}
		}
	}
}

func TestKvorumAcceptsNoFlagEtcdLacks(t *testing.T) {
	known := etcdFlags(t)
	for _, name := range flagNames() {
		if _, ok := known[name]; !ok && !kvorumOnlyFlags[name] {
			t.Errorf("--%s is not an etcd flag (testdata/etcd-flags.txt)", name)
		}
	}
	for name := range known {
		if _, ok := lookupKind(name); !ok {
			t.Errorf("--%s is an etcd flag Kvorum does not know", name)
		}
	}
}

func TestEveryFlagInEtcdHelpIsAccepted(t *testing.T) {
	b, err := os.ReadFile("testdata/etcd-help-3.7.3.txt")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		name := strings.TrimSpace(line)
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		n++
		if _, err := parseArgs([]string{"--" + name + "=true"}); err != nil && !errors.Is(err, ErrHelp) {
			t.Errorf("--%s from etcd --help: %v", name, err)
		}
	}
	if n < 100 {
		t.Fatalf("testdata/etcd-help-3.7.3.txt lists only %d flags", n)
	}
}

func TestEveryEtcdConfigFileKeyIsAccepted(t *testing.T) {
	b, err := os.ReadFile("testdata/etcd-config-keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	flags := etcdFlags(t)
	for _, line := range strings.Split(string(b), "\n") {
		key := strings.TrimSpace(line)
		if key == "" || strings.HasPrefix(key, "#") {
			continue
		}
		value, _ := sampleArgs(key, flags[key])
		switch key {
		case "client-transport-security", "peer-transport-security":
			value = "{auto-tls: true}"
		case "discovery-config":
			value = "{dial-timeout: 2000000000}"
		case "socket-options":
			value = "{reuse-port: true}"
		case "grpc-additional-server-options":
			value = "[]"
		case "listen-client-urls", "cert-file", "key-file":
			value = `""`
		}
		p := writeFile(t, key+": "+value+"\n")
		_, err := Parse([]string{"--config-file", p}, nil)
		if refusedValues[key] {
			if err == nil || !strings.Contains(err.Error(), "not supported") {
				t.Errorf("key %s: Parse = %v, want a refusal", key, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("key %s: %v", key, err)
		}
	}
}

// etcd's compaction pacing flags pace the background deletion of
// compacted history, under either name; nonsense is refused naming them.
func TestCompactionPaceFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--compaction-batch-limit=500", "--compaction-sleep-interval=20ms"},
		{"--experimental-compaction-batch-limit=500", "--experimental-compaction-sleep-interval=20ms"},
	} {
		c, err := Parse(args, nil)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if c.CompactionBatchLimit != 500 || c.CompactionSleepInterval != 20*time.Millisecond {
			t.Fatalf("%v: batch limit %d, sleep %v", args, c.CompactionBatchLimit, c.CompactionSleepInterval)
		}
		for _, name := range c.Ignored {
			if strings.Contains(name, "compaction") {
				t.Fatalf("%v: %s listed as ignored", args, name)
			}
		}
	}
	for _, bad := range []string{"--compaction-batch-limit=0", "--compaction-sleep-interval=0s", "--compaction-sleep-interval=-1s"} {
		if _, err := Parse([]string{bad}, nil); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(strings.Split(bad, "=")[0], "--")) {
			t.Fatalf("%s: %v, want an error naming the flag", bad, err)
		}
	}
}
