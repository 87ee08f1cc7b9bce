package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/tlsutil"

	"github.com/kvorum/kvorum/internal/membudget"
)

// parseURLs reads a comma-separated list of URLs, dropping repeats as etcd
// does. Whether each URL is usable is Validate's business.
func parseURLs(v string) ([]url.URL, error) {
	var out []url.URL
	for _, s := range splitList(v) {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a URL", s)
		}
		out = append(out, *u)
	}
	return out, nil
}

// parseInitialCluster reads name=URL,name=URL,... A name given more than once
// has all of its URLs, as in etcd; members keep the order of their first
// appearance.
func parseInitialCluster(v string) ([]Member, error) {
	var out []Member
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, raw, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("entry %q must be name=peerURL", e)
		}
		if name == "" {
			return nil, fmt.Errorf("entry %q has no name; write name=peerURL", e)
		}
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || raw == "" {
			return nil, fmt.Errorf("entry %q: %q is not a URL", e, raw)
		}
		i := slices.IndexFunc(out, func(m Member) bool { return m.Name == name })
		if i < 0 {
			out = append(out, Member{Name: name})
			i = len(out) - 1
		}
		out[i].PeerURLs = append(out[i].PeerURLs, *u)
	}
	return out, nil
}

// Validate checks that c describes a member that can start, with the rules
// etcd applies, and returns the first problem in one line that names the
// flag and what to do. Parse calls it; code that builds a Config itself
// should too.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("--name must not be empty")
	}
	if strings.ContainsAny(c.Name, ",=") {
		return fmt.Errorf("--name %q must not contain ',' or '=', which separate the entries of --initial-cluster", c.Name)
	}
	if c.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if c.BackupInterval > 0 && c.BackupDir == "" {
		return errors.New("--backup-interval is set but --backup-dir is empty; name the directory backups go to")
	}
	if err := membudget.Check(c.MemoryBudgetBytes); err != nil {
		return err
	}
	for _, l := range []struct {
		flag     string
		urls     []url.URL
		bind     bool
		optional bool
	}{
		{"--listen-client-urls", c.ListenClientURLs, true, false},
		{"--advertise-client-urls", c.AdvertiseClientURLs, false, false},
		{"--listen-peer-urls", c.ListenPeerURLs, true, false},
		{"--initial-advertise-peer-urls", c.InitialAdvertisePeerURLs, false, false},
		{"--listen-metrics-urls", c.ListenMetricsURLs, true, true},
	} {
		if len(l.urls) == 0 && !l.optional {
			return fmt.Errorf("%s must list at least one URL", l.flag)
		}
		for _, u := range l.urls {
			if err := checkURL(l.flag, u, l.bind); err != nil {
				return err
			}
		}
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if err := c.validateTiming(); err != nil {
		return err
	}
	if c.MaxRequestBytes == 0 {
		return errors.New("--max-request-bytes must be more than 0 (the default is 1572864)")
	}
	if c.MaxTxnOps == 0 {
		return errors.New("--max-txn-ops must be more than 0 (the default is 128)")
	}
	switch c.AutoCompactionMode {
	case CompactionPeriodic, CompactionRevision:
	default:
		return fmt.Errorf("--auto-compaction-mode %q: want %q or %q", c.AutoCompactionMode, CompactionPeriodic, CompactionRevision)
	}
	if c.AutoCompactionRetention < 0 || c.AutoCompactionRevisions < 0 {
		return errors.New("--auto-compaction-retention must not be negative")
	}
	if err := c.validateLogging(); err != nil {
		return err
	}
	return c.validateTLS()
}

// checkURL applies etcd's rules to one URL: http, https, unix or unixs; for
// http(s) a host:port and no path; to listen on, an IP address or localhost;
// to advertise, a host.
func checkURL(flag string, u url.URL, bind bool) error {
	switch u.Scheme {
	case "unix", "unixs":
		return nil
	case "http", "https":
	default:
		return fmt.Errorf("%s: %q has scheme %q; want http, https, unix or unixs", flag, u.String(), u.Scheme)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return fmt.Errorf("%s: %q must have the form %s://host:port", flag, u.String(), u.Scheme)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s: %q must not have a path; write %s://%s", flag, u.String(), u.Scheme, u.Host)
	}
	if bind {
		if host != "localhost" && net.ParseIP(host) == nil {
			return fmt.Errorf("%s: %q must name an IP address or localhost to listen on (host names belong in the advertise URLs)", flag, u.String())
		}
		return nil
	}
	if host == "" {
		return fmt.Errorf("%s: %q has no host; give an address the others can reach", flag, u.String())
	}
	return nil
}

