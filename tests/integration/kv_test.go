package integration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvorum/kvorum/internal/testcluster"
)

const (
	kvMaxTxnOps       = 8
	kvMaxRequestBytes = 64 * 1024
)

// kvEnv is what a KV case works with. The cases run one after another and
// nothing else writes to the cluster, so every write advances the revision
// by exactly one and cases may rely on it.
type kvEnv struct {
	c *testcluster.Cluster
	// cli is a client of one member; cases use several members through
	// it, so that follower reads and forwarded writes are exercised.
	cli func(i int) *clientv3.Client
}

func TestKVSemanticsThroughClient(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Args: []string{
		"--max-txn-ops", "8", "--max-request-bytes", "65536",
	}})
	c.WaitLeader(waitTimeout)
	env := &kvEnv{c: c, cli: func(i int) *clientv3.Client { return c.Members[i%len(c.Members)].Client() }}

	// Compaction affects every key, so it runs after the cases that read
	// past revisions.
	cases := []struct {
		name string
		run  func(t *testing.T, e *kvEnv)
	}{
		{"PutCreatesThenBumpsVersionAndModRevision", kvPutVersions},
		{"DeleteThenRecreateStartsNewGeneration", kvDeleteRecreate},
		{"PrevKVOnPutAndDelete", kvPrevKV},
		{"RangeOptions", kvRangeOptions},
		{"ReadsAtPastAndFutureRevisions", kvRevisionReads},
		{"TxnComparesAndAppliesOneRevision", kvTxn},
		{"TxnDuplicateKeyIsRefused", kvTxnDuplicateKey},
		{"TxnTooManyOpsIsRefused", kvTxnTooManyOps},
		{"EmptyKeyIsRefused", kvEmptyKey},
		{"RequestTooLargeIsRefused", kvRequestTooLarge},
		{"ResponseHeadersNameClusterMemberRevisionTerm", kvHeaders},
		{"CompactionRemovesOldRevisions", kvCompaction},
	}
	for _, tc := range cases {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, env) }) {
			// Later cases count revisions; a failed case may have left
			// the count off.
			t.FailNow()
		}
	}
}

func mustPut(t *testing.T, cli *clientv3.Client, k, v string, opts ...clientv3.OpOption) *clientv3.PutResponse {
	t.Helper()
	resp, err := cli.Put(ctxFor(t, 5*time.Second), k, v, opts...)
	if err != nil {
		t.Fatalf("put %s=%s: %v", k, v, err)
	}
	return resp
}

func mustGet(t *testing.T, cli *clientv3.Client, k string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	t.Helper()
	resp, err := cli.Get(ctxFor(t, 5*time.Second), k, opts...)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	return resp
}

// wantKV checks one key-value's fields; value "" with version 0 means the
// key must be absent.
func wantKV(t *testing.T, what string, kvs []*mvccpb.KeyValue, key, value string, create, mod, version int64) {
	t.Helper()
	if version == 0 {
		if len(kvs) != 0 {
			t.Fatalf("%s: got %v, want no key", what, kvs)
		}
		return
	}
	if len(kvs) != 1 {
		t.Fatalf("%s: got %d keys %v, want %s", what, len(kvs), kvs, key)
	}
	kv := kvs[0]
	if string(kv.Key) != key || string(kv.Value) != value || kv.CreateRevision != create || kv.ModRevision != mod || kv.Version != version {
		t.Fatalf("%s: got key=%s value=%q create=%d mod=%d version=%d, want key=%s value=%q create=%d mod=%d version=%d",
			what, kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, key, value, create, mod, version)
	}
}

func keysOf(kvs []*mvccpb.KeyValue) string {
	var ks []string
	for _, kv := range kvs {
		ks = append(ks, string(kv.Key))
	}
	return strings.Join(ks, ",")
}

