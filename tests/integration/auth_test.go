package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kvorum/kvorum/internal/testcluster"
)

// userClient is a client of every member of c that authenticates as user.
func userClient(t *testing.T, c *testcluster.Cluster, user, password string) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, Username: user, Password: password, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client for %s: %v", user, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// enableAuth creates root and the users and roles of the access matrix,
// then turns access control on.
func enableAuth(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx := func() context.Context { return ctxFor(t, 10*time.Second) }
	_, err := cli.AuthEnable(ctx())
	if !errors.Is(err, rpctypes.ErrRootUserNotExist) {
		t.Fatalf("auth enable without root: err %v, want %v", err, rpctypes.ErrRootUserNotExist)
	}
	_, err = cli.UserAdd(ctx(), "root", "rootpw")
	must(t, "add root", err)
	_, err = cli.AuthEnable(ctx())
	if !errors.Is(err, rpctypes.ErrRootRoleNotExist) {
		t.Fatalf("auth enable before root has the root role: err %v, want %v", err, rpctypes.ErrRootRoleNotExist)
	}
	_, err = cli.UserGrantRole(ctx(), "root", "root")
	must(t, "grant root", err)
	for _, u := range []string{"alice", "bob", "carol"} {
		_, err = cli.UserAdd(ctx(), u, u+"pw")
		must(t, "add "+u, err)
	}
	for _, r := range []struct{ role, user, key, end string }{
		{"app-reader", "alice", "app/", "app0"},
		{"app-writer", "bob", "app/", "app0"},
		{"cfg-admin", "carol", "cfg", ""},
	} {
		_, err = cli.RoleAdd(ctx(), r.role)
		must(t, "add role "+r.role, err)
		typ := clientv3.PermissionType(clientv3.PermReadWrite)
		switch r.role {
		case "app-reader":
			typ = clientv3.PermissionType(clientv3.PermRead)
		case "app-writer":
			typ = clientv3.PermissionType(clientv3.PermWrite)
		}
		_, err = cli.RoleGrantPermission(ctx(), r.role, r.key, r.end, typ)
		must(t, "grant permission to "+r.role, err)
		_, err = cli.UserGrantRole(ctx(), r.user, r.role)
		must(t, "grant "+r.role+" to "+r.user, err)
	}
	_, err = cli.AuthEnable(ctx())
	must(t, "auth enable", err)
}

// jwtKeys writes an ECDSA key pair for --auth-token jwt and returns the
// flag's value.
func jwtKeys(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	privFile, pubFile := filepath.Join(dir, "jwt.key"), filepath.Join(dir, "jwt.pub")
	must(t, "write key", os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: priv}), 0o600))
	must(t, "write key", os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600))
	return "jwt,pub-key=" + pubFile + ",priv-key=" + privFile + ",sign-method=ES256,ttl=10m"
}

// The access matrix runs with both token schemes: simple tokens (valid on
// every member once their Authenticate entry applied) and JWTs (valid by
// their signature).
func TestAccessControlMatrix(t *testing.T) {
	t.Run("simple", func(t *testing.T) { accessControlMatrix(t, "simple") })
	t.Run("jwt", func(t *testing.T) { accessControlMatrix(t, jwtKeys(t)) })
}

