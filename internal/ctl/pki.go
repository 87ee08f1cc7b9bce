package ctl

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvorum/kvorum/internal/pki"
)

// pkiCommand is kvorumctl's own (etcdctl has none): it creates and checks
// the certificates of a mutual-TLS cluster. It works on local files only
// and ignores the connection flags.
func (a *app) pkiCommand() *cobra.Command {
	pc := &cobra.Command{
		Use:   "pki <subcommand>",
		Short: "Creates and checks the TLS certificates of a cluster (kvorumctl only)",
		Long: `Creates and checks the TLS certificates of a cluster: a CA, a server and a
peer certificate per member, and client certificates, laid out as

  DIR/ca.crt, DIR/ca.key
  DIR/members/NAME/server.crt, server.key   (--cert-file, --key-file)
  DIR/members/NAME/peer.crt, peer.key       (--peer-cert-file, --peer-key-file)
  DIR/clients/NAME.crt, NAME.key            (kvorumctl/etcdctl --cert, --key)

Keys are ECDSA P-256, written with mode 0600. No file is ever overwritten.`,
	}
	var dir string
	pc.PersistentFlags().StringVar(&dir, "dir", "pki", "directory of the certificates")
	leaf := days(pki.DefaultValidity.Leaf)
	caValidity := days(pki.DefaultValidity.CA)
	var localhost bool

	var members []string
	var caName, apiserver, admin string
	initCmd := &cobra.Command{
		Use:   "init --member NAME=IP,DNS,... [--member ...]",
		Short: "Creates a CA and the certificates of every member and client",
		Args:  cobra.NoArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			plan := pki.Plan{CAName: caName, Validity: pki.Validity{CA: time.Duration(caValidity), Leaf: time.Duration(leaf)}}
			if len(members) == 0 {
				return failf(ExitBadArgs, "pki init needs at least one --member NAME=IP,DNS,...")
			}
			for _, s := range members {
				m, err := parsePKIMember(s, localhost)
				if err != nil {
					return err
				}
				plan.Members = append(plan.Members, m)
			}
			for _, c := range []string{apiserver, admin} {
				if c != "" {
					plan.Clients = append(plan.Clients, c)
				}
			}
			written, err := pki.Layout{Dir: dir}.Init(plan, time.Now())
			if err != nil {
				return fail(ExitError, err)
			}
			a.printWritten(written)
			return nil
		}),
	}
	f := initCmd.Flags()
	f.StringArrayVar(&members, "member", nil, "a member as NAME=IP,DNS,... (its certificates' SANs); repeat for each member")
	f.StringVar(&caName, "ca-name", "kvorum-ca", "common name of the CA")
	f.StringVar(&apiserver, "apiserver-client", "kube-apiserver-etcd-client", "common name (and file name) of the kube-apiserver's client certificate; empty for none")
	f.StringVar(&admin, "admin-client", "admin", "common name (and file name) of the administrator's client certificate; empty for none")
	f.Var(&caValidity, "ca-validity", "how long the CA is valid (e.g. 3650d, 87600h)")

	addMember := &cobra.Command{
		Use:   "add-member NAME=IP,DNS,...",
		Short: "Signs the server and peer certificates of a new member with the existing CA",
		RunE: runE(func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return failf(ExitBadArgs, "pki add-member needs one argument NAME=IP,DNS,...")
			}
			m, err := parsePKIMember(args[0], localhost)
			if err != nil {
				return err
			}
			written, err := pki.Layout{Dir: dir}.AddMember(m, time.Duration(leaf), time.Now())
			if err != nil {
				return fail(ExitError, err)
			}
			a.printWritten(written)
			return nil
		}),
	}
	addClient := &cobra.Command{
		Use:   "add-client NAME",
		Short: "Signs a client certificate with common name NAME with the existing CA",
		RunE: runE(func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return failf(ExitBadArgs, "pki add-client needs one argument NAME")
			}
			written, err := pki.Layout{Dir: dir}.AddClient(args[0], time.Duration(leaf), time.Now())
			if err != nil {
				return fail(ExitError, err)
			}
			a.printWritten(written)
			return nil
		}),
	}
	for _, c := range []*cobra.Command{initCmd, addMember} {
		c.Flags().BoolVar(&localhost, "localhost", false, "also make member certificates valid for 127.0.0.1, ::1 and localhost")
	}
	for _, c := range []*cobra.Command{initCmd, addMember, addClient} {
		c.Flags().Var(&leaf, "validity", "how long new member and client certificates are valid (e.g. 365d, 8760h)")
	}

	warnWithin := days(30 * 24 * time.Hour)
	status := &cobra.Command{
		Use:   "status [DIR]",
		Short: "Lists every certificate with subject, SANs, issuer and expiry; warns of problems",
		Long: `Lists every certificate under DIR (default: --dir) with its subject, SANs,
issuer and expiry, and checks that it is signed by DIR/ca.crt and matches its
key file. Certificates that are expired, do not verify, or expire within 30
days are reported on stderr. Given --warn-within explicitly, status also
exits with code 1 if any certificate has such a problem (for cron jobs and
monitoring).`,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return failf(ExitBadArgs, "pki status takes at most one argument DIR")
			}
			d := dir
			if len(args) == 1 {
				d = args[0]
			}
			strict := cmd.Flags().Changed("warn-within")
			return a.pkiStatus(d, time.Duration(warnWithin), strict)
		}),
	}
	status.Flags().Var(&warnWithin, "warn-within", "warn about certificates that expire within this long (e.g. 30d, 720h); given explicitly, also exit 1 if there is any")

	pc.AddCommand(initCmd, addMember, addClient, status)
	return pc
}

