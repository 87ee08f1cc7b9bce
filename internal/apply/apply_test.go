package apply

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/lease"
	"github.com/kvorum/kvorum/internal/membership"
)

// TestApply replays the scenarios in testdata/. Commands:
//
//	apply [index=N]   one entry per input line, indexes from N (default:
//	                  the next one): "empty" (a new leader's entry),
//	                  "garbage" (undecodable), "conf add|add-learner|update|remove
//	                  ID [URL...]" (ID in hex), or an InternalRaftRequest in
//	                  protobuf text format (its ID defaults to the index).
//	get KEY           the key at the latest revision.
//	leases            every lease with its TTL and attached keys.
//	members           the member list.
//	reopen            close the engine cleanly and open it again.
//	crash             lose every write that was not synced, then reopen.
func TestApply(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := newHarness(t)
		defer h.close()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return h.run(t, d)
		})
	})
}

type harness struct {
	fs      *vfs.MemFS
	db      *pebble.DB
	a       *Applier
	members *membership.Store
	next    uint64 // index of the next entry
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func newHarness(t *testing.T) *harness {
	h := &harness{fs: vfs.NewCrashableMem()}
	h.open(t)
	return h
}

func (h *harness) open(t *testing.T) {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: h.fs, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	h.db = db
	// The lessor's clock matters only to a primary (leader) lessor; a
	// fixed one keeps the scenarios independent of time anyway.
	epoch := time.Unix(1_700_000_000, 0)
	h.members = &membership.Store{}
	h.a, err = New(Config{DB: db, Leases: lease.New(func() time.Time { return epoch }), Members: h.members,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h.next = h.a.Applied() + 1
}

func (h *harness) close() {
	if h.db != nil {
		h.db.Close()
		h.db = nil
	}
}

func (h *harness) run(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "apply":
		if d.HasArg("index") {
			var idx uint64
			d.ScanArgs(t, "index", &idx)
			h.next = idx
		}
		var ents []*raftpb.Entry
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			ents = append(ents, h.entry(t, line))
		}
		out, err := h.a.Apply(ents)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		return formatOutcome(out)
	case "get":
		resp, err := h.a.KV().Range(&pb.RangeRequest{Key: []byte(d.CmdArgs[0].Key)})
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		if len(resp.GetKvs()) == 0 {
			return fmt.Sprintf("rev=%d: not found\n", resp.GetHeader().GetRevision())
		}
		return fmt.Sprintf("rev=%d: %s\n", resp.GetHeader().GetRevision(), formatKV(resp.GetKvs()[0]))
	case "leases":
		// A lessor answers TimeToLive only as the leader's; becoming it
		// for a moment, with the fixed clock, shows each lease's TTL and
		// the remainder a new leader would start it with.
		h.a.leases.Promote(0)
		defer h.a.leases.Demote()
		var b strings.Builder
		for _, id := range h.a.leases.IDs() {
			st, err := h.a.leases.TimeToLive(id, true)
			if err != nil {
				t.Fatal(err)
			}
			keys := make([]string, len(st.Keys))
			for i, k := range st.Keys {
				keys[i] = string(k)
			}
			fmt.Fprintf(&b, "lease %d ttl=%d remaining=%d keys=[%s]\n", id, st.GrantedTTL, st.Remaining, strings.Join(keys, " "))
		}
		if b.Len() == 0 {
			return "no leases\n"
		}
		return b.String()
	case "members":
		var b strings.Builder
		for _, m := range h.members.List() {
			b.WriteString(formatMember(m) + "\n")
		}
		if b.Len() == 0 {
			return "no members\n"
		}
		return b.String()
	case "reopen":
		h.close()
		h.open(t)
		return fmt.Sprintf("applied=%d\n", h.a.Applied())
	case "crash":
		crashed := h.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		h.close()
		h.fs = crashed
		h.open(t)
		return fmt.Sprintf("applied=%d\n", h.a.Applied())
	}
	t.Fatalf("unknown command %q", d.Cmd)
	return ""
}

// entry builds the raft entry one input line describes.
func (h *harness) entry(t *testing.T, line string) *raftpb.Entry {
	idx := h.next
	h.next++
	ent := &raftpb.Entry{Index: proto.Uint64(idx), Term: proto.Uint64(1), Type: raftpb.EntryType_EntryNormal.Enum()}
	// "term=T" sets the entry's term and "proposed=P" tags the request
	// with the term its proposer was in (TagTerm).
	var proposed uint64
	for {
		head, rest, _ := strings.Cut(line, " ")
		k, v, ok := strings.Cut(head, "=")
		if !ok || k != "term" && k != "proposed" {
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("entry %q: %v", line, err)
		}
		if k == "term" {
			ent.Term = proto.Uint64(n)
		} else {
			proposed = n
		}
		line = strings.TrimSpace(rest)
	}
	fields := strings.Fields(line)
	switch fields[0] {
	case "empty":
		return ent
	case "garbage":
		ent.Data = []byte{0xff, 0xff, 0xff}
		return ent
	case "conf":
		cc := &raftpb.ConfChange{}
		switch fields[1] {
		case "add":
			cc.Type = raftpb.ConfChangeType_ConfChangeAddNode.Enum()
		case "add-learner":
			cc.Type = raftpb.ConfChangeType_ConfChangeAddLearnerNode.Enum()
		case "update":
			cc.Type = raftpb.ConfChangeType_ConfChangeUpdateNode.Enum()
		case "remove":
			cc.Type = raftpb.ConfChangeType_ConfChangeRemoveNode.Enum()
		default:
			t.Fatalf("unknown conf change %q", fields[1])
		}
		id, err := strconv.ParseUint(fields[2], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		cc.NodeId = proto.Uint64(id)
		if len(fields) > 3 {
			cc.Context = mustMarshal(t, &pb.Member{ID: id, PeerURLs: fields[3:]})
		}
		ent.Type, ent.Data = raftpb.EntryType_EntryConfChange.Enum(), mustMarshal(t, cc)
		return ent
	}
	req := &pb.InternalRaftRequest{}
	if err := prototext.Unmarshal([]byte(line), req); err != nil {
		t.Fatalf("entry %q: %v", line, err)
	}
	if req.ID == 0 {
		req.ID = idx
	}
	ent.Data = mustMarshal(t, req)
	if proposed != 0 {
		ent.Data = TagTerm(ent.Data, proposed)
	}
	return ent
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func formatOutcome(out Outcome) string {
	var b strings.Builder
	fmt.Fprintf(&b, "applied=%d rev=%d\n", out.Applied, out.Rev)
	for _, r := range out.Results {
		if errors.Is(r.Err, ErrStaleProposal) {
			// The proposer matches the outcome to its attempt by the tag.
			fmt.Fprintf(&b, "%d: tagged=%d error: %v\n", r.Index, r.Term, r.Err)
			continue
		}
		if r.Err != nil {
			fmt.Fprintf(&b, "%d: error: %v\n", r.Index, r.Err)
			continue
		}
		if r.Resp == nil {
			fmt.Fprintf(&b, "%d: ok\n", r.Index)
			continue
		}
		fmt.Fprintf(&b, "%s\n", strings.TrimSpace(fmt.Sprintf("%d: %s %s", r.Index, r.Resp.ProtoReflect().Descriptor().Name(), text(r.Resp))))
	}
	for _, ev := range out.Events {
		fmt.Fprintf(&b, "event %s %s\n", ev.GetType(), formatKV(ev.GetKv()))
	}
	for _, m := range out.Members {
		switch {
		case m.Removed:
			fmt.Fprintf(&b, "member %d: removed %x\n", m.Index, m.ID)
		default:
			fmt.Fprintf(&b, "member %d: %s\n", m.Index, formatMember(m.Member))
		}
	}
	return b.String()
}

var spaces = regexp.MustCompile(`\s+`)

// text is m in protobuf text format on one line. The library varies its
// whitespace on purpose; collapsing it keeps the expected output stable.
func text(m proto.Message) string {
	s := prototext.MarshalOptions{}.Format(m)
	return strings.TrimSpace(spaces.ReplaceAllString(s, " "))
}

func formatKV(kv *mvccpb.KeyValue) string {
	s := fmt.Sprintf("%s=%q create=%d mod=%d ver=%d", kv.GetKey(), kv.GetValue(), kv.GetCreateRevision(), kv.GetModRevision(), kv.GetVersion())
	if kv.GetLease() != 0 {
		s += fmt.Sprintf(" lease=%d", kv.GetLease())
	}
	return s
}

func formatMember(m *pb.Member) string {
	s := fmt.Sprintf("%x name=%q peers=%v clients=%v", m.GetID(), m.GetName(), m.GetPeerURLs(), m.GetClientURLs())
	if m.GetIsLearner() {
		s += " learner"
	}
	return s
}
