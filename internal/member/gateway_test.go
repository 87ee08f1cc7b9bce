package member

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/config"
	"github.com/kvorum/kvorum/internal/testcerts"
)

// startPlainMember starts a one-member cluster on plain-text loopback URLs
// and returns it with its client URL.
func startPlainMember(t *testing.T, extra ...string) (*Member, string) {
	t.Helper()
	dir := t.TempDir()
	ports := freeTCPPorts(t, 2)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cfg, err := config.Parse(append([]string{
		"--name=m", "--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=m=" + peer,
	}, extra...), nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	select {
	case <-m.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("member not ready within 20s")
	}
	return m, client
}

// post sends a JSON body the way etcd's curl examples do and decodes the
// JSON answer.
func post(t *testing.T, url, body, token string) (int, map[string]any) {
	t.Helper()
	return postWith(t, http.DefaultClient, url, body, token)
}

func postWith(t *testing.T, c *http.Client, url, body, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: status %d, body %q is not JSON: %v", url, resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

// field walks a decoded JSON document: names for objects, ints for arrays.
func field(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func TestJSONGatewayServesEtcdsCurlExamples(t *testing.T) {
	m, url := startPlainMember(t)
	ok := func(path, body string) map[string]any {
		t.Helper()
		code, out := post(t, url+path, body, "")
		if code != http.StatusOK {
			t.Fatalf("POST %s %s: status %d, %v", path, body, code, out)
		}
		return out
	}

	// foo = Zm9v, bar = YmFy, baz = YmF6 in base64.
	put := ok("/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`)
	rev, _ := field(put, "header", "revision").(string)
	if rev == "" || rev == "0" {
		t.Fatalf("put answered %v, want a header with a revision", put)
	}
	rng := ok("/v3/kv/range", `{"key":"Zm9v"}`)
	if field(rng, "kvs", 0, "key") != "Zm9v" || field(rng, "kvs", 0, "value") != "YmFy" ||
		field(rng, "kvs", 0, "mod_revision") != rev || field(rng, "count") != "1" || field(rng, "header", "revision") != rev {
		t.Fatalf("range answered %v, want foo=bar at revision %s", rng, rev)
	}

	txn := ok("/v3/kv/txn", `{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],`+
		`"success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}`)
	if field(txn, "succeeded") != true {
		t.Fatalf("txn answered %v, want succeeded", txn)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if r, err := cli.Get(ctx, "foo"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "baz" {
		t.Fatalf("get foo after the gateway's txn: %v, %v; want baz", r, err)
	}

	lease := ok("/v3/lease/grant", `{"TTL":30}`)
	if id, _ := field(lease, "ID").(string); id == "" || id == "0" || field(lease, "TTL") != "30" {
		t.Fatalf("lease grant answered %v, want an ID and TTL 30", lease)
	}
	memberID := fmt.Sprint(m.Server.MemberID())
	list := ok("/v3/cluster/member/list", `{}`)
	if field(list, "members", 0, "name") != "m" || field(list, "members", 0, "ID") != memberID || field(list, "members", 1) != nil {
		t.Fatalf("member list answered %v, want the one member m (%s)", list, memberID)
	}
	status := ok("/v3/maintenance/status", `{}`)
	if field(status, "leader") != memberID || field(status, "version") == nil {
		t.Fatalf("status answered %v, want leader %s and a version", status, memberID)
	}
	// etcd 3.3's prefix still works.
	ok("/v3beta/kv/range", `{"key":"Zm9v"}`)

	// A watch is a POST whose body is the create request; the answer is
	// one JSON line per message.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v3/watch", strings.NewReader(`{"create_request":{"key":"Zm9v"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch stream ended: %v", lines.Err())
		}
		var msg map[string]any
		if err := json.Unmarshal(lines.Bytes(), &msg); err != nil {
			t.Fatalf("watch line %q: %v", lines.Bytes(), err)
		}
		return msg
	}
	if created := next(); field(created, "result", "created") != true {
		t.Fatalf("first watch line %v, want created", created)
	}
	if _, err := cli.Put(ctx, "foo", "qux"); err != nil {
		t.Fatal(err)
	}
	ev := next()
	if field(ev, "result", "events", 0, "kv", "key") != "Zm9v" || field(ev, "result", "events", 0, "kv", "value") != "cXV4" {
		t.Fatalf("watch event %v, want the put of foo=qux", ev)
	}
}

func TestJSONGatewayAppliesAuth(t *testing.T) {
	_, url := startPlainMember(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "pw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}

	// etcd 3.7's gateway answers errors as {"code": <gRPC code>, "message": ...}.
	code, out := post(t, url+"/v3/kv/range", `{"key":"Zm9v"}`, "")
	msg, _ := out["message"].(string)
	if code != http.StatusBadRequest || out["code"] != 3.0 || len(out) != 2 || !strings.Contains(msg, "user name is empty") {
		t.Fatalf("range without a token: status %d, %v; want refused with etcd's code and message", code, out)
	}
	code, out = post(t, url+"/v3/auth/authenticate", `{"name":"root","password":"pw"}`, "")
	token, _ := out["token"].(string)
	if code != http.StatusOK || token == "" {
		t.Fatalf("authenticate: status %d, %v", code, out)
	}
	if code, out = post(t, url+"/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`, token); code != http.StatusOK {
		t.Fatalf("put with the token: status %d, %v", code, out)
	}
	if code, out = post(t, url+"/v3/kv/range", `{"key":"Zm9v"}`, "not-a-token"); code == http.StatusOK || out["code"] == nil {
		t.Fatalf("range with a wrong token: status %d, %v; want refused", code, out)
	}
}

func TestJSONGatewayCanBeTurnedOff(t *testing.T) {
	_, url := startPlainMember(t, "--enable-grpc-gateway=false")
	resp, err := http.Post(url+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"Zm9v"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /v3/kv/range with --enable-grpc-gateway=false: status %d, want 404", resp.StatusCode)
	}
}

// TestJSONGatewayOverTLSIgnoresTheMembersCertificate serves the gateway
// on an https URL with client certificates required. The gateway connects
// to its own gRPC server with the member's certificate, whose common name
// here is "root": a request without a token must still have no user.
func TestJSONGatewayOverTLSIgnoresTheMembersCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "ca")
	srv := ca.Issue(t, testcerts.Spec{Name: "server", CN: "root", Hosts: []string{"127.0.0.1"}, Server: true, Client: true})
	cs := certSet{ca: ca, server: srv, admin: ca.Issue(t, testcerts.Spec{Name: "admin", CN: "admin", Client: true})}
	ports := freeTCPPorts(t, 2)
	client := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cfg, err := config.Parse([]string{
		"--name=m", "--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer, "--initial-cluster=m=" + peer,
		"--cert-file=" + srv.CertFile, "--key-file=" + srv.KeyFile, "--trusted-ca-file=" + ca.File, "--client-cert-auth",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	select {
	case <-m.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("member not ready within 20s")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cs.clientTLS(t, true)}}
	defer hc.CloseIdleConnections()
	if code, out := postWith(t, hc, client+"/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`, ""); code != http.StatusOK {
		t.Fatalf("put over https before auth: status %d, %v", code, out)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, TLS: cs.clientTLS(t, true), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "pw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if code, out := postWith(t, hc, client+"/v3/kv/put", `{"key":"Zm9v","value":"YmF6"}`, ""); code == http.StatusOK {
		t.Fatalf("put over https without a token after auth enable: status %d, %v; want refused", code, out)
	}
	_, out := postWith(t, hc, client+"/v3/auth/authenticate", `{"name":"root","password":"pw"}`, "")
	token, _ := out["token"].(string)
	if code, out := postWith(t, hc, client+"/v3/kv/range", `{"key":"Zm9v"}`, token); code != http.StatusOK || field(out, "kvs", 0, "value") != "YmFy" {
		t.Fatalf("range over https with the token: status %d, %v; want foo=bar", code, out)
	}
}
