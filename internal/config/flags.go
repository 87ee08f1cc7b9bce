package config

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// kind is how a flag's value is spelled on the command line and in the
// environment. It decides whether the flag may be given without a value and
// how the value of a flag Kvorum ignores is still checked, so that a value
// etcd would refuse is refused here too.
type kind int

const (
	kindText     kind = iota // any string, including comma-separated lists
	kindBool                 // true|false; the value may be left out
	kindUint                 // non-negative integer (Go syntax, as etcd parses it)
	kindInt                  // integer
	kindDuration             // Go duration such as 5s
	kindRetired              // a flag etcd itself accepts and ignores; any value or none
)

// option is a flag that has a meaning in Kvorum. set stores a value into the
// Config or says, in a few words, what was expected instead.
type option struct {
	name  string
	kind  kind
	def   string // the default as Usage shows it
	usage string
	set   func(c *Config, v string) error
}

// options lists the flags Kvorum acts on, in the order Usage shows them.
// Their defaults live in Default; def only repeats them for people.
var options = []option{
	{"name", kindText, "default", "Human-readable name of this member; must appear in --initial-cluster.",
		func(c *Config, v string) error { c.Name = v; return nil }},
	{"data-dir", kindText, "${name}.kvorum", "Path to the data directory.",
		func(c *Config, v string) error { c.DataDir = v; return nil }},
	{"wal-dir", kindText, "", "Path to the dedicated directory of the raft log (write-ahead log); empty means ${data-dir}/member/wal.",
		func(c *Config, v string) error { c.WALDir = v; return nil }},
	{"listen-peer-urls", kindText, DefaultListenPeerURL, "Comma-separated URLs to listen on for traffic from other members.",
		setURLs(func(c *Config) *[]url.URL { return &c.ListenPeerURLs })},
	{"listen-client-urls", kindText, DefaultListenClientURL, "Comma-separated URLs to listen on for client traffic.",
		setURLs(func(c *Config) *[]url.URL { return &c.ListenClientURLs })},
	{"initial-advertise-peer-urls", kindText, DefaultAdvertisePeerURL, "Comma-separated peer URLs of this member as the other members reach it.",
		setURLs(func(c *Config) *[]url.URL { return &c.InitialAdvertisePeerURLs })},
	{"advertise-client-urls", kindText, DefaultAdvertiseClientURL, "Comma-separated client URLs of this member as clients reach it; required when --listen-client-urls is given.",
		setURLs(func(c *Config) *[]url.URL { return &c.AdvertiseClientURLs })},
	{"listen-metrics-urls", kindText, "", "Comma-separated URLs to serve /metrics and /health on, besides the client URLs.",
		setURLs(func(c *Config) *[]url.URL { return &c.ListenMetricsURLs })},
	{"initial-cluster", kindText, "${name}=${initial-advertise-peer-urls}", "Members of the cluster at bootstrap, as name=peerURL,... (a name given twice has several URLs).",
		func(c *Config, v string) error {
			m, err := parseInitialCluster(v)
			c.InitialCluster = m
			return err
		}},
	{"initial-cluster-state", kindText, ClusterStateNew, "'new' to bootstrap a new cluster, 'existing' to join one this member was added to.",
		func(c *Config, v string) error {
			if v != ClusterStateNew && v != ClusterStateExisting {
				return fmt.Errorf("want %q or %q", ClusterStateNew, ClusterStateExisting)
			}
			c.InitialClusterState = v
			return nil
		}},
	{"initial-cluster-token", kindText, DefaultInitialClusterToken, "Token that keeps clusters bootstrapped from the same URLs apart.",
		func(c *Config, v string) error { c.InitialClusterToken = v; return nil }},
	{"heartbeat-interval", kindUint, "100", "Time (in milliseconds) between leader heartbeats.",
		setMillis(func(c *Config) *time.Duration { return &c.HeartbeatInterval })},
	{"election-timeout", kindUint, "1000", "Time (in milliseconds) a follower waits for the leader before calling an election; at least 5x --heartbeat-interval.",
		setMillis(func(c *Config) *time.Duration { return &c.ElectionTimeout })},
	{"snapshot-count", kindUint, "10000", "Number of applied entries between snapshots of the state (0 means the default).",
		func(c *Config, v string) error {
			n, err := parseUint(v, 64)
			c.SnapshotCount = n
			return err
		}},
	{"max-wals", kindUint, "5", "0 keeps every raft log (WAL) file; any other value removes each file once it is wholly before the last compaction point (etcd keeps this many of them).",
		func(c *Config, v string) error {
			n, err := parseUint(v, 32)
			c.MaxWALs = uint(n)
			return err
		}},
	{"snapshot-catchup-entries", kindUint, "5000", "Entries kept in the raft log after a compaction, so a slightly lagging follower catches up without a snapshot.",
		setCatchUp},
	{"experimental-snapshot-catchup-entries", kindUint, "5000", "Old name of --snapshot-catchup-entries.",
		setCatchUp},
	{"quota-backend-bytes", kindInt, "0", "Space quota of the data in bytes: 0 means the default of 2 GiB, a negative number means no quota.",
		func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 0, 64)
			if err != nil {
				return fmt.Errorf("want a number of bytes")
			}
			c.QuotaBackendBytes = n
			return nil
		}},
	{"max-request-bytes", kindUint, "1572864", "Largest client request the server accepts, in bytes.",
		func(c *Config, v string) error {
			n, err := parseUint(v, strconv.IntSize)
			c.MaxRequestBytes = uint(n)
			return err
		}},
	{"max-txn-ops", kindUint, "128", "Largest number of operations in one transaction.",
		func(c *Config, v string) error {
			n, err := parseUint(v, strconv.IntSize)
			c.MaxTxnOps = uint(n)
			return err
		}},
	{"strict-reconfig-check", kindBool, "true", "Refuse membership changes that would leave fewer started or connected voting members than a quorum.",
		setBool(func(c *Config) *bool { return &c.StrictReconfigCheck })},
	{"max-learners", kindInt, "1", "Largest number of learners (non-voting members) in the cluster.",
		func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("want a whole number, 1 or more")
			}
			c.MaxLearners = n
			return nil
		}},
	{"experimental-initial-corrupt-check", kindBool, "true", "Compare this member's data with its peers' before serving clients; a difference raises the CORRUPT alarm. On by default in Kvorum.",
		setBool(func(c *Config) *bool { return &c.InitialCorruptCheck })},
	{"experimental-compact-hash-check-enabled", kindBool, "true", "Have the leader compare the members' hashes at each compaction revision; a difference raises the CORRUPT alarm. On by default in Kvorum.",
		setBool(func(c *Config) *bool { return &c.CompactHashCheck })},
	{"compaction-batch-limit", kindInt, "10000", "Most history records one step of the background deletion of compacted history goes through.",
		setCompactionBatchLimit},
	{"experimental-compaction-batch-limit", kindInt, "10000", "Old name of --compaction-batch-limit.",
		setCompactionBatchLimit},
	{"compaction-sleep-interval", kindDuration, "130ms", "Least time between two steps of the background deletion of compacted history (and at least as long as the step took).",
		setCompactionSleepInterval},
	{"experimental-compaction-sleep-interval", kindDuration, "130ms", "Old name of --compaction-sleep-interval.",
		setCompactionSleepInterval},
	{"compact-hash-check-time", kindDuration, "1m0s", "How often the leader compares hashes at compaction revisions.",
		setCompactHashTime},
	{"experimental-compact-hash-check-time", kindDuration, "1m0s", "Old name of --compact-hash-check-time.",
		setCompactHashTime},
	{"auth-token", kindText, "simple", "Tokens issued to authenticated clients: 'simple', or 'jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DURATION'.",
		func(c *Config, v string) error {
			if v != "simple" && v != "jwt" && !strings.HasPrefix(v, "jwt,") {
				return fmt.Errorf("want simple or jwt,pub-key=...,priv-key=...,sign-method=...")
			}
			c.AuthToken = v
			return nil
		}},
	{"auth-token-ttl", kindUint, "300", "Seconds a simple token lives without use.",
		func(c *Config, v string) error {
			n, err := parseUint(v, 32)
			if err != nil || n == 0 {
				return fmt.Errorf("want a whole number of seconds, 1 or more")
			}
			c.AuthTokenTTL = time.Duration(n) * time.Second
			return nil
		}},
	{"bcrypt-cost", kindUint, "10", "bcrypt cost of hashing user passwords (4 to 31).",
		func(c *Config, v string) error {
			n, err := parseUint(v, 32)
			if err != nil || n < 4 || n > 31 {
				return fmt.Errorf("want a whole number from 4 to 31")
			}
			c.BcryptCost = int(n)
			return nil
		}},
	{"auto-compaction-mode", kindText, CompactionPeriodic, "How --auto-compaction-retention is read: 'periodic' (a duration) or 'revision' (a number of revisions).",
		func(c *Config, v string) error {
			if v != CompactionPeriodic && v != CompactionRevision {
				return fmt.Errorf("want %q or %q", CompactionPeriodic, CompactionRevision)
			}
			c.AutoCompactionMode = v
			return nil
		}},
	{"auto-compaction-retention", kindText, "0", "History to keep when compacting automatically: hours or a duration such as 30m (periodic), or revisions (revision); 0 disables.",
		nil}, // read in parse, once the mode is known
	{"log-level", kindText, "info", "Least severe level logged: debug, info, warn, error, panic or fatal.",
		func(c *Config, v string) error {
			switch v {
			case "debug", "info", "warn", "error", "panic", "fatal":
				c.LogLevel = v
				return nil
			}
			return fmt.Errorf("want debug, info, warn, error, panic or fatal")
		}},
	{"logger", kindText, "zap", "Logger implementation; only 'zap' (structured logs, as etcd) exists.",
		func(c *Config, v string) error {
			if v != "zap" {
				return fmt.Errorf("only \"zap\" is supported")
			}
			c.Logger = v
			return nil
		}},
	{"log-outputs", kindText, "default", "Comma-separated log targets: 'default' (stderr), stderr, stdout, systemd/journal or file paths.",
		func(c *Config, v string) error { c.LogOutputs = splitList(v); return nil }},
	{"log-format", kindText, "json", "Log line format: 'json' (etcd's JSON lines) or 'console' (tab-separated text).",
		func(c *Config, v string) error {
			if v != "json" && v != "console" {
				return fmt.Errorf("want json or console")
			}
			c.LogFormat = v
			return nil
		}},
	{"enable-pprof", kindBool, "false", "Serve runtime profiles at /debug/pprof/ on the client URLs.",
		setBool(func(c *Config) *bool { return &c.EnablePprof })},
	{"enable-grpc-gateway", kindBool, "true", "Serve etcd's HTTP/JSON gateway (POST /v3/kv/range and the rest) on the client URLs.",
		setBool(func(c *Config) *bool { return &c.EnableGRPCGateway })},
	{"metrics", kindText, "basic", "Metrics to export: 'basic', or 'extensive' to add gRPC latency histograms.",
		func(c *Config, v string) error {
			if v != "basic" && v != "extensive" {
				return fmt.Errorf("use basic or extensive")
			}
			c.Metrics = v
			return nil
		}},
	{"listen-client-http-urls", kindText, "", "Comma-separated URLs to serve the HTTP endpoints (/health, /version) on; the client URLs then serve only gRPC.",
		setURLs(func(c *Config) *[]url.URL { return &c.ListenClientHTTPURLs })},
	{"cert-file", kindText, "", "Path to the TLS certificate of the client URLs (re-read on every new connection).",
		func(c *Config, v string) error { c.ClientTLS.CertFile = v; return nil }},
	{"key-file", kindText, "", "Path to the TLS key of the client URLs.",
		func(c *Config, v string) error { c.ClientTLS.KeyFile = v; return nil }},
	{"client-cert-file", kindText, "", "Path to a client certificate for the member's own connections to client URLs; defaults to --cert-file.",
		func(c *Config, v string) error { c.ClientTLS.ClientCertFile = v; return nil }},
	{"client-key-file", kindText, "", "Path to the key of --client-cert-file.",
		func(c *Config, v string) error { c.ClientTLS.ClientKeyFile = v; return nil }},
	{"client-cert-auth", kindBool, "false", "Require clients to present a certificate signed by --trusted-ca-file.",
		setBool(func(c *Config) *bool { return &c.ClientTLS.ClientCertAuth })},
	{"trusted-ca-file", kindText, "", "Path to the CA bundle that signs client certificates; giving it requires client certificates.",
		func(c *Config, v string) error { c.ClientTLS.TrustedCAFile = v; return nil }},
	{"client-crl-file", kindText, "", "Path to a certificate revocation list; clients whose certificate it lists are refused.",
		func(c *Config, v string) error { c.ClientTLS.CRLFile = v; return nil }},
	{"client-cert-allowed-hostname", kindText, "", "Comma-separated host names; a client certificate must be valid for one of them.",
		func(c *Config, v string) error { c.ClientTLS.AllowedHostnames = splitList(v); return nil }},
	{"auto-tls", kindBool, "false", "Serve clients TLS with a generated self-signed certificate (ignored when --cert-file is given).",
		setBool(func(c *Config) *bool { return &c.ClientTLS.AutoTLS })},
	{"peer-cert-file", kindText, "", "Path to the TLS certificate of the peer URLs (re-read on every new connection).",
		func(c *Config, v string) error { c.PeerTLS.CertFile = v; return nil }},
	{"peer-key-file", kindText, "", "Path to the TLS key of the peer URLs.",
		func(c *Config, v string) error { c.PeerTLS.KeyFile = v; return nil }},
	{"peer-client-cert-file", kindText, "", "Path to the certificate this member presents when it dials other members; defaults to --peer-cert-file.",
		func(c *Config, v string) error { c.PeerTLS.ClientCertFile = v; return nil }},
	{"peer-client-key-file", kindText, "", "Path to the key of --peer-client-cert-file.",
		func(c *Config, v string) error { c.PeerTLS.ClientKeyFile = v; return nil }},
	{"peer-client-cert-auth", kindBool, "false", "Require members to present a certificate signed by --peer-trusted-ca-file.",
		setBool(func(c *Config) *bool { return &c.PeerTLS.ClientCertAuth })},
	{"peer-trusted-ca-file", kindText, "", "Path to the CA bundle that signs member certificates; giving it requires member certificates.",
		func(c *Config, v string) error { c.PeerTLS.TrustedCAFile = v; return nil }},
	{"peer-crl-file", kindText, "", "Path to a certificate revocation list; members whose certificate it lists are refused.",
		func(c *Config, v string) error { c.PeerTLS.CRLFile = v; return nil }},
	{"peer-cert-allowed-cn", kindText, "", "Comma-separated common names; a member's certificate must have one of them.",
		func(c *Config, v string) error { c.PeerTLS.AllowedCNs = splitList(v); return nil }},
	{"peer-cert-allowed-hostname", kindText, "", "Comma-separated host names; a member's certificate must be valid for one of them.",
		func(c *Config, v string) error { c.PeerTLS.AllowedHostnames = splitList(v); return nil }},
	{"peer-skip-client-san-verification", kindBool, "false", "Do not check that a member's client certificate names the address it connects from.",
		setBool(func(c *Config) *bool { return &c.PeerTLS.SkipClientSANVerify })},
	{"experimental-peer-skip-client-san-verification", kindBool, "false", "Old name of --peer-skip-client-san-verification.",
		setBool(func(c *Config) *bool { return &c.PeerTLS.SkipClientSANVerify })},
	{"peer-auto-tls", kindBool, "false", "Talk to members over TLS with a generated self-signed certificate (ignored when --peer-cert-file is given).",
		setBool(func(c *Config) *bool { return &c.PeerTLS.AutoTLS })},
	{"self-signed-cert-validity", kindUint, "1", "Validity of the --auto-tls and --peer-auto-tls certificates, in years.",
		func(c *Config, v string) error {
			n, err := parseUint(v, 32)
			if err == nil && n == 0 {
				return fmt.Errorf("want a number of years, 1 or more")
			}
			c.SelfSignedCertValidity = uint(n)
			return err
		}},
	{"cipher-suites", kindText, "", "Comma-separated TLS 1.2 cipher suites (Go's names) for both planes; empty means Go's defaults.",
		func(c *Config, v string) error { c.CipherSuites = splitList(v); return nil }},
	{"tls-min-version", kindText, "TLS1.2", "Lowest TLS version accepted: TLS1.2 or TLS1.3.",
		func(c *Config, v string) error { c.TLSMinVersion = v; return nil }},
	{"tls-max-version", kindText, "", "Highest TLS version accepted: TLS1.2 or TLS1.3 (empty leaves it to Go).",
		func(c *Config, v string) error { c.TLSMaxVersion = v; return nil }},
	{"config-file", kindText, "", "Path to a YAML file with etcd's config-file keys; when given, other flags and environment variables are ignored.",
		func(c *Config, v string) error { c.ConfigFile = v; return nil }},
	{"watch-progress-notify-interval", kindDuration, "10m0s", "Period of progress notifications to watches that ask for them (at least 100ms).",
		setWatchProgress},
	{"experimental-watch-progress-notify-interval", kindDuration, "10m0s", "Old name of --watch-progress-notify-interval.",
		setWatchProgress},
	{"experimental-enable-lease-checkpoint", kindBool, "false", "Accepted for etcd compatibility; Kvorum always checkpoints leases.",
		checkBool},
	{"experimental-enable-lease-checkpoint-persist", kindBool, "false", "Accepted for etcd compatibility; Kvorum always persists lease checkpoints.",
		checkBool},
	{"backup-dir", kindText, "", "Kvorum-only: directory the leader saves scheduled, verified backups into (etcd snapshot files).",
		func(c *Config, v string) error { c.BackupDir = v; return nil }},
	{"backup-interval", kindDuration, "0s", "Kvorum-only: how often the leader saves a backup into --backup-dir; 0 means never.",
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("want a duration such as 1h or 30m, or 0 for no backups")
			}
			c.BackupInterval = d
			return nil
		}},
	{"backup-retention", kindUint, "7", "Kvorum-only: verified backups to keep in --backup-dir (older ones are deleted after a new one verified); 0 keeps all.",
		func(c *Config, v string) error {
			n, err := parseUint(v, 31)
			c.BackupRetention = int(n)
			return err
		}},
	{"disk-reserve-bytes", kindInt, "0", "Kvorum-only: disk space the member holds back in its data dir; when the disk runs short it refuses writes that grow the store (NOSPACE) and releases it, so a full disk does not stop the member. 0 means 64 MiB (at most 5% of the file system), a negative number none.",
		func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 0, 64)
			if err != nil {
				return fmt.Errorf("want a number of bytes")
			}
			c.DiskReserveBytes = n
			return nil
		}},
	{"memory-budget-bytes", kindUint, "268435456", "Kvorum-only: memory for the storage engine's block cache and memtables, the key space's caches, watch buffers and the Go heap together (at least 64 MiB); 0 means the default of 256 MiB.",
		func(c *Config, v string) error {
			n, err := parseUint(v, 63)
			c.MemoryBudgetBytes = int64(n)
			return err
		}},
	{"version", kindBool, "false", "Print the version and exit.",
		setBool(func(c *Config) *bool { return &c.PrintVersion })},
}

