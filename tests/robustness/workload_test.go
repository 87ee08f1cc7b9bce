package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvorum/kvorum/internal/robustness"
	"github.com/kvorum/kvorum/internal/robustness/cluster"
)

// The key space is small so that operations collide: keys k/00..k/NN.
const (
	keyPrefix = "k/"
	keyEnd    = "k0" // '0' follows '/': [k/, k0) is the whole key space
)

func keyName(i int) string { return fmt.Sprintf("%s%02d", keyPrefix, i) }

// workload is what the clients do.
type workload struct {
	clients   int           // concurrent clients; every third has all endpoints, the others one member each
	keys      int           // size of the key space
	think     time.Duration // each client pauses up to this long between operations
	opTimeout time.Duration // after this an operation's outcome is unknown
}

var defaultWorkload = workload{clients: 6, keys: 8, think: 15 * time.Millisecond, opTimeout: 5 * time.Second}

// client is one workload client: its connection and what it has seen.
type client struct {
	id       int
	cli      *clientv3.Client
	endpoint string
	rng      *rand.Rand
	seq      int
	lastMod  map[string]int64 // the mod revision this client last saw per key, for CAS
}

// runClients runs the workload until ctx is done and returns every
// operation, with times relative to start.
func runClients(ctx context.Context, c *cluster.Cluster, w workload, seed uint64, round int, start time.Time) ([]robustness.Op, error) {
	var clients []*client
	defer func() {
		for _, cl := range clients {
			cl.cli.Close()
		}
	}()
	for i := range w.clients {
		var ms []*cluster.Member
		label := "all"
		if i%3 != 2 {
			m := c.Members[i%len(c.Members)]
			ms, label = []*cluster.Member{m}, m.Name
		}
		cli, err := c.Client(ms...)
		if err != nil {
			return nil, err
		}
		clients = append(clients, &client{
			id: i, cli: cli, endpoint: label,
			rng:     rand.New(rand.NewPCG(seed, uint64(round)<<16|uint64(i))),
			lastMod: map[string]int64{},
		})
	}
	ops := make([][]robustness.Op, len(clients))
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req := cl.next(w, round)
				call := time.Since(start)
				resp := cl.do(w.opTimeout, req)
				ret := time.Since(start)
				ops[i] = append(ops[i], robustness.Op{
					Client: cl.id, Endpoint: cl.endpoint, Req: req, Resp: resp,
					Call: call.Nanoseconds(), Return: ret.Nanoseconds(),
				})
				cl.learn(req, resp)
				if w.think > 0 {
					time.Sleep(time.Duration(cl.rng.Int64N(int64(w.think))))
				}
			}
		}()
	}
	wg.Wait()
	var all []robustness.Op
	for _, o := range ops {
		all = append(all, o...)
	}
	return all, nil
}

// next picks the client's next request. Put and CAS values are unique
// across the whole run: round, client and sequence number. Every eighth
// is padded past 4 KiB, so that its key's latest record refers to the
// event instead of holding the value (mvcc's latestByRevisionFrom) and
// its value goes to a blob file of the engine (storage.SeparateValuesFrom).
func (cl *client) next(w workload, round int) robustness.Request {
	cl.seq++
	key := keyName(cl.rng.IntN(w.keys))
	value := fmt.Sprintf("r%d-c%d-%d", round, cl.id, cl.seq)
	if cl.seq%8 == 0 {
		value += "-" + strings.Repeat("x", 5000)
	}
	switch p := cl.rng.IntN(100); {
	case p < 30:
		return robustness.Request{Kind: robustness.Put, Key: key, Value: value}
	case p < 50:
		return robustness.Request{Kind: robustness.Get, Key: key}
	case p < 62:
		a, b := cl.rng.IntN(w.keys), cl.rng.IntN(w.keys)
		if p%3 == 0 {
			return robustness.Request{Kind: robustness.Range, Key: keyPrefix, End: keyEnd}
		}
		return robustness.Request{Kind: robustness.Range, Key: keyName(min(a, b)), End: keyName(max(a, b) + 1)}
	case p < 85:
		return robustness.Request{Kind: robustness.CAS, Key: key, ModRev: cl.lastMod[key], Value: value}
	default:
		return robustness.Request{Kind: robustness.Delete, Key: key}
	}
}

// learn remembers mod revisions for later CAS requests.
func (cl *client) learn(req robustness.Request, resp robustness.Response) {
	if resp.Unknown {
		return
	}
	switch req.Kind {
	case robustness.Put:
		cl.lastMod[req.Key] = resp.Rev
	case robustness.CAS:
		if resp.Succeeded {
			cl.lastMod[req.Key] = resp.Rev
		} else {
			cl.lastMod[req.Key] = 0
		}
		fallthrough
	case robustness.Get, robustness.Range:
		for _, kv := range resp.KVs {
			cl.lastMod[kv.Key] = kv.Mod
		}
	case robustness.Delete:
		cl.lastMod[req.Key] = 0
	}
}

// do runs req. Any error makes the outcome unknown: the request may have
// been committed even if the client was told it timed out or that the
// connection broke.
func (cl *client) do(timeout time.Duration, req robustness.Request) robustness.Response {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return execute(ctx, cl.cli, req)
}

func execute(ctx context.Context, cli *clientv3.Client, req robustness.Request, opts ...clientv3.OpOption) robustness.Response {
	var out robustness.Response
	var err error
	switch req.Kind {
	case robustness.Put:
		var resp *clientv3.PutResponse
		if resp, err = cli.Put(ctx, req.Key, req.Value); err == nil {
			out.Rev = resp.Header.Revision
		}
	case robustness.Get, robustness.Range:
		if req.Kind == robustness.Range {
			opts = append(opts, clientv3.WithRange(req.End))
		}
		var resp *clientv3.GetResponse
		if resp, err = cli.Get(ctx, req.Key, opts...); err == nil {
			out.Rev, out.KVs = resp.Header.Revision, kvsOf(resp)
		}
	case robustness.Delete:
		var resp *clientv3.DeleteResponse
		if resp, err = cli.Delete(ctx, req.Key); err == nil {
			out.Rev, out.Deleted = resp.Header.Revision, resp.Deleted
		}
	case robustness.CAS:
		var resp *clientv3.TxnResponse
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(req.Key), "=", req.ModRev)).
			Then(clientv3.OpPut(req.Key, req.Value)).
			Else(clientv3.OpGet(req.Key)).
			Commit()
		if err == nil {
			out.Rev, out.Succeeded = resp.Header.Revision, resp.Succeeded
			if !resp.Succeeded && len(resp.Responses) == 1 {
				for _, kv := range resp.Responses[0].GetResponseRange().GetKvs() {
					out.KVs = append(out.KVs, robustness.KV{Key: string(kv.Key), Value: string(kv.Value), Create: kv.CreateRevision, Mod: kv.ModRevision, Version: kv.Version})
				}
			}
		}
	}
	if err != nil {
		return robustness.Response{Unknown: true, Err: err.Error()}
	}
	return out
}

func kvsOf(resp *clientv3.GetResponse) []robustness.KV {
	var out []robustness.KV
	for _, kv := range resp.Kvs {
		out = append(out, robustness.KV{Key: string(kv.Key), Value: string(kv.Value), Create: kv.CreateRevision, Mod: kv.ModRevision, Version: kv.Version})
	}
	return out
}