func kvPutVersions(t *testing.T, e *kvEnv) {
	p1 := mustPut(t, e.cli(0), "ver/a", "1")
	wantKV(t, "after first put", mustGet(t, e.cli(1), "ver/a").Kvs, "ver/a", "1", p1.Header.Revision, p1.Header.Revision, 1)
	p2 := mustPut(t, e.cli(1), "ver/a", "2")
	if p2.Header.Revision != p1.Header.Revision+1 {
		t.Fatalf("second put at revision %d, want %d", p2.Header.Revision, p1.Header.Revision+1)
	}
	wantKV(t, "after second put", mustGet(t, e.cli(2), "ver/a").Kvs, "ver/a", "2", p1.Header.Revision, p2.Header.Revision, 2)
	// A put of the same value is still a new version.
	p3 := mustPut(t, e.cli(2), "ver/a", "2")
	wantKV(t, "after same-value put", mustGet(t, e.cli(0), "ver/a").Kvs, "ver/a", "2", p1.Header.Revision, p3.Header.Revision, 3)
}

func kvDeleteRecreate(t *testing.T, e *kvEnv) {
	p1 := mustPut(t, e.cli(0), "gen/a", "1")
	mustPut(t, e.cli(0), "gen/a", "2")
	del, err := e.cli(1).Delete(ctxFor(t, 5*time.Second), "gen/a")
	if err != nil {
		t.Fatal(err)
	}
	if del.Deleted != 1 || del.Header.Revision != p1.Header.Revision+2 {
		t.Fatalf("delete: deleted %d at revision %d, want 1 at %d", del.Deleted, del.Header.Revision, p1.Header.Revision+2)
	}
	wantKV(t, "after delete", mustGet(t, e.cli(2), "gen/a").Kvs, "", "", 0, 0, 0)
	// Deleting nothing changes nothing, not even the revision.
	del2, err := e.cli(1).Delete(ctxFor(t, 5*time.Second), "gen/a")
	if err != nil {
		t.Fatal(err)
	}
	if del2.Deleted != 0 || del2.Header.Revision != del.Header.Revision {
		t.Fatalf("delete of a missing key: deleted %d, revision %d, want 0 and %d", del2.Deleted, del2.Header.Revision, del.Header.Revision)
	}
	p3 := mustPut(t, e.cli(2), "gen/a", "3")
	if p3.Header.Revision != del.Header.Revision+1 {
		t.Fatalf("recreate at revision %d, want %d", p3.Header.Revision, del.Header.Revision+1)
	}
	wantKV(t, "after recreate", mustGet(t, e.cli(0), "gen/a").Kvs, "gen/a", "3", p3.Header.Revision, p3.Header.Revision, 1)
}

func kvPrevKV(t *testing.T, e *kvEnv) {
	p1 := mustPut(t, e.cli(0), "prev/a", "1", clientv3.WithPrevKV())
	if p1.PrevKv != nil {
		t.Fatalf("first put returned prev_kv %v", p1.PrevKv)
	}
	p2 := mustPut(t, e.cli(1), "prev/a", "2", clientv3.WithPrevKV())
	if p2.PrevKv == nil {
		t.Fatal("second put returned no prev_kv")
	}
	wantKV(t, "prev_kv of second put", []*mvccpb.KeyValue{p2.PrevKv}, "prev/a", "1", p1.Header.Revision, p1.Header.Revision, 1)
	mustPut(t, e.cli(1), "prev/b", "b")
	del, err := e.cli(2).Delete(ctxFor(t, 5*time.Second), "prev/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if del.Deleted != 2 || keysOf(del.PrevKvs) != "prev/a,prev/b" || string(del.PrevKvs[0].Value) != "2" {
		t.Fatalf("delete with prev_kv: deleted %d, prev_kvs %v", del.Deleted, del.PrevKvs)
	}
	// Without the option, no previous values come back.
	p3 := mustPut(t, e.cli(0), "prev/a", "3")
	if p3.PrevKv != nil {
		t.Fatalf("put without prev_kv returned %v", p3.PrevKv)
	}
}

