package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"

	"github.com/kvorum/kvorum/internal/testcluster"
)

// TestLockService drives etcd's Lock service on two members, as jetcd's
// lock client does: a second holder waits until the first unlocks, a
// lock is a key of the caller's lease, and revoking the lease releases it.
// The JSON gateway serves the same service on /v3/lock/.
func TestLockService(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	a, b := c.Members[0].Client(), c.Members[1].Client()
	la, lb := v3lockpb.NewLockClient(a.ActiveConnection()), v3lockpb.NewLockClient(b.ActiveConnection())
	ctx := ctxFor(t, 30*time.Second)
	leaseA, err := a.Grant(ctx, 60)
	must(t, "grant", err)
	leaseB, err := b.Grant(ctx, 60)
	must(t, "grant", err)

	first, err := la.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("job"), Lease: int64(leaseA.ID)})
	must(t, "first lock", err)
	if !strings.HasPrefix(string(first.Key), "job/") {
		t.Fatalf("lock key %q is not under the lock's name", first.Key)
	}
	got := make(chan *v3lockpb.LockResponse, 1)
	go func() {
		r, err := lb.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("job"), Lease: int64(leaseB.ID)})
		if err != nil {
			t.Errorf("second lock: %v", err)
		}
		got <- r
	}()
	// The second holder has queued its key behind the first and waits.
	waitFor(t, waitTimeout, "the second lock's key", keysUnder(a, "job/", 2))
	select {
	case r := <-got:
		t.Fatalf("the second lock was granted while the first was held: %v", r)
	default:
	}
	_, err = la.Unlock(ctx, &v3lockpb.UnlockRequest{Key: first.Key})
	must(t, "unlock", err)
	second := <-got
	if second == nil || bytes.Equal(second.Key, first.Key) {
		t.Fatalf("second lock: %v", second)
	}
	kv, err := a.Get(ctx, string(second.Key))
	must(t, "get the lock key", err)
	if len(kv.Kvs) != 1 || kv.Kvs[0].Lease != int64(leaseB.ID) {
		t.Fatalf("the lock key %q is not held with the caller's lease %x: %v", second.Key, leaseB.ID, kv.Kvs)
	}
	_, err = b.Revoke(ctx, leaseB.ID)
	must(t, "revoke", err)
	if r, err := a.Get(ctx, "job/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("keys left after the unlock and the revocation: %v %v", r, err)
	}

	// The gateway: lock and unlock with base64 names, as with curl.
	url := c.Members[0].ClientURL
	var lockResp struct{ Key string }
	gatewayPost(t, url+"/v3/lock/lock", fmt.Sprintf(`{"name":%q,"lease":"%d"}`, base64.StdEncoding.EncodeToString([]byte("gw")), leaseA.ID), &lockResp)
	key, err := base64.StdEncoding.DecodeString(lockResp.Key)
	if err != nil || !strings.HasPrefix(string(key), "gw/") {
		t.Fatalf("gateway lock key %q (%v)", lockResp.Key, err)
	}
	gatewayPost(t, url+"/v3/lock/unlock", fmt.Sprintf(`{"key":%q}`, lockResp.Key), nil)
	if r, err := a.Get(ctx, "gw/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("gateway unlock left %v %v", r, err)
	}
}

// TestElectionService drives etcd's Election service: a campaign wins, an
// observer sees the leader's values, a second candidate waits until the
// leader resigns.
func TestElectionService(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.WaitLeader(waitTimeout)
	a, b := c.Members[0].Client(), c.Members[2].Client()
	ea, eb := v3electionpb.NewElectionClient(a.ActiveConnection()), v3electionpb.NewElectionClient(b.ActiveConnection())
	ctx := ctxFor(t, 30*time.Second)
	leaseA, err := a.Grant(ctx, 60)
	must(t, "grant", err)
	leaseB, err := b.Grant(ctx, 60)
	must(t, "grant", err)

	won, err := ea.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: int64(leaseA.ID), Value: []byte("a")})
	must(t, "campaign", err)
	obs, err := eb.Observe(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")})
	must(t, "observe", err)
	if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "a" {
		t.Fatalf("observed %v, %v; want leader value a", r, err)
	}
	_, err = ea.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: won.Leader, Value: []byte("a2")})
	must(t, "proclaim", err)
	if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "a2" {
		t.Fatalf("observed %v, %v after proclaim; want a2", r, err)
	}
	got := make(chan *v3electionpb.CampaignResponse, 1)
	go func() {
		r, err := eb.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: int64(leaseB.ID), Value: []byte("b")})
		if err != nil {
			t.Errorf("second campaign: %v", err)
		}
		got <- r
	}()
	waitFor(t, waitTimeout, "the second candidate's key", keysUnder(a, "e/", 2))
	if l, err := eb.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")}); err != nil || string(l.Kv.Value) != "a2" {
		t.Fatalf("leader %v, %v while a leads; want a2", l, err)
	}
	_, err = ea.Resign(ctx, &v3electionpb.ResignRequest{Leader: won.Leader})
	must(t, "resign", err)
	if r := <-got; r == nil {
		t.Fatal("the second campaign did not win after the resignation")
	}
	if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "b" {
		t.Fatalf("observed %v, %v after the resignation; want b", r, err)
	}
}

