package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Defaults, equal to etcd's except for the data directory's suffix: Kvorum's
// data is not etcd's, and a different directory keeps the two apart.
const (
	DefaultName                = "default"
	DefaultDataDirSuffix       = ".kvorum"
	DefaultListenClientURL     = "http://localhost:2379"
	DefaultAdvertiseClientURL  = "http://localhost:2379"
	DefaultListenPeerURL       = "http://localhost:2380"
	DefaultAdvertisePeerURL    = "http://localhost:2380"
	DefaultInitialClusterToken = "etcd-cluster"
	DefaultHeartbeatInterval   = 100 * time.Millisecond
	DefaultElectionTimeout     = 1000 * time.Millisecond
	DefaultSnapshotCount       = 10000
	DefaultMaxRequestBytes     = 1536 * 1024
	DefaultMaxTxnOps           = 128

	// The pace of the background deletion of compacted history: about
	// 75,000 history records a second, a million revisions in 15 s (see
	// docs/benchmarks.md).
	DefaultCompactionBatchLimit    = 10000
	DefaultCompactionSleepInterval = 130 * time.Millisecond

	// MaxElectionTimeout is the longest election timeout etcd accepts.
	MaxElectionTimeout = 50 * time.Second
)

// Values of Config.InitialClusterState.
const (
	ClusterStateNew      = "new"
	ClusterStateExisting = "existing"
)

// Values of Config.AutoCompactionMode.
const (
	CompactionPeriodic = "periodic"
	CompactionRevision = "revision"
)

// ErrHelp is returned by Parse when -h or --help is given; the caller prints
// Usage and exits successfully.
var ErrHelp = errors.New("help requested")

