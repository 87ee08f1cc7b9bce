package ctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	clientv3snapshot "go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/snapshot"
)

// snapshotCommand is etcdctl's snapshot save plus etcdutl's snapshot
// status and restore: the file format is etcd's either way (see package
// snapshot), so one tool handles backups of Kvorum and of etcd alike.
func (a *app) snapshotCommand() *cobra.Command {
	sc := &cobra.Command{
		Use:   "snapshot <subcommand>",
		Short: "Saves, inspects and restores backups in etcd's snapshot format",
	}
	save := &cobra.Command{
		Use:   "save <filename>",
		Short: "Stores a snapshot of one member's data in a file",
		RunE:  runE(a.snapshotSave),
	}
	status := &cobra.Command{
		Use:   "status <filename>",
		Short: "Prints the hash, revision, key count, size and storage version of a snapshot file",
		Long: `Prints the hash, revision, key count, size and storage version of a snapshot file,
as etcdutl snapshot status does. With --write-out simple, the fields comma-separated.`,
		RunE: runE(a.snapshotStatus),
	}
	var rc snapshot.RestoreConfig
	var peerURLs string
	restore := &cobra.Command{
		Use:   "restore <filename> [options]",
		Short: "Builds a new Kvorum data dir for a new cluster from a snapshot file of Kvorum or etcd",
		Long: `Builds a new Kvorum data dir for a member of a new cluster from a snapshot file
written by Kvorum or by etcd (3.5 and later). Start the member with
--initial-cluster-state new and the same --name, --initial-cluster and
--initial-cluster-token. Restore each member of the new cluster from the same
file, each with its own --name and --initial-advertise-peer-urls.`,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			rc.PeerURLs = strings.Split(peerURLs, ",")
			return a.snapshotRestore(rc, args)
		}),
	}
	f := restore.Flags()
	f.StringVar(&rc.DataDir, "data-dir", "", "Path to the output data directory (default <name>.kvorum, as kvorum's); it must not exist or be empty")
	f.StringVar(&rc.InitialCluster, "initial-cluster", "default=http://localhost:2380", "Initial cluster configuration for restore bootstrap")
	f.StringVar(&rc.ClusterToken, "initial-cluster-token", "etcd-cluster", "Initial cluster token for the cluster during restore bootstrap")
	f.StringVar(&peerURLs, "initial-advertise-peer-urls", "http://localhost:2380", "List of this member's peer URLs to advertise to the rest of the cluster")
	f.StringVar(&rc.Name, "name", "default", "Human-readable name for this member")
	f.BoolVar(&rc.SkipHashCheck, "skip-hash-check", false, "Ignore snapshot integrity hash value (required if copied from data directory)")
	f.Uint64Var(&rc.RevisionBump, "bump-revision", 0, "How much to increase the latest revision after restore")
	f.BoolVar(&rc.MarkCompacted, "mark-compacted", false, "Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)")
	sc.AddCommand(save, status, restore)
	return sc
}

func (a *app) snapshotSave(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return failf(ExitBadArgs, "snapshot save expects one argument <filename>")
	}
	spec, err := a.clientSpec(cmd)
	if err != nil {
		return err
	}
	cfg, err := a.clientConfig(spec, "client")
	if err != nil {
		return err
	}
	// As etcdctl: no deadline unless --command-timeout is given.
	ctx, cancel := context.WithCancel(context.Background())
	if f := cmd.Flag("command-timeout"); f != nil && f.Changed {
		ctx, cancel = a.commandCtx()
	}
	defer cancel()
	lg := newZapLogger(a.stderr, zap.InfoLevel)
	path := args[0]
	ver, err := clientv3snapshot.SaveWithVersion(ctx, lg, *cfg, path)
	if err != nil {
		return fail(ExitInterrupted, err)
	}
	fmt.Fprintf(a.stdout, "Snapshot saved at %s\n", path)
	if ver != "" {
		fmt.Fprintf(a.stdout, "Server version %s\n", ver)
	}
	return nil
}

func (a *app) snapshotStatus(_ *cobra.Command, args []string) error {
	if len(args) != 1 {
		return failf(ExitBadArgs, "snapshot status requires exactly one argument")
	}
	p, err := a.printer()
	if err != nil {
		return err
	}
	// Like etcdutl, status reads any database: the checksum is restore's
	// business.
	f, err := snapshot.Open(args[0], true)
	if err != nil {
		return fail(ExitError, err)
	}
	defer f.Close()
	st, err := f.Status()
	if err != nil {
		return fail(ExitError, err)
	}
	return p.SnapshotStatus(st)
}

func (a *app) snapshotRestore(rc snapshot.RestoreConfig, args []string) error {
	if len(args) != 1 {
		return failf(ExitBadArgs, "snapshot restore requires exactly one argument")
	}
	if (rc.RevisionBump == 0) == rc.MarkCompacted {
		return failf(ExitBadArgs, "--mark-compacted required if --bump-revision > 0")
	}
	rc.SnapshotPath = args[0]
	if rc.DataDir == "" {
		// kvorum's own default for the same --name, so that
		// `kvorum --name NAME` starts from it.
		rc.DataDir = rc.Name + config.DefaultDataDirSuffix
	}
	res, err := snapshot.Restore(rc)
	if err != nil {
		return fail(ExitError, err)
	}
	lg := newZapLogger(a.stderr, zap.InfoLevel)
	lg.Info("restored snapshot",
		zap.String("path", rc.SnapshotPath),
		zap.String("data-dir", rc.DataDir),
		zap.String("name", rc.Name),
		zap.Int64("revision", res.Revision),
		zap.Int64("compact-revision", res.CompactRev),
		zap.Int("keys", res.Keys),
		zap.Int("leases", res.Leases),
		zap.Bool("auth-enabled", res.Auth.Enabled),
		zap.Int("auth-users", len(res.Auth.Users)),
		zap.Int("auth-roles", len(res.Auth.Roles)),
	)
	return nil
}

// SnapshotStatus prints a snapshot file's summary as etcdutl does.
func (p *printer) SnapshotStatus(st snapshot.Status) error {
	t := table{
		header: []string{"hash", "revision", "total keys", "total size", "version"},
		rows: [][]string{{
			fmt.Sprintf("%x", st.Hash), fmt.Sprint(st.Revision), fmt.Sprint(st.TotalKey),
			humanBytes(uint64(st.TotalSize)), st.Version,
		}},
	}
	switch p.format {
	case formatSimple:
		p.commaRows(t.rows)
	case formatTable:
		writeTable(p.out, t)
	case formatJSON:
		return p.json(st)
	case formatFields:
		fmt.Fprintln(p.out, `"Hash" :`, st.Hash)
		fmt.Fprintln(p.out, `"Revision" :`, st.Revision)
		fmt.Fprintln(p.out, `"Keys" :`, st.TotalKey)
		fmt.Fprintln(p.out, `"Size" :`, st.TotalSize)
		fmt.Fprintln(p.out, `"Version" :`, st.Version)
	default:
		return p.unsupported()
	}
	return nil
}
