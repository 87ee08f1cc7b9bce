package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/testcerts"
)

// With --client-cert-auth and access control on, a client that presents a
// verified certificate and no token is the user its certificate's common
// name names (etcd's rule), so kube-apiserver needs no password.
func TestClientCertificateCommonNameIsTheUser(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "ca")
	member := ca.Issue(t, testcerts.Spec{Name: "m1", Hosts: []string{"127.0.0.1", "localhost"}, Server: true, Client: true})
	c := newTLSCluster(t, dir, 1, func(int) []string {
		return []string{"--cert-file=" + member.CertFile, "--key-file=" + member.KeyFile,
			"--trusted-ca-file=" + ca.File, "--client-cert-auth",
			"--peer-cert-file=" + member.CertFile, "--peer-key-file=" + member.KeyFile, "--peer-trusted-ca-file=" + ca.File}
	})
	c.members[0].start(t)
	client := func(cn string) *clientv3.Client {
		p := ca.Issue(t, testcerts.Spec{Name: cn + "-client", CN: cn, Client: true})
		return newTLSClient(t, c.endpoints(), tlsClientConfig(t, ca.File, &p))
	}
	root, alice, nobody := client("root"), client("alice"), client("nobody")
	c.waitHealthy(tlsClientConfig(t, ca.File, &member))
	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	for _, step := range []func() error{
		func() error {
			_, err := root.UserAddWithOptions(ctx(), "root", "", &clientv3.UserAddOptions{NoPassword: true})
			return err
		},
		func() error { _, err := root.UserGrantRole(ctx(), "root", "root"); return err },
		func() error {
			_, err := root.UserAddWithOptions(ctx(), "alice", "", &clientv3.UserAddOptions{NoPassword: true})
			return err
		},
		func() error { _, err := root.RoleAdd(ctx(), "reader"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx(), "reader", "app/", "app0", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := root.UserGrantRole(ctx(), "alice", "reader"); return err },
		func() error { _, err := root.AuthEnable(ctx()); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up access control: %v", err)
		}
	}
	if _, err := root.Put(ctx(), "app/x", "v"); err != nil {
		t.Errorf("root by certificate: put: %v", err)
	}
	if _, err := alice.Get(ctx(), "app/x"); err != nil {
		t.Errorf("alice by certificate: get in her range: %v", err)
	}
	if _, err := alice.Put(ctx(), "app/x", "v"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("alice by certificate: put: err %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	if _, err := nobody.Get(ctx(), "app/x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("a certificate of no user: get: err %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
}