// TestLockServiceActsAsTheCaller checks that a lock's reads and writes
// are the caller's own under access control: a user with write access to
// the lock's prefix locks, one without is refused, as with etcd.
func TestLockServiceActsAsTheCaller(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	anon := lead.Client()
	ctx := ctxFor(t, 30*time.Second)
	closeWith(t, anon, map[string]string{"locker": "locks/", "nobody": ""})
	for _, u := range []struct {
		user    string
		allowed bool
	}{{"locker", true}, {"nobody", false}} {
		cli := userClient(t, c, u.user, u.user+"pw")
		l, err := cli.Grant(ctx, 60)
		must(t, "grant for "+u.user, err)
		_, err = v3lockpb.NewLockClient(cli.ActiveConnection()).Lock(ctx, &v3lockpb.LockRequest{Name: []byte("locks/a"), Lease: int64(l.ID)})
		switch {
		case u.allowed && err != nil:
			t.Errorf("%s, who may write locks/, could not lock: %v", u.user, err)
		case !u.allowed && !errors.Is(rpctypes.Error(err), rpctypes.ErrPermissionDenied):
			t.Errorf("%s, who has no access, locked or failed otherwise: %v", u.user, err)
		}
	}
	// Nothing of the refused attempt was written: the only lock key is
	// the one of the user who may.
	root := userClient(t, c, "root", "rootpw")
	r, err := root.Get(ctx, "locks/", clientv3.WithPrefix())
	must(t, "list the lock keys", err)
	if len(r.Kvs) != 1 {
		t.Errorf("%d keys under locks/, want the one lock of locker: %v", len(r.Kvs), r.Kvs)
	}
}

// keysUnder is a waitFor condition: n keys under prefix.
func keysUnder(cli *clientv3.Client, prefix string, n int) func() error {
	return func() error {
		r, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
		if err != nil {
			return err
		}
		if len(r.Kvs) != n {
			return fmt.Errorf("%d keys under %q, want %d", len(r.Kvs), prefix, n)
		}
		return nil
	}
}

// gatewayPost posts a JSON body to the gateway and decodes the answer
// into out (if not nil), failing the test on anything but 200.
func gatewayPost(t *testing.T, url, body string, out any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("POST %s: %s, body: %v", url, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", url, resp.Status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("POST %s: decode %s: %v", url, raw, err)
		}
	}
}

// TestLockWaitsAreTheirCallersOwn has one user observe an election while
// another waits for a lock on a prefix only the second may read: the wait
// (a watch of the in-process client) must run as its own caller, not as
// the one whose watch came first.
func TestLockWaitsAreTheirCallersOwn(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	anon := lead.Client()
	ctx := ctxFor(t, 30*time.Second)
	closeWith(t, anon, map[string]string{"alice": "a/", "bob": "b/"})

	// Both on one member, whose in-process client serves both.
	on := func(user string) *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{lead.ClientURL}, Username: user, Password: user + "pw", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		must(t, "client for "+user, err)
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	alice, bob := on("alice"), on("bob")
	la, err := alice.Grant(ctx, 60)
	must(t, "grant", err)
	ea := v3electionpb.NewElectionClient(alice.ActiveConnection())
	_, err = ea.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("a/e"), Lease: int64(la.ID), Value: []byte("x")})
	must(t, "campaign", err)
	obs, err := ea.Observe(ctx, &v3electionpb.LeaderRequest{Name: []byte("a/e")})
	must(t, "observe", err)
	if _, err := obs.Recv(); err != nil {
		t.Fatal(err)
	}

	lb := v3lockpb.NewLockClient(bob.ActiveConnection())
	l1, err := bob.Grant(ctx, 60)
	must(t, "grant", err)
	l2, err := bob.Grant(ctx, 60)
	must(t, "grant", err)
	first, err := lb.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("b/lock"), Lease: int64(l1.ID)})
	must(t, "first lock", err)
	done := make(chan error, 1)
	go func() {
		_, err := lb.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("b/lock"), Lease: int64(l2.ID)})
		done <- err
	}()
	waitFor(t, waitTimeout, "bob's second lock key", keysUnder(bob, "b/lock/", 2))
	_, err = lb.Unlock(ctx, &v3lockpb.UnlockRequest{Key: first.Key})
	must(t, "unlock", err)
	if err := <-done; err != nil {
		t.Fatalf("bob's waiting lock failed: %v", err)
	}
}

