package mvcc

import (
	"bytes"
	"fmt"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Txn applies a transaction the way etcd does, in three passes:
//
//  1. every compare on the executed path, nested txns included, is
//     evaluated against the state before the txn;
//  2. the ops on that path are validated against the same state (range
//     revisions, leases, ignore_value/ignore_lease), so a failing txn
//     writes nothing;
//  3. the ops run in order, each seeing the changes of the ones before.
//
// The txn takes one revision if its path changed anything.
func (w *Writer) Txn(req *etcdserverpb.TxnRequest) (*etcdserverpb.TxnResponse, error) {
	if err := w.begin(); err != nil {
		return nil, err
	}
	before := w.view()
	p, err := planTxn(before, req)
	if err != nil {
		return nil, w.fail(err)
	}
	var pc pathCheck
	if err := checkPlan(before, w, p, &pc); err != nil {
		return nil, err
	}
	if pc.deletedPut != nil {
		return nil, pc.deletedPut
	}
	resp := &etcdserverpb.TxnResponse{}
	if err := w.execPlan(p, resp); err != nil {
		return nil, err
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	w.s.countTxn(p)
	resp.Header = &etcdserverpb.ResponseHeader{Revision: w.rev}
	return resp, nil
}

// txnPlan is the branch a txn takes, with the plans of the nested txns on
// that branch (nested[i] belongs to ops[i]).
type txnPlan struct {
	succeeded bool
	ops       []*etcdserverpb.RequestOp
	nested    []*txnPlan
}

func planTxn(v *view, req *etcdserverpb.TxnRequest) (*txnPlan, error) {
	ok, err := v.compareAll(req.GetCompare())
	if err != nil {
		return nil, err
	}
	p := &txnPlan{succeeded: ok, ops: req.GetSuccess()}
	if !ok {
		p.ops = req.GetFailure()
	}
	p.nested = make([]*txnPlan, len(p.ops))
	for i, op := range p.ops {
		if t := op.GetRequestTxn(); t != nil {
			if p.nested[i], err = planTxn(v, t); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// pathWrite is a write met on the executed path while checking it: a put
// of key, or a delete of span.
type pathWrite struct {
	put bool
	key []byte
	del span
}

// pathCheck is what checkPlan gathers beyond etcd's checks: the writes on
// the path so far, and the first put with ignore_value or ignore_lease of a
// key an earlier op deleted (reported only if etcd's checks all pass).
type pathCheck struct {
	writes     []pathWrite
	deletedPut error
}

// checkPlan validates the ops on the executed path against the state before
// the txn, in etcd's order, stopping at the first error.
//
// w checks the puts; a read-only txn (see ReadTxn) has none and passes nil.
func checkPlan(before *view, w *Writer, p *txnPlan, pc *pathCheck) error {
	for i, op := range p.ops {
		switch r := op.GetRequest().(type) {
		case *etcdserverpb.RequestOp_RequestRange:
			if r.RequestRange == nil {
				return errEmptyOp()
			}
			if err := checkRangeRevision(before, r.RequestRange); err != nil {
				return err
			}
		case *etcdserverpb.RequestOp_RequestPut:
			if r.RequestPut == nil || w == nil {
				return errEmptyOp()
			}
			if _, err := w.checkPut(before, r.RequestPut); err != nil {
				return err
			}
			if pc.deletedPut == nil {
				pc.deletedPut = checkDeletedOnPath(r.RequestPut, pc.writes)
			}
			pc.writes = append(pc.writes, pathWrite{put: true, key: r.RequestPut.GetKey()})
		case *etcdserverpb.RequestOp_RequestDeleteRange:
			if r.RequestDeleteRange == nil {
				return errEmptyOp()
			}
			pc.writes = append(pc.writes, pathWrite{del: spanOf(r.RequestDeleteRange.GetKey(), r.RequestDeleteRange.GetRangeEnd())})
		case *etcdserverpb.RequestOp_RequestTxn:
			if p.nested[i] == nil {
				return errEmptyOp()
			}
			if err := checkPlan(before, w, p.nested[i], pc); err != nil {
				return err
			}
		default:
			return errEmptyOp()
		}
	}
	return nil
}

func errEmptyOp() error { return fmt.Errorf("%w: txn holds an empty request op", ErrKeyNotFound) }

// checkRangeRevision is etcd's pre-execution check of a range in a txn. It
// differs from the check at execution time: a negative revision below the
// compact revision is refused here.
func checkRangeRevision(before *view, req *etcdserverpb.RangeRequest) error {
	if err := checkSortOptions(req); err != nil {
		return err
	}
	switch rev := req.GetRevision(); {
	case rev == 0:
		return nil
	case rev > before.rev:
		return fmt.Errorf("%w: range at revision %d, current revision is %d", ErrFutureRev, rev, before.rev)
	case rev < before.compactRev:
		return fmt.Errorf("%w: range at revision %d, compacted at %d", ErrCompacted, rev, before.compactRev)
	}
	return nil
}

// checkDeletedOnPath refuses a put with ignore_value or ignore_lease of a
// key that an earlier op on the path deleted. CheckTxn rejects such txns
// before they reach raft (etcd would crash applying one); refusing it here
// keeps a txn that bypassed CheckTxn from being half-applied.
func checkDeletedOnPath(req *etcdserverpb.PutRequest, writes []pathWrite) error {
	if !req.GetIgnoreValue() && !req.GetIgnoreLease() {
		return nil
	}
	key := req.GetKey()
	for i := len(writes) - 1; i >= 0; i-- {
		wr := writes[i]
		if wr.put {
			if bytes.Equal(wr.key, key) {
				return nil
			}
			continue
		}
		if wr.del.contains(key) {
			return fmt.Errorf("%w: put with ignore_value or ignore_lease of key %q deleted earlier in the txn", ErrKeyNotFound, key)
		}
	}
	return nil
}

func (sp span) contains(k []byte) bool {
	if sp.single {
		return bytes.Equal(k, sp.key)
	}
	return bytes.Compare(k, sp.key) >= 0 && (sp.end == nil || bytes.Compare(k, sp.end) < 0)
}

// execPlan runs the ops of a checked plan, filling resp.
func (w *Writer) execPlan(p *txnPlan, resp *etcdserverpb.TxnResponse) error {
	resp.Succeeded = p.succeeded
	resp.Responses = make([]*etcdserverpb.ResponseOp, len(p.ops))
	for i, op := range p.ops {
		out := &etcdserverpb.ResponseOp{}
		switch r := op.GetRequest().(type) {
		case *etcdserverpb.RequestOp_RequestRange:
			rr, err := w.view().execRange(r.RequestRange)
			if err != nil {
				return w.fail(err)
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *etcdserverpb.RequestOp_RequestPut:
			prev, err := w.view().latest(r.RequestPut.GetKey())
			if err != nil {
				return w.fail(err)
			}
			pr, err := w.put(r.RequestPut, prev)
			if err != nil {
				return err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponsePut{ResponsePut: pr}
		case *etcdserverpb.RequestOp_RequestDeleteRange:
			dr, err := w.deleteRange(r.RequestDeleteRange)
			if err != nil {
				return err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}
		case *etcdserverpb.RequestOp_RequestTxn:
			// etcd leaves the header of a nested txn response empty.
			tr := &etcdserverpb.TxnResponse{Header: &etcdserverpb.ResponseHeader{}}
			if err := w.execPlan(p.nested[i], tr); err != nil {
				return err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseTxn{ResponseTxn: tr}
		}
		resp.Responses[i] = out
	}
	return nil
}

// compareAll reports whether every compare holds.
func (v *view) compareAll(cmps []*etcdserverpb.Compare) (bool, error) {
	for _, c := range cmps {
		ok, err := v.compare(c)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// compare evaluates one compare: every live key in its range must satisfy
// it. With no live key, the compare is made against a zero key-value
// (version, revisions and lease 0), except that a value compare fails.
func (v *view) compare(c *etcdserverpb.Compare) (bool, error) {
	rr, err := v.rangeKeys(spanOf(c.GetKey(), c.GetRangeEnd()), 0, 0, false)
	if err != nil {
		return false, err
	}
	if len(rr.kvs) == 0 {
		if c.GetTarget() == etcdserverpb.Compare_VALUE {
			return false, nil
		}
		return compareKV(c, &mvccpb.KeyValue{}), nil
	}
	for _, kv := range rr.kvs {
		if !compareKV(c, kv) {
			return false, nil
		}
	}
	return true, nil
}

// compareKV applies c to kv. A target_union that does not match the target
// compares against zero; an unknown result holds.
func compareKV(c *etcdserverpb.Compare, kv *mvccpb.KeyValue) bool {
	var result int
	switch c.GetTarget() {
	case etcdserverpb.Compare_VALUE:
		var want []byte
		if u, ok := c.GetTargetUnion().(*etcdserverpb.Compare_Value); ok {
			want = u.Value
		}
		result = bytes.Compare(kv.Value, want)
	case etcdserverpb.Compare_CREATE:
		var want int64
		if u, ok := c.GetTargetUnion().(*etcdserverpb.Compare_CreateRevision); ok {
			want = u.CreateRevision
		}
		result = cmpInt64(kv.CreateRevision, want)
	case etcdserverpb.Compare_MOD:
		var want int64
		if u, ok := c.GetTargetUnion().(*etcdserverpb.Compare_ModRevision); ok {
			want = u.ModRevision
		}
		result = cmpInt64(kv.ModRevision, want)
	case etcdserverpb.Compare_VERSION:
		var want int64
		if u, ok := c.GetTargetUnion().(*etcdserverpb.Compare_Version); ok {
			want = u.Version
		}
		result = cmpInt64(kv.Version, want)
	case etcdserverpb.Compare_LEASE:
		var want int64
		if u, ok := c.GetTargetUnion().(*etcdserverpb.Compare_Lease); ok {
			want = u.Lease
		}
		result = cmpInt64(kv.Lease, want)
	}
	switch c.GetResult() {
	case etcdserverpb.Compare_EQUAL:
		return result == 0
	case etcdserverpb.Compare_NOT_EQUAL:
		return result != 0
	case etcdserverpb.Compare_GREATER:
		return result > 0
	case etcdserverpb.Compare_LESS:
		return result < 0
	}
	return true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
