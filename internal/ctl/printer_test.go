package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPrinterMatchesEtcdctlGoldens renders each response captured from the
// official etcdctl v3.7 (testdata/printer/*/response.json, see
// testdata/capture.sh and each case's cmd file for the exact commands) in
// every output format (or those listed in its formats file) and demands etcdctl's bytes: its stdout where it
// printed one, its refusal (exit 4, such as "not supported as output
// format") where it refused, nothing where it printed nothing.
func TestPrinterMatchesEtcdctlGoldens(t *testing.T) {
	dirs, err := filepath.Glob("testdata/printer/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			kind := strings.TrimSpace(readFile(t, filepath.Join(dir, "kind")))
			_, hexErr := os.Stat(filepath.Join(dir, "hex"))
			id, _ := readOptional(filepath.Join(dir, "id"))
			args, _ := readOptional(filepath.Join(dir, "args"))
			render := decodeResponse(t, kind, strings.TrimSpace(id), []byte(readFile(t, filepath.Join(dir, "response.json"))))
			if render == nil {
				render = decodeAdminResponse(t, kind, strings.Fields(id), strings.Fields(args), []byte(readFile(t, filepath.Join(dir, "response.json"))))
			}
			formats := []string{formatSimple, formatFields, formatTable, formatProtobuf, formatJSON}
			if list, ok := readOptional(filepath.Join(dir, "formats")); ok {
				formats = strings.Fields(list)
			}
			for _, format := range formats {
				t.Run(format, func(t *testing.T) {
					var out, errOut bytes.Buffer
					p := &printer{format: format, hex: hexErr == nil, out: &out, errOut: &errOut}
					perr := render(p)

					golden, hasGolden := readOptional(filepath.Join(dir, format))
					refusal, hasErr := readOptional(filepath.Join(dir, format+".err"))
					refused := hasErr && strings.HasPrefix(refusal, "exit 4\n")
					switch {
					case refused:
						var ee *exitError
						if !errors.As(perr, &ee) || ee.code != ExitBadFeature {
							t.Fatalf("etcdctl refused -w %s (%q); kvorumctl returned %v", format, refusal, perr)
						}
						if want := "Error: " + ee.err.Error() + "\n"; !strings.Contains(unstableText(refusal), unstableText(want)) {
							t.Fatalf("refusal message: etcdctl %q, kvorumctl %q", refusal, want)
						}
					case perr != nil:
						t.Fatalf("render -w %s: %v", format, perr)
					case out.String() != golden:
						t.Fatalf("-w %s differs from etcdctl (golden %v)\n--- etcdctl\n%s\n--- kvorumctl\n%s", format, hasGolden, golden, out.String())
					}
				})
			}
		})
	}
}

// unstableText blanks what differs between two runs of the same program in
// messages that print Go values with %v: pointers (set or not), and the
// spacing of protobuf's text format, which varies from build to build on
// purpose.
func unstableText(s string) string {
	s = regexp.MustCompile(`0x[0-9a-f]+|<nil>`).ReplaceAllString(s, "<ptr>")
	return regexp.MustCompile(` +`).ReplaceAllString(s, " ")
}

// decodeResponse reads etcdctl's -w json output of a command of the given
// kind and returns the printer call that renders it; id is the lease a
// revoke case revoked (its answer does not name it).
func decodeResponse(t *testing.T, kind, id string, data []byte) func(*printer) error {
	t.Helper()
	unmarshal := func(v any) {
		t.Helper()
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("decode %s response: %v", kind, err)
		}
	}
	switch kind {
	case "put":
		var r pb.PutResponse
		unmarshal(&r)
		return func(p *printer) error { return p.Put((*clientv3.PutResponse)(&r)) }
	case "get":
		var r pb.RangeResponse
		unmarshal(&r)
		return func(p *printer) error { return p.Get((*clientv3.GetResponse)(&r)) }
	case "del":
		var r pb.DeleteRangeResponse
		unmarshal(&r)
		return func(p *printer) error { return p.Del((*clientv3.DeleteResponse)(&r)) }
	case "txn":
		var r txnResponseJSON
		unmarshal(&r)
		resp := txnFromJSON(&r)
		return func(p *printer) error { return p.Txn((*clientv3.TxnResponse)(resp)) }
	case "members":
		var r pb.MemberListResponse
		unmarshal(&r)
		return func(p *printer) error { return p.MemberList((*clientv3.MemberListResponse)(&r)) }
	case "status":
		var r []epStatus
		unmarshal(&r)
		return func(p *printer) error { return p.EndpointStatus(r) }
	case "hashkv":
		var r []epHashKV
		unmarshal(&r)
		return func(p *printer) error { return p.EndpointHashKV(r) }
	case "health":
		var r []epHealth
		unmarshal(&r)
		return func(p *printer) error { return p.EndpointHealth(r) }
	case "grant":
		var r clientv3.LeaseGrantResponse
		unmarshal(&r)
		return func(p *printer) error { return p.Grant(&r) }
	case "revoke":
		var r clientv3.LeaseRevokeResponse
		unmarshal(&r)
		lease, err := strconv.ParseInt(id, 16, 64)
		if err != nil {
			t.Fatalf("revoke case without a lease ID in its id file: %v", err)
		}
		return func(p *printer) error { return p.Revoke(clientv3.LeaseID(lease), &r) }
	case "keepalive":
		var r clientv3.LeaseKeepAliveResponse
		unmarshal(&r)
		return func(p *printer) error { return p.KeepAlive(&r) }
	case "timetolive", "timetolive-keys":
		var r clientv3.LeaseTimeToLiveResponse
		unmarshal(&r)
		return func(p *printer) error { return p.TimeToLive(&r, kind == "timetolive-keys") }
	case "leases":
		var r clientv3.LeaseLeasesResponse
		unmarshal(&r)
		return func(p *printer) error { return p.Leases(&r) }
	}
	return nil
}

