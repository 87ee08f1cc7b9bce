package ctl

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// Output formats of -w/--write-out.
const (
	formatSimple   = "simple"
	formatJSON     = "json"
	formatFields   = "fields"
	formatTable    = "table"
	formatProtobuf = "protobuf"
)

// printer writes command results in one output format, byte for byte as
// etcdctl v3.7 does. A method returns an exit error (code 4) when its
// format cannot show that result (for example "put -w table").
type printer struct {
	format string
	hex    bool
	// valueOnly is get's --print-value-only: simple output without keys.
	valueOnly bool
	out       io.Writer
	errOut    io.Writer
}

// printer returns the printer selected by the global flags, or an exit
// error for an unknown format.
func (a *app) printer() (*printer, error) {
	switch a.g.writeOut {
	case formatSimple, formatJSON, formatFields, formatTable, formatProtobuf:
		return &printer{format: a.g.writeOut, hex: a.g.hex, out: a.stdout, errOut: a.stderr}, nil
	}
	return nil, failf(ExitBadFeature, "unsupported output format")
}

func (p *printer) unsupported() error {
	return failf(ExitBadFeature, "%s not supported as output format", p.format)
}

// epHealth is the result of checking one endpoint's health.
type epHealth struct {
	Ep     string `json:"endpoint"`
	Health bool   `json:"health"`
	Took   string `json:"took"`
	Error  string `json:"error,omitempty"`
}

// epStatus is the Status answer of one endpoint.
type epStatus struct {
	Ep   string                   `json:"Endpoint"`
	Resp *clientv3.StatusResponse `json:"Status"`
}

// epHashKV is the HashKV answer of one endpoint.
type epHashKV struct {
	Ep   string                   `json:"Endpoint"`
	Resp *clientv3.HashKVResponse `json:"HashKV"`
}

// Put prints the answer to a put.
func (p *printer) Put(r *clientv3.PutResponse) error {
	resp := (*pb.PutResponse)(r)
	switch p.format {
	case formatSimple:
		fmt.Fprintln(p.out, "OK")
		if resp.GetPrevKv() != nil {
			p.simpleKV(resp.GetPrevKv())
		}
		return nil
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
		if resp.GetPrevKv() != nil {
			p.fieldsKV("Prev", resp.GetPrevKv())
		}
		return nil
	case formatJSON:
		return p.json(resp)
	case formatProtobuf:
		return p.protobuf(resp)
	}
	return p.unsupported()
}

// Get prints the answer to a get.
func (p *printer) Get(r *clientv3.GetResponse) error {
	resp := (*pb.RangeResponse)(r)
	switch p.format {
	case formatSimple:
		for _, kv := range resp.GetKvs() {
			p.simpleKV(kv)
		}
		return nil
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
		for _, kv := range resp.GetKvs() {
			p.fieldsKV("", kv)
		}
		fmt.Fprintln(p.out, `"More" :`, resp.GetMore())
		fmt.Fprintln(p.out, `"Count" :`, resp.GetCount())
		return nil
	case formatJSON:
		return p.json(resp)
	case formatProtobuf:
		return p.protobuf(resp)
	}
	return p.unsupported()
}

// Del prints the answer to a del.
func (p *printer) Del(r *clientv3.DeleteResponse) error {
	resp := (*pb.DeleteRangeResponse)(r)
	switch p.format {
	case formatSimple:
		fmt.Fprintln(p.out, resp.GetDeleted())
		for _, kv := range resp.GetPrevKvs() {
			p.simpleKV(kv)
		}
		return nil
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
		fmt.Fprintln(p.out, `"Deleted" :`, resp.GetDeleted())
		for _, kv := range resp.GetPrevKvs() {
			p.fieldsKV("Prev", kv)
		}
		return nil
	case formatJSON:
		return p.json(resp)
	case formatProtobuf:
		return p.protobuf(resp)
	}
	return p.unsupported()
}

