package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// fileKeys are the top-level keys of etcd's config file in 3.5, 3.6 and 3.7
// (the json tags of etcd's embed.Config). Most are flag names; a key that is
// not an option of Kvorum is accepted and listed in Config.Ignored.
var fileKeys = map[string]bool{}

func init() {
	for _, k := range []string{
		"advertise-client-urls", "auth-token", "auth-token-ttl", "auto-compaction-mode",
		"auto-compaction-retention", "backend-batch-interval", "backend-batch-limit",
		"backend-bbolt-freelist-type", "bcrypt-cost", "bootstrap-defrag-threshold-megabytes",
		"cipher-suites", "client-transport-security", "compact-hash-check-time",
		"compaction-batch-limit", "compaction-sleep-interval", "corrupt-check-time", "cors",
		"data-dir", "discovery", "discovery-config", "discovery-proxy", "discovery-srv",
		"discovery-srv-name", "distributed-tracing-address", "distributed-tracing-instance-id",
		"distributed-tracing-sampling-rate", "distributed-tracing-service-name",
		"downgrade-check-time", "election-timeout", "enable-distributed-tracing",
		"enable-grpc-gateway", "enable-log-rotation", "enable-pprof", "enable-v2",
		"experimental-bootstrap-defrag-threshold-megabytes",
		"experimental-compact-hash-check-enabled", "experimental-compact-hash-check-time",
		"experimental-compaction-batch-limit", "experimental-compaction-sleep-interval",
		"experimental-corrupt-check-time", "experimental-distributed-tracing-address",
		"experimental-distributed-tracing-instance-id",
		"experimental-distributed-tracing-sampling-rate",
		"experimental-distributed-tracing-service-name", "experimental-downgrade-check-time",
		"experimental-enable-distributed-tracing", "experimental-enable-lease-checkpoint",
		"experimental-enable-lease-checkpoint-persist", "experimental-enable-v2v3",
		"experimental-initial-corrupt-check", "experimental-memory-mlock",
		"experimental-peer-skip-client-san-verification",
		"experimental-snapshot-catch-up-entries", "experimental-stop-grpc-service-on-defrag",
		"experimental-txn-mode-write-with-shared-buffer", "experimental-warning-apply-duration",
		"experimental-warning-unary-request-duration",
		"experimental-watch-progress-notify-interval", "feature-gates", "force-new-cluster",
		"grpc-additional-server-options", "grpc-keepalive-interval", "grpc-keepalive-min-time",
		"grpc-keepalive-timeout", "heartbeat-interval", "host-whitelist",
		"initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state",
		"initial-cluster-token", "initial-election-tick-advance", "listen-client-http-urls",
		"listen-client-urls", "listen-metrics-urls", "listen-peer-urls", "log-format",
		"log-level", "log-outputs", "log-rotation-config-json", "logger",
		"max-concurrent-streams", "max-learners", "max-request-bytes", "max-snapshots",
		"max-txn-ops", "max-wals", "memory-mlock", "metrics", "name", "peer-transport-security",
		"pre-vote", "quota-backend-bytes", "self-signed-cert-validity",
		"snapshot-catchup-entries", "snapshot-count", "socket-options", "strict-reconfig-check",
		"tls-max-version", "tls-min-version", "unsafe-no-fsync", "v2-deprecation", "wal-dir",
		"warning-apply-duration", "warning-unary-request-duration",
		"watch-progress-notify-interval",
	} {
		fileKeys[k] = true
	}
	for k := range kvorumOnlyFlags {
		fileKeys[k] = true
	}
}

// securityKeys are the keys of client-transport-security and
// peer-transport-security. A key maps to the flag of the same meaning, or to
// "" where etcd has no such flag.
var securityKeys = map[string][2]string{ // key: {client flag, peer flag}
	"cert-file":                    {"cert-file", "peer-cert-file"},
	"key-file":                     {"key-file", "peer-key-file"},
	"client-cert-auth":             {"client-cert-auth", "peer-client-cert-auth"},
	"trusted-ca-file":              {"trusted-ca-file", "peer-trusted-ca-file"},
	"auto-tls":                     {"auto-tls", "peer-auto-tls"},
	"client-cert-file":             {"client-cert-file", "peer-client-cert-file"},
	"client-key-file":              {"client-key-file", "peer-client-key-file"},
	"allowed-cn":                   {"", "peer-cert-allowed-cn"},
	"allowed-hostname":             {"client-cert-allowed-hostname", "peer-cert-allowed-hostname"},
	"skip-client-san-verification": {"", "peer-skip-client-san-verification"},
}