func parsePKIMember(s string, localhost bool) (pki.Member, error) {
	m, err := pki.ParseMember(s)
	if err != nil {
		return m, fail(ExitBadArgs, err)
	}
	if localhost {
		m = m.WithLocalhost()
	}
	return m, nil
}

func (a *app) printWritten(paths []string) {
	for _, p := range paths {
		fmt.Fprintln(a.stdout, "created", p)
	}
}

// pkiStatus prints the certificates under dir as a table (or, with -w
// json, as JSON) and their problems on stderr.
func (a *app) pkiStatus(dir string, warnWithin time.Duration, strict bool) error {
	now := time.Now()
	entries, err := pki.Scan(dir, now)
	if err != nil {
		return fail(ExitError, err)
	}
	switch a.g.writeOut {
	case formatJSON:
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(entries); err != nil {
			return fail(ExitError, err)
		}
	case formatSimple, formatTable:
		t := table{header: []string{"file", "subject", "SANs", "issuer", "not after", "usage"}}
		for _, e := range entries {
			t.rows = append(t.rows, []string{
				e.Path, e.Subject, strings.Join(e.SANs, "\n"), e.Issuer,
				e.NotAfter.UTC().Format("2006-01-02 15:04 MST"), strings.Join(e.Usages, ", "),
			})
		}
		writeTable(a.stdout, t)
	default:
		return failf(ExitBadFeature, "%s not supported as output format of pki status (use simple, table or json)", a.g.writeOut)
	}
	warned := false
	for _, e := range entries {
		for _, p := range e.Problems {
			fmt.Fprintf(a.stderr, "warning: %s: %s\n", e.Path, p)
			warned = true
		}
		if len(e.Problems) == 0 && e.NotAfter.Sub(now) < warnWithin {
			fmt.Fprintf(a.stderr, "warning: %s: expires in %s (%s); renew it\n", e.Path, roundDays(e.NotAfter.Sub(now)), e.NotAfter.UTC().Format(time.RFC3339))
			warned = true
		}
	}
	if warned && strict {
		return fail(ExitError, nil)
	}
	return nil
}

// roundDays prints d in whole days, or hours and minutes below a day.
func roundDays(d time.Duration) string {
	if d >= 24*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Truncate(time.Minute).String()
}

// days is a duration flag that also accepts whole days ("30d").
type days time.Duration

func (d *days) String() string {
	v := time.Duration(*d)
	if v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *days) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a number of days like 30d", s)
		}
		*d = days(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration like 30d or 720h", s)
	}
	*d = days(v)
	return nil
}

func (d *days) Type() string { return "duration" }
