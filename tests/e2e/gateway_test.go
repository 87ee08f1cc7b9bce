package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// gatewaySession is a curl session against etcd's HTTP/JSON gateway, run
// on real etcd and on Kvorum; the answers must be the same JSON apart
// from identifiers and sizes (see gatewayVolatile).
var gatewaySession = []struct{ path, body string }{
	{"/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`},
	{"/v3/kv/put", `{"key":"Zm9vMg==","value":"YmF6","prev_kv":true}`},
	{"/v3/kv/put", `{"key":"Zm9vMg==","value":"cXV4","prev_kv":true}`},
	{"/v3/kv/range", `{"key":"Zm9v"}`},
	{"/v3/kv/range", `{"key":"Zm9v","range_end":"Zm9w"}`},
	{"/v3/kv/range", `{"key":"Zm9v","range_end":"Zm9w","count_only":true}`},
	{"/v3/kv/range", `{"key":"bm9uZQ=="}`},
	{"/v3/kv/txn", `{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],"success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}],"failure":[{"request_range":{"key":"Zm9v"}}]}`},
	{"/v3/kv/txn", `{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],"success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}],"failure":[{"request_range":{"key":"Zm9v"}}]}`},
	{"/v3/kv/deleterange", `{"key":"Zm9vMg==","prev_kv":true}`},
	{"/v3/kv/compaction", `{"revision":"2"}`},
	{"/v3/kv/range", `{"key":"Zm9v","revision":"1"}`},
	{"/v3/kv/range", `{"key":1}`},
	{"/v3/lease/grant", `{"TTL":60}`},
	{"/v3/maintenance/alarm", `{"action":"GET"}`},
	{"/v3/cluster/member/list", `{}`},
}

// gatewayVolatile are the fields whose values differ between any two
// clusters (identifiers, sizes, versions, raft positions).
var gatewayVolatile = map[string]bool{
	"cluster_id": true, "member_id": true, "raft_term": true, "ID": true, "name": true,
	"peerURLs": true, "clientURLs": true, "TTL": true,
}

func normalizeGatewayJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if gatewayVolatile[k] {
				x[k] = "<volatile>"
			} else {
				x[k] = normalizeGatewayJSON(e)
			}
		}
	case []any:
		for i := range x {
			x[i] = normalizeGatewayJSON(x[i])
		}
	}
	return v
}

func gatewayPost(t *testing.T, endpoint, path, body string) string {
	t.Helper()
	resp, err := http.Post(endpoint+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s%s: %v", endpoint, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Go's protobuf errors put a space or a no-break space after "proto:"
	// at random.
	b = []byte(strings.ReplaceAll(string(b), "\u00a0", " "))
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Sprintf("%d %q (not JSON)", resp.StatusCode, b)
	}
	out, _ := json.Marshal(normalizeGatewayJSON(v))
	return fmt.Sprintf("%d %s", resp.StatusCode, out)
}

func TestGatewayAnswersMatchRealEtcd(t *testing.T) {
	etcd := officialEtcd(t)
	ref := newCluster(t, etcd.Server, 1)
	kv := newCluster(t, kvorumBin, 1)
	for i, step := range gatewaySession {
		want := gatewayPost(t, ref.endpoints()[0], step.path, step.body)
		got := gatewayPost(t, kv.endpoints()[0], step.path, step.body)
		if want != got {
			t.Errorf("step %d: POST %s %s\nreal etcd: %s\nkvorum:    %s", i, step.path, step.body, want, got)
		}
	}
	// A watch from revision 3 replays the txn's put of foo.
	want := gatewayWatch(t, ref.endpoints()[0], 2)
	got := gatewayWatch(t, kv.endpoints()[0], 2)
	if !strings.Contains(want, `"events"`) {
		t.Errorf("real etcd's watch answered no event:\n%s", want)
	}
	if want != got {
		t.Errorf("watch: real etcd:\n%s\nkvorum:\n%s", want, got)
	}
}

// gatewayWatch opens a watch on foo from revision 3 and returns its first
// n lines, normalized.
func gatewayWatch(t *testing.T, endpoint string, n int) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/v3/watch",
		strings.NewReader(`{"create_request":{"key":"Zm9v","start_revision":"3"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s/v3/watch: %v", endpoint, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var out []string
	for range n {
		if !sc.Scan() {
			t.Fatalf("watch on %s ended after %d lines: %v", endpoint, len(out), sc.Err())
		}
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("watch line %q: %v", sc.Bytes(), err)
		}
		b, _ := json.Marshal(normalizeGatewayJSON(v))
		out = append(out, string(b))
	}
	return strings.Join(out, "\n")
}
