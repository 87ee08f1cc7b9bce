package mvcc

import (
	"bytes"
	"sort"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// model is the specification the store is tested against: etcd's KV
// semantics over a plain list of every change ever made, with no storage
// layout, no compaction of data and no optimisations. Reads recompute the
// state from the whole list.
type model struct {
	rev, compactRev int64
	recs            []modelRec
	events          []*mvccpb.Event
	pending         int64 // changes made by the request being applied
}

// modelRec is one change; kv is nil for a deletion.
type modelRec struct {
	main int64
	key  string
	kv   *mvccpb.KeyValue
}

func newModel() *model { return &model{rev: 1, compactRev: -1} }

func (m *model) clone() *model {
	c := *m
	c.recs = append([]modelRec(nil), m.recs...)
	c.events = append([]*mvccpb.Event(nil), m.events...)
	return &c
}

// viewRev is the revision reads see: the one being written once the
// request in progress changed something.
func (m *model) viewRev() int64 {
	if m.pending > 0 {
		return m.rev + 1
	}
	return m.rev
}

// inRange is etcd's key/range_end interpretation.
func inRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

// liveAt returns copies of the live kvs in range at rev, in key order.
func (m *model) liveAt(rev int64, key, end []byte) []*mvccpb.KeyValue {
	last := map[string]*mvccpb.KeyValue{}
	seen := map[string]bool{}
	for _, r := range m.recs {
		if r.main > rev || !inRange([]byte(r.key), key, end) {
			continue
		}
		last[r.key] = r.kv
		seen[r.key] = true
	}
	var out []*mvccpb.KeyValue
	for k := range seen {
		if kv := last[k]; kv != nil {
			out = append(out, proto.Clone(kv).(*mvccpb.KeyValue))
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	return out
}

func (m *model) get(key []byte) *mvccpb.KeyValue {
	kvs := m.liveAt(m.viewRev(), key, nil)
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0]
}

func (m *model) Range(req *etcdserverpb.RangeRequest) (*etcdserverpb.RangeResponse, error) {
	if _, ok := etcdserverpb.RangeRequest_SortOrder_name[int32(req.SortOrder)]; !ok {
		return nil, ErrInvalidSortOption
	}
	if _, ok := etcdserverpb.RangeRequest_SortTarget_name[int32(req.SortTarget)]; !ok {
		return nil, ErrInvalidSortOption
	}
	cur := m.viewRev()
	rev := req.Revision
	if rev > cur {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = cur
	}
	if rev < m.compactRev {
		return nil, ErrCompacted
	}
	kvs := m.liveAt(rev, req.Key, req.RangeEnd)
	resp := &etcdserverpb.RangeResponse{Header: &etcdserverpb.ResponseHeader{Revision: cur}, Count: int64(len(kvs))}
	if req.CountOnly {
		return resp, nil
	}
	if req.KeysOnly && req.SortTarget != etcdserverpb.RangeRequest_VALUE {
		for _, kv := range kvs {
			kv.Value, kv.Lease = nil, 0
		}
	}
	var kept []*mvccpb.KeyValue
	for _, kv := range kvs {
		if (req.MaxModRevision != 0 && kv.ModRevision > req.MaxModRevision) ||
			(req.MinModRevision != 0 && kv.ModRevision < req.MinModRevision) ||
			(req.MaxCreateRevision != 0 && kv.CreateRevision > req.MaxCreateRevision) ||
			(req.MinCreateRevision != 0 && kv.CreateRevision < req.MinCreateRevision) {
			continue
		}
		kept = append(kept, kv)
	}
	// etcd takes only limit+1 keys from storage when the requested order
	// is NONE, then sorts those: a non-key target with order NONE sorts
	// just that prefix.
	if req.SortOrder == etcdserverpb.RangeRequest_NONE && req.Limit > 0 &&
		req.MinModRevision == 0 && req.MaxModRevision == 0 && req.MinCreateRevision == 0 && req.MaxCreateRevision == 0 &&
		int64(len(kept)) > req.Limit+1 {
		kept = kept[:req.Limit+1]
	}
	order := req.SortOrder
	if req.SortTarget != etcdserverpb.RangeRequest_KEY && order == etcdserverpb.RangeRequest_NONE {
		order = etcdserverpb.RangeRequest_ASCEND
	}
	// etcd sorts with the unstable sort.Sort; ties come out in its order.
	s := modelSort{kept, req.SortTarget}
	switch {
	case req.SortTarget == etcdserverpb.RangeRequest_KEY && order != etcdserverpb.RangeRequest_DESCEND:
	case order == etcdserverpb.RangeRequest_ASCEND:
		sort.Sort(s)
	case order == etcdserverpb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(s))
	}
	if req.Limit > 0 && int64(len(kept)) > req.Limit {
		kept = kept[:req.Limit]
		resp.More = true
	}
	if req.KeysOnly {
		for _, kv := range kept {
			kv.Value = nil
		}
	}
	resp.Kvs = kept
	return resp, nil
}

type modelSort struct {
	kvs    []*mvccpb.KeyValue
	target etcdserverpb.RangeRequest_SortTarget
}

func (s modelSort) Len() int      { return len(s.kvs) }
func (s modelSort) Swap(i, j int) { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }
func (s modelSort) Less(i, j int) bool {
	a, b := s.kvs[i], s.kvs[j]
	switch s.target {
	case etcdserverpb.RangeRequest_KEY:
		return bytes.Compare(a.Key, b.Key) < 0
	case etcdserverpb.RangeRequest_VERSION:
		return a.Version < b.Version
	case etcdserverpb.RangeRequest_CREATE:
		return a.CreateRevision < b.CreateRevision
	case etcdserverpb.RangeRequest_MOD:
		return a.ModRevision < b.ModRevision
	default:
		return bytes.Compare(a.Value, b.Value) < 0
	}
}

func (m *model) finish() {
	if m.pending > 0 {
		m.rev++
		m.pending = 0
	}
}

func (m *model) Put(req *etcdserverpb.PutRequest) (*etcdserverpb.PutResponse, error) {
	m.pending = 0
	prev := m.get(req.Key)
	if prev == nil && (req.IgnoreValue || req.IgnoreLease) {
		return nil, ErrKeyNotFound
	}
	resp := m.put(req, prev)
	m.finish()
	return resp, nil
}

func (m *model) put(req *etcdserverpb.PutRequest, prev *mvccpb.KeyValue) *etcdserverpb.PutResponse {
	main := m.rev + 1
	kv := &mvccpb.KeyValue{Key: req.Key, Value: req.Value, CreateRevision: main, ModRevision: main, Version: 1, Lease: req.Lease}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		if req.IgnoreValue {
			kv.Value = prev.Value
		}
		if req.IgnoreLease {
			kv.Lease = prev.Lease
		}
	}
	kv = proto.Clone(kv).(*mvccpb.KeyValue)
	m.recs = append(m.recs, modelRec{main: main, key: string(req.Key), kv: kv})
	m.events = append(m.events, &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv, PrevKv: prev})
	m.pending++
	resp := &etcdserverpb.PutResponse{Header: &etcdserverpb.ResponseHeader{Revision: main}}
	if req.PrevKv {
		resp.PrevKv = prev
	}
	return resp
}