func kvRangeOptions(t *testing.T, e *kvEnv) {
	// The prefix sorts after every other case's keys, so from-key reads
	// see only these.
	const p = "~range/"
	var revs []int64
	for _, kv := range [][2]string{{"a", "4"}, {"b", "3"}, {"c", "2"}, {"d", "1"}} {
		revs = append(revs, mustPut(t, e.cli(0), p+kv[0], kv[1]).Header.Revision)
	}
	mustPut(t, e.cli(0), p+"b", "3") // b: version 2, newest mod revision
	mustPut(t, e.cli(0), "~rangf", "outside the prefix")

	cases := []struct {
		name      string
		key       string
		opts      []clientv3.OpOption
		keys      string
		count     int64
		more      bool
		keysOnly  bool
		countOnly bool
	}{
		{"prefix", p, []clientv3.OpOption{clientv3.WithPrefix()}, p + "a," + p + "b," + p + "c," + p + "d", 4, false, false, false},
		{"range", p + "b", []clientv3.OpOption{clientv3.WithRange(p + "d")}, p + "b," + p + "c", 2, false, false, false},
		{"from key", p + "c", []clientv3.OpOption{clientv3.WithFromKey()}, p + "c," + p + "d,~rangf", 3, false, false, false},
		{"limit", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(2)}, p + "a," + p + "b", 4, true, false, false},
		{"limit equal to count", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(4)}, p + "a," + p + "b," + p + "c," + p + "d", 4, false, false, false},
		{"sort by key descending, limited", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(2)}, p + "d," + p + "c", 4, true, false, false},
		{"sort by value", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend)}, p + "d," + p + "c," + p + "b," + p + "a", 4, false, false, false},
		{"sort by mod revision descending", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)}, p + "b," + p + "d," + p + "c," + p + "a", 4, false, false, false},
		{"sort by create revision descending", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend)}, p + "d," + p + "c," + p + "b," + p + "a", 4, false, false, false},
		{"sort by version descending, limited", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByVersion, clientv3.SortDescend), clientv3.WithLimit(1)}, p + "b", 4, true, false, false},
		{"count only", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}, "", 4, false, false, true},
		{"keys only", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}, p + "a," + p + "b," + p + "c," + p + "d", 4, false, true, false},
		// etcd counts every key in the range, before revision filters.
		{"min mod revision", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithMinModRev(revs[2])}, p + "b," + p + "c," + p + "d", 4, false, false, false},
		{"serializable", p, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSerializable()}, p + "a," + p + "b," + p + "c," + p + "d", 4, false, false, false},
		{"missing key", p + "zzz", nil, "", 0, false, false, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cli := e.cli(i)
			if tc.name == "serializable" {
				// A serializable read on a follower may lag; wait until
				// every member applied the puts above.
				e.c.WaitApplied(waitTimeout)
			}
			resp := mustGet(t, cli, tc.key, tc.opts...)
			if got := keysOf(resp.Kvs); got != tc.keys || resp.Count != tc.count || resp.More != tc.more {
				t.Fatalf("got keys %q count %d more %v, want keys %q count %d more %v", got, resp.Count, resp.More, tc.keys, tc.count, tc.more)
			}
			for _, kv := range resp.Kvs {
				if tc.keysOnly != (len(kv.Value) == 0) {
					t.Fatalf("key %s has value %q (keys only: %v)", kv.Key, kv.Value, tc.keysOnly)
				}
				if tc.keysOnly && (kv.ModRevision == 0 || kv.Version == 0) {
					t.Fatalf("keys only dropped the metadata of %s: %v", kv.Key, kv)
				}
			}
			if tc.countOnly && len(resp.Kvs) != 0 {
				t.Fatalf("count only returned %d keys", len(resp.Kvs))
			}
		})
	}
}

func kvRevisionReads(t *testing.T, e *kvEnv) {
	r1 := mustPut(t, e.cli(0), "rev/x", "1").Header.Revision
	r2 := mustPut(t, e.cli(1), "rev/x", "2").Header.Revision
	del, err := e.cli(2).Delete(ctxFor(t, 5*time.Second), "rev/x")
	if err != nil {
		t.Fatal(err)
	}
	r3 := del.Header.Revision

	wantKV(t, "at r1", mustGet(t, e.cli(0), "rev/x", clientv3.WithRev(r1)).Kvs, "rev/x", "1", r1, r1, 1)
	wantKV(t, "at r2", mustGet(t, e.cli(1), "rev/x", clientv3.WithRev(r2)).Kvs, "rev/x", "2", r1, r2, 2)
	wantKV(t, "at r3", mustGet(t, e.cli(2), "rev/x", clientv3.WithRev(r3)).Kvs, "", "", 0, 0, 0)
	wantKV(t, "before r1", mustGet(t, e.cli(0), "rev/x", clientv3.WithRev(r1-1)).Kvs, "", "", 0, 0, 0)
	// The header names the store's current revision, not the one read.
	if h := mustGet(t, e.cli(1), "rev/x", clientv3.WithRev(r1)).Header.Revision; h != r3 {
		t.Fatalf("header revision of a read at %d is %d, want the current %d", r1, h, r3)
	}
	for i := range 3 {
		_, err := e.cli(i).Get(ctxFor(t, 5*time.Second), "rev/x", clientv3.WithRev(r3+1000))
		if !errors.Is(err, rpctypes.ErrFutureRev) {
			t.Fatalf("read at a future revision via %s: %v, want %v", e.c.Members[i].Name, err, rpctypes.ErrFutureRev)
		}
	}
}