// fileOnly sets the keys of the TLS sections that have no flag of their
// own (etcd's client plane has no flags for them); readSecurity names them
// section.key.
var fileOnly = map[string]func(c *Config, v string) error{
	"client-transport-security.allowed-cn": func(c *Config, v string) error {
		c.ClientTLS.AllowedCNs = splitList(v)
		return nil
	},
	"client-transport-security.skip-client-san-verification": setBool(func(c *Config) *bool { return &c.ClientTLS.SkipClientSANVerify }),
}

// readFile reads the settings of an etcd-style YAML config file. Unlike
// etcd, which skips keys it does not know, an unknown key is an error: it is
// almost always a typo, and a skipped TLS key leaves a member unprotected.
func readFile(path string) ([]setting, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %v", err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	var top map[string]any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("config file %s: want a map of etcd config keys such as \"name: infra0\"", path)
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var out []setting
	for _, k := range keys {
		v := top[k]
		origin := fmt.Sprintf("%s in config file %s", k, path)
		switch {
		case k == "client-transport-security" || k == "peer-transport-security":
			ss, err := readSecurity(path, k, v)
			if err != nil {
				return nil, err
			}
			out = append(out, ss...)
			continue
		case k == "discovery-config":
			m, ok := v.(map[string]any)
			if !ok && v != nil {
				return nil, fmt.Errorf("config file %s: %s must be a map", path, k)
			}
			if eps, ok := m["endpoints"]; ok {
				s, _ := scalar(eps)
				out = append(out, setting{name: "discovery-endpoints", value: s, origin: "discovery-config.endpoints in config file " + path})
			}
			if len(m) > 0 {
				out = append(out, setting{name: k, value: "set", origin: origin})
			}
			continue
		case !fileKeys[k]:
			return nil, fmt.Errorf("config file %s: unknown key %q%s", path, k, hint(k))
		}
		if n, isNum := v.(json.Number); isNum {
			if kd, _ := lookupKind(k); kd == kindDuration {
				// etcd's config file holds durations as nanoseconds.
				v = n.String() + "ns"
			}
		}
		s, ok := scalar(v)
		if !ok {
			if lookupOption(k) != nil {
				return nil, fmt.Errorf("config file %s: %s must be a single value, not a map", path, k)
			}
			s = "set" // a map under a key Kvorum ignores: only its presence matters
		}
		out = append(out, setting{name: k, value: s, origin: origin})
	}
	return out, nil
}

func readSecurity(path, section string, v any) ([]setting, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("config file %s: %s must be a map with keys such as cert-file and key-file", path, section)
	}
	peer := 0
	if section == "peer-transport-security" {
		peer = 1
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []setting
	for _, k := range keys {
		flags, ok := securityKeys[k]
		if !ok {
			return nil, fmt.Errorf("config file %s: unknown key %q in %s", path, k, section)
		}
		name := flags[peer]
		if name == "" {
			name = section + "." + k
		}
		s, ok := scalar(m[k])
		if !ok {
			return nil, fmt.Errorf("config file %s: %s.%s must be a single value, not a map", path, section, k)
		}
		out = append(out, setting{name: name, value: s, origin: fmt.Sprintf("%s.%s in config file %s", section, k, path)})
	}
	return out, nil
}

// hint suggests the section for a TLS flag name used as a top-level key.
func hint(k string) string {
	if strings.HasPrefix(k, "peer-") {
		if _, ok := securityKeys[strings.TrimPrefix(k, "peer-")]; ok {
			return fmt.Sprintf(" (write it as %s under peer-transport-security)", strings.TrimPrefix(k, "peer-"))
		}
	}
	if _, ok := securityKeys[k]; ok {
		return " (write it under client-transport-security)"
	}
	return " (the keys are etcd's; see etcd's config file documentation)"
}

// scalar spells a YAML value as its flag would take it: lists are
// comma-separated and null is empty. It reports false for a map.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		return x.String(), true
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := scalar(e)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), true
	}
	return "", false
}