// Txn prints the answer to a txn: the outcome, then each operation's
// answer in the format of the matching command.
func (p *printer) Txn(r *clientv3.TxnResponse) error {
	resp := (*pb.TxnResponse)(r)
	switch p.format {
	case formatSimple:
		if resp.GetSucceeded() {
			fmt.Fprintln(p.out, "SUCCESS")
		} else {
			fmt.Fprintln(p.out, "FAILURE")
		}
		for _, op := range resp.GetResponses() {
			fmt.Fprintln(p.out)
			switch v := op.GetResponse().(type) {
			case *pb.ResponseOp_ResponsePut:
				_ = p.Put((*clientv3.PutResponse)(v.ResponsePut))
			case *pb.ResponseOp_ResponseRange:
				_ = p.Get((*clientv3.GetResponse)(v.ResponseRange))
			case *pb.ResponseOp_ResponseDeleteRange:
				_ = p.Del((*clientv3.DeleteResponse)(v.ResponseDeleteRange))
			default:
				fmt.Fprintf(p.out, "unexpected response %+v\n", op)
			}
		}
		return nil
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
		fmt.Fprintln(p.out, `"Succeeded" :`, resp.GetSucceeded())
		for _, op := range resp.GetResponses() {
			switch v := op.GetResponse().(type) {
			case *pb.ResponseOp_ResponsePut:
				_ = p.Put((*clientv3.PutResponse)(v.ResponsePut))
			case *pb.ResponseOp_ResponseRange:
				_ = p.Get((*clientv3.GetResponse)(v.ResponseRange))
			case *pb.ResponseOp_ResponseDeleteRange:
				_ = p.Del((*clientv3.DeleteResponse)(v.ResponseDeleteRange))
			default:
				fmt.Fprintf(p.out, "\"Unknown\" : %q\n", fmt.Sprintf("%+v", v))
			}
		}
		return nil
	case formatJSON:
		return p.json(txnJSON(resp))
	case formatProtobuf:
		return p.protobuf(resp)
	}
	return p.unsupported()
}

// MemberList prints the cluster's members.
func (p *printer) MemberList(r *clientv3.MemberListResponse) error {
	resp := (*pb.MemberListResponse)(r)
	switch p.format {
	case formatSimple:
		p.commaRows(memberListTable(resp).rows)
		return nil
	case formatTable:
		writeTable(p.out, memberListTable(resp))
		return nil
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
		for _, m := range resp.GetMembers() {
			fmt.Fprintln(p.out, `"ID" :`, p.fieldsID(m.GetID()))
			fmt.Fprintf(p.out, "\"Name\" : %q\n", m.GetName())
			for _, u := range m.GetPeerURLs() {
				fmt.Fprintf(p.out, "\"PeerURL\" : %q\n", u)
			}
			for _, u := range m.GetClientURLs() {
				fmt.Fprintf(p.out, "\"ClientURL\" : %q\n", u)
			}
			fmt.Fprintln(p.out, `"IsLearner" :`, m.GetIsLearner())
			fmt.Fprintln(p.out)
		}
		return nil
	case formatJSON:
		if p.hex {
			return p.json(hexMemberList(resp))
		}
		return p.json(resp)
	case formatProtobuf:
		return p.protobuf(resp)
	}
	return p.unsupported()
}

// EndpointHealth prints health check results. In the simple format the
// unhealthy endpoints go to stderr.
func (p *printer) EndpointHealth(hs []epHealth) error {
	switch p.format {
	case formatSimple:
		for _, h := range hs {
			if h.Error == "" {
				fmt.Fprintf(p.out, "%s is healthy: successfully committed proposal: took = %v\n", h.Ep, h.Took)
			} else {
				fmt.Fprintf(p.errOut, "%s is unhealthy: failed to commit proposal: %v\n", h.Ep, h.Error)
			}
		}
		return nil
	case formatTable:
		writeTable(p.out, endpointHealthTable(hs))
		return nil
	case formatFields:
		for _, h := range hs {
			fmt.Fprintf(p.out, "\"Endpoint\" : %q\n", h.Ep)
			fmt.Fprintln(p.out, `"Health" :`, h.Health)
			fmt.Fprintln(p.out, `"Took" :`, h.Took)
			fmt.Fprintln(p.out, `"Error" :`, h.Error)
			fmt.Fprintln(p.out)
		}
		return nil
	case formatJSON:
		return p.json(hs)
	}
	return p.unsupported()
}

