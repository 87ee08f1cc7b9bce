package ctl

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/version"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Prints the version of kvorumctl and of the etcd API it speaks",
		RunE: runE(func(*cobra.Command, []string) error {
			fmt.Fprintln(a.stdout, cliName+" version:", version.Version)
			fmt.Fprintln(a.stdout, "API version:", majorMinor(version.APIVersion))
			return nil
		}),
	}
}

// majorMinor cuts "3.7.0" to "3.7", the form etcdctl prints.
func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

func (a *app) memberCommand() *cobra.Command {
	mc := &cobra.Command{
		Use:   "member <subcommand>",
		Short: "Cluster membership commands",
	}
	var consistency string
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists the members of the cluster",
	}
	list.Flags().StringVar(&consistency, "consistency", "l", "l: linearizable, s: serializable (answer of the contacted member, may be stale)")
	list.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		// etcdctl quotes get's default ("l") in this message instead of
		// the value given; kvorumctl prints the same bytes.
		serializable, err := parseConsistency(consistency, "l")
		if err != nil {
			return err
		}
		var opts []clientv3.OpOption
		if serializable {
			opts = append(opts, clientv3.WithSerializable())
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := a.commandCtx()
		resp, err := c.MemberList(ctx, opts...)
		cancel()
		if err != nil {
			return fail(ExitError, err)
		}
		p, _ := a.printer()
		return p.MemberList(resp)
	})
	mc.AddCommand(list)
	a.addMemberChangeCommands(mc)
	return mc
}

func (a *app) endpointCommand() *cobra.Command {
	ec := &cobra.Command{
		Use:   "endpoint <subcommand>",
		Short: "Per-endpoint commands: health, status, hashkv",
	}
	var cluster bool
	ec.PersistentFlags().BoolVar(&cluster, "cluster", false, "use the client URLs of all members (from member list) instead of --endpoints")

	health := &cobra.Command{
		Use:   "health",
		Short: "Checks that each endpoint serves a linearizable read and has no alarm",
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.endpointHealth(cmd, cluster)
		}),
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Prints the status of each endpoint",
		Long: `Prints the status of each endpoint. In the simple format, one line per
endpoint with comma-separated fields in the order of the table columns.`,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.endpointStatus(cmd, cluster)
		}),
	}
	var rev int64
	hashkv := &cobra.Command{
		Use:   "hashkv",
		Short: "Prints the hash of the key-value history of each endpoint",
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.endpointHashKV(cmd, cluster, rev)
		}),
	}
	hashkv.PersistentFlags().Int64Var(&rev, "rev", 0, "hash the history up to this revision (0: latest)")
	ec.AddCommand(health, status, hashkv)
	return ec
}

// targetEndpoints returns the endpoints an endpoint command works on:
// --endpoints as given, or with --cluster the client URLs of all members.
func (a *app) targetEndpoints(cmd *cobra.Command, spec *clientv3.ConfigSpec, cluster bool) ([]string, error) {
	if !cluster {
		return a.g.endpoints, nil
	}
	members, err := a.clusterMembers(spec)
	if err != nil {
		return nil, err
	}
	var eps []string
	for _, m := range members {
		eps = append(eps, m.ClientURLs...)
	}
	return eps, nil
}

// clusterMembers asks the endpoints for the member list.
func (a *app) clusterMembers(spec *clientv3.ConfigSpec) ([]*pb.Member, error) {
	c, err := a.newClient(&clientv3.ConfigSpec{
		Endpoints:        spec.Endpoints,
		DialTimeout:      spec.DialTimeout,
		KeepAliveTime:    spec.KeepAliveTime,
		KeepAliveTimeout: spec.KeepAliveTimeout,
		Secure:           spec.Secure,
		Auth:             spec.Auth,
	}, "etcd-client")
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			ee.code = ExitError
		}
		return nil, err
	}
	defer c.Close()
	ctx, cancel := a.commandCtx()
	defer cancel()
	members, err := c.MemberList(ctx)
	if err != nil {
		return nil, failf(ExitError, "failed to fetch endpoints from etcd cluster member list: %w", err)
	}
	return members.Members, nil
}

// endpointHealth checks all endpoints in parallel: an endpoint is healthy
// if it answers a linearizable get (permission denied counts, the request
// went through consensus) and reports no alarm. Results are printed in the
// order they arrive.
func (a *app) endpointHealth(cmd *cobra.Command, cluster bool) error {
	spec, err := a.clientSpec(cmd)
	if err != nil {
		return err
	}
	eps := a.g.endpoints
	var members []*pb.Member
	if cluster {
		if members, err = a.clusterMembers(spec); err != nil {
			return err
		}
		eps = nil
		for _, m := range members {
			eps = append(eps, m.ClientURLs...)
		}
	}
	var cfgs []*clientv3.Config
	for _, ep := range eps {
		one := spec.Clone()
		one.Endpoints = []string{ep}
		cfg, err := a.clientConfig(one, "client")
		if err != nil {
			return err
		}
		cfgs = append(cfgs, cfg)
	}

	results := make(chan epHealth, len(cfgs))
	var wg sync.WaitGroup
	for _, cfg := range cfgs {
		wg.Go(func() { results <- a.checkHealth(cfg) })
	}
	wg.Wait()
	close(results)

	var list []epHealth
	unhealthy := false
	for h := range results {
		list = append(list, h)
		if h.Error != "" {
			unhealthy = true
		}
	}
	p, _ := a.printer()
	if err := p.EndpointHealth(list); err != nil {
		return err
	}
	if cluster && a.g.writeOut == "simple" {
		// Beyond etcdctl, on stderr so that stdout stays etcdctl's: what
		// the health of each member means for the cluster.
		for _, line := range quorumSummary(members, list) {
			fmt.Fprintln(a.stderr, line)
		}
	}
	if unhealthy {
		return failf(ExitError, "unhealthy cluster")
	}
	return nil
}