func accessControlMatrix(t *testing.T, tokens string) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{"--auth-token", tokens}})
	lead, _ := c.WaitLeader(waitTimeout)
	anon := lead.Client()
	_, err := anon.Put(ctxFor(t, 5*time.Second), "app/x", "before")
	must(t, "put before auth", err)
	enableAuth(t, anon)

	root := userClient(t, c, "root", "rootpw")
	alice := userClient(t, c, "alice", "alicepw")
	bob := userClient(t, c, "bob", "bobpw")
	carol := userClient(t, c, "carol", "carolpw")
	ctx := func() context.Context { return ctxFor(t, 5*time.Second) }
	denied := rpctypes.ErrPermissionDenied
	lease, err := root.Grant(ctx(), 60)
	must(t, "grant lease", err)
	_, err = root.Put(ctx(), "app/leased", "v", clientv3.WithLease(lease.ID))
	must(t, "put with lease", err)

	for _, tc := range []struct {
		name string
		do   func() error
		want error // nil: allowed
	}{
		{"no credentials: put", func() error { _, err := anon.Put(ctx(), "app/x", "v"); return err }, rpctypes.ErrUserEmpty},
		{"wrong password", func() error {
			_, err := clientv3.New(clientv3.Config{Endpoints: []string{lead.ClientURL}, Username: "alice", Password: "nope", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			return err
		}, rpctypes.ErrAuthFailed},
		{"root: anything", func() error { _, err := root.Put(ctx(), "other", "v"); return err }, nil},
		{"reader: get in range", func() error { _, err := alice.Get(ctx(), "app/x"); return err }, nil},
		{"reader: get the whole prefix", func() error { _, err := alice.Get(ctx(), "app/", clientv3.WithPrefix()); return err }, nil},
		{"reader: get out of range", func() error { _, err := alice.Get(ctx(), "other"); return err }, denied},
		{"reader: get everything", func() error { _, err := alice.Get(ctx(), "", clientv3.WithFromKey()); return err }, denied},
		{"reader: put", func() error { _, err := alice.Put(ctx(), "app/x", "v"); return err }, denied},
		{"reader: delete", func() error { _, err := alice.Delete(ctx(), "app/x"); return err }, denied},
		{"writer: put in range", func() error { _, err := bob.Put(ctx(), "app/y", "v"); return err }, nil},
		{"writer: put with prev_kv needs read", func() error { _, err := bob.Put(ctx(), "app/y", "v", clientv3.WithPrevKV()); return err }, denied},
		{"writer: get", func() error { _, err := bob.Get(ctx(), "app/y"); return err }, denied},
		{"writer: delete in range", func() error { _, err := bob.Delete(ctx(), "app/y"); return err }, nil},
		{"readwrite key: txn on it", func() error {
			_, err := carol.Txn(ctx()).If(clientv3.Compare(clientv3.Value("cfg"), "=", "")).Then(clientv3.OpPut("cfg", "1")).Commit()
			return err
		}, nil},
		{"readwrite key: txn touching another key", func() error {
			_, err := carol.Txn(ctx()).If(clientv3.Compare(clientv3.Value("cfg"), "=", "1")).Then(clientv3.OpPut("cfg", "2")).Else(clientv3.OpPut("app/z", "1")).Commit()
			return err
		}, denied},
		{"readwrite key: a range over it and more", func() error { _, err := carol.Get(ctx(), "cfg", clientv3.WithPrefix()); return err }, denied},
		{"lease revoke without write on its keys", func() error { _, err := alice.Revoke(ctx(), lease.ID); return err }, denied},
		{"lease time-to-live without read on its keys", func() error { _, err := bob.TimeToLive(ctx(), lease.ID); return err }, denied},
		{"lease time-to-live with read on its keys", func() error { _, err := alice.TimeToLive(ctx(), lease.ID); return err }, nil},
		{"non-root: defragment", func() error { _, err := alice.Defragment(ctx(), lead.ClientURL); return err }, denied},
		{"non-root: member add", func() error { _, err := alice.MemberAdd(ctx(), []string{"http://127.0.0.1:9"}); return err }, denied},
		{"non-root: add a user", func() error { _, err := alice.UserAdd(ctx(), "eve", "x"); return err }, denied},
		{"non-root: own user record", func() error { _, err := alice.UserGet(ctx(), "alice"); return err }, nil},
		{"non-root: another user's record", func() error { _, err := alice.UserGet(ctx(), "bob"); return err }, denied},
		{"non-root: a role it holds", func() error { _, err := alice.RoleGet(ctx(), "app-reader"); return err }, nil},
		{"anyone: member list", func() error { _, err := alice.MemberList(ctx()); return err }, nil},
		{"root: disable root while auth is on", func() error { _, err := root.UserRevokeRole(ctx(), "root", "root"); return err }, rpctypes.ErrInvalidAuthMgmt},
	} {
		err := tc.do()
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}

	// Watches are checked when created: a watch on a range the user may not
	// read is canceled with the reason; one it may read gets its events.
	wctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	deniedWatch := alice.Watch(wctx, "other")
	if resp, ok := <-deniedWatch; !ok || !resp.Canceled || resp.Err() == nil {
		t.Errorf("watch out of range: %+v (open %v), want canceled with permission denied", resp, ok)
	}
	allowed := alice.Watch(wctx, "app/", clientv3.WithPrefix())
	_, err = bob.Put(ctx(), "app/w", "watched")
	must(t, "put for the watch", err)
	select {
	case resp := <-allowed:
		if err := resp.Err(); err != nil || len(resp.Events) != 1 || string(resp.Events[0].Kv.Key) != "app/w" {
			t.Errorf("watch in range: %+v, err %v", resp.Events, err)
		}
	case <-time.After(waitTimeout):
		t.Error("watch in range: no event")
	}

	// Revoking a permission takes effect at once, on every member, and
	// for open watches too: the watch above is canceled.
	_, err = root.RoleRevokePermission(ctx(), "app-reader", "app/", "app0")
	must(t, "revoke permission", err)
	select {
	case resp, ok := <-allowed:
		// client/v3 closes the channel of a watch the server cancels; a
		// response that is not that cancel is wrong.
		if ok && (!resp.Canceled || !errors.Is(resp.Err(), denied)) {
			t.Errorf("open watch after its permission was revoked: open %v, canceled %v, err %v; want canceled with %v", ok, resp.Canceled, resp.Err(), denied)
		}
	case <-time.After(waitTimeout):
		t.Error("open watch after its permission was revoked: still open")
	}
	for _, m := range c.Members {
		cli := userClient(t, c, "alice", "alicepw")
		cli.SetEndpoints(m.ClientURL)
		if _, err := cli.Get(ctx(), "app/x"); !errors.Is(err, denied) {
			t.Errorf("%s: get after the permission was revoked: err %v, want %v", m.Name, err, denied)
		}
	}
	// Turning auth off lets everyone in again.
	_, err = root.AuthDisable(ctx())
	must(t, "auth disable", err)
	if _, err := anon.Put(ctx(), "app/x", "after"); err != nil {
		t.Errorf("put without credentials after auth disable: %v", err)
	}
}
