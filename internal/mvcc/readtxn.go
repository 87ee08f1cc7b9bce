package mvcc

import (
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// IsReadOnlyTxn reports whether no branch of req, nested txns included,
// writes anything. Such a txn needs no raft round: it is served like a read.
func IsReadOnlyTxn(req *etcdserverpb.TxnRequest) bool {
	for _, ops := range [][]*etcdserverpb.RequestOp{req.GetSuccess(), req.GetFailure()} {
		for _, op := range ops {
			switch r := op.GetRequest().(type) {
			case *etcdserverpb.RequestOp_RequestRange:
			case *etcdserverpb.RequestOp_RequestTxn:
				if !IsReadOnlyTxn(r.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// ReadTxn evaluates a read-only txn (see IsReadOnlyTxn) against one
// consistent snapshot of committed state, with the same answers applying it
// through a Writer would give.
func (s *Store) ReadTxn(req *etcdserverpb.TxnRequest) (*etcdserverpb.TxnResponse, error) {
	v, release := s.committedView()
	defer release()
	p, err := planTxn(v, req)
	if err != nil {
		return nil, err
	}
	if err := checkPlan(v, nil, p, &pathCheck{}); err != nil {
		return nil, err
	}
	resp := &etcdserverpb.TxnResponse{Header: &etcdserverpb.ResponseHeader{Revision: v.rev}}
	if err := execReadPlan(v, p, resp); err != nil {
		return nil, err
	}
	s.countTxn(p)
	return resp, nil
}

func execReadPlan(v *view, p *txnPlan, resp *etcdserverpb.TxnResponse) error {
	resp.Succeeded = p.succeeded
	resp.Responses = make([]*etcdserverpb.ResponseOp, len(p.ops))
	for i, op := range p.ops {
		out := &etcdserverpb.ResponseOp{}
		switch r := op.GetRequest().(type) {
		case *etcdserverpb.RequestOp_RequestRange:
			rr, err := v.execRange(r.RequestRange)
			if err != nil {
				return err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *etcdserverpb.RequestOp_RequestTxn:
			tr := &etcdserverpb.TxnResponse{Header: &etcdserverpb.ResponseHeader{}}
			if err := execReadPlan(v, p.nested[i], tr); err != nil {
				return err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseTxn{ResponseTxn: tr}
		}
		resp.Responses[i] = out
	}
	return nil
}