// txnFromJSON is the inverse of txnJSON.
func txnFromJSON(j *txnResponseJSON) *pb.TxnResponse {
	r := &pb.TxnResponse{Header: j.Header, Succeeded: j.Succeeded}
	for _, op := range j.Responses {
		u := op.Response
		switch {
		case u.ResponseRange != nil:
			r.Responses = append(r.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: u.ResponseRange}})
		case u.ResponsePut != nil:
			r.Responses = append(r.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: u.ResponsePut}})
		case u.ResponseDeleteRange != nil:
			r.Responses = append(r.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: u.ResponseDeleteRange}})
		case u.ResponseTxn != nil:
			r.Responses = append(r.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: txnFromJSON(u.ResponseTxn)}})
		}
	}
	return r
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readOptional(path string) (string, bool) {
	b, err := os.ReadFile(path)
	return string(b), err == nil
}

// TestSimpleHealthPrintsUnhealthyToStderr: etcdctl reports healthy
// endpoints on stdout and unhealthy ones on stderr
// (etcdctl --endpoints 127.0.0.1:1 --dial-timeout 200ms
// --command-timeout 400ms endpoint health).
func TestSimpleHealthPrintsUnhealthyToStderr(t *testing.T) {
	var out, errOut bytes.Buffer
	p := &printer{format: formatSimple, out: &out, errOut: &errOut}
	err := p.EndpointHealth([]epHealth{
		{Ep: "127.0.0.1:2379", Health: true, Took: "1.150346ms"},
		{Ep: "127.0.0.1:1", Took: "400.1ms", Error: "context deadline exceeded"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:2379 is healthy: successfully committed proposal: took = 1.150346ms\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if want := "127.0.0.1:1 is unhealthy: failed to commit proposal: context deadline exceeded\n"; errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
}

func TestHumanBytesRoundsLikeEtcdctl(t *testing.T) {
	for n, want := range map[uint64]string{
		0:          "0 B",
		9:          "9 B",
		10:         "10 B",
		999:        "999 B",
		1000:       "1.0 kB",
		16384:      "16 kB", // etcd's in-use size: seen in "endpoint status"
		20480:      "20 kB",
		24576:      "25 kB",
		9940:       "9.9 kB",
		9950:       "10 kB",
		2147483648: "2.1 GB", // the default quota
		8589934592: "8.6 GB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestTableTitle(t *testing.T) {
	for in, want := range map[string]string{
		"hash_revision":   "HASH REVISION",
		"raft term":       "RAFT TERM",
		"ID":              "ID",
		"v1.2":            "V1.2",
		"a.b":             "A B",
		"v.1":             "V 1",
		"1.2":             "1.2",
		" padded ":        "PADDED",
		"___":             " ",
		"Peer Addrs":      "PEER ADDRS",
		"storage version": "STORAGE VERSION",
	} {
		if got := tableTitle(in); got != want {
			t.Errorf("tableTitle(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTableWithMultiLineCell(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, table{header: []string{"a", "bb"}, rows: [][]string{{"x\nyyy", "z"}}})
	want := "" +
		"┌─────┬────┐\n" +
		"│  A  │ BB │\n" +
		"├─────┼────┤\n" +
		"│   x │  z │\n" +
		"│ yyy │    │\n" +
		"└─────┴────┘\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