func (c *Config) validateCluster() error {
	switch c.InitialClusterState {
	case ClusterStateNew, ClusterStateExisting:
	default:
		return fmt.Errorf("--initial-cluster-state %q: want %q or %q", c.InitialClusterState, ClusterStateNew, ClusterStateExisting)
	}
	if len(c.InitialCluster) == 0 {
		return fmt.Errorf("--initial-cluster must list the members, at least %s=<peer URL>", c.Name)
	}
	owner := map[string]string{} // peer URL -> member
	var self *Member
	for i, m := range c.InitialCluster {
		if m.Name == "" {
			return errors.New("--initial-cluster has a member without a name; write name=peerURL")
		}
		if slices.ContainsFunc(c.InitialCluster[:i], func(o Member) bool { return o.Name == m.Name }) {
			return fmt.Errorf("--initial-cluster lists member %q twice", m.Name)
		}
		if len(m.PeerURLs) == 0 {
			return fmt.Errorf("--initial-cluster: member %q has no peer URL", m.Name)
		}
		for _, u := range m.PeerURLs {
			if err := checkURL("--initial-cluster", u, false); err != nil {
				return err
			}
			s := u.String()
			if prev, ok := owner[s]; ok {
				if prev == m.Name {
					return fmt.Errorf("--initial-cluster lists %s twice for member %q", s, m.Name)
				}
				return fmt.Errorf("--initial-cluster gives %s to both %q and %q; a peer URL belongs to one member", s, prev, m.Name)
			}
			owner[s] = m.Name
		}
		if m.Name == c.Name {
			self = &c.InitialCluster[i]
		}
	}
	if self == nil {
		return fmt.Errorf("--initial-cluster has no member named %q (this member's --name); add %s=<peer URL> or correct --name", c.Name, c.Name)
	}
	// When bootstrapping, the others learn this member's URLs from their
	// own --initial-cluster, so what it advertises must be the same set.
	// etcd also resolves host names to compare them; Kvorum compares the
	// URLs as written and does no DNS lookups here.
	if c.InitialClusterState == ClusterStateNew && !sameURLs(self.PeerURLs, c.InitialAdvertisePeerURLs) {
		return fmt.Errorf("--initial-advertise-peer-urls %s differs from this member's URLs in --initial-cluster (%s=%s); make them the same",
			joinURLs(c.InitialAdvertisePeerURLs), c.Name, joinURLs(self.PeerURLs))
	}
	return nil
}

func (c *Config) validateTiming() error {
	hb, el := c.HeartbeatInterval, c.ElectionTimeout
	if hb < time.Millisecond {
		return fmt.Errorf("--heartbeat-interval must be at least 1 (milliseconds); it is %v", hb)
	}
	if el < time.Millisecond {
		return fmt.Errorf("--election-timeout must be at least 1 (milliseconds); it is %v", el)
	}
	if el < 5*hb {
		return fmt.Errorf("--election-timeout (%dms) must be at least 5 times --heartbeat-interval (%dms); raise it to %d or more",
			el.Milliseconds(), hb.Milliseconds(), (5 * hb).Milliseconds())
	}
	if el > MaxElectionTimeout {
		return fmt.Errorf("--election-timeout (%dms) must be at most %d", el.Milliseconds(), MaxElectionTimeout.Milliseconds())
	}
	return nil
}

func (c *Config) validateLogging() error {
	switch c.LogLevel {
	case "debug", "info", "warn", "error", "panic", "fatal":
	default:
		return fmt.Errorf("--log-level %q: want debug, info, warn, error, panic or fatal", c.LogLevel)
	}
	if c.Logger != "zap" {
		return fmt.Errorf("--logger %q: only \"zap\" is supported", c.Logger)
	}
	if len(c.LogOutputs) > 1 && slices.Contains(c.LogOutputs, "default") {
		return fmt.Errorf("--log-outputs %s: 'default' cannot be combined with other outputs; name them all (stderr, stdout, paths)", strings.Join(c.LogOutputs, ","))
	}
	return nil
}