func (m *model) DeleteRange(req *etcdserverpb.DeleteRangeRequest) (*etcdserverpb.DeleteRangeResponse, error) {
	m.pending = 0
	resp := m.deleteRange(req)
	m.finish()
	return resp, nil
}

func (m *model) deleteRange(req *etcdserverpb.DeleteRangeRequest) *etcdserverpb.DeleteRangeResponse {
	kvs := m.liveAt(m.viewRev(), req.Key, req.RangeEnd)
	main := m.rev + 1
	for _, kv := range kvs {
		m.recs = append(m.recs, modelRec{main: main, key: string(kv.Key)})
		m.events = append(m.events, &mvccpb.Event{
			Type:   mvccpb.Event_DELETE,
			Kv:     &mvccpb.KeyValue{Key: kv.Key, ModRevision: main},
			PrevKv: kv,
		})
		m.pending++
	}
	resp := &etcdserverpb.DeleteRangeResponse{Header: &etcdserverpb.ResponseHeader{Revision: m.viewRev()}, Deleted: int64(len(kvs))}
	if req.PrevKv {
		for _, kv := range kvs {
			resp.PrevKvs = append(resp.PrevKvs, proto.Clone(kv).(*mvccpb.KeyValue))
		}
	}
	return resp
}

func (m *model) Compact(req *etcdserverpb.CompactionRequest) (*etcdserverpb.CompactionResponse, error) {
	m.pending = 0
	switch {
	case req.Revision <= m.compactRev:
		return nil, ErrCompacted
	case req.Revision > m.rev:
		return nil, ErrFutureRev
	}
	m.compactRev = req.Revision
	return &etcdserverpb.CompactionResponse{Header: &etcdserverpb.ResponseHeader{Revision: m.rev}}, nil
}

// Txn works on a copy of the model that is adopted only on success, so a
// failing txn changes nothing.
func (m *model) Txn(req *etcdserverpb.TxnRequest) (*etcdserverpb.TxnResponse, error) {
	m.pending = 0
	c := m.clone()
	resp, err := c.txn(req)
	if err != nil {
		return nil, err
	}
	*m = *c
	return resp, nil
}

// modelPath records which branch each txn on the executed path took, in
// the order the txns are met (depth first).
type modelPath struct{ taken []bool }

func (m *model) choose(req *etcdserverpb.TxnRequest, p *modelPath) {
	ok := true
	for _, c := range req.Compare {
		if !m.compare(c) {
			ok = false
			break
		}
	}
	p.taken = append(p.taken, ok)
	ops := req.Success
	if !ok {
		ops = req.Failure
	}
	for _, op := range ops {
		if t := op.GetRequestTxn(); t != nil {
			m.choose(t, p)
		}
	}
}

