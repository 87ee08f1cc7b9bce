package container

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
)

// compose is a project brought up from contrib/docker/docker-compose.yml.
type compose struct {
	t       *testing.T
	argv    []string // docker-compose, or docker compose, with -p and -f
	env     []string
	ids     map[string]string // service name to container id
	ports   map[string]int    // service name to the client port published on 127.0.0.1
	network string
	tls     bool   // docker-compose.tls.yml is on top
	scheme  string // of the members' URLs
	pki     string // on the host: the certificates, copied out of the pki volume
}

// pkiIn is where the members and kvorumctl find the certificates.
const pkiIn = "/etc/kvorum/pki"

// composeCommand returns the compose command this machine has, or skips
// the test.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed; the container tests need a Docker engine")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers (docker info: %v: %s); the container tests need one", err, bytes.TrimSpace(out))
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	t.Skip("neither docker-compose nor `docker compose` is installed")
	return nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "contrib/docker/docker-compose.yml")); err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs a command and returns its combined output, failing the test on
// error.
func run(t *testing.T, env []string, argv ...string) string {
	t.Helper()
	out, err := runErr(env, argv...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

func runErr(env []string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// buildImage builds the image with scripts/image.sh under a tag of its
// own, removed when the test ends.
func buildImage(t *testing.T, root string) string {
	t.Helper()
	tag := fmt.Sprintf("kvorum-test-%08x:latest", rand.Uint32())
	t.Cleanup(func() {
		if out, err := runErr(nil, "docker", "rmi", "-f", tag); err != nil {
			t.Logf("docker rmi %s: %v\n%s", tag, err, out)
		}
	})
	run(t, nil, "bash", filepath.Join(root, "scripts/image.sh"), tag)
	return tag
}

// up brings up the compose cluster with image, under a project name of
// its own; everything it creates (containers, network, volumes) is removed
// when the test ends. With tls, docker-compose.tls.yml goes on top and its
// pki service makes the certificates first.
func up(t *testing.T, root, image string, composeCmd []string, tls bool) *compose {
	t.Helper()
	project := fmt.Sprintf("kvorumtest%08x", rand.Uint32())
	ports, err := rcluster.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	c := &compose{
		t:      t,
		argv:   append(slices.Clone(composeCmd), "-p", project, "-f", filepath.Join(root, "contrib/docker/docker-compose.yml")),
		tls:    tls,
		scheme: "http",
		ids:    map[string]string{},
		ports:  map[string]int{},
		env: []string{
			"KVORUM_IMAGE=" + image,
			"KVORUM_CLUSTER_TOKEN=" + project,
		},
	}
	if tls {
		c.argv = append(c.argv, "-f", filepath.Join(root, "contrib/docker/docker-compose.tls.yml"))
		c.scheme = "https"
	}
	for i, p := range ports {
		name := fmt.Sprintf("kvorum%d", i+1)
		c.ports[name] = p
		c.env = append(c.env, fmt.Sprintf("KVORUM%d_PORT=%d", i+1, p))
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := runErr(c.env, append(c.argv, "logs", "--no-color", "--tail=40")...)
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := runErr(c.env, append(c.argv, "down", "-v", "--remove-orphans", "-t", "10")...); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	if tls {
		c.compose("run", "--rm", "pki")
	}
	c.compose("up", "-d")
	for name := range c.ports {
		c.ids[name] = strings.TrimSpace(c.compose("ps", "-q", name))
		if c.ids[name] == "" {
			t.Fatalf("compose ps -q %s: no container", name)
		}
	}
	c.network = strings.TrimSpace(run(t, nil, "docker", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", c.ids["kvorum1"]))
	if tls {
		c.pki = filepath.Join(t.TempDir(), "pki")
		run(t, nil, "docker", "cp", c.ids["kvorum1"]+":"+pkiIn, c.pki)
	}
	return c
}

func (c *compose) compose(args ...string) string {
	c.t.Helper()
	return run(c.t, c.env, append(c.argv, args...)...)
}

// ctl runs kvorumctl inside service's container, where the members'
// advertised URLs (http://kvorumN:2379) resolve.
func (c *compose) ctl(service string, args ...string) (string, error) {
	argv := []string{"docker", "exec", c.ids[service], "/usr/local/bin/kvorumctl", "--command-timeout=5s"}
	if c.tls {
		argv = append(argv, "--cacert="+pkiIn+"/ca.crt", "--cert="+pkiIn+"/clients/admin.crt", "--key="+pkiIn+"/clients/admin.key")
	}
	return runErr(nil, append(argv, args...)...)
}

// client returns a client of the given services through their published
// ports.
func (c *compose) client(services ...string) *clientv3.Client {
	c.t.Helper()
	var eps []string
	for _, s := range services {
		eps = append(eps, fmt.Sprintf("%s://127.0.0.1:%d", c.scheme, c.ports[s]))
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second}
	if c.tls {
		tc, err := transport.TLSInfo{
			TrustedCAFile: filepath.Join(c.pki, "ca.crt"),
			CertFile:      filepath.Join(c.pki, "clients/admin.crt"),
			KeyFile:       filepath.Join(c.pki, "clients/admin.key"),
		}.ClientConfig()
		if err != nil {
			c.t.Fatal(err)
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// eventually retries f until it succeeds, failing the test after a minute.
func (c *compose) eventually(what string, f func() error) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: still failing after a minute: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// healthyCluster waits until `endpoint health --cluster`, run in from's
// container, reports all three members healthy.
func (c *compose) healthyCluster(from string) {
	c.t.Helper()
	c.eventually("endpoint health --cluster from "+from, func() error {
		out, err := c.ctl(from, "endpoint", "health", "--cluster")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if n := strings.Count(out, "is healthy"); n != 3 {
			return fmt.Errorf("%d healthy members, want 3: %s", n, out)
		}
		return nil
	})
}

// leader asks from's container which member leads and returns its service.
func (c *compose) leader(from string) string {
	c.t.Helper()
	var leader string
	c.eventually("find the leader", func() error {
		out, err := c.ctl(from, "endpoint", "status", "--cluster", "-w", "json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var st []struct {
			Endpoint string
			Status   struct {
				Header struct {
					MemberID json.Number `json:"member_id"`
				} `json:"header"`
				Leader json.Number `json:"leader"`
			}
		}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&st); err != nil {
			return fmt.Errorf("endpoint status -w json: %v: %s", err, out)
		}
		for _, s := range st {
			if s.Status.Leader != "" && s.Status.Leader != "0" && s.Status.Header.MemberID == s.Status.Leader {
				leader = strings.TrimSuffix(strings.TrimPrefix(s.Endpoint, c.scheme+"://"), ":2379")
				return nil
			}
		}
		return fmt.Errorf("no member reports itself leader: %s", out)
	})
	if _, ok := c.ids[leader]; !ok {
		c.t.Fatalf("leader endpoint names no service: %q", leader)
	}
	return leader
}

// put writes through cli, retrying until a write succeeds.
func (c *compose) put(cli *clientv3.Client, key, val string) {
	c.t.Helper()
	c.eventually("put "+key, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, key, val)
		return err
	})
}

// sameHashKV waits until `endpoint hashkv --cluster`, run in from's
// container, reports the same revision and hash for all three members.
func (c *compose) sameHashKV(from string) {
	c.t.Helper()
	c.eventually("equal HashKV on every member", func() error {
		out, err := c.ctl(from, "endpoint", "hashkv", "--cluster", "-w", "json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var hs []struct {
			Endpoint string
			HashKV   struct {
				Header struct {
					Revision json.Number `json:"revision"`
				} `json:"header"`
				Hash json.Number `json:"hash"`
			}
		}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&hs); err != nil {
			return fmt.Errorf("endpoint hashkv -w json: %v: %s", err, out)
		}
		if len(hs) != 3 {
			return fmt.Errorf("%d members answered, want 3: %s", len(hs), out)
		}
		for _, h := range hs[1:] {
			if h.HashKV.Hash != hs[0].HashKV.Hash || h.HashKV.Header.Revision != hs[0].HashKV.Header.Revision {
				return fmt.Errorf("members differ: %s", out)
			}
		}
		if hs[0].HashKV.Hash == "" || hs[0].HashKV.Hash == "0" {
			return fmt.Errorf("no hash in: %s", out)
		}
		return nil
	})
}

func others(all map[string]string, not string) []string {
	var out []string
	for _, s := range []string{"kvorum1", "kvorum2", "kvorum3"} {
		if _, ok := all[s]; ok && s != not {
			out = append(out, s)
		}
	}
	return out
}

// TestComposeCluster builds the image, brings up the compose cluster, plain
// and with mutual TLS, and checks it survives its leader's container
// stopping and a member cut off the network: the majority keeps writing,
// the cut-off member refuses writes, and once back every member holds the
// same data.
func TestComposeCluster(t *testing.T) {
	composeCmd := composeCommand(t)
	root := repoRoot(t)
	image := buildImage(t, root)
	t.Run("http", func(t *testing.T) { testCompose(t, root, image, composeCmd, false) })
	t.Run("mutual-tls", func(t *testing.T) { testCompose(t, root, image, composeCmd, true) })
}

func testCompose(t *testing.T, root, image string, composeCmd []string, tls bool) {
	c := up(t, root, image, composeCmd, tls)
	c.healthyCluster("kvorum1")
	if tls {
		// Mutual: a client without a certificate is turned away.
		out, err := runErr(nil, "docker", "exec", c.ids["kvorum1"], "/usr/local/bin/kvorumctl", "--command-timeout=5s",
			"--cacert="+pkiIn+"/ca.crt", "--endpoints=https://127.0.0.1:2379", "put", "anonymous", "1")
		if err == nil {
			t.Errorf("put without a client certificate succeeded: %s", out)
		}
	}
	c.put(c.client("kvorum1", "kvorum2", "kvorum3"), "before", "1")

	// Stop the leader's container: the other two elect a leader and keep
	// taking writes; the stopped one comes back from its volume.
	leader := c.leader("kvorum1")
	rest := others(c.ids, leader)
	t.Logf("stopping the leader's container (%s)", leader)
	c.compose("stop", leader)
	c.put(c.client(rest...), "leader-stopped", "1")
	c.compose("start", leader)
	c.healthyCluster(rest[0])

	// Cut the (possibly new) leader off the network: it is a minority of
	// one and cannot commit; the majority elects a leader and commits.
	leader = c.leader(rest[0])
	rest = others(c.ids, leader)
	t.Logf("disconnecting the leader's container (%s) from %s", leader, c.network)
	run(t, nil, "docker", "network", "disconnect", c.network, c.ids[leader])
	if out, err := c.ctl(leader, "--endpoints="+c.scheme+"://127.0.0.1:2379", "put", "minority", "1"); err == nil {
		t.Errorf("put on %s, cut off from the other members, succeeded: %s", leader, out)
	}
	majority := c.client(rest...)
	c.put(majority, "majority", "1")
	// Back on the network under its service name, it catches up.
	run(t, nil, "docker", "network", "connect", "--alias", leader, c.network, c.ids[leader])
	c.healthyCluster(rest[0])
	c.sameHashKV(rest[0])

	resp, err := majority.Get(context.Background(), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	if got, want := strings.Join(keys, ","), "before,leader-stopped,majority"; got != want {
		t.Errorf("keys after healing: %s, want %s (the minority's write must not appear)", got, want)
	}

	// Stopping a member and cutting one off are what members warn about;
	// none of it is an error.
	logs := c.compose("logs", "--no-color")
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"level":"error"`) {
			t.Errorf("error-level line: %s", l)
		}
	}
}
