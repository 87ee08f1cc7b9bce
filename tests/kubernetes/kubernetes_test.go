package kubernetes

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/robustness/cluster"
	"github.com/kvorum/kvorum/internal/testbin"
)

// kubeVersion is the newest v1.37 release the Go module proxy serves in
// full: of v1.37.2 it has the go.mod but not the k8s.io/kubernetes zip.
const kubeVersion = "v1.37.1"

// etcdVersion is the official etcd that KVORUM_KUBE_BACKEND=etcd runs.
const etcdVersion = "v3.7.3"

// ns is the namespace most steps work in.
const ns = "kvorum"

// eventTTL is kube-apiserver's --event-ttl: how long Events live, which it
// implements by attaching them to an etcd lease of that TTL. The default
// is an hour; a short one lets the test see them expire.
const eventTTL = 20 * time.Second

// advertiseAddress is kube-apiserver's --advertise-address: the address it
// publishes as the endpoint of the kubernetes Service (loopback ones are
// refused). Nothing dials it; it is from TEST-NET-1, for documentation.
const advertiseAddress = "192.0.2.1"

// masterLeaseKey is where kube-apiserver's lease endpoint reconciler
// announces it.
const masterLeaseKey = "/registry/masterleases/" + advertiseAddress

func TestKubeAPIServer(t *testing.T) {
	if os.Getenv("KVORUM_KUBE") != "1" {
		t.Skip("set KVORUM_KUBE=1 to run kube-apiserver on a Kvorum cluster; the first run builds Kubernetes " +
			kubeVersion + " from the Go module proxy (about 10 minutes)")
	}
	buildCtx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	kube, err := testbin.Kubernetes(buildCtx, kubeVersion, t.Logf)
	if err != nil {
		t.Fatalf("kube-apiserver and kubectl %s are unavailable (set $%s to a directory with prebuilt ones): %v", kubeVersion, testbin.KubeDirEnv, err)
	}
	backend := os.Getenv("KVORUM_KUBE_BACKEND")
	c := startBackend(buildCtx, t, backend)
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	a := startAPIServer(t, kube, c)
	t.Logf("kube-apiserver %s on %s, storage on %s members %v", kubeVersion, a.url, backendName(backend), c.Endpoints())

	var v struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	a.mustJSON(t, &v, "version", "-o", "json")
	if v.ServerVersion.GitVersion != kubeVersion {
		t.Fatalf("kubectl version reports server %q, want %q", v.ServerVersion.GitVersion, kubeVersion)
	}
	a.expectHTTP(t, "/readyz/etcd", "ok")
	a.must(t, "create", "namespace", ns)

	t.Run("Namespace", func(t *testing.T) {
		const name = "kvorum-lifecycle"
		a.must(t, "create", "namespace", name)
		a.expect(t, "Active", "get", "namespace", name, "-o", "jsonpath={.status.phase}")
		a.must(t, "label", "namespace", name, "step=updated")
		a.expect(t, "updated", "get", "namespace", name, "-o", "jsonpath={.metadata.labels.step}")
		a.must(t, "delete", "namespace", name, "--wait=false")
		a.expect(t, "Terminating", "get", "namespace", name, "-o", "jsonpath={.status.phase}")
		// Emptying and finalizing a deleted namespace is the job of
		// kube-controller-manager, which this test does not run; do its
		// last step, after which the apiserver removes the namespace.
		var obj map[string]any
		a.mustJSON(t, &obj, "get", "namespace", name, "-o", "json")
		delete(obj["spec"].(map[string]any), "finalizers")
		a.mustStdin(t, toJSON(t, obj), "replace", "--raw", "/api/v1/namespaces/"+name+"/finalize", "-f", "-")
		eventually(t, 10*time.Second, func() error { return a.notFound("namespace", name) })
	})

	t.Run("ConfigMap", func(t *testing.T) {
		key := "/registry/configmaps/" + ns + "/cm"
		a.must(t, "-n", ns, "create", "configmap", "cm", "--from-literal=k=first")
		a.expect(t, "first", "-n", ns, "get", "configmap", "cm", "-o", "jsonpath={.data.k}")
		a.must(t, "-n", ns, "patch", "configmap", "cm", "--type=merge", "-p", `{"data":{"k":"second"}}`)
		a.expect(t, "second", "-n", ns, "get", "configmap", "cm", "-o", "jsonpath={.data.k}")
		if v := stored(t, cli, key); !bytes.Contains(v, []byte("second")) {
			t.Errorf("the backend holds %q under %s, want the updated ConfigMap", v, key)
		}
		a.must(t, "-n", ns, "delete", "configmap", "cm")
		if err := a.notFound("-n", ns, "configmap", "cm"); err != nil {
			t.Error(err)
		}
		if v := stored(t, cli, key); v != nil {
			t.Errorf("the backend still holds %q under %s after the delete", v, key)
		}
	})

	t.Run("Secret", func(t *testing.T) {
		a.must(t, "-n", ns, "create", "secret", "generic", "s", "--from-literal=password=s3cret")
		a.expect(t, b64("s3cret"), "-n", ns, "get", "secret", "s", "-o", "jsonpath={.data.password}")
		a.must(t, "-n", ns, "patch", "secret", "s", "--type=merge", "-p", `{"stringData":{"password":"changed"}}`)
		a.expect(t, b64("changed"), "-n", ns, "get", "secret", "s", "-o", "jsonpath={.data.password}")
		a.must(t, "-n", ns, "delete", "secret", "s")
		if err := a.notFound("-n", ns, "secret", "s"); err != nil {
			t.Error(err)
		}
	})

	t.Run("CoordinationLease", func(t *testing.T) {
		// The apiserver keeps a Lease of its own, renewed every 10 s.
		if out := a.must(t, "-n", "kube-system", "get", "leases.coordination.k8s.io", "-l", "apiserver.kubernetes.io/identity=kube-apiserver", "-o", "name"); out == "" {
			t.Error("the apiserver has no identity Lease in kube-system")
		}
		a.mustStdin(t, `apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: `+ns+`}
spec: {holderIdentity: a, leaseDurationSeconds: 15}
`, "apply", "-f", "-")
		a.expect(t, "a", "-n", ns, "get", "leases.coordination.k8s.io", "leader", "-o", "jsonpath={.spec.holderIdentity}")
		a.must(t, "-n", ns, "patch", "leases.coordination.k8s.io", "leader", "--type=merge", "-p", `{"spec":{"holderIdentity":"b","leaseTransitions":1}}`)
		a.expect(t, "b 1", "-n", ns, "get", "leases.coordination.k8s.io", "leader", "-o", "jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}")
		a.must(t, "-n", ns, "delete", "leases.coordination.k8s.io", "leader")
		if err := a.notFound("-n", ns, "leases.coordination.k8s.io", "leader"); err != nil {
			t.Error(err)
		}
	})

	t.Run("EventExpiresWithItsLease", func(t *testing.T) {
		a.mustStdin(t, `apiVersion: v1
kind: Event
metadata: {name: kvorum-test.1, namespace: `+ns+`}
involvedObject: {apiVersion: v1, kind: ConfigMap, namespace: `+ns+`, name: cm}
reason: Testing
message: stored with an etcd lease
type: Normal
`, "create", "-f", "-")
		a.expect(t, "Testing", "-n", ns, "get", "event", "kvorum-test.1", "-o", "jsonpath={.reason}")
		key := "/registry/events/" + ns + "/kvorum-test.1"
		kv := storedKV(t, cli, key)
		if kv == nil || kv.Lease == 0 {
			t.Fatalf("the backend holds %v under %s, want the Event attached to a lease", kv, key)
		}
		ttl := timeToLive(t, cli, kv.Lease)
		if ttl.GrantedTTL < int64(eventTTL.Seconds()) || ttl.TTL <= 0 {
			t.Errorf("the Event's lease %x: granted TTL %d s, remaining %d s; want at least --event-ttl (%v) granted and time left", kv.Lease, ttl.GrantedTTL, ttl.TTL, eventTTL)
		}
		// The backend expires the lease and deletes the Event with it.
		eventually(t, 2*eventTTL+10*time.Second, func() error {
			if v := stored(t, cli, key); v != nil {
				return fmt.Errorf("%s is still stored after its lease's TTL", key)
			}
			return a.notFound("-n", ns, "event", "kvorum-test.1")
		})
	})

	t.Run("EndpointReconcilerLease", func(t *testing.T) {
		// kube-apiserver announces itself under masterleases/ with a
		// lease it renews every 10 s (--endpoint-reconciler-type=lease).
		checkMasterLease(t, cli)
		a.expect(t, advertiseAddress, "get", "endpointslice", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes", "-o", "jsonpath={.items[0].endpoints[0].addresses[0]}")
	})

	t.Run("CustomResource", func(t *testing.T) {
		a.mustStdin(t, `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.kvorum.test}
spec:
  group: kvorum.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
`, "apply", "-f", "-")
		a.must(t, "wait", "--for=condition=Established", "crd/widgets.kvorum.test", "--timeout=60s")
		widget := "apiVersion: kvorum.test/v1\nkind: Widget\nmetadata: {name: w1, namespace: " + ns + "}\nspec: {size: 3}\n"
		// Discovery of the new kind may lag its Established condition.
		eventually(t, 30*time.Second, func() error {
			_, err := a.kubectl(widget, "apply", "-f", "-")
			return err
		})
		a.expect(t, "3", "-n", ns, "get", "widget", "w1", "-o", "jsonpath={.spec.size}")
		a.must(t, "-n", ns, "patch", "widget", "w1", "--type=merge", "-p", `{"spec":{"size":4}}`)
		a.expect(t, "4", "-n", ns, "get", "widget", "w1", "-o", "jsonpath={.spec.size}")
		key := "/registry/kvorum.test/widgets/" + ns + "/w1"
		if v := stored(t, cli, key); !bytes.Contains(v, []byte(`"size":4`)) {
			t.Errorf("the backend holds %q under %s, want the updated Widget", v, key)
		}
		if _, err := a.kubectl("", "-n", ns, "patch", "widget", "w1", "--type=merge", "-p", `{"spec":{"size":"big"}}`); err == nil || !strings.Contains(err.Error(), "Invalid value") {
			t.Errorf("a Widget with a string size was not refused by the CRD schema: %v", err)
		}
		a.must(t, "-n", ns, "delete", "widget", "w1")
		if err := a.notFound("-n", ns, "widget", "w1"); err != nil {
			t.Error(err)
		}
		a.must(t, "delete", "crd", "widgets.kvorum.test", "--timeout=60s")
		if err := a.notFound("crd", "widgets.kvorum.test"); err != nil {
			t.Error(err)
		}
	})

	const pages = "kvorum-pages"
	var pageNames []string
	t.Run("PaginatedList", func(t *testing.T) {
		a.must(t, "create", "namespace", pages)
		for i := range 7 {
			name := fmt.Sprintf("page-%d", i)
			a.must(t, "-n", pages, "create", "configmap", name)
			pageNames = append(pageNames, "configmap/"+name)
		}
		out, stderr, err := a.run("", "-n", pages, "get", "configmaps", "--chunk-size=2", "-o", "name", "-v=6")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(out); !slices.Equal(got, pageNames) {
			t.Errorf("kubectl get --chunk-size=2 listed %q, want %q", got, pageNames)
		}
		if n := strings.Count(stderr, "limit=2"); n != 4 {
			t.Errorf("kubectl get --chunk-size=2 made %d requests with limit=2 for 7 objects, want 4:\n%s", n, stderr)
		}
		// Page by hand, to check what each page says about the rest.
		var got []string
		cont := ""
		for _, remaining := range []int64{5, 3, 1, 0} {
			path := "/api/v1/namespaces/" + pages + "/configmaps?limit=2"
			if cont != "" {
				path += "&continue=" + url.QueryEscape(cont)
			}
			var list struct {
				Metadata struct {
					Continue           string
					RemainingItemCount *int64
				}
				Items []struct{ Metadata struct{ Name string } }
			}
			a.mustJSON(t, &list, "get", "--raw", path)
			for _, it := range list.Items {
				got = append(got, "configmap/"+it.Metadata.Name)
			}
			var rem int64
			if list.Metadata.RemainingItemCount != nil {
				rem = *list.Metadata.RemainingItemCount
			}
			if rem != remaining || (remaining > 0) != (list.Metadata.Continue != "") {
				t.Fatalf("page after %d items: remainingItemCount %d, continue %q; want %d remaining and a continue token only if more remain",
					len(got)-len(list.Items), rem, list.Metadata.Continue, remaining)
			}
			cont = list.Metadata.Continue
		}
		if !slices.Equal(got, pageNames) {
			t.Errorf("pages of 2 held %q, want %q", got, pageNames)
		}
	})

	t.Run("Watch", func(t *testing.T) {
		// ConfigMaps bypass the apiserver's watch cache (see
		// startAPIServer), so their watch is a Kvorum watch; Secrets go
		// through the cache, which is fed by one.
		for _, kind := range []string{"configmap", "secret"} {
			create := []string{"-n", ns, "create", kind, "watched", "--from-literal=k=v"}
			if kind == "secret" {
				create = slices.Insert(create, 4, "generic")
			}
			events := a.watch(t, "/api/v1/namespaces/"+ns+"/"+kind+"s", func() {
				a.must(t, create...)
				a.must(t, "-n", ns, "label", kind, "watched", "step=updated")
				a.must(t, "-n", ns, "delete", kind, "watched")
			})
			var got []string
			var last int64
			for _, e := range events {
				if e.Object.Metadata.Name != "watched" {
					continue
				}
				got = append(got, e.Type)
				var rv int64
				if _, err := fmt.Sscan(e.Object.Metadata.ResourceVersion, &rv); err != nil || rv <= last {
					t.Errorf("%s watch: resourceVersion %q after %d, want increasing numbers", kind, e.Object.Metadata.ResourceVersion, last)
				}
				last = rv
			}
			if want := []string{"ADDED", "MODIFIED", "DELETED"}; !slices.Equal(got, want) {
				t.Errorf("%s watch saw %v for the object created, updated and deleted, want %v", kind, got, want)
			}
		}
	})

	t.Run("ConsistentListsServedFromWatchCache", func(t *testing.T) {
		// A list without a resourceVersion must be consistent. The
		// apiserver serves it from its watch cache only after asking the
		// storage for a watch progress notification (RequestProgress), and
		// only if the storage's reported version says it supports that;
		// otherwise it falls back to a list from the storage. Its metrics
		// tell which happened.
		for range 3 {
			a.must(t, "-n", ns, "get", "secrets")
		}
		metrics := a.must(t, "get", "--raw", "/metrics")
		var served float64
		for line := range strings.Lines(metrics) {
			if !strings.HasPrefix(line, "apiserver_watch_cache_consistent_read_total{") ||
				!strings.Contains(line, `resource="secrets"`) || !strings.Contains(line, `success="true"`) ||
				!strings.Contains(line, `fallback="false"`) {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				served += v
			}
		}
		if served < 3 {
			var lines []string
			for line := range strings.Lines(metrics) {
				if strings.Contains(line, "consistent_read") {
					lines = append(lines, strings.TrimSpace(line))
				}
			}
			t.Fatalf("%v consistent secret lists served from the watch cache without fallback, want at least 3; metrics:\n%s", served, strings.Join(lines, "\n"))
		}
	})

	t.Run("StaleUpdateConflicts", func(t *testing.T) {
		a.must(t, "-n", ns, "create", "configmap", "cas", "--from-literal=k=first")
		old := a.must(t, "-n", ns, "get", "configmap", "cas", "-o", "json")
		a.must(t, "-n", ns, "patch", "configmap", "cas", "--type=merge", "-p", `{"data":{"k":"second"}}`)
		_, err := a.kubectl(old, "replace", "-f", "-")
		if err == nil {
			t.Fatal("kubectl replace with a stale resourceVersion succeeded")
		}
		if !strings.Contains(err.Error(), "Conflict") && !strings.Contains(err.Error(), "the object has been modified") {
			t.Errorf("kubectl replace with a stale resourceVersion: %v; want a Conflict", err)
		}
		a.expect(t, "second", "-n", ns, "get", "configmap", "cas", "-o", "jsonpath={.data.k}")
	})

	t.Run("LeaderLoss", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		leader := c.Leader(ctx, cli)
		if leader == nil {
			t.Fatalf("no leader:\n%s", c.Describe(ctx))
		}
		t.Logf("killing the leader %s with SIGKILL", leader.Name)
		leader.Kill()
		start := time.Now()
		eventually(t, 30*time.Second, func() error {
			_, err := a.kubectl("", "-n", ns, "create", "configmap", "after-leader-loss", "--from-literal=k=v")
			if err != nil && strings.Contains(err.Error(), "AlreadyExists") {
				return nil // an earlier try was applied but timed out
			}
			return err
		})
		t.Logf("first write after the leader's loss succeeded after %v", time.Since(start).Round(100*time.Millisecond))
		a.must(t, "-n", ns, "patch", "configmap", "after-leader-loss", "--type=merge", "-p", `{"data":{"k":"updated"}}`)
		a.expect(t, "updated", "-n", ns, "get", "configmap", "after-leader-loss", "-o", "jsonpath={.data.k}")
		if len(pageNames) > 0 {
			if got := strings.Fields(a.must(t, "-n", pages, "get", "configmaps", "-o", "name")); !slices.Equal(got, pageNames) {
				t.Errorf("after the leader's loss %s lists %q, want %q", pages, got, pageNames)
			}
		}
		a.waitReady(t, 30*time.Second)
		a.expectHTTP(t, "/readyz/etcd", "ok")
		// The apiserver's endpoint lease outlives the leader change (the
		// new leader does not expire it early) or is renewed.
		eventually(t, 30*time.Second, func() error {
			kv := storedKV(t, cli, masterLeaseKey)
			if kv == nil || kv.Lease == 0 {
				return fmt.Errorf("%s is %v, want a key with a lease", masterLeaseKey, kv)
			}
			return nil
		})
		checkMasterLease(t, cli)
		if err := leader.Start(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(ctx, leader); err != nil {
			t.Fatalf("the old leader did not rejoin: %v", err)
		}
	})

	if backendName(backend) == "kvorum" {
		if p := c.LogProblems(); len(p) > 0 {
			t.Errorf("Kvorum members logged problems:\n%s", strings.Join(p, "\n"))
		}
	}
}

func backendName(env string) string {
	if env == "" {
		return "kvorum"
	}
	return env
}

// apiserverClient is the common name of the client certificate
// kube-apiserver presents to the storage members.
const apiserverClient = "kube-apiserver-etcd-client"

// startBackend starts 3 members of Kvorum, built from this module, or of
// the official etcd (backend "etcd"), on loopback ports with mutual TLS on
// the client and peer ports, certificates made by kvorumctl pki's package;
// the cluster is closed when the test ends.
func startBackend(ctx context.Context, t *testing.T, backend string) *cluster.Cluster {
	var bin string
	switch backendName(backend) {
	case "kvorum":
		var err error
		if bin, err = testbin.Go(ctx, t.TempDir(), "github.com/kvorum/kvorum/cmd/kvorum"); err != nil {
			t.Fatalf("build kvorum: %v", err)
		}
	case "etcd":
		e, err := testbin.OfficialEtcd(ctx, etcdVersion, t.Logf)
		if err != nil {
			t.Fatalf("official etcd %s: %v", etcdVersion, err)
		}
		bin = e.Server
	default:
		t.Fatalf("KVORUM_KUBE_BACKEND=%q: want kvorum (the default) or etcd", backend)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Bin: bin, Members: 3, Dir: t.TempDir(), TLS: true, TLSClients: []string{apiserverClient}})
	if err != nil {
		t.Fatalf("start 3 %s members: %v", backendName(backend), err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("members:\n%s", c.Describe(context.Background()))
		}
		c.Close()
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("----- %s log, last 30 lines -----\n%s", m.Name, cluster.Tail(m.LogText(), 30))
			}
		}
	})
	return c
}