// TestDowngradeIsRefusedWithAWayOut: etcdctl downgrade validate/enable get
// a refusal that names the way to etcd (a snapshot), and cancel gets
// etcd's answer when no downgrade is in progress.
func TestDowngradeIsRefusedWithAWayOut(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	lead, _ := c.WaitLeader(waitTimeout)
	cli := lead.Client()
	ctx := ctxFor(t, 10*time.Second)
	for _, action := range []clientv3.DowngradeAction{clientv3.DowngradeValidate, clientv3.DowngradeEnable} {
		_, err := cli.Downgrade(ctx, action, "3.6.0")
		if err == nil || !strings.Contains(err.Error(), "etcdutl snapshot restore") {
			t.Errorf("downgrade %v: %v, want a refusal naming the snapshot way", action, err)
		}
	}
	if _, err := cli.Downgrade(ctx, clientv3.DowngradeCancel, ""); !errors.Is(rpctypes.Error(err), rpctypes.ErrNoInflightDowngrade) {
		t.Errorf("downgrade cancel: %v, want %v", err, rpctypes.ErrNoInflightDowngrade)
	}
}

// TestAbandonedLockWaitCleansUpUnderAccessControl: a caller that gives up
// waiting for a lock (its deadline passes) leaves no key in the queue,
// also with access control on. In etcd the cleanup runs as no user and is
// refused, and the abandoned key blocks later holders until its lease
// ends; Kvorum runs it as the caller.
func TestAbandonedLockWaitCleansUpUnderAccessControl(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	lead, _ := c.WaitLeader(waitTimeout)
	anon := lead.Client()
	ctx := ctxFor(t, 30*time.Second)
	closeWith(t, anon, map[string]string{"bob": "b/"})
	bob := userClient(t, c, "bob", "bobpw")
	lb := v3lockpb.NewLockClient(bob.ActiveConnection())
	l1, err := bob.Grant(ctx, 60)
	must(t, "grant", err)
	l2, err := bob.Grant(ctx, 60)
	must(t, "grant", err)
	_, err = lb.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("b/lock"), Lease: int64(l1.ID)})
	must(t, "first lock", err)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := lb.Lock(short, &v3lockpb.LockRequest{Name: []byte("b/lock"), Lease: int64(l2.ID)}); err == nil {
		t.Fatal("a second lock was granted while the first was held")
	}
	// The abandoned waiter's key goes; the holder's stays.
	waitFor(t, waitTimeout, "the abandoned waiter's key to go", keysUnder(bob, "b/lock/", 1))
}

// closeWith adds root and, for each user (password user+"pw"), a role of
// its own with read-write access to the user's prefix ("" for no role),
// then turns access control on.
func closeWith(t *testing.T, cli *clientv3.Client, users map[string]string) {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	_, err := cli.UserAdd(ctx, "root", "rootpw")
	must(t, "add root", err)
	_, err = cli.UserGrantRole(ctx, "root", "root")
	must(t, "grant root", err)
	for user, prefix := range users {
		_, err := cli.UserAdd(ctx, user, user+"pw")
		must(t, "add "+user, err)
		if prefix == "" {
			continue
		}
		_, err = cli.RoleAdd(ctx, user)
		must(t, "add role "+user, err)
		_, err = cli.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
		must(t, "grant "+prefix, err)
		_, err = cli.UserGrantRole(ctx, user, user)
		must(t, "grant role "+user, err)
	}
	_, err = cli.AuthEnable(ctx)
	must(t, "auth enable", err)
}
