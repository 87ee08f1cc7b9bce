package config

import (
	"strings"
	"testing"
	"time"
)

// The backup flags are read from the command line, the environment and
// the config file alike; an interval without a dir, a negative interval
// and a negative retention are refused naming the flag.
func TestBackupFlags(t *testing.T) {
	want := func(t *testing.T, c *Config, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if c.BackupDir != "/b" || c.BackupInterval != time.Hour || c.BackupRetention != 3 {
			t.Errorf("dir %q interval %v retention %d, want /b 1h 3", c.BackupDir, c.BackupInterval, c.BackupRetention)
		}
	}
	c, err := Parse([]string{"--backup-dir", "/b", "--backup-interval=1h", "--backup-retention", "3"}, nil)
	want(t, c, err)
	c, err = Parse(nil, env(map[string]string{"ETCD_BACKUP_DIR": "/b", "ETCD_BACKUP_INTERVAL": "1h", "ETCD_BACKUP_RETENTION": "3"}))
	want(t, c, err)
	c, err = Parse([]string{"--config-file", writeFile(t, "backup-dir: /b\nbackup-interval: 1h\nbackup-retention: 3\n")}, nil)
	want(t, c, err)

	c, err = Parse(nil, nil)
	if err != nil || c.BackupInterval != 0 || c.BackupRetention != 7 {
		t.Errorf("defaults: interval %v retention %d (%v), want 0 and 7", c.BackupInterval, c.BackupRetention, err)
	}
	for _, args := range [][]string{
		{"--backup-interval", "1h"},
		{"--backup-dir", "/b", "--backup-interval", "-1h"},
		{"--backup-retention", "-1"},
	} {
		if _, err := Parse(args, nil); err == nil || !strings.Contains(err.Error(), "--backup-") {
			t.Errorf("%q: %v, want an error naming the flag", args, err)
		}
	}
}