func (a *app) checkHealth(cfg *clientv3.Config) epHealth {
	ep := cfg.Endpoints[0]
	c, err := clientv3.New(*cfg)
	if err != nil {
		return epHealth{Ep: ep, Error: err.Error()}
	}
	defer c.Close()
	start := time.Now()
	ctx, cancel := a.commandCtx()
	defer cancel()
	_, err = c.Get(ctx, "health")
	h := epHealth{Ep: ep, Took: time.Since(start).String()}
	if err == nil || errors.Is(err, rpctypes.ErrPermissionDenied) {
		h.Health = true
	} else {
		h.Error = err.Error()
		return h
	}
	alarms, err := c.AlarmList(ctx)
	switch {
	case err != nil:
		h.Health = false
		h.Error = "Unable to fetch the alarm list"
	case len(alarms.Alarms) > 0:
		h.Health = false
		var sb strings.Builder
		sb.WriteString("Active Alarm(s): ")
		for _, al := range alarms.Alarms {
			switch al.Alarm {
			case pb.AlarmType_NOSPACE:
				sb.WriteString("NOSPACE ")
			case pb.AlarmType_CORRUPT:
				sb.WriteString("CORRUPT ")
			default:
				sb.WriteString("UNKNOWN ")
			}
		}
		h.Error = sb.String()
	}
	return h
}

// endpointStatus asks each endpoint in turn for its status. Endpoints that
// fail are reported on stderr and make the exit code 1 (without an
// "Error:" line), after the others are printed.
func (a *app) endpointStatus(cmd *cobra.Command, cluster bool) error {
	spec, err := a.clientSpec(cmd)
	if err != nil {
		return err
	}
	eps, err := a.targetEndpoints(cmd, spec, cluster)
	if err != nil {
		return err
	}
	var list []epStatus
	failed := false
	for _, ep := range eps {
		one := spec.Clone()
		one.Endpoints = []string{ep}
		c, err := a.newClient(one, "etcd-client")
		if err != nil {
			return err
		}
		ctx, cancel := a.commandCtx()
		resp, err := c.Status(ctx, ep)
		cancel()
		c.Close()
		if err != nil {
			failed = true
			fmt.Fprintf(a.stderr, "Failed to get the status of endpoint %s (%v)\n", ep, err)
			continue
		}
		list = append(list, epStatus{Ep: ep, Resp: resp})
	}
	p, _ := a.printer()
	if err := p.EndpointStatus(list); err != nil {
		return err
	}
	if failed {
		return fail(ExitError, nil)
	}
	return nil
}

// endpointHashKV asks each endpoint in turn for the hash of its key-value
// history up to rev; the last failure is the command's error.
func (a *app) endpointHashKV(cmd *cobra.Command, cluster bool, rev int64) error {
	spec, err := a.clientSpec(cmd)
	if err != nil {
		return err
	}
	eps, err := a.targetEndpoints(cmd, spec, cluster)
	if err != nil {
		return err
	}
	var list []epHashKV
	var lastErr error
	for _, ep := range eps {
		one := spec.Clone()
		one.Endpoints = []string{ep}
		c, err := a.newClient(one, "etcd-client")
		if err != nil {
			return err
		}
		ctx, cancel := a.commandCtx()
		resp, err := c.HashKV(ctx, ep, rev)
		cancel()
		c.Close()
		if err != nil {
			lastErr = err
			fmt.Fprintf(a.stderr, "Failed to get the hash of endpoint %s (%v)\n", ep, err)
			continue
		}
		list = append(list, epHashKV{Ep: ep, Resp: resp})
	}
	p, _ := a.printer()
	if err := p.EndpointHashKV(list); err != nil {
		return err
	}
	if lastErr != nil {
		return fail(ExitError, lastErr)
	}
	return nil
}

// quorumSummary says what the endpoints' health means for the cluster:
// voting members, quorum, how many are healthy and how many more may fail
// before writes stop; it warns about an even number of voters and names
// the voters that are down.
func quorumSummary(members []*pb.Member, health []epHealth) []string {
	healthy := make(map[string]bool)
	for _, h := range health {
		if h.Health {
			healthy[h.Ep] = true
		}
	}
	voters, up := 0, 0
	var down []string
	for _, m := range members {
		if m.IsLearner {
			continue
		}
		voters++
		ok := false
		for _, u := range m.ClientURLs {
			ok = ok || healthy[u]
		}
		if ok {
			up++
			continue
		}
		name := m.Name
		if name == "" {
			name = fmt.Sprintf("%x (not started)", m.ID)
		}
		down = append(down, name)
	}
	if voters == 0 {
		return nil
	}
	quorum := voters/2 + 1
	plural := func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	}
	var out []string
	if up >= quorum {
		n := up - quorum
		out = append(out, fmt.Sprintf("cluster: %d voting members, quorum %d, %d healthy: tolerates %d more %s",
			voters, quorum, up, n, plural(n, "failure", "failures")))
	} else {
		out = append(out, fmt.Sprintf("cluster: %d voting members, quorum %d, %d healthy: quorum lost, writes fail", voters, quorum, up))
	}
	if len(down) > 0 {
		out = append(out, fmt.Sprintf("warning: %d voting %s down: %s", len(down), plural(len(down), "member", "members"), strings.Join(down, ", ")))
	}
	if voters%2 == 0 {
		out = append(out, fmt.Sprintf("warning: %d voting members tolerate no more failures than %d would; prefer an odd number", voters, voters-1))
	}
	return out
}