// Config is the validated configuration of one member.
type Config struct {
	Name    string
	DataDir string
	// WALDir is the raft log's directory; empty means DataDir/member/wal.
	WALDir string

	ListenClientURLs         []url.URL
	AdvertiseClientURLs      []url.URL
	ListenPeerURLs           []url.URL
	InitialAdvertisePeerURLs []url.URL
	ListenMetricsURLs        []url.URL // none unless given

	// InitialCluster holds the members to bootstrap with, in the order
	// --initial-cluster names them; it contains this member.
	InitialCluster      []Member
	InitialClusterState string // ClusterStateNew or ClusterStateExisting
	InitialClusterToken string

	HeartbeatInterval time.Duration // whole milliseconds
	ElectionTimeout   time.Duration // whole milliseconds, at least 5 heartbeats

	SnapshotCount uint64
	// MaxWALs is how many raft log files are kept at most (0: all).
	MaxWALs uint
	// SnapshotCatchUpEntries is how many entries a log compaction keeps.
	SnapshotCatchUpEntries uint64
	// QuotaBackendBytes keeps etcd's meaning: 0 is the default quota
	// (2 GiB in etcd) and a negative number means no quota.
	QuotaBackendBytes int64
	// DiskReserveBytes (Kvorum-only) is the disk space a member holds
	// back so that another program filling the disk does not stop it: 0
	// is the default (64 MiB, at most 5% of the file system), a negative
	// number none.
	DiskReserveBytes int64
	MaxRequestBytes  uint
	MaxTxnOps        uint

	// StrictReconfigCheck refuses membership changes that would leave too
	// few started or connected voters for a quorum.
	StrictReconfigCheck bool
	MaxLearners         int

	// AuthToken is --auth-token ("simple"); AuthTokenTTL and BcryptCost
	// are --auth-token-ttl and --bcrypt-cost.
	AuthToken    string
	AuthTokenTTL time.Duration
	BcryptCost   int

	// InitialCorruptCheck and CompactHashCheck turn on the comparisons of
	// the members' data; CompactHashCheckTime is the second one's period.
	InitialCorruptCheck  bool
	CompactHashCheck     bool
	CompactHashCheckTime time.Duration

	// AutoCompactionMode says which of the two retentions below applies.
	// A zero retention disables automatic compaction.
	AutoCompactionMode      string        // CompactionPeriodic or CompactionRevision
	AutoCompactionRetention time.Duration // periodic: history to keep
	AutoCompactionRevisions int64         // revision: revisions to keep

	// CompactionBatchLimit and CompactionSleepInterval pace the deletion
	// of compacted history that each member does in the background: at
	// most that many history records a step, and at least that long
	// between steps (etcd's flags of the same names pace its own).
	CompactionBatchLimit    int
	CompactionSleepInterval time.Duration

	LogLevel   string   // debug, info, warn, error, panic or fatal
	Logger     string   // always "zap"
	LogOutputs []string // "default", "stderr", "stdout", "systemd/journal" or paths; empty means "default"
	LogFormat  string   // json or console

	EnablePprof bool
	// EnableGRPCGateway serves etcd's HTTP/JSON gateway (/v3/...) on the
	// client URLs; on by default, as in etcd.
	EnableGRPCGateway bool
	// Metrics is --metrics: "basic" or "extensive" (adds gRPC latency
	// histograms); "" means basic.
	Metrics string

	// WatchProgressNotifyInterval is the period of watch progress
	// notifications; 0 (not given, or not positive, as in etcd) means 10
	// minutes.
	WatchProgressNotifyInterval time.Duration
	// AutoCompactionInterval is how often the leader compacts
	// automatically; 0 means etcd's (see server.AutoCompaction). Like
	// etcd, no flag sets it; tests do.
	AutoCompactionInterval time.Duration
	// LeaseCheckpointInterval is how often the leader replicates the
	// remaining TTL of long leases; 0 means 5 minutes. Like etcd, no flag
	// sets it; tests do.
	LeaseCheckpointInterval time.Duration
	// BackupDir, BackupInterval and BackupRetention are the scheduled
	// backups (Kvorum-only flags): every interval (0: never) the leader
	// saves a verified backup into the dir and keeps the newest retention
	// (0: all) of them.
	BackupDir       string
	BackupInterval  time.Duration
	BackupRetention int
	// MemoryBudgetBytes (Kvorum-only) is what the member's caches,
	// memtables and Go heap may take together; 0 means the default
	// (internal/membudget).
	MemoryBudgetBytes int64

	ClientTLS TLSInfo
	PeerTLS   TLSInfo
	// ListenClientHTTPURLs, when given, serve etcd's HTTP endpoints
	// (/health, /version, ...) alone, and the client URLs then serve
	// only gRPC.
	ListenClientHTTPURLs []url.URL
	// CipherSuites are Go's names of the TLS 1.2 cipher suites allowed on
	// both planes; empty means Go's defaults.
	CipherSuites []string
	// TLSMinVersion and TLSMaxVersion are "TLS1.2" or "TLS1.3"; an empty
	// maximum leaves it to Go.
	TLSMinVersion string
	TLSMaxVersion string
	// SelfSignedCertValidity is the lifetime of --auto-tls and
	// --peer-auto-tls certificates, in years.
	SelfSignedCertValidity uint

	ConfigFile   string // the YAML file the settings came from, if any
	PrintVersion bool   // --version: print the version and exit; nothing else is checked

	// Ignored names each etcd flag (or config-file key) that was given but
	// has no effect in Kvorum yet, sorted, without dashes; the server logs a
	// warning for each.
	Ignored []string
	// Warnings are one-line messages about settings that were accepted but
	// look wrong or were overridden; the server logs each.
	Warnings []string
}

// Member is one member of the initial cluster.
type Member struct {
	Name     string
	PeerURLs []url.URL
}