// apiServer is a running kube-apiserver and a kubectl configured to talk
// to it as a member of system:masters.
type apiServer struct {
	url     string
	ctl     string       // kubectl
	env     []string     // KUBECONFIG, and a HOME of its own for kubectl's caches
	https   *http.Client // authenticated like kubectl
	logPath string
	done    chan struct{} // closed when the process has exited
	exit    error
}

// startAPIServer starts kube-apiserver on a free loopback port with
// storage on the members of c, which it reaches with its client
// certificate (apiserverClient), and waits until it is ready. It gets a CA of its
// own that signs its serving certificate and the admin's client
// certificate, and a service-account signing key.
func startAPIServer(t *testing.T, kube *testbin.Kube, c *cluster.Cluster) *apiServer {
	etcdCA, etcdCert, etcdKey, ok := c.ClientCertificate(apiserverClient)
	if !ok {
		t.Fatal("the storage cluster has no client certificate for kube-apiserver")
	}
	dir := t.TempDir()
	ca, caKey, caPEM, _ := issue(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "kvorum-test-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	})
	_, _, serverPEM, serverKeyPEM := issue(t, ca, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	_, _, adminPEM, adminKeyPEM := issue(t, ca, caKey, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "kvorum-test-admin", Organization: []string{"system:masters"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.crt": caPEM, "server.crt": serverPEM, "server.key": serverKeyPEM,
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	a := &apiServer{
		url:     fmt.Sprintf("https://127.0.0.1:%d", port),
		ctl:     kube.Ctl,
		logPath: filepath.Join(dir, "kube-apiserver.log"),
		done:    make(chan struct{}),
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kvorum
  cluster: {server: %q, certificate-authority-data: %s}
users:
- name: admin
  user: {client-certificate-data: %s, client-key-data: %s}
contexts:
- name: kvorum
  context: {cluster: kvorum, user: admin}
current-context: kvorum
`, a.url, b64(string(caPEM)), b64(string(adminPEM)), b64(string(adminKeyPEM)))), 0o600); err != nil {
		t.Fatal(err)
	}
	a.env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+filepath.Join(dir, "home"))
	clientCert, err := tls.X509KeyPair(adminPEM, adminKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	a.https = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}},
	}}

	args := []string{
		"--etcd-servers=" + strings.Join(c.Endpoints(), ","),
		"--etcd-cafile=" + etcdCA,
		"--etcd-certfile=" + etcdCert,
		"--etcd-keyfile=" + etcdKey,
		"--bind-address=127.0.0.1",
		"--advertise-address=" + advertiseAddress,
		fmt.Sprintf("--event-ttl=%v", eventTTL),
		fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + filepath.Join(dir, "server.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "server.key"),
		"--client-ca-file=" + filepath.Join(dir, "ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/24",
		"--cert-dir=" + filepath.Join(dir, "certs"),
		// No watch cache for ConfigMaps: their lists and watches go to
		// the storage itself (paginated Range, Watch from a revision)
		// rather than to the apiserver's in-memory copy.
		"--watch-cache-sizes=configmaps#0",
		"--v=1",
	}
	log, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	fmt.Fprintf(log, "===== %s %s\n", kube.APIServer, strings.Join(args, " "))
	cmd := exec.Command(kube.APIServer, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = cluster.ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	go func() {
		a.exit = cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
			t.Errorf("kube-apiserver exited before the end of the test: %v", a.exit)
		default:
			cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("----- kube-apiserver log (%s), errors -----\n%s", a.logPath, cluster.Tail(errorLines(a.logText()), 40))
			t.Logf("----- kube-apiserver log, last 40 lines -----\n%s", cluster.Tail(a.logText(), 40))
		}
	})
	a.waitReady(t, 3*time.Minute)
	return a
}

// issue makes an ECDSA key and a certificate for it from tmpl, signed by
// parent, or self-signed if parent is nil.
func issue(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (a *apiServer) logText() string {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// get fetches path from the apiserver as the admin.
func (a *apiServer) get(path string) (int, string, error) {
	resp, err := a.https.Get(a.url + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// waitReady waits until /readyz answers 200 OK, failing the test if the
// apiserver exits or is not ready within timeout.
func (a *apiServer) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := a.get("/readyz?verbose")
		if err == nil && code == http.StatusOK {
			return
		}
		select {
		case <-a.done:
			t.Fatalf("kube-apiserver exited: %v", a.exit)
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready within %v: /readyz answered %d, %v:\n%s", timeout, code, err, body)
		}
	}
}

func (a *apiServer) expectHTTP(t *testing.T, path, want string) {
	t.Helper()
	code, body, err := a.get(path)
	if err != nil || code != http.StatusOK || body != want {
		t.Errorf("GET %s: %d %q, %v; want 200 %q", path, code, body, err, want)
	}
}

// run runs kubectl with args and stdin, and returns its stdout and stderr;
// the error, if any, includes stderr.
func (a *apiServer) run(stdin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.ctl, append([]string{"--request-timeout=30s"}, args...)...)
	cmd.Env = a.env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), stderr.String(), err
}

func (a *apiServer) kubectl(stdin string, args ...string) (string, error) {
	out, _, err := a.run(stdin, args...)
	return out, err
}

func (a *apiServer) must(t *testing.T, args ...string) string {
	t.Helper()
	return a.mustStdin(t, "", args...)
}

func (a *apiServer) mustStdin(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := a.kubectl(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (a *apiServer) mustJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := a.must(t, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("kubectl %s: %v in %q", strings.Join(args, " "), err, out)
	}
}

// expect runs kubectl and checks its output.
func (a *apiServer) expect(t *testing.T, want string, args ...string) {
	t.Helper()
	if got := a.must(t, args...); got != want {
		t.Errorf("kubectl %s printed %q, want %q", strings.Join(args, " "), got, want)
	}
}

// notFound checks that kubectl get args says the object does not exist.
func (a *apiServer) notFound(args ...string) error {
	out, err := a.kubectl("", append([]string{"get"}, args...)...)
	if err == nil {
		return fmt.Errorf("kubectl get %s found %q, want NotFound", strings.Join(args, " "), out)
	}
	if !strings.Contains(err.Error(), "(NotFound)") {
		return fmt.Errorf("%v; want NotFound", err)
	}
	return nil
}

type watchEvent struct {
	Type   string
	Object struct {
		Metadata struct{ Name, ResourceVersion string }
	}
}

// watch lists the collection at path, watches it from the list's
// resourceVersion for 10 s while act runs, and returns the events seen.
func (a *apiServer) watch(t *testing.T, path string, act func()) []watchEvent {
	t.Helper()
	var list struct {
		Metadata struct{ ResourceVersion string }
	}
	a.mustJSON(t, &list, "get", "--raw", path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.ctl, "get", "--raw",
		path+"?watch=1&timeoutSeconds=10&resourceVersion="+list.Metadata.ResourceVersion)
	cmd.Env = a.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Starting from the list's resourceVersion, the watch must deliver
	// every later event whether it is established before act or after;
	// the pause makes them arrive live rather than replayed.
	time.Sleep(2 * time.Second)
	act()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch %s: %v: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	var events []watchEvent
	dec := json.NewDecoder(&stdout)
	for {
		var e watchEvent
		if err := dec.Decode(&e); err == io.EOF {
			return events
		} else if err != nil {
			t.Fatalf("watch %s: %v in %q", path, err, stdout.String())
		}
		events = append(events, e)
	}
}

// stored returns the value the backend holds under key, nil if none.
func stored(t *testing.T, cli *clientv3.Client, key string) []byte {
	t.Helper()
	if kv := storedKV(t, cli, key); kv != nil {
		return kv.Value
	}
	return nil
}

// storedKV returns the key-value the backend holds under key, nil if none.
func storedKV(t *testing.T, cli *clientv3.Client, key string) *mvccpb.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s from the backend: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func timeToLive(t *testing.T, cli *clientv3.Client, id int64) *clientv3.LeaseTimeToLiveResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		t.Fatalf("TimeToLive of lease %x: %v", id, err)
	}
	return resp
}

// checkMasterLease checks that the apiserver's endpoint-reconciler key is
// attached to a live lease that the backend reports as holding it.
func checkMasterLease(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	kv := storedKV(t, cli, masterLeaseKey)
	if kv == nil || kv.Lease == 0 {
		t.Fatalf("the backend holds %v under %s, want the apiserver's endpoint attached to a lease", kv, masterLeaseKey)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease), clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatalf("TimeToLive of lease %x: %v", kv.Lease, err)
	}
	var keys []string
	for _, k := range resp.Keys {
		keys = append(keys, string(k))
	}
	if resp.TTL <= 0 || !slices.Contains(keys, masterLeaseKey) {
		t.Errorf("lease %x of %s: TTL %d s (granted %d s), keys %q; want time left and the key attached", kv.Lease, masterLeaseKey, resp.TTL, resp.GrantedTTL, keys)
	}
}

// eventually retries f every half second until it succeeds, failing the
// test with f's last error after d.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// errorLines returns the klog lines of severity error or fatal in log, and
// the lines a command prints when it refuses its flags.
func errorLines(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if len(line) > 1 && (line[0] == 'E' || line[0] == 'F') && line[1] >= '0' && line[1] <= '9' || strings.HasPrefix(line, "Error:") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