// kvorumOnlyFlags are the options above that etcd has no counterpart for
// (features beyond etcd); every other option is one of etcd's flags.
var kvorumOnlyFlags = map[string]bool{
	"backup-dir":          true,
	"backup-interval":     true,
	"backup-retention":    true,
	"disk-reserve-bytes":  true,
	"memory-budget-bytes": true,
}

// compatFlags are the flags etcd 3.5, 3.6 or 3.7 accepts that Kvorum parses
// but does not act on yet. Each one given is named in Config.Ignored.
var compatFlags = map[string]kind{}

func init() {
	for k, names := range map[kind][]string{
		kindBool: {
			"discovery-insecure-skip-tls-verify", "discovery-insecure-transport",
			"enable-distributed-tracing", "enable-log-rotation", "enable-v2",
			"experimental-enable-distributed-tracing", "experimental-memory-mlock",
			"experimental-stop-grpc-service-on-defrag",
			"experimental-txn-mode-write-with-shared-buffer", "force-new-cluster",
			"initial-election-tick-advance", "memory-mlock",
			"pre-vote", "socket-reuse-address", "socket-reuse-port",
			"unsafe-no-fsync",
		},
		kindDuration: {
			"backend-batch-interval",
			"corrupt-check-time", "discovery-dial-timeout", "discovery-keepalive-time",
			"discovery-keepalive-timeout", "discovery-request-timeout", "downgrade-check-time",
			"experimental-corrupt-check-time", "experimental-downgrade-check-time",
			"experimental-warning-apply-duration", "experimental-warning-unary-request-duration",
			"grpc-keepalive-interval",
			"grpc-keepalive-min-time", "grpc-keepalive-timeout", "raft-read-timeout",
			"raft-write-timeout", "warning-apply-duration", "warning-unary-request-duration",
		},
		kindUint: {
			"bootstrap-defrag-threshold-megabytes",
			"experimental-bootstrap-defrag-threshold-megabytes", "max-snapshots",
			"proxy-dial-timeout", "proxy-failure-wait", "proxy-read-timeout", "proxy-refresh-interval",
			"proxy-write-timeout", "max-concurrent-streams",
		},
		kindInt: {
			"backend-batch-limit", "distributed-tracing-sampling-rate",
			"experimental-distributed-tracing-sampling-rate",
		},
		kindText: {
			"backend-bbolt-freelist-type", "discovery", "discovery-cacert", "discovery-cert", "discovery-key",
			"discovery-password", "discovery-proxy", "discovery-srv", "discovery-srv-name",
			"discovery-token", "discovery-user", "distributed-tracing-address",
			"distributed-tracing-instance-id", "distributed-tracing-service-name",
			"experimental-distributed-tracing-address", "experimental-distributed-tracing-instance-id",
			"experimental-distributed-tracing-service-name", "experimental-enable-v2v3",
			"feature-gates", "log-rotation-config-json",
			"discovery-endpoints", "host-whitelist", "cors",
			"discovery-fallback", "proxy", "v2-deprecation",
		},
		kindRetired: {
			"cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force",
			"max-result-buffer", "max-retry-attempts", "peer-election-timeout",
			"peer-heartbeat-interval", "retry-interval", "snapshot", "test.coverprofile",
			"test.outputdir", "v", "vv",
		},
	} {
		for _, n := range names {
			compatFlags[n] = k
		}
	}
}