func (m *model) compare(c *etcdserverpb.Compare) bool {
	kvs := m.liveAt(m.viewRev(), c.Key, c.RangeEnd)
	if len(kvs) == 0 {
		if c.Target == etcdserverpb.Compare_VALUE {
			return false
		}
		kvs = []*mvccpb.KeyValue{{}}
	}
	for _, kv := range kvs {
		var got, want int64
		var cmp int
		switch c.Target {
		case etcdserverpb.Compare_VALUE:
			cmp = bytes.Compare(kv.Value, c.GetValue())
		case etcdserverpb.Compare_VERSION:
			got, want = kv.Version, c.GetVersion()
		case etcdserverpb.Compare_CREATE:
			got, want = kv.CreateRevision, c.GetCreateRevision()
		case etcdserverpb.Compare_MOD:
			got, want = kv.ModRevision, c.GetModRevision()
		case etcdserverpb.Compare_LEASE:
			got, want = kv.Lease, c.GetLease()
		}
		if c.Target != etcdserverpb.Compare_VALUE {
			switch {
			case got < want:
				cmp = -1
			case got > want:
				cmp = 1
			}
		}
		var ok bool
		switch c.Result {
		case etcdserverpb.Compare_EQUAL:
			ok = cmp == 0
		case etcdserverpb.Compare_NOT_EQUAL:
			ok = cmp != 0
		case etcdserverpb.Compare_GREATER:
			ok = cmp > 0
		case etcdserverpb.Compare_LESS:
			ok = cmp < 0
		}
		if !ok {
			return false
		}
	}
	return true
}

func (m *model) txn(req *etcdserverpb.TxnRequest) (*etcdserverpb.TxnResponse, error) {
	var p modelPath
	m.choose(req, &p)
	i := 0
	if err := m.checkTxn(req, p.taken, &i); err != nil {
		return nil, err
	}
	i = 0
	resp := &etcdserverpb.TxnResponse{}
	if err := m.execTxn(req, p.taken, &i, resp); err != nil {
		return nil, err
	}
	m.finish()
	resp.Header = &etcdserverpb.ResponseHeader{Revision: m.rev}
	return resp, nil
}

func branch(req *etcdserverpb.TxnRequest, taken []bool, i *int) []*etcdserverpb.RequestOp {
	ok := taken[*i]
	*i++
	if ok {
		return req.Success
	}
	return req.Failure
}

// checkTxn validates the executed path against the state before the txn.
func (m *model) checkTxn(req *etcdserverpb.TxnRequest, taken []bool, i *int) error {
	for _, op := range branch(req, taken, i) {
		switch {
		case op.GetRequestRange() != nil:
			r := op.GetRequestRange()
			if _, ok := etcdserverpb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
				return ErrInvalidSortOption
			}
			if _, ok := etcdserverpb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
				return ErrInvalidSortOption
			}
			switch {
			case r.Revision == 0:
			case r.Revision > m.rev:
				return ErrFutureRev
			case r.Revision < m.compactRev:
				return ErrCompacted
			}
		case op.GetRequestPut() != nil:
			r := op.GetRequestPut()
			if (r.IgnoreValue || r.IgnoreLease) && m.get(r.Key) == nil {
				return ErrKeyNotFound
			}
		case op.GetRequestTxn() != nil:
			if err := m.checkTxn(op.GetRequestTxn(), taken, i); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *model) execTxn(req *etcdserverpb.TxnRequest, taken []bool, i *int, resp *etcdserverpb.TxnResponse) error {
	ops := branch(req, taken, i)
	resp.Succeeded = taken[*i-1]
	for _, op := range ops {
		out := &etcdserverpb.ResponseOp{}
		switch {
		case op.GetRequestRange() != nil:
			r, err := m.Range(op.GetRequestRange())
			if err != nil {
				return err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: r}
		case op.GetRequestPut() != nil:
			r := op.GetRequestPut()
			prev := m.get(r.Key)
			if prev == nil && (r.IgnoreValue || r.IgnoreLease) {
				// etcd would crash here; Kvorum refuses the txn.
				return ErrKeyNotFound
			}
			out.Response = &etcdserverpb.ResponseOp_ResponsePut{ResponsePut: m.put(r, prev)}
		case op.GetRequestDeleteRange() != nil:
			out.Response = &etcdserverpb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: m.deleteRange(op.GetRequestDeleteRange())}
		case op.GetRequestTxn() != nil:
			tr := &etcdserverpb.TxnResponse{Header: &etcdserverpb.ResponseHeader{}}
			if err := m.execTxn(op.GetRequestTxn(), taken, i, tr); err != nil {
				return err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseTxn{ResponseTxn: tr}
		}
		resp.Responses = append(resp.Responses, out)
	}
	return nil
}
