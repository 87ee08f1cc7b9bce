package config

import (
	"strings"
	"testing"
)

// --memory-budget-bytes is read from the command line, the environment and
// the config file alike; unset it is 0 (the default budget), and a budget
// below the minimum is refused naming the flag.
func TestMemoryBudgetFlag(t *testing.T) {
	const want = 1 << 30
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{args: []string{"--memory-budget-bytes", "1073741824"}},
		{env: map[string]string{"ETCD_MEMORY_BUDGET_BYTES": "1073741824"}},
		{args: []string{"--config-file", writeFile(t, "memory-budget-bytes: 1073741824\n")}},
	} {
		c, err := Parse(tc.args, env(tc.env))
		if err != nil || c.MemoryBudgetBytes != want {
			t.Errorf("%q %v: budget %d (%v), want %d", tc.args, tc.env, c.MemoryBudgetBytes, err, want)
		}
	}
	if c, err := Parse(nil, nil); err != nil || c.MemoryBudgetBytes != 0 {
		t.Errorf("default budget %d (%v), want 0 (the built-in default)", c.MemoryBudgetBytes, err)
	}
	for _, v := range []string{"1000", "-1", "lots"} {
		if _, err := Parse([]string{"--memory-budget-bytes", v}, nil); err == nil || !strings.Contains(err.Error(), "--memory-budget-bytes") {
			t.Errorf("--memory-budget-bytes %s: %v, want an error naming the flag", v, err)
		}
	}
}