// EndpointStatus prints the status of endpoints.
func (p *printer) EndpointStatus(ss []epStatus) error {
	switch p.format {
	case formatSimple:
		p.commaRows(endpointStatusTable(ss).rows)
		return nil
	case formatTable:
		writeTable(p.out, endpointStatusTable(ss))
		return nil
	case formatFields:
		for _, s := range ss {
			resp := (*pb.StatusResponse)(s.Resp)
			p.fieldsHeader(resp.GetHeader())
			fmt.Fprintf(p.out, "\"Version\" : %q\n", resp.GetVersion())
			fmt.Fprintf(p.out, "\"StorageVersion\" : %q\n", resp.GetStorageVersion())
			fmt.Fprintln(p.out, `"DBSize" :`, resp.GetDbSize())
			fmt.Fprintln(p.out, `"DBSizeInUse" :`, resp.GetDbSizeInUse())
			fmt.Fprintln(p.out, `"DBSizeQuota" :`, resp.GetDbSizeQuota())
			fmt.Fprintln(p.out, `"Leader" :`, resp.GetLeader())
			fmt.Fprintln(p.out, `"IsLearner" :`, resp.GetIsLearner())
			fmt.Fprintln(p.out, `"RaftIndex" :`, resp.GetRaftIndex())
			fmt.Fprintln(p.out, `"RaftAppliedIndex" :`, resp.GetRaftAppliedIndex())
			fmt.Fprintln(p.out, `"Errors" :`, resp.GetErrors())
			fmt.Fprintf(p.out, "\"Endpoint\" : %q\n", s.Ep)
			fmt.Fprintf(p.out, "\"DowngradeTargetVersion\" : %q\n", resp.GetDowngradeInfo().GetTargetVersion())
			fmt.Fprintln(p.out, `"DowngradeEnabled" :`, resp.GetDowngradeInfo().GetEnabled())
			fmt.Fprintln(p.out)
		}
		return nil
	case formatJSON:
		return p.json(ss)
	}
	return p.unsupported()
}

// EndpointHashKV prints the KV hashes of endpoints.
func (p *printer) EndpointHashKV(hs []epHashKV) error {
	switch p.format {
	case formatSimple:
		p.commaRows(endpointHashKVTable(hs).rows)
		return nil
	case formatTable:
		writeTable(p.out, endpointHashKVTable(hs))
		return nil
	case formatFields:
		for _, h := range hs {
			resp := (*pb.HashKVResponse)(h.Resp)
			p.fieldsHeader(resp.GetHeader())
			fmt.Fprintf(p.out, "\"Endpoint\" : %q\n", h.Ep)
			fmt.Fprintln(p.out, `"Hash" :`, resp.GetHash())
			fmt.Fprintln(p.out, `"HashRevision" :`, resp.GetHashRevision())
			fmt.Fprintln(p.out)
		}
		return nil
	case formatJSON:
		return p.json(hs)
	}
	return p.unsupported()
}

// simpleKV prints a key and its value on two lines (only the value with
// --print-value-only), as raw bytes or, with --hex, as \xNN escapes.
func (p *printer) simpleKV(kv *mvccpb.KeyValue) {
	k, v := string(kv.GetKey()), string(kv.GetValue())
	if p.hex {
		k, v = hexEscape(kv.GetKey()), hexEscape(kv.GetValue())
	}
	if !p.valueOnly {
		fmt.Fprintln(p.out, k)
	}
	fmt.Fprintln(p.out, v)
}