// TLSInfo is the TLS setup of the client or the peer URLs, with the
// meaning of etcd's flags of the same names.
type TLSInfo struct {
	CertFile       string
	KeyFile        string
	TrustedCAFile  string
	ClientCertAuth bool   // require a client certificate signed by TrustedCAFile
	AutoTLS        bool   // use a generated self-signed certificate
	CRLFile        string // refuse certificates this revocation list names
	// ClientCertFile and ClientKeyFile are the certificate the member
	// presents when it dials (peers); empty means CertFile and KeyFile.
	ClientCertFile string
	ClientKeyFile  string
	// AllowedCNs and AllowedHostnames restrict which verified client
	// certificates are accepted: by common name, or by a SAN matching
	// one of the host names. At most one of the two is set.
	AllowedCNs       []string
	AllowedHostnames []string
	// SkipClientSANVerify turns off the peer plane's check that a
	// member's client certificate names the address it connects from.
	SkipClientSANVerify bool
}

// DefaultSelfSignedCertValidity is how long --auto-tls certificates are
// valid, in years, as in etcd.
const DefaultSelfSignedCertValidity = 1

// Default returns the configuration of `etcd` started without flags: a
// single member named "default" on localhost.
func Default() *Config {
	c := &Config{
		Name:                     DefaultName,
		DataDir:                  DefaultName + DefaultDataDirSuffix,
		ListenClientURLs:         mustURLs(DefaultListenClientURL),
		AdvertiseClientURLs:      mustURLs(DefaultAdvertiseClientURL),
		ListenPeerURLs:           mustURLs(DefaultListenPeerURL),
		InitialAdvertisePeerURLs: mustURLs(DefaultAdvertisePeerURL),
		InitialClusterState:      ClusterStateNew,
		InitialClusterToken:      DefaultInitialClusterToken,
		HeartbeatInterval:        DefaultHeartbeatInterval,
		ElectionTimeout:          DefaultElectionTimeout,
		SnapshotCount:            DefaultSnapshotCount,
		MaxWALs:                  5,
		SnapshotCatchUpEntries:   5000,
		MaxRequestBytes:          DefaultMaxRequestBytes,
		MaxTxnOps:                DefaultMaxTxnOps,
		StrictReconfigCheck:      true,
		MaxLearners:              1,
		InitialCorruptCheck:      true,
		AuthToken:                "simple",
		AuthTokenTTL:             300 * time.Second,
		BcryptCost:               10,
		CompactHashCheck:         true,
		CompactHashCheckTime:     time.Minute,
		AutoCompactionMode:       CompactionPeriodic,
		CompactionBatchLimit:     DefaultCompactionBatchLimit,
		CompactionSleepInterval:  DefaultCompactionSleepInterval,
		LogFormat:                "json",
		LogLevel:                 "info",
		Logger:                   "zap",
		LogOutputs:               []string{"default"},
		TLSMinVersion:            "TLS1.2",
		SelfSignedCertValidity:   DefaultSelfSignedCertValidity,
		EnableGRPCGateway:        true,
		BackupRetention:          7,
	}
	c.InitialCluster = []Member{{Name: c.Name, PeerURLs: slices.Clone(c.InitialAdvertisePeerURLs)}}
	return c
}

func mustURLs(s string) []url.URL {
	us, err := parseURLs(s)
	if err != nil {
		panic(err)
	}
	return us
}

// Parse builds the configuration from the command line (args, without the
// program name) and the environment (getenv, usually os.Getenv), the way etcd
// does:
//
//   - Flags use Go's flag syntax, as etcd's do: -name x, --name x, --name=x;
//     a bool flag alone means true. A flag given twice takes the last value.
//   - Each flag can be given as KVORUM_<FLAG> or ETCD_<FLAG> instead
//     (KVORUM_DATA_DIR); KVORUM_ wins over ETCD_. A flag on the command line
//     wins over both. etcd refuses to start when a flag and its variable are
//     both set; Kvorum starts with the flag and adds a warning if the values
//     differ, because a unit file that repeats its EnvironmentFile's values
//     as flags is common and harmless.
//   - An empty value counts as not given, so units that pass possibly unset
//     variables (--name=${ETCD_NAME}) keep the defaults.
//   - With --config-file (or KVORUM_CONFIG_FILE, ETCD_CONFIG_FILE) every
//     setting comes from that YAML file, and other flags and variables are
//     ignored with a warning each, as etcd ignores them.
//
// Every flag etcd 3.5, 3.6 or 3.7 accepts is accepted; those without effect
// in Kvorum are listed in Config.Ignored. An unknown flag, a bad value or an
// inconsistent configuration is an error of one line that names the input.
// -h or --help returns ErrHelp; --version returns a Config with PrintVersion
// set and nothing else checked.
func Parse(args []string, getenv func(string) string) (*Config, error) {
	return parse(args, getenv, nil)
}

