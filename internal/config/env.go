package config

import (
	"fmt"
	"sort"
	"strings"
)

// The environment variable prefixes, in order of precedence. ETCD_ keeps
// existing units and manifests working.
var envPrefixes = []string{"KVORUM", "ETCD"}

// envName is the variable that stands for a flag: KVORUM_DATA_DIR for
// --data-dir.
func envName(prefix, flag string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// flagNames returns every flag name: Kvorum's in Usage order, then etcd's
// ignored ones sorted.
func flagNames() []string {
	names := make([]string, 0, len(options)+len(compatFlags))
	for _, o := range options {
		names = append(names, o.name)
	}
	compat := make([]string, 0, len(compatFlags))
	for n := range compatFlags {
		compat = append(compat, n)
	}
	sort.Strings(compat)
	return append(names, compat...)
}

// firstEnv returns the value of the first non-empty variable for flag, and
// its name.
func firstEnv(getenv func(string) string, flag string) string {
	v, _ := firstEnvNamed(getenv, flag)
	return v
}

func firstEnvNamed(getenv func(string) string, flag string) (value, name string) {
	for _, p := range envPrefixes {
		k := envName(p, flag)
		if v := getenv(k); v != "" {
			return v, k
		}
	}
	return "", ""
}

// withEnv adds to the command line's settings those the environment gives
// for flags the command line leaves out. It also returns warnings for
// variables that were overridden.
func withEnv(cl []setting, getenv func(string) string) ([]setting, []string) {
	out := append([]setting(nil), cl...)
	onCL := map[string]string{}
	for _, s := range cl {
		onCL[s.name] = s.value
	}
	var warnings []string
	for _, name := range flagNames() {
		switch name {
		case "config-file":
			continue // read before the others: it decides whether they count
		case "version":
			// As etcd: a stray ETCD_VERSION must not turn the server into a
			// version printer.
			for _, p := range envPrefixes {
				if k := envName(p, name); getenv(k) != "" {
					warnings = append(warnings, fmt.Sprintf("environment variable %s is ignored; use the --version flag", k))
				}
			}
			continue
		}
		v, k := firstEnvNamed(getenv, name)
		if k == "" {
			continue
		}
		for _, p := range envPrefixes {
			if other := envName(p, name); other != k && getenv(other) != "" && getenv(other) != v {
				warnings = append(warnings, fmt.Sprintf("environment variable %s is ignored: %s is set too and wins", other, k))
			}
		}
		if clv, ok := onCL[name]; ok {
			if clv != v {
				warnings = append(warnings, fmt.Sprintf("environment variable %s is ignored: --%s on the command line wins", k, name))
			}
			continue
		}
		out = append(out, setting{name: name, value: v, origin: "environment variable " + k, typed: true})
	}
	return out, warnings
}

// shadowedByFile returns a warning for each flag and variable that the
// config file at path makes etcd (and Kvorum) ignore.
func shadowedByFile(cl []setting, getenv func(string) string, path string) []string {
	var w []string
	for _, s := range cl {
		if s.name != "config-file" {
			w = append(w, fmt.Sprintf("%s is ignored: settings come only from the config file %s", s.origin, path))
		}
	}
	for _, name := range flagNames() {
		if name == "config-file" {
			continue
		}
		for _, p := range envPrefixes {
			if k := envName(p, name); getenv(k) != "" {
				w = append(w, fmt.Sprintf("environment variable %s is ignored: settings come only from the config file %s", k, path))
			}
		}
	}
	return w
}

// envMap turns os.Environ-style entries into a map; a later entry wins, as
// in os.Getenv.
func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// unknownEnv returns a warning for each KVORUM_* or ETCD_* variable that
// stands for no flag, as etcd warns about unrecognised ETCD_* variables.
func unknownEnv(environ []string) []string {
	known := map[string]bool{
		// Read by etcd itself on architectures it does not support
		// officially; meaningless to Kvorum, and common in deployments.
		"ETCD_UNSUPPORTED_ARCH": true,
	}
	for _, name := range flagNames() {
		for _, p := range envPrefixes {
			known[envName(p, name)] = true
		}
	}
	var w []string
	seen := map[string]bool{}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if known[k] || seen[k] {
			continue
		}
		for _, p := range envPrefixes {
			if strings.HasPrefix(k, p+"_") {
				seen[k] = true
				w = append(w, fmt.Sprintf("environment variable %s matches no flag and is ignored", k))
				break
			}
		}
	}
	return w
}
