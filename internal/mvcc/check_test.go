package mvcc

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

func opPut(k string) *etcdserverpb.RequestOp {
	return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte(k)}}}
}

func opDel(k, end string) *etcdserverpb.RequestOp {
	d := &etcdserverpb.DeleteRangeRequest{Key: []byte(k)}
	if end != "" {
		d.RangeEnd = []byte(end)
	}
	return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestDeleteRange{RequestDeleteRange: d}}
}

func opGet(k string) *etcdserverpb.RequestOp {
	return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: &etcdserverpb.RangeRequest{Key: []byte(k)}}}
}

func opTxn(then, els []*etcdserverpb.RequestOp) *etcdserverpb.RequestOp {
	return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestTxn{RequestTxn: &etcdserverpb.TxnRequest{Success: then, Failure: els}}}
}

func ops(o ...*etcdserverpb.RequestOp) []*etcdserverpb.RequestOp { return o }

func TestCheckTxnFollowsEtcdRules(t *testing.T) {
	cmp := &etcdserverpb.Compare{Key: []byte("k")}
	tests := []struct {
		name    string
		req     *etcdserverpb.TxnRequest
		maxOps  int
		wantErr error
	}{
		{"ops within limit", &etcdserverpb.TxnRequest{Compare: []*etcdserverpb.Compare{cmp, cmp}, Success: ops(opPut("a"), opPut("b"))}, 2, nil},
		{"compares count towards the limit", &etcdserverpb.TxnRequest{Compare: []*etcdserverpb.Compare{cmp, cmp, cmp}}, 2, ErrTooManyOps},
		{"branches are counted separately", &etcdserverpb.TxnRequest{Success: ops(opPut("a"), opPut("b")), Failure: ops(opPut("c"), opPut("d"))}, 2, nil},
		{"nested txn gets what its parent leaves", &etcdserverpb.TxnRequest{Success: ops(opGet("a"), opTxn(ops(opGet("b"), opGet("c")), nil))}, 3, ErrTooManyOps},
		{"nested txn within what its parent leaves", &etcdserverpb.TxnRequest{Success: ops(opGet("a"), opTxn(ops(opGet("b")), nil))}, 3, nil},
		{"compare without key", &etcdserverpb.TxnRequest{Compare: []*etcdserverpb.Compare{{}}}, 10, ErrEmptyKey},
		{"empty op", &etcdserverpb.TxnRequest{Success: ops(&etcdserverpb.RequestOp{})}, 10, ErrKeyNotFound},
		{"nil nested txn", &etcdserverpb.TxnRequest{Success: ops(&etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestTxn{}})}, 10, ErrKeyNotFound},
		{"put with ignore_value and a value", &etcdserverpb.TxnRequest{Failure: ops(&etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}}})}, 10, ErrValueProvided},
		{"put with ignore_lease and a lease", &etcdserverpb.TxnRequest{Success: ops(&etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte("a"), Lease: 1, IgnoreLease: true}}})}, 10, ErrLeaseProvided},
		{"range with unknown sort target", &etcdserverpb.TxnRequest{Success: ops(&etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: &etcdserverpb.RangeRequest{Key: []byte("a"), SortTarget: 42}}})}, 10, ErrInvalidSortOption},
		{"delete without key", &etcdserverpb.TxnRequest{Success: ops(opDel("", ""))}, 10, ErrEmptyKey},
		{"too many ops is reported before duplicates", &etcdserverpb.TxnRequest{Success: ops(opPut("a"), opPut("a"))}, 1, ErrTooManyOps},

		{"same key put twice", &etcdserverpb.TxnRequest{Success: ops(opPut("a"), opPut("a"))}, 10, ErrDuplicateKey},
		{"put and delete of one key", &etcdserverpb.TxnRequest{Success: ops(opPut("a"), opDel("a", ""))}, 10, ErrDuplicateKey},
		{"delete before put of one key", &etcdserverpb.TxnRequest{Failure: ops(opDel("a", ""), opPut("a"))}, 10, ErrDuplicateKey},
		{"put inside deleted range", &etcdserverpb.TxnRequest{Success: ops(opDel("a", "c"), opPut("b"))}, 10, ErrDuplicateKey},
		{"put at deleted range end", &etcdserverpb.TxnRequest{Success: ops(opDel("a", "c"), opPut("c"))}, 10, nil},
		{"from-key delete conflicts with nothing", &etcdserverpb.TxnRequest{Success: ops(opDel("a", "\x00"), opPut("b"))}, 10, nil},
		{"two deletes of one key", &etcdserverpb.TxnRequest{Success: ops(opDel("a", ""), opDel("a", "b"))}, 10, nil},
		{"same key in success and failure", &etcdserverpb.TxnRequest{Success: ops(opPut("a")), Failure: ops(opPut("a"))}, 10, nil},
		{"same key in then and else of a nested txn", &etcdserverpb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), ops(opPut("a"))))}, 10, nil},
		{"nested put and outer put", &etcdserverpb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), nil), opPut("a"))}, 10, ErrDuplicateKey},
		{"outer put before nested put", &etcdserverpb.TxnRequest{Success: ops(opPut("a"), opTxn(nil, ops(opPut("a"))))}, 10, ErrDuplicateKey},
		{"nested put inside outer delete", &etcdserverpb.TxnRequest{Success: ops(opTxn(ops(opPut("b")), nil), opDel("a", "c"))}, 10, ErrDuplicateKey},
		{"puts in two nested txns", &etcdserverpb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), nil), opTxn(nil, ops(opPut("a"))))}, 10, ErrDuplicateKey},
		{"nested delete then nested put", &etcdserverpb.TxnRequest{Success: ops(opTxn(ops(opDel("a", "")), nil), opTxn(ops(opPut("a")), nil))}, 10, ErrDuplicateKey},
		{"nested put then nested delete is not checked", &etcdserverpb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), nil), opTxn(ops(opDel("a", "")), nil))}, 10, nil},
		{"nested delete then outer put", &etcdserverpb.TxnRequest{Success: ops(opTxn(nil, ops(opDel("a", "b"))), opPut("a"))}, 10, ErrDuplicateKey},
		{"else put against earlier nested then put", &etcdserverpb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), nil), opTxn(ops(opPut("b")), ops(opPut("a"))))}, 10, ErrDuplicateKey},
		{"deeply nested duplicate", &etcdserverpb.TxnRequest{Failure: ops(opTxn(ops(opTxn(ops(opPut("x"), opPut("x")), nil)), nil))}, 10, ErrDuplicateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckTxn(tt.req, tt.maxOps); !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckTxn: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestCheckPutAndRangeAndDelete(t *testing.T) {
	if err := CheckPut(&etcdserverpb.PutRequest{}); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("put without key: %v", err)
	}
	if err := CheckPut(&etcdserverpb.PutRequest{Key: []byte("a"), IgnoreValue: true, IgnoreLease: true}); err != nil {
		t.Errorf("put with both ignores: %v", err)
	}
	if err := CheckRange(&etcdserverpb.RangeRequest{Key: []byte("a"), SortOrder: 3}); !errors.Is(err, ErrInvalidSortOption) {
		t.Errorf("range with unknown sort order: %v", err)
	}
	if err := CheckRange(&etcdserverpb.RangeRequest{RangeEnd: []byte{0}}); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("range without key: %v", err)
	}
	if err := CheckDeleteRange(&etcdserverpb.DeleteRangeRequest{Key: []byte("a")}); err != nil {
		t.Errorf("delete: %v", err)
	}
}