// refusals are values of ignored flags that would make the member do
// something Kvorum cannot do yet. Ignoring them would be unsafe: a member told
// to find its peers by discovery would instead bootstrap a cluster of its own.
var refusals = map[string]func(v string) error{
	"discovery":           refuseDiscovery,
	"discovery-srv":       refuseDiscovery,
	"discovery-endpoints": refuseDiscovery,
	"proxy": func(v string) error {
		if v == "off" {
			return nil
		}
		return fmt.Errorf("the v2 proxy is not supported (etcd 3.6 removed it too); remove the flag or set it to off")
	},
	// A member told to rebuild a one-member cluster from its data would
	// instead wait for its dead peers: refuse rather than pretend.
	"force-new-cluster": func(v string) error {
		if b, err := strconv.ParseBool(v); err == nil && !b {
			return nil
		}
		return fmt.Errorf("is not supported yet; to recover a cluster that lost its quorum, restore a snapshot into a new cluster (kvorumctl snapshot save from a survivor, then kvorumctl snapshot restore)")
	},
	"discovery-fallback": func(v string) error {
		if v == "proxy" {
			return fmt.Errorf("the v2 proxy is not supported (etcd 3.6 removed it too); use exit")
		}
		return nil
	},
}

func refuseDiscovery(string) error {
	return fmt.Errorf("bootstrap by discovery is not supported yet; list the members with --initial-cluster instead")
}