// ParseEnviron is Parse reading the environment from environ (usually
// os.Environ()), which lets it also warn about KVORUM_* and ETCD_* variables
// that match no flag, as etcd warns about ETCD_* ones. The server's main
// calls this one.
func ParseEnviron(args, environ []string) (*Config, error) {
	env := envMap(environ)
	return parse(args, func(k string) string { return env[k] }, environ)
}

// setting is one value given by one source.
type setting struct {
	name   string // the flag's name, or for a file key without a flag, the key
	value  string
	origin string // the input as a person wrote it: --name, KVORUM_NAME, name in config file x
	// typed is set for text that etcd's flag parser checks (command line and
	// environment); the file's values have YAML types of their own.
	typed bool
}

func parse(args []string, getenv func(string) string, environ []string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	cl, err := parseArgs(args)
	if err != nil {
		return nil, err
	}
	cfg := Default()
	for _, s := range cl {
		if s.name == "version" {
			if err := lookupOption("version").set(cfg, s.value); err != nil {
				return nil, fmt.Errorf("invalid value %q for --version: %v", s.value, err)
			}
			if cfg.PrintVersion {
				return cfg, nil
			}
		}
	}

	path := lookup(cl, "config-file")
	if path == "" {
		path = firstEnv(getenv, "config-file")
	}
	var given []setting
	if path != "" {
		given, err = readFile(path)
		if err != nil {
			return nil, err
		}
		cfg.ConfigFile = path
		cfg.Warnings = append(cfg.Warnings, shadowedByFile(cl, getenv, path)...)
	} else {
		var warnings []string
		given, warnings = withEnv(cl, getenv)
		cfg.Warnings = append(cfg.Warnings, warnings...)
		if environ != nil {
			cfg.Warnings = append(cfg.Warnings, unknownEnv(environ)...)
		}
	}

	if err := cfg.apply(given); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		if path != "" {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
		return nil, err
	}
	cfg.Warnings = append(cfg.Warnings, cfg.lint()...)
	return cfg, nil
}