// hexEscape writes every byte of b as \xNN with lower-case hex digits.
func hexEscape(b []byte) string {
	var sb strings.Builder
	sb.Grow(4 * len(b))
	h := hex.EncodeToString(b)
	for i := 0; i < len(h); i += 2 {
		sb.WriteString(`\x`)
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// commaRows prints table rows as comma-separated lines (the simple format
// of member and endpoint commands).
func (p *printer) commaRows(rows [][]string) {
	for _, row := range rows {
		fmt.Fprintln(p.out, strings.Join(row, ", "))
	}
}

// fieldsID formats a member or cluster ID for the fields format: decimal,
// or unpadded hex with --hex.
func (p *printer) fieldsID(id uint64) string {
	if p.hex {
		return strconv.FormatUint(id, 16)
	}
	return strconv.FormatUint(id, 10)
}

func (p *printer) fieldsHeader(h *pb.ResponseHeader) {
	fmt.Fprintln(p.out, `"ClusterID" :`, p.fieldsID(h.GetClusterId()))
	fmt.Fprintln(p.out, `"MemberID" :`, p.fieldsID(h.GetMemberId()))
	// Responses that carry no revision (member list) leave it out.
	if h.GetRevision() > 0 {
		fmt.Fprintln(p.out, `"Revision" :`, h.GetRevision())
	}
	fmt.Fprintln(p.out, `"RaftTerm" :`, h.GetRaftTerm())
}

func (p *printer) fieldsKV(prefix string, kv *mvccpb.KeyValue) {
	fmt.Fprintf(p.out, "\"%sKey\" : %q\n", prefix, string(kv.GetKey()))
	fmt.Fprintf(p.out, "\"%sCreateRevision\" : %d\n", prefix, kv.GetCreateRevision())
	fmt.Fprintf(p.out, "\"%sModRevision\" : %d\n", prefix, kv.GetModRevision())
	fmt.Fprintf(p.out, "\"%sVersion\" : %d\n", prefix, kv.GetVersion())
	fmt.Fprintf(p.out, "\"%sValue\" : %q\n", prefix, string(kv.GetValue()))
	if p.hex {
		fmt.Fprintf(p.out, "\"%sLease\" : %016x\n", prefix, kv.GetLease())
	} else {
		fmt.Fprintf(p.out, "\"%sLease\" : %d\n", prefix, kv.GetLease())
	}
}

// json prints v as one line of JSON (encoding/json on the generated API
// types, which is what etcdctl prints).
func (p *printer) json(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintln(p.errOut, err)
		return nil
	}
	fmt.Fprintln(p.out, string(b))
	return nil
}

// protobuf prints the wire encoding of m, without a trailing newline.
func (p *printer) protobuf(m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		fmt.Fprintln(p.errOut, err)
		return nil
	}
	_, _ = p.out.Write(b)
	return nil
}

// txnResponseJSON is the JSON shape of a txn answer: each operation's answer
// is wrapped as {"Response":{"response_put":...}}.
type txnResponseJSON struct {
	Header    *pb.ResponseHeader `json:"header,omitempty"`
	Succeeded bool               `json:"succeeded,omitempty"`
	Responses []responseOpJSON   `json:"responses,omitempty"`
}

type responseOpJSON struct {
	Response responseOpUnionJSON `json:"Response"`
}

type responseOpUnionJSON struct {
	ResponseRange       *pb.RangeResponse       `json:"response_range,omitempty"`
	ResponsePut         *pb.PutResponse         `json:"response_put,omitempty"`
	ResponseDeleteRange *pb.DeleteRangeResponse `json:"response_delete_range,omitempty"`
	ResponseTxn         *txnResponseJSON        `json:"response_txn,omitempty"`
}

func txnJSON(r *pb.TxnResponse) *txnResponseJSON {
	out := &txnResponseJSON{Header: r.GetHeader(), Succeeded: r.GetSucceeded()}
	for _, op := range r.GetResponses() {
		var u responseOpUnionJSON
		switch v := op.GetResponse().(type) {
		case *pb.ResponseOp_ResponseRange:
			u.ResponseRange = v.ResponseRange
		case *pb.ResponseOp_ResponsePut:
			u.ResponsePut = v.ResponsePut
		case *pb.ResponseOp_ResponseDeleteRange:
			u.ResponseDeleteRange = v.ResponseDeleteRange
		case *pb.ResponseOp_ResponseTxn:
			u.ResponseTxn = txnJSON(v.ResponseTxn)
		}
		out.Responses = append(out.Responses, responseOpJSON{Response: u})
	}
	return out
}

// hexHeaderJSON and hexMemberJSON are the JSON shapes of member answers
// with --hex: IDs as hex strings.
type hexHeaderJSON struct {
	ClusterID string `json:"cluster_id"`
	MemberID  string `json:"member_id"`
	Revision  int64  `json:"revision,omitempty"`
	RaftTerm  uint64 `json:"raft_term,omitempty"`
}