// lookupKind reports how a flag's value is spelled and whether the flag
// exists at all.
func lookupKind(name string) (kind, bool) {
	if o := lookupOption(name); o != nil {
		return o.kind, true
	}
	k, ok := compatFlags[name]
	return k, ok
}

func lookupOption(name string) *option {
	for i := range options {
		if options[i].name == name {
			return &options[i]
		}
	}
	return nil
}

// checkKind refuses a value etcd's own parser would refuse for a flag of
// kind k. It returns a few words on what was expected.
func checkKind(k kind, v string) error {
	var err error
	switch k {
	case kindBool:
		_, err = strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
	case kindUint:
		_, err = parseUint(v, 64)
	case kindInt:
		if _, err = strconv.ParseInt(v, 0, 64); err != nil {
			return fmt.Errorf("want an integer")
		}
	case kindDuration:
		if _, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("want a duration such as 5s or 100ms")
		}
	}
	return err
}

func parseUint(v string, bits int) (uint64, error) {
	n, err := strconv.ParseUint(v, 0, bits)
	if err != nil {
		return 0, fmt.Errorf("want a whole number, 0 or more")
	}
	return n, nil
}

func setBool(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		*field(c) = b
		return nil
	}
}

// checkBool validates a boolean flag whose behaviour is always on.
func checkBool(_ *Config, v string) error {
	if _, err := strconv.ParseBool(v); err != nil {
		return fmt.Errorf("want true or false")
	}
	return nil
}