func (c *Config) validateTLS() error {
	for _, u := range c.ListenClientHTTPURLs {
		if err := checkURL("--listen-client-http-urls", u, true); err != nil {
			return err
		}
	}
	client := tlsFlags{"--cert-file", "--key-file", "--client-cert-file", "--client-key-file", "--trusted-ca-file",
		"--client-cert-auth", "--auto-tls", "client-transport-security.allowed-cn", "--client-cert-allowed-hostname"}
	if err := c.ClientTLS.validate(client, map[string][]url.URL{"--listen-client-urls": c.ListenClientURLs, "--listen-client-http-urls": c.ListenClientHTTPURLs}); err != nil {
		return err
	}
	peer := tlsFlags{"--peer-cert-file", "--peer-key-file", "--peer-client-cert-file", "--peer-client-key-file", "--peer-trusted-ca-file",
		"--peer-client-cert-auth", "--peer-auto-tls", "--peer-cert-allowed-cn", "--peer-cert-allowed-hostname"}
	if err := c.PeerTLS.validate(peer, map[string][]url.URL{"--listen-peer-urls": c.ListenPeerURLs}); err != nil {
		return err
	}
	minV, err := tlsutil.GetTLSVersion(c.TLSMinVersion)
	if err != nil {
		return fmt.Errorf("--tls-min-version %q: want TLS1.2 or TLS1.3", c.TLSMinVersion)
	}
	maxV, err := tlsutil.GetTLSVersion(c.TLSMaxVersion)
	if err != nil {
		return fmt.Errorf("--tls-max-version %q: want TLS1.2, TLS1.3 or nothing (Go's highest)", c.TLSMaxVersion)
	}
	if maxV != 0 && minV > maxV {
		return fmt.Errorf("--tls-min-version %s is above --tls-max-version %s", c.TLSMinVersion, c.TLSMaxVersion)
	}
	if len(c.CipherSuites) > 0 {
		if minV == tls.VersionTLS13 {
			return errors.New("--cipher-suites cannot be set with --tls-min-version TLS1.3: Go does not make TLS 1.3 suites configurable; drop one of them")
		}
		for _, name := range c.CipherSuites {
			if _, ok := tlsutil.GetCipherSuite(name); !ok {
				return fmt.Errorf("--cipher-suites: unknown cipher suite %q; use Go's names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", name)
			}
		}
	}
	return nil
}

// tlsFlags names the flags of one plane's TLSInfo, for errors.
type tlsFlags struct {
	cert, key, clientCert, clientKey, ca, clientAuth, auto, allowedCN, allowedHost string
}

// validate checks one plane's TLS settings; listen maps each listen flag
// of the plane to its URLs.
func (t TLSInfo) validate(f tlsFlags, listen map[string][]url.URL) error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("%s and %s must be given together", f.cert, f.key)
	}
	if (t.ClientCertFile == "") != (t.ClientKeyFile == "") {
		return fmt.Errorf("%s and %s must be given together", f.clientCert, f.clientKey)
	}
	if len(t.AllowedCNs) > 0 && len(t.AllowedHostnames) > 0 {
		return fmt.Errorf("%s and %s exclude each other; give one of them", f.allowedCN, f.allowedHost)
	}
	// A generated self-signed certificate cannot vouch for a client; etcd
	// drops client certificate checks in that case without a word. Kvorum
	// keeps them when there is a CA to check against and otherwise refuses
	// to start.
	if t.AutoTLS && t.CertFile == "" && t.ClientCertAuth && t.TrustedCAFile == "" {
		return fmt.Errorf("%s with %s needs %s: self-signed certificates cannot be verified; give %s, or certificate files instead of %s",
			f.clientAuth, f.auto, f.ca, f.ca, f.auto)
	}
	if t.CertFile != "" || t.AutoTLS {
		return nil
	}
	flags := make([]string, 0, len(listen))
	for flag := range listen {
		flags = append(flags, flag)
	}
	slices.Sort(flags)
	for _, flag := range flags {
		for _, u := range listen[flag] {
			if u.Scheme == "https" || u.Scheme == "unixs" {
				return fmt.Errorf("%s has %s, which needs TLS; give %s and %s, or %s", flag, u.String(), f.cert, f.key, f.auto)
			}
		}
	}
	return nil
}

// sameURLs reports whether a and b hold the same URLs, in any order.
func sameURLs(a, b []url.URL) bool {
	as, bs := urlStrings(a), urlStrings(b)
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(slices.Compact(as), slices.Compact(bs))
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

func joinURLs(us []url.URL) string { return strings.Join(urlStrings(us), ",") }
