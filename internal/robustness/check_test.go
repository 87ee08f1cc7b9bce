package robustness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Short constructors for hand-written histories. Times are in
// milliseconds; an unknown outcome is given with ret < 0.
func op(client int, call, ret int64, req Request, resp Response) Op {
	if ret < 0 {
		resp.Unknown, resp.Err = true, "context deadline exceeded"
		ret = call + 1000
	}
	return Op{Client: client, Req: req, Resp: resp, Call: call * 1e6, Return: ret * 1e6}
}

func put(k, v string) Request { return Request{Kind: Put, Key: k, Value: v} }
func get(k string) Request    { return Request{Kind: Get, Key: k} }
func del(k string) Request    { return Request{Kind: Delete, Key: k} }
func cas(k string, mod int64, v string) Request {
	return Request{Kind: CAS, Key: k, ModRev: mod, Value: v}
}
func rangeReq(k, end string) Request { return Request{Kind: Range, Key: k, End: end} }

func rev(r int64) Response { return Response{Rev: r} }
func deleted(r int64) Response {
	return Response{Rev: r, Deleted: 1}
}
func casOK(r int64) Response { return Response{Rev: r, Succeeded: true} }
func read(r int64, kvs ...KV) Response {
	return Response{Rev: r, KVs: kvs}
}
func kv(k, v string, create, mod, ver int64) KV {
	return KV{Key: k, Value: v, Create: create, Mod: mod, Version: ver}
}

var empty = State{Rev: 1}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ops     []Op
		changes []Change // nil: leave unknown writes to the model
		want    string   // "" for a clean report, else a substring of one problem
	}{
		{
			name: "sequential put then get",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(1, 20, 30, get("a"), read(2, kv("a", "1", 2, 2, 1))),
			},
		},
		{
			name: "stale read after an acknowledged put",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(1, 20, 30, get("a"), read(1)),
			},
			want: "not linearizable",
		},
		{
			// Both reads overlap both puts, but the reads are sequential
			// and see the values in opposite orders.
			name: "two readers see two concurrent writes in different orders",
			ops: []Op{
				op(0, 0, 100, put("a", "x"), rev(2)),
				op(1, 0, 100, put("a", "y"), rev(3)),
				op(2, 10, 20, get("a"), read(3, kv("a", "y", 2, 3, 2))),
				op(2, 30, 40, get("a"), read(2, kv("a", "x", 2, 2, 1))),
			},
			want: "not linearizable",
		},
		{
			name: "a read answered with a revision that does not match its data",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(1, 20, 30, get("a"), read(3, kv("a", "1", 2, 2, 1))),
			},
			want: "not linearizable",
		},
		{
			name: "a write acknowledged with the wrong revision",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(0, 20, 30, put("b", "1"), rev(4)),
			},
			want: "not linearizable",
		},
		{
			name: "unknown put seen later",
			ops: []Op{
				op(0, 0, -1, put("a", "1"), Response{}),
				op(1, 50, 60, get("a"), read(2, kv("a", "1", 2, 2, 1))),
			},
		},
		{
			name: "unknown put never seen",
			ops: []Op{
				op(0, 0, -1, put("a", "1"), Response{}),
				op(1, 50, 60, get("a"), read(1)),
				op(1, 70, 80, put("b", "2"), rev(2)),
			},
		},
		{
			name: "unknown put seen, then unseen",
			ops: []Op{
				op(0, 0, -1, put("a", "1"), Response{}),
				op(1, 50, 60, get("a"), read(2, kv("a", "1", 2, 2, 1))),
				op(1, 70, 80, get("a"), read(1)),
			},
			want: "not linearizable",
		},
		{
			name: "CAS: compare holds, and a failed compare returns the current value",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(0, 20, 30, cas("a", 2, "2"), casOK(3)),
				op(1, 40, 50, cas("a", 2, "3"), read(3, kv("a", "2", 2, 3, 2))),
				op(1, 60, 70, cas("b", 0, "4"), casOK(4)),
			},
		},
		{
			name: "CAS succeeded although the compare could not hold",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(0, 20, 30, cas("a", 5, "2"), casOK(3)),
			},
			want: "not linearizable",
		},
		{
			name: "delete of a present and an absent key",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(0, 20, 30, del("a"), deleted(3)),
				op(0, 40, 50, del("a"), rev(3)),
				op(0, 60, 70, rangeReq("a", "z"), read(3)),
			},
		},
		{
			name: "a deleted key comes back",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(0, 20, 30, del("a"), deleted(3)),
				op(1, 40, 50, rangeReq("a", "z"), read(3, kv("a", "1", 2, 2, 1))),
			},
			want: "not linearizable",
		},
		{
			name: "revision goes back between sequential reads of different keys",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(1, 20, 30, get("b"), read(2)),
				op(2, 40, 50, get("b"), read(1)),
			},
			want: "revision went back",
		},
		{
			name: "resolved: unknown put applied at the revision the cluster shows",
			ops: []Op{
				op(0, 0, -1, put("a", "1"), Response{}),
				op(1, 5, 10, put("b", "2"), rev(3)),
				op(1, 50, 60, rangeReq("a", "z"), read(3, kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1))),
			},
			changes: []Change{{Rev: 2, Key: "a", Value: "1"}, {Rev: 3, Key: "b", Value: "2"}},
		},
		{
			name: "resolved: unknown delete matched to an unexplained deletion",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(0, 20, -1, del("a"), Response{}),
				op(1, 25, -1, del("a"), Response{}),
				op(1, 30, 40, put("b", "2"), rev(4)),
				op(1, 50, 60, get("a"), read(4)),
			},
			changes: []Change{{Rev: 2, Key: "a", Value: "1"}, {Rev: 3, Key: "a", Delete: true}, {Rev: 4, Key: "b", Value: "2"}},
		},
		{
			name: "resolved: acknowledged write missing from the cluster's history",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
				op(0, 20, 30, put("a", "2"), rev(3)),
			},
			changes: []Change{{Rev: 2, Key: "a", Value: "1"}, {Rev: 3, Key: "a", Value: "9"}},
			want:    "acknowledged write lost",
		},
		{
			name: "resolved: a revision no client wrote",
			ops: []Op{
				op(0, 0, 10, put("a", "1"), rev(2)),
			},
			changes: []Change{{Rev: 2, Key: "a", Value: "1"}, {Rev: 3, Key: "a", Delete: true}},
			want:    "only 0 deletes",
		},
		{
			name: "resolved: a write applied twice",
			ops: []Op{
				op(0, 0, -1, put("a", "1"), Response{}),
			},
			changes: []Change{{Rev: 2, Key: "a", Value: "1"}, {Rev: 3, Key: "a", Value: "1"}},
			want:    "written twice",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &History{Init: empty, Ops: tc.ops}
			r := Check(h, tc.changes, 10*time.Second)
			got := strings.Join(r.Problems, "\n")
			switch {
			case tc.want == "" && !r.OK():
				t.Errorf("problems in a valid history (%s):\n%s", r, got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("want a problem containing %q, got (%s):\n%s", tc.want, r, got)
			}
		})
	}
}