func kvTxn(t *testing.T, e *kvEnv) {
	base := mustPut(t, e.cli(0), "txn/k", "v").Header.Revision
	resp, err := e.cli(1).Txn(ctxFor(t, 5*time.Second)).
		If(clientv3.Compare(clientv3.Value("txn/k"), "=", "v"), clientv3.Compare(clientv3.ModRevision("txn/k"), "=", base)).
		Then(clientv3.OpPut("txn/a", "1"), clientv3.OpPut("txn/b", "2"), clientv3.OpGet("txn/k"), clientv3.OpDelete("txn/k")).
		Else(clientv3.OpPut("txn/else", "x")).
		Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || len(resp.Responses) != 4 || resp.Header.Revision != base+1 {
		t.Fatalf("txn: succeeded %v, %d responses, revision %d; want true, 4, %d", resp.Succeeded, len(resp.Responses), resp.Header.Revision, base+1)
	}
	got := resp.Responses[2].GetResponseRange()
	wantKV(t, "get inside txn", got.GetKvs(), "txn/k", "v", base, base, 1)
	if d := resp.Responses[3].GetResponseDeleteRange(); d.GetDeleted() != 1 {
		t.Fatalf("delete inside txn deleted %d", d.GetDeleted())
	}
	all := mustGet(t, e.cli(2), "txn/", clientv3.WithPrefix())
	if keysOf(all.Kvs) != "txn/a,txn/b" {
		t.Fatalf("after txn: keys %q, want txn/a,txn/b", keysOf(all.Kvs))
	}
	for _, kv := range all.Kvs {
		if kv.ModRevision != base+1 {
			t.Fatalf("%s has mod revision %d, want all txn writes at %d", kv.Key, kv.ModRevision, base+1)
		}
	}

	// A failing compare runs the else branch.
	resp, err = e.cli(2).Txn(ctxFor(t, 5*time.Second)).
		If(clientv3.Compare(clientv3.Version("txn/k"), ">", 0)).
		Then(clientv3.OpPut("txn/then", "x")).
		Else(clientv3.OpGet("txn/a")).
		Commit()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Succeeded || len(resp.Responses) != 1 || resp.Header.Revision != base+1 {
		t.Fatalf("failed txn: succeeded %v, %d responses, revision %d; want false, 1, %d (a read-only branch writes nothing)", resp.Succeeded, len(resp.Responses), resp.Header.Revision, base+1)
	}
	wantKV(t, "else get", resp.Responses[0].GetResponseRange().GetKvs(), "txn/a", "1", base+1, base+1, 1)
}

func kvTxnDuplicateKey(t *testing.T, e *kvEnv) {
	for name, ops := range map[string][]clientv3.Op{
		"two puts":          {clientv3.OpPut("dup/a", "1"), clientv3.OpPut("dup/a", "2")},
		"put and delete":    {clientv3.OpPut("dup/a", "1"), clientv3.OpDelete("dup/a")},
		"put in prefix del": {clientv3.OpPut("dup/a", "1"), clientv3.OpDelete("dup/", clientv3.WithPrefix())},
	} {
		_, err := e.cli(0).Txn(ctxFor(t, 5*time.Second)).Then(ops...).Commit()
		if !errors.Is(err, rpctypes.ErrDuplicateKey) {
			t.Errorf("%s: %v, want %v", name, err, rpctypes.ErrDuplicateKey)
		}
	}
	wantKV(t, "after refused txns", mustGet(t, e.cli(1), "dup/a").Kvs, "", "", 0, 0, 0)
}