type hexMemberJSON struct {
	ID         string   `json:"ID"`
	Name       string   `json:"name,omitempty"`
	PeerURLs   []string `json:"peerURLs,omitempty"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

type hexMemberListJSON struct {
	Header  *hexHeaderJSON   `json:"header"`
	Members []*hexMemberJSON `json:"members"`
}

func hexMemberList(r *pb.MemberListResponse) *hexMemberListJSON {
	out := &hexMemberListJSON{Members: make([]*hexMemberJSON, len(r.GetMembers()))}
	if h := r.GetHeader(); h != nil {
		out.Header = &hexHeaderJSON{
			ClusterID: fmt.Sprintf("%x", h.GetClusterId()),
			MemberID:  fmt.Sprintf("%x", h.GetMemberId()),
			Revision:  h.GetRevision(),
			RaftTerm:  h.GetRaftTerm(),
		}
	}
	for i, m := range r.GetMembers() {
		out.Members[i] = &hexMemberJSON{
			ID:         fmt.Sprintf("%x", m.GetID()),
			Name:       m.GetName(),
			PeerURLs:   m.GetPeerURLs(),
			ClientURLs: m.GetClientURLs(),
			IsLearner:  m.GetIsLearner(),
		}
	}
	return out
}

// memberListTable is the table of member list: one row per member; a
// member that has not started yet has no name.
func memberListTable(r *pb.MemberListResponse) (t table) {
	t.header = []string{"ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"}
	for _, m := range r.GetMembers() {
		status := "started"
		if m.GetName() == "" {
			status = "unstarted"
		}
		t.rows = append(t.rows, []string{
			fmt.Sprintf("%x", m.GetID()),
			status,
			m.GetName(),
			strings.Join(m.GetPeerURLs(), ","),
			strings.Join(m.GetClientURLs(), ","),
			strconv.FormatBool(m.GetIsLearner()),
		})
	}
	return t
}

func endpointHealthTable(hs []epHealth) (t table) {
	t.header = []string{"endpoint", "health", "took", "error"}
	for _, h := range hs {
		t.rows = append(t.rows, []string{h.Ep, strconv.FormatBool(h.Health), h.Took, h.Error})
	}
	return t
}

func endpointStatusTable(ss []epStatus) (t table) {
	t.header = []string{
		"endpoint", "ID", "version", "storage version", "db size", "in use",
		"percentage not in use", "quota", "is leader", "is learner", "raft term",
		"raft index", "raft applied index", "errors", "downgrade target version",
		"downgrade enabled",
	}
	for _, s := range ss {
		resp := (*pb.StatusResponse)(s.Resp)
		t.rows = append(t.rows, []string{
			s.Ep,
			fmt.Sprintf("%x", resp.GetHeader().GetMemberId()),
			resp.GetVersion(),
			resp.GetStorageVersion(),
			humanBytes(uint64(resp.GetDbSize())),
			humanBytes(uint64(resp.GetDbSizeInUse())),
			notInUsePercent(resp.GetDbSize(), resp.GetDbSizeInUse()),
			humanBytes(uint64(resp.GetDbSizeQuota())),
			strconv.FormatBool(resp.GetLeader() == resp.GetHeader().GetMemberId()),
			strconv.FormatBool(resp.GetIsLearner()),
			strconv.FormatUint(resp.GetRaftTerm(), 10),
			strconv.FormatUint(resp.GetRaftIndex(), 10),
			strconv.FormatUint(resp.GetRaftAppliedIndex(), 10),
			strings.Join(resp.GetErrors(), ", "),
			resp.GetDowngradeInfo().GetTargetVersion(),
			strconv.FormatBool(resp.GetDowngradeInfo().GetEnabled()),
		})
	}
	return t
}

// notInUsePercent is the share of the database file not holding live data,
// in whole percent rounded down. etcdctl divides by the size without a
// check; a zero size (nothing to reclaim) reads as 0% here.
func notInUsePercent(size, inUse int64) string {
	if size == 0 {
		return "0%"
	}
	return strconv.FormatInt(100-inUse*100/size, 10) + "%"
}

func endpointHashKVTable(hs []epHashKV) (t table) {
	t.header = []string{"endpoint", "hash", "hash_revision"}
	for _, h := range hs {
		resp := (*pb.HashKVResponse)(h.Resp)
		t.rows = append(t.rows, []string{
			h.Ep,
			strconv.FormatUint(uint64(resp.GetHash()), 10),
			strconv.FormatInt(resp.GetHashRevision(), 10),
		})
	}
	return t
}
