package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary command lines, environments and config files to
// the parser: it must return a config or an error, never panic or hang.
func FuzzParse(f *testing.F) {
	f.Add("--name=m1 --initial-cluster=m1=http://127.0.0.1:2380", "ETCD_DATA_DIR=/x", "")
	f.Add("--listen-client-urls=https://10.0.0.1:2379 --cert-file=c --key-file=k", "", "name: a\ninitial-cluster: a=http://h:1\n")
	f.Add("--auto-compaction-mode=revision --auto-compaction-retention=5", "KVORUM_QUOTA_BACKEND_BYTES=-1", "client-transport-security:\n  cert-file: c\n")
	f.Add("--initial-cluster=,,=", "", "name: [1, 2]\n")
	f.Fuzz(func(t *testing.T, args, env, file string) {
		argv := strings.Fields(args)
		if file != "" {
			path := filepath.Join(t.TempDir(), "kvorum.yaml")
			if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
			argv = append(argv, "--config-file="+path)
		}
		vars := map[string]string{}
		for _, kv := range strings.Split(env, "\n") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				vars[k] = v
			}
		}
		c, err := Parse(argv, func(k string) string { return vars[k] })
		if err == nil && c == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
	})
}