// TestCheckerCanFail is the guard against a checker that passes
// everything: a classic non-linearizable history (a read that misses a
// write that completed before it began) must fail, and the failure must
// produce a visualization.
func TestCheckerCanFail(t *testing.T) {
	h := &History{Init: empty, Ops: []Op{
		op(0, 0, 10, put("k/0", "v1"), rev(2)),
		op(1, 5, 15, put("k/1", "v2"), rev(3)),
		op(2, 20, 30, rangeReq("k/", "k0"), read(3, kv("k/1", "v2", 3, 3, 1))),
	}}
	r := Check(h, nil, 10*time.Second)
	if r.Result != porcupine.Illegal || r.OK() {
		t.Fatalf("a read missing a completed write passed the check: %s", r)
	}
	dir := t.TempDir()
	if err := r.WriteArtifacts(dir, h, "seed 1"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"history.json", "linearizability.html", "problems.txt", "notes.txt"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("artifact %s missing or empty: %v", f, err)
		}
	}
	back, err := ReadHistory(filepath.Join(dir, "history.json"))
	if err != nil || len(back.Ops) != len(h.Ops) {
		t.Fatalf("history does not read back: %v", err)
	}
}

func TestLostWrites(t *testing.T) {
	h := &History{Init: empty, Ops: []Op{
		op(0, 0, 10, put("a", "1"), rev(2)),
		op(0, 20, 30, put("b", "2"), rev(3)),
		op(0, 40, 50, put("c", "3"), rev(4)),
	}}
	changes := []Change{{Rev: 2, Key: "a", Value: "1"}, {Rev: 3, Key: "b", Value: "2"}, {Rev: 4, Key: "c", Value: "3"}, {Rev: 5, Key: "a", Delete: true}}
	final := Replay(empty, changes).KVs
	if lost := LostWrites(h, changes, final); len(lost) != 0 {
		t.Fatalf("replayed state loses writes: %v", lost)
	}
	delete(final, "c")
	if lost := LostWrites(h, changes, final); len(lost) != 1 || !strings.Contains(lost[0], "put(c, 3)") {
		t.Fatalf("a member without c=3 should lose exactly that write, got %v", lost)
	}
}