// apply stores the given settings into c and fills in the defaults that
// depend on other settings.
func (c *Config) apply(given []setting) error {
	set := map[string]setting{}
	for _, s := range given {
		if s.value == "" {
			continue
		}
		set[s.name] = s
		if set := fileOnly[s.name]; set != nil {
			if err := set(c, s.value); err != nil {
				return fmt.Errorf("invalid value %q for %s: %v", s.value, s.origin, err)
			}
			continue
		}
		if o := lookupOption(s.name); o != nil {
			if o.set == nil {
				continue
			}
			if err := o.set(c, s.value); err != nil {
				return fmt.Errorf("invalid value %q for %s: %v", s.value, s.origin, err)
			}
			continue
		}
		if s.typed {
			if err := checkKind(compatFlags[s.name], s.value); err != nil {
				return fmt.Errorf("invalid value %q for %s: %v", s.value, s.origin, err)
			}
		}
		if refuse := refusals[s.name]; refuse != nil {
			if err := refuse(s.value); err != nil {
				return fmt.Errorf("%s %q: %v", s.origin, s.value, err)
			}
		}
		if !slices.Contains(c.Ignored, s.name) {
			c.Ignored = append(c.Ignored, s.name)
		}
	}
	slices.Sort(c.Ignored)

	if s, ok := set["auto-compaction-retention"]; ok {
		if err := c.setRetention(s.value); err != nil {
			return fmt.Errorf("invalid value %q for %s: %v", s.value, s.origin, err)
		}
	}
	if _, ok := set["data-dir"]; !ok {
		c.DataDir = c.Name + DefaultDataDirSuffix
	}
	if _, ok := set["initial-cluster"]; !ok {
		c.InitialCluster = []Member{{Name: c.Name, PeerURLs: slices.Clone(c.InitialAdvertisePeerURLs)}}
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
	}
	// etcd insists on explicit advertise URLs once the listen URLs are
	// explicit, so that a member listening on a public address does not
	// advertise localhost; its config file is exempt, and so is ours.
	lc, lcGiven := set["listen-client-urls"]
	if _, acGiven := set["advertise-client-urls"]; lcGiven && !acGiven && lc.typed {
		return fmt.Errorf("%s is given without --advertise-client-urls; set --advertise-client-urls to the URLs clients should use", lc.origin)
	}
	return nil
}

// setRetention reads --auto-compaction-retention as etcd does: in periodic
// mode a plain number counts hours and anything else is a Go duration; in
// revision mode it is a number of revisions.
func (c *Config) setRetention(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if c.AutoCompactionMode == CompactionRevision {
		if err != nil || n < 0 {
			return fmt.Errorf("want a number of revisions, 0 or more (--auto-compaction-mode is revision)")
		}
		c.AutoCompactionRevisions = n
		return nil
	}
	if err == nil && n >= 0 {
		c.AutoCompactionRetention = time.Duration(n) * time.Hour
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want hours or a duration such as 30m, 0 or more")
	}
	c.AutoCompactionRetention = d
	return nil
}

// lint returns warnings about a valid configuration that still looks wrong.
func (c *Config) lint() []string {
	var w []string
	if c.Name == DefaultName && len(c.InitialCluster) > 1 {
		w = append(w, `--name is "default"; give each member its own name, or members added later may be mistaken for this one`)
	}
	const recommendedMaxRequestBytes = 10 * 1024 * 1024
	if c.MaxRequestBytes > recommendedMaxRequestBytes {
		w = append(w, fmt.Sprintf("--max-request-bytes %d is above the recommended 10 MiB; large requests delay every other request", c.MaxRequestBytes))
	}
	for _, p := range []struct {
		flag  string
		urls  []url.URL
		tls   TLSInfo
		certs string
	}{
		{"--listen-client-urls", c.ListenClientURLs, c.ClientTLS, "--cert-file/--key-file"},
		{"--listen-peer-urls", c.ListenPeerURLs, c.PeerTLS, "--peer-cert-file/--peer-key-file"},
	} {
		if p.tls.CertFile != "" && p.tls.AutoTLS {
			w = append(w, fmt.Sprintf("%s are given, so no self-signed certificate is generated for %s (auto TLS is ignored, as in etcd)", p.certs, p.flag))
		}
		if p.tls.CertFile == "" && !p.tls.AutoTLS {
			if p.tls.ClientCertAuth || p.tls.TrustedCAFile != "" {
				w = append(w, fmt.Sprintf("%s serves no TLS, so client certificates are not checked there; use https URLs with %s", p.flag, p.certs))
			}
			continue
		}
		for _, u := range p.urls {
			if u.Scheme == "http" || u.Scheme == "unix" {
				w = append(w, fmt.Sprintf("%s has %s, which is plain text; TLS and client certificates do not apply to it (use https)", p.flag, u.String()))
			}
		}
	}
	return w
}

func lookup(ss []setting, name string) string {
	for _, s := range ss {
		if s.name == name {
			return s.value
		}
	}
	return ""
}
