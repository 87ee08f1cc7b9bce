package apply

import (
	"encoding/binary"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// ErrStaleProposal is the outcome of a proposal that was appended to the
// log in a later term than the one its proposer saw: every member skips it,
// and its proposer proposes it again. See TagTerm.
var ErrStaleProposal = errors.New("apply: proposal appended in a later term than it was proposed in; skipped, its proposer proposes it again")

// proposalTermField is a Kvorum-only field of InternalRaftRequest: the raft
// term its proposer was in. etcd's fields are numbered below 10000.
const proposalTermField protowire.Number = 50001

// TagSize is the most bytes TagTerm appends.
const TagSize = 3 + binary.MaxVarintLen64 // a 3-byte tag for field 50001, the term

// TagTerm appends the proposer's term to a marshaled request.
//
// The term makes re-proposing safe. An entry of term T can only be found
// in the log before the first entry of a later term (terms never decrease
// along a log). So once a member has applied an entry of a term after T
// without having applied its own proposal tagged T, that proposal will never
// apply: it may be proposed again with the same ID and cannot apply twice.
// A proposal relayed to a leader of a later term (a deposed leader hands
// the proposals it holds on) would break this, so Apply skips any entry
// whose term differs from its tag, with ErrStaleProposal.
func TagTerm(data []byte, term uint64) []byte {
	data = protowire.AppendTag(data, proposalTermField, protowire.VarintType)
	return protowire.AppendVarint(data, term)
}

// proposalTerm is the term a request was tagged with, or 0 (untagged:
// proposed by the member itself outside of client requests, or by an
// older version).
func proposalTerm(req *pb.InternalRaftRequest) uint64 {
	b := req.ProtoReflect().GetUnknown()
	var term uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num == proposalTermField && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0
			}
			term = v
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0
		}
		b = b[m:]
	}
	return term
}