func kvTxnTooManyOps(t *testing.T, e *kvEnv) {
	ops := func(n int) []clientv3.Op {
		var out []clientv3.Op
		for i := range n {
			out = append(out, clientv3.OpPut(keyN("ops/", i), "v"))
		}
		return out
	}
	_, err := e.cli(1).Txn(ctxFor(t, 5*time.Second)).Then(ops(kvMaxTxnOps + 1)...).Commit()
	if !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("txn of %d ops with --max-txn-ops %d: %v, want %v", kvMaxTxnOps+1, kvMaxTxnOps, err, rpctypes.ErrTooManyOps)
	}
	if _, err := e.cli(1).Txn(ctxFor(t, 5*time.Second)).Then(ops(kvMaxTxnOps)...).Commit(); err != nil {
		t.Fatalf("txn of exactly --max-txn-ops ops: %v", err)
	}
	if n := mustGet(t, e.cli(2), "ops/", clientv3.WithPrefix(), clientv3.WithCountOnly()).Count; n != kvMaxTxnOps {
		t.Fatalf("%d keys written, want %d", n, kvMaxTxnOps)
	}
}

func kvEmptyKey(t *testing.T, e *kvEnv) {
	cli := e.cli(2)
	checks := map[string]error{}
	_, checks["put"] = cli.Put(ctxFor(t, 5*time.Second), "", "v")
	_, checks["get"] = cli.Get(ctxFor(t, 5*time.Second), "")
	_, checks["delete"] = cli.Delete(ctxFor(t, 5*time.Second), "")
	_, checks["txn put"] = cli.Txn(ctxFor(t, 5*time.Second)).Then(clientv3.OpPut("", "v")).Commit()
	_, checks["txn compare"] = cli.Txn(ctxFor(t, 5*time.Second)).If(clientv3.Compare(clientv3.Version(""), "=", 0)).Commit()
	for what, err := range checks {
		if !errors.Is(err, rpctypes.ErrEmptyKey) {
			t.Errorf("%s with an empty key: %v, want %v", what, err, rpctypes.ErrEmptyKey)
		}
	}
}

func kvRequestTooLarge(t *testing.T, e *kvEnv) {
	before := mustGet(t, e.cli(0), "big").Header.Revision
	_, err := e.cli(0).Put(ctxFor(t, 5*time.Second), "big", strings.Repeat("x", kvMaxRequestBytes+1024))
	if !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Fatalf("put above --max-request-bytes: %v, want %v", err, rpctypes.ErrRequestTooLarge)
	}
	// Far above the limit, gRPC refuses the message before the server
	// sees it; the member must stay healthy.
	_, err = e.cli(1).Put(ctxFor(t, 5*time.Second), "big", strings.Repeat("x", 1<<20+1))
	if err == nil {
		t.Fatal("put of 1 MiB with --max-request-bytes 64 KiB succeeded")
	}
	if code := status.Code(err); code != codes.ResourceExhausted && !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Errorf("put of 1 MiB: %v (code %v), want resource exhausted or request too large", err, code)
	}
	p := mustPut(t, e.cli(1), "big", strings.Repeat("x", kvMaxRequestBytes/2))
	if p.Header.Revision != before+1 {
		t.Fatalf("put after the refused ones at revision %d, want %d (refused puts must not write)", p.Header.Revision, before+1)
	}
}