func setMillis(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return fmt.Errorf("want a whole number of milliseconds such as 100")
		}
		*field(c) = time.Duration(n) * time.Millisecond
		return nil
	}
}

func setURLs(field func(*Config) *[]url.URL) func(*Config, string) error {
	return func(c *Config, v string) error {
		us, err := parseURLs(v)
		*field(c) = us
		return err
	}
}

// splitList splits a comma-separated value, dropping blanks and repeats as
// etcd's list flags do.
func splitList(v string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

// Usage returns the help text for the server's flags, environment variables
// and config file.
func Usage() string {
	var b strings.Builder
	b.WriteString(`Usage: kvorum [flags]

Starts one Kvorum member. Kvorum takes etcd's flags, environment variables and
config file, so a unit file or manifest written for etcd works unchanged.

Every flag can also be set with an environment variable KVORUM_<FLAG> or
ETCD_<FLAG>, upper case with dashes as underscores (KVORUM_DATA_DIR=/var/lib/x);
KVORUM_ wins over ETCD_, a flag on the command line wins over both. An empty
value counts as not given. With --config-file, all settings come from that
YAML file, whose keys are etcd's (name, data-dir, listen-client-urls,
client-transport-security: {cert-file, ...}, ...).

Flags:
`)
	for _, o := range options {
		fmt.Fprintf(&b, "  --%s '%s'\n      %s\n", o.name, o.def, o.usage)
	}
	b.WriteString("  -h, --help\n      Show this help.\n")
	b.WriteString("\nAccepted for compatibility with etcd but without effect yet (a warning names each one given):\n")
	names := make([]string, 0, len(compatFlags))
	for n := range compatFlags {
		names = append(names, "--"+n)
	}
	sort.Strings(names)
	line := " "
	for _, n := range names {
		if len(line)+len(n)+1 > 80 {
			b.WriteString(line + "\n")
			line = " "
		}
		line += " " + n
	}
	b.WriteString(line + "\n")
	return b.String()
}

// setWatchProgress reads a duration such as 5s. A config file holds etcd's
// encoding of a duration, whole nanoseconds, which readFile spells "<n>ns".
func setWatchProgress(c *Config, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration such as 5s or 100ms")
	}
	c.WatchProgressNotifyInterval = d
	return nil
}

func setCatchUp(c *Config, v string) error {
	n, err := parseUint(v, 64)
	c.SnapshotCatchUpEntries = n
	return err
}

func setCompactionBatchLimit(c *Config, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return fmt.Errorf("want a whole number, 1 or more")
	}
	c.CompactionBatchLimit = n
	return nil
}

// setPositiveDuration sets the duration field returns, refusing zero and
// negative ones; example shows a valid value in the error.
func setPositiveDuration(field func(*Config) *time.Duration, example string) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a duration above 0, such as %s", example)
		}
		*field(c) = d
		return nil
	}
}

var (
	setCompactionSleepInterval = setPositiveDuration(func(c *Config) *time.Duration { return &c.CompactionSleepInterval }, "100ms")
	setCompactHashTime         = setPositiveDuration(func(c *Config) *time.Duration { return &c.CompactHashCheckTime }, "1m")
)
