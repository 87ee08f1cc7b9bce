package mvcc

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The checks below are the validation etcd makes at its API layer, before a
// request is proposed to raft. They need no state.

// CheckRange validates a range request: a key is required and the sort
// options must be known values.
func CheckRange(req *etcdserverpb.RangeRequest) error {
	if len(req.GetKey()) == 0 {
		return fmt.Errorf("%w: range", ErrEmptyKey)
	}
	return checkSortOptions(req)
}

// CheckPut validates a put request: a key is required, and ignore_value and
// ignore_lease exclude giving a value or a lease.
func CheckPut(req *etcdserverpb.PutRequest) error {
	switch {
	case len(req.GetKey()) == 0:
		return fmt.Errorf("%w: put", ErrEmptyKey)
	case req.GetIgnoreValue() && len(req.GetValue()) != 0:
		return fmt.Errorf("%w: put of key %q with ignore_value", ErrValueProvided, req.GetKey())
	case req.GetIgnoreLease() && req.GetLease() != 0:
		return fmt.Errorf("%w: put of key %q with ignore_lease", ErrLeaseProvided, req.GetKey())
	}
	return nil
}

// CheckDeleteRange validates a delete request: a key is required.
func CheckDeleteRange(req *etcdserverpb.DeleteRangeRequest) error {
	if len(req.GetKey()) == 0 {
		return fmt.Errorf("%w: delete range", ErrEmptyKey)
	}
	return nil
}

// CheckTxn validates a txn request as etcd does before proposing it:
//
//   - Size: a txn's own op count is the largest of its numbers of compares,
//     success ops and failure ops; it must not exceed maxOps, and a nested
//     txn is held to what its parent leaves (maxOps minus the parent's
//     count). Compares need a key, ops are checked like the requests they
//     hold, and an empty op is ErrKeyNotFound.
//   - Duplicate keys (ErrDuplicateKey), checked separately on the success
//     and the failure ops: no key may be put twice, or put and deleted, on
//     one path. Puts in the then and else branches of one nested txn may
//     share keys (only one branch runs). A put is compared with the deletes
//     of its own level, with those of nested txns that come before its own
//     nested txn, and, at its level, with the deletes of every nested txn.
//     A delete with range_end "\x00" (every key from key on) conflicts with
//     no put, as in etcd.
func CheckTxn(req *etcdserverpb.TxnRequest, maxOps int) error {
	if err := checkTxnOps(req, maxOps); err != nil {
		return err
	}
	if _, _, err := txnWriteSets(req.GetSuccess()); err != nil {
		return err
	}
	_, _, err := txnWriteSets(req.GetFailure())
	return err
}

func checkTxnOps(req *etcdserverpb.TxnRequest, maxOps int) error {
	opc := max(len(req.GetCompare()), len(req.GetSuccess()), len(req.GetFailure()))
	if opc > maxOps {
		return fmt.Errorf("%w: %d ops, at most %d allowed", ErrTooManyOps, opc, maxOps)
	}
	for _, c := range req.GetCompare() {
		if len(c.GetKey()) == 0 {
			return fmt.Errorf("%w: txn compare", ErrEmptyKey)
		}
	}
	for _, ops := range [][]*etcdserverpb.RequestOp{req.GetSuccess(), req.GetFailure()} {
		for _, op := range ops {
			if err := checkRequestOp(op, maxOps-opc); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRequestOp(op *etcdserverpb.RequestOp, maxOps int) error {
	switch r := op.GetRequest().(type) {
	case *etcdserverpb.RequestOp_RequestRange:
		return CheckRange(r.RequestRange)
	case *etcdserverpb.RequestOp_RequestPut:
		return CheckPut(r.RequestPut)
	case *etcdserverpb.RequestOp_RequestDeleteRange:
		return CheckDeleteRange(r.RequestDeleteRange)
	case *etcdserverpb.RequestOp_RequestTxn:
		if r.RequestTxn == nil {
			return errEmptyOp()
		}
		return checkTxnOps(r.RequestTxn, maxOps)
	default:
		return errEmptyOp()
	}
}

// deleted is a delete op's key interval as etcd's duplicate check sees it:
// one key, or [begin, end) compared bytewise. A range whose end is "\x00"
// (or not after begin) contains no key.
type deleted struct {
	begin, end string
	point      bool
}

func (d deleted) covers(k string) bool {
	if d.point {
		return k == d.begin
	}
	return d.begin <= k && k < d.end
}

func coveredBy(dels []deleted, k string) bool {
	for _, d := range dels {
		if d.covers(k) {
			return true
		}
	}
	return false
}

// txnWriteSets returns the keys put and the intervals deleted by ops and
// their nested txns (both branches), or ErrDuplicateKey.
func txnWriteSets(ops []*etcdserverpb.RequestOp) (map[string]struct{}, []deleted, error) {
	var dels []deleted
	for _, op := range ops {
		d := op.GetRequestDeleteRange()
		if d == nil {
			continue
		}
		if len(d.GetRangeEnd()) == 0 {
			dels = append(dels, deleted{begin: string(d.GetKey()), point: true})
		} else {
			dels = append(dels, deleted{begin: string(d.GetKey()), end: string(d.GetRangeEnd())})
		}
	}

	puts := make(map[string]struct{})
	for _, op := range ops {
		t, ok := op.GetRequest().(*etcdserverpb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		putsThen, delsThen, err := txnWriteSets(t.RequestTxn.GetSuccess())
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := txnWriteSets(t.RequestTxn.GetFailure())
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if _, dup := puts[k]; dup || coveredBy(dels, k) {
				return nil, nil, duplicateKey(k)
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			_, dup := puts[k]
			if _, inThen := putsThen[k]; (dup && !inThen) || coveredBy(dels, k) {
				return nil, nil, duplicateKey(k)
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}

	for _, op := range ops {
		p := op.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.GetKey())
		if _, dup := puts[k]; dup || coveredBy(dels, k) {
			return nil, nil, duplicateKey(k)
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}

func duplicateKey(k string) error { return fmt.Errorf("%w: key %q", ErrDuplicateKey, k) }

// TxnHasPut reports whether any branch of t, nested txns included, puts:
// whether the txn may grow the store.
func TxnHasPut(t *etcdserverpb.TxnRequest) bool {
	for _, ops := range [][]*etcdserverpb.RequestOp{t.GetSuccess(), t.GetFailure()} {
		for _, op := range ops {
			if op.GetRequestPut() != nil {
				return true
			}
			if n := op.GetRequestTxn(); n != nil && TxnHasPut(n) {
				return true
			}
		}
	}
	return false
}