func kvHeaders(t *testing.T, e *kvEnv) {
	var clusterID uint64
	for i, m := range e.c.Members {
		st, err := m.Status()
		if err != nil {
			t.Fatal(err)
		}
		put := mustPut(t, e.cli(i), "hdr/k", m.Name)
		get := mustGet(t, e.cli(i), "hdr/k")
		del, err := e.cli(i).Delete(ctxFor(t, 5*time.Second), "hdr/k")
		if err != nil {
			t.Fatal(err)
		}
		txn, err := e.cli(i).Txn(ctxFor(t, 5*time.Second)).Then(clientv3.OpPut("hdr/k", "t"), clientv3.OpGet("hdr/k")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		headers := map[string]struct {
			clusterID, memberID uint64
			revision            int64
			term                uint64
		}{
			"status": {st.Header.ClusterId, st.Header.MemberId, st.Header.Revision, st.Header.RaftTerm},
			"put":    {put.Header.ClusterId, put.Header.MemberId, put.Header.Revision, put.Header.RaftTerm},
			"get":    {get.Header.ClusterId, get.Header.MemberId, get.Header.Revision, get.Header.RaftTerm},
			"delete": {del.Header.ClusterId, del.Header.MemberId, del.Header.Revision, del.Header.RaftTerm},
			"txn":    {txn.Header.ClusterId, txn.Header.MemberId, txn.Header.Revision, txn.Header.RaftTerm},
		}
		if clusterID == 0 {
			clusterID = st.Header.ClusterId
		}
		wantRev := map[string]int64{"put": put.Header.Revision, "get": put.Header.Revision, "delete": put.Header.Revision + 1, "txn": put.Header.Revision + 2}
		for what, h := range headers {
			if h.clusterID == 0 || h.clusterID != clusterID {
				t.Errorf("%s via %s: cluster_id %x, want %x (non-zero, same on every member)", what, m.Name, h.clusterID, clusterID)
			}
			if h.memberID != m.ID() {
				t.Errorf("%s via %s: member_id %x, want %x", what, m.Name, h.memberID, m.ID())
			}
			if h.term == 0 || h.term != st.RaftTerm {
				t.Errorf("%s via %s: raft_term %d, want the member's term %d", what, m.Name, h.term, st.RaftTerm)
			}
			if h.revision == 0 {
				t.Errorf("%s via %s: revision 0", what, m.Name)
			}
			if want, ok := wantRev[what]; ok && h.revision != want {
				t.Errorf("%s via %s: revision %d, want %d", what, m.Name, h.revision, want)
			}
		}
		// Inside a txn, etcd fills in only the revision of each response.
		if rev := txn.Responses[1].GetResponseRange().GetHeader().GetRevision(); rev != put.Header.Revision+2 {
			t.Errorf("get inside txn via %s: revision %d, want %d", m.Name, rev, put.Header.Revision+2)
		}
		if get.Kvs[0].ModRevision != put.Header.Revision {
			t.Errorf("via %s: put at revision %d, key's mod revision %d", m.Name, put.Header.Revision, get.Kvs[0].ModRevision)
		}
	}
}

func kvCompaction(t *testing.T, e *kvEnv) {
	r1 := mustPut(t, e.cli(0), "cmp/k", "1").Header.Revision
	r2 := mustPut(t, e.cli(0), "cmp/k", "2").Header.Revision
	r3 := mustPut(t, e.cli(0), "cmp/k", "3").Header.Revision
	if _, err := e.cli(1).Compact(ctxFor(t, 5*time.Second), r2, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact at %d: %v", r2, err)
	}
	for i := range 3 {
		who := e.c.Members[i].Name
		_, err := e.cli(i).Get(ctxFor(t, 5*time.Second), "cmp/k", clientv3.WithRev(r1))
		if !errors.Is(err, rpctypes.ErrCompacted) {
			t.Errorf("read at compacted revision %d via %s: %v, want %v", r1, who, err, rpctypes.ErrCompacted)
		}
		// The compaction revision itself stays readable.
		resp, err := e.cli(i).Get(ctxFor(t, 5*time.Second), "cmp/k", clientv3.WithRev(r2))
		if err != nil {
			t.Errorf("read at the compaction revision %d via %s: %v", r2, who, err)
		} else {
			wantKV(t, "at the compaction revision via "+who, resp.Kvs, "cmp/k", "2", r1, r2, 2)
		}
		// Current data keep their history fields.
		wantKV(t, "current via "+who, mustGet(t, e.cli(i), "cmp/k").Kvs, "cmp/k", "3", r1, r3, 3)
	}
	if _, err := e.cli(2).Compact(ctxFor(t, 5*time.Second), r1); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("compact below the compacted revision: %v, want %v", err, rpctypes.ErrCompacted)
	}
	if _, err := e.cli(2).Compact(ctxFor(t, 5*time.Second), r2); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("compact at the compacted revision again: %v, want %v", err, rpctypes.ErrCompacted)
	}
	if _, err := e.cli(2).Compact(ctxFor(t, 5*time.Second), r3+1000); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("compact at a future revision: %v, want %v", err, rpctypes.ErrFutureRev)
	}
	// Revisions go on from where they were; compaction is not a write.
	if r4 := mustPut(t, e.cli(1), "cmp/k", "4").Header.Revision; r4 != r3+1 {
		t.Errorf("put after compaction at revision %d, want %d", r4, r3+1)
	}
}
