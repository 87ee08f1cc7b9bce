package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestParseCompareBuildsTheCompare(t *testing.T) {
	for line, want := range map[string]clientv3.Cmp{
		`mod("key1") > "0"`:         clientv3.Compare(clientv3.ModRevision("key1"), ">", 0),
		`m("key1") = "7"`:           clientv3.Compare(clientv3.ModRevision("key1"), "=", 7),
		`c("a b") < "100"`:          clientv3.Compare(clientv3.CreateRevision("a b"), "<", 100),
		`create("k") != "3"`:        clientv3.Compare(clientv3.CreateRevision("k"), "!=", 3),
		`ver("k") = "2"`:            clientv3.Compare(clientv3.Version("k"), "=", 2),
		`version("k") > "0"`:        clientv3.Compare(clientv3.Version("k"), ">", 0),
		`val("k") = "two words"`:    clientv3.Compare(clientv3.Value("k"), "=", "two words"),
		`value("k\n") != "x\ty"`:    clientv3.Compare(clientv3.Value("k\n"), "!=", "x\ty"),
		`lease("k") = "694d77aa9"`:  {}, // not decimal: see the error test
		`lease("k") = "1234"`:       clientv3.Compare(clientv3.LeaseValue("k"), "=", 1234),
		`mod("key1")   >   "0"   `:  clientv3.Compare(clientv3.ModRevision("key1"), ">", 0),
		"val(`raw`) = \"v\"":        clientv3.Compare(clientv3.Value("raw"), "=", "v"),
		`val("k") = "with \"quote"`: clientv3.Compare(clientv3.Value("k"), "=", `with "quote`),
	} {
		got, err := parseCompare(line)
		if (want == clientv3.Cmp{}) {
			if err == nil {
				t.Errorf("parseCompare(%q) = %v, want an error", line, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseCompare(%q): %v", line, err)
			continue
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("parseCompare(%q) = %v, want %v", line, got, want)
		}
	}
}

// The messages are those etcdctl v3.7 prints for the same input
// (printf '<line>\n' | etcdctl txn -i), without its "Error: " prefix.
func TestParseCompareErrorsMatchEtcdctl(t *testing.T) {
	for line, want := range map[string]string{
		`bad`:            `malformed comparison: bad`,
		`foo("a") = "1"`: `malformed comparison: foo("a") = "1" (unknown target foo)`,
		`ver("a") = "x"`: `invalid txn compare request: ver("a") = "x"`,
		`ver("a") = 1`:   `malformed comparison: ver("a") = 1; got ver("a") = ""`,
		// etcdctl panics on these two; kvorumctl reports them.
		`ver("a") ? "1"`:   `malformed comparison: ver("a") ? "1" (unknown operator ?)`,
		`lease("a") = "z"`: `invalid txn compare request: lease("a") = "z"`,
	} {
		_, err := parseCompare(line)
		if err == nil || err.Error() != want {
			t.Errorf("parseCompare(%q) error = %v, want %q", line, err, want)
		}
	}
}

func TestSplitArgsQuoting(t *testing.T) {
	for in, want := range map[string][]string{
		`put key1 "overwrote-key1"`:       {"put", "key1", "overwrote-key1"},
		`put k "two words"`:               {"put", "k", "two words"},
		`put k 'single "quoted"'`:         {"put", "k", `single "quoted"`},
		`put k "line\nbreak"`:             {"put", "k", "line\nbreak"},
		`put k "esc \"q\""  --prev-kv`:    {"put", "k", `esc "q"`, "--prev-kv"},
		"get\tk  --prefix":                {"get", "k", "--prefix"},
		`put k a"b"`:                      {"put", "k", `a"b"`},
		`put k "unterminated`:             {"put", "k", "unterminated"},
		`del "a"b`:                        {"del", "a", "b"},
		``:                                nil,
		`put "" ''`:                       {"put", "", ""},
		`put k 'it''s'`:                   {"put", "k", "it", "s"},
		`get --from-key "\x00" --limit 2`: {"get", "--from-key", "\x00", "--limit", "2"},
	} {
		got, err := splitArgs(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseRequestUsesTheCommandsFlags(t *testing.T) {
	for line, want := range map[string]clientv3.Op{
		`put k v`:                  clientv3.OpPut("k", "v"),
		`put k "a b" --prev-kv`:    clientv3.OpPut("k", "a b", clientv3.WithPrevKV()),
		`put k v --lease 1f`:       clientv3.OpPut("k", "v", clientv3.WithLease(0x1f)),
		`put k --ignore-value`:     clientv3.OpPut("k", "", clientv3.WithIgnoreValue()),
		`get k`:                    clientv3.OpGet("k", clientv3.WithLimit(0), clientv3.WithSort(clientv3.SortByKey, clientv3.SortNone)),
		`get k --prefix --limit 2`: clientv3.OpGet("k", clientv3.WithLimit(2), clientv3.WithSort(clientv3.SortByKey, clientv3.SortNone), clientv3.WithPrefix()),
		`del k`:                    clientv3.OpDelete("k"),
		`del a c`:                  clientv3.OpDelete("a", clientv3.WithRange("c")),
		`del k --prefix --prev-kv`: clientv3.OpDelete("k", clientv3.WithPrevKV(), clientv3.WithPrefix()),
	} {
		got, err := parseRequest(line, &bytes.Buffer{})
		if err != nil {
			t.Errorf("parseRequest(%q): %v", line, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parseRequest(%q) = %+v, want %+v", line, got, want)
		}
	}
}

// Messages and exit codes as etcdctl v3.7 reports them for the same request
// line in a txn (printf '\n<line>\n\n\n' | etcdctl txn).
func TestParseRequestErrorsMatchEtcdctl(t *testing.T) {
	for line, want := range map[string]struct {
		code int
		msg  string
	}{
		`bogus op`:                  {ExitInvalidInput, "invalid txn request: bogus op"},
		`put`:                       {ExitInvalidInput, "invalid txn compare request: put"},
		`put a`:                     {ExitBadArgs, "put command needs 1 argument and input from stdin or 2 arguments"},
		`put a b --bogus`:           {ExitInvalidInput, "invalid txn request: put a b --bogus"},
		`put a b --lease z`:         {ExitBadArgs, `bad lease ID (strconv.ParseInt: parsing "z": invalid syntax), expecting ID in Hex`},
		`get a --prefix --from-key`: {ExitBadArgs, "`--prefix` and `--from-key` cannot be set at the same time, choose one"},
		`get a --consistency x`:     {ExitBadFeature, `unknown consistency flag "x"`},
	} {
		var usage bytes.Buffer
		var buf strings.Builder
		buf.WriteString("\n" + line + "\n\n\n")
		_, err := readTxn(bufio.NewReader(strings.NewReader(buf.String())), &bytes.Buffer{}, &usage)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != want.code || ee.err.Error() != want.msg {
			t.Errorf("txn request %q: error %v, want exit %d %q", line, err, want.code, want.msg)
		}
		if strings.Contains(line, "--bogus") != strings.Contains(usage.String(), "Usage:") {
			t.Errorf("txn request %q: usage printed = %q", line, usage.String())
		}
	}
}

func TestReadTxnPromptsAndBlocks(t *testing.T) {
	in := "mod(\"key1\") > \"0\"\n  \nput key1 \"overwrote\"\nget key1\n\nput key1 created\nput key2 extra\n\n"
	var prompt bytes.Buffer
	txn, err := readTxn(bufio.NewReader(strings.NewReader(in)), &prompt, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	// etcdctl txn -i prints exactly these prompts, on stdout.
	if want := "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n"; prompt.String() != want {
		t.Errorf("prompts %q, want %q", prompt.String(), want)
	}
	if len(txn.compares) != 1 || len(txn.success) != 2 || len(txn.failure) != 2 {
		t.Errorf("blocks: %d compares, %d success, %d failure; want 1, 2, 2", len(txn.compares), len(txn.success), len(txn.failure))
	}
}

// Input that ends before the empty line closing the failure block is an
// error with exit code 3 and message "EOF", as in etcdctl, and the prompts
// printed so far stay printed.
func TestReadTxnUnterminatedInputIsEOF(t *testing.T) {
	for in, prompts := range map[string]int{
		"":                             1,
		"mod(\"k\") = \"0\"\n":         1,
		"\nget k\n":                    2,
		"\nget k\n\nget k\n":           3,
		"\nget k\n\nget k\nno-newline": 3,
	} {
		var prompt bytes.Buffer
		_, err := readTxn(bufio.NewReader(strings.NewReader(in)), &prompt, &bytes.Buffer{})
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != ExitInvalidInput || ee.err.Error() != "EOF" {
			t.Errorf("input %q: error %v, want exit 3 EOF", in, err)
		}
		if n := strings.Count(prompt.String(), "\n"); n != prompts {
			t.Errorf("input %q: %d prompts, want %d", in, n, prompts)
		}
	}
}
