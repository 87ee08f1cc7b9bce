package robustness

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Kind is the kind of a client operation.
type Kind string

// The operations the clients run. Every write changes at most one key, so
// every revision of the key space is one operation's doing.
const (
	Put    Kind = "put"    // put Key=Value
	Get    Kind = "get"    // linearizable get of Key
	Range  Kind = "range"  // linearizable range [Key, End)
	Delete Kind = "delete" // delete Key
	// CAS is a txn: if mod_revision(Key) == ModRev then put Key=Value
	// else get Key. ModRev 0 means "Key does not exist".
	CAS Kind = "cas"
)

// IsWrite tells whether the operation may change the key space.
func (k Kind) IsWrite() bool { return k == Put || k == Delete || k == CAS }

// Request is what a client asked for.
type Request struct {
	Kind   Kind   `json:"kind"`
	Key    string `json:"key"`
	End    string `json:"end,omitempty"`     // Range: exclusive end
	Value  string `json:"value,omitempty"`   // Put, CAS: a value no other request writes
	ModRev int64  `json:"mod_rev,omitempty"` // CAS: expected mod revision of Key, 0 for absent
}

func (r Request) String() string {
	switch r.Kind {
	case Put:
		return fmt.Sprintf("put(%s, %s)", r.Key, r.Value)
	case Range:
		return fmt.Sprintf("range[%s, %s)", r.Key, r.End)
	case CAS:
		return fmt.Sprintf("cas(%s mod==%d ? put %s)", r.Key, r.ModRev, r.Value)
	default:
		return fmt.Sprintf("%s(%s)", r.Kind, r.Key)
	}
}

// KV is one key's latest version as a response reports it.
type KV struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Create  int64  `json:"create"`
	Mod     int64  `json:"mod"`
	Version int64  `json:"version"`
}

// Response is what a client got back.
type Response struct {
	// Unknown is set when the outcome is unknown: the request may or may
	// not have taken effect. Err says why.
	Unknown bool   `json:"unknown,omitempty"`
	Err     string `json:"err,omitempty"`
	// Rev is the header revision. For an unknown write, Resolve sets it to
	// the revision at which the write took effect, if it did.
	Rev int64 `json:"rev,omitempty"`
	// NotApplied is set by Resolve on an unknown write that the revision
	// history shows never took effect.
	NotApplied bool  `json:"not_applied,omitempty"`
	KVs        []KV  `json:"kvs,omitempty"`     // Get, Range, and CAS when the compare failed
	Deleted    int64 `json:"deleted,omitempty"` // Delete
	Succeeded  bool  `json:"succeeded,omitempty"`
}

func (r Response) String() string {
	var b strings.Builder
	switch {
	case r.Unknown && r.Rev > 0:
		fmt.Fprintf(&b, "unknown (%s), applied at rev %d", r.Err, r.Rev)
		return b.String()
	case r.Unknown && r.NotApplied:
		fmt.Fprintf(&b, "unknown (%s), not applied", r.Err)
		return b.String()
	case r.Unknown:
		fmt.Fprintf(&b, "unknown (%s)", r.Err)
		return b.String()
	}
	fmt.Fprintf(&b, "rev %d", r.Rev)
	if r.Succeeded {
		b.WriteString(" succeeded")
	}
	if r.Deleted > 0 {
		fmt.Fprintf(&b, " deleted %d", r.Deleted)
	}
	for _, kv := range r.KVs {
		fmt.Fprintf(&b, " %s=%s@%d/%d/v%d", kv.Key, kv.Value, kv.Create, kv.Mod, kv.Version)
	}
	return b.String()
}

// Op is one operation of a history. Times are nanoseconds since the
// history began, from a monotonic clock.
type Op struct {
	Client   int      `json:"client"`
	Endpoint string   `json:"endpoint"` // the endpoint(s) the client was given
	Req      Request  `json:"req"`
	Resp     Response `json:"resp"`
	Call     int64    `json:"call"`
	// Return is when the response arrived, or for an unknown outcome when
	// the client gave up; the checker treats the latter as infinite.
	Return int64 `json:"return"`
}

func (o Op) String() string {
	return fmt.Sprintf("client %d [%s] %s -> %s (%.3fs..%.3fs)", o.Client, o.Endpoint, o.Req, o.Resp,
		float64(o.Call)/1e9, float64(o.Return)/1e9)
}

// State is the key space at one revision.
type State struct {
	Rev int64         `json:"rev"`
	KVs map[string]KV `json:"kvs"`
}

// History is what a set of clients saw, from a known initial state.
type History struct {
	Init State `json:"init"`
	Ops  []Op  `json:"ops"`
}

// Sorted returns the operations ordered by invocation time.
func (h *History) Sorted() []Op {
	ops := slices.Clone(h.Ops)
	slices.SortStableFunc(ops, func(a, b Op) int { return cmpInt64(a.Call, b.Call) })
	return ops
}

// WriteFile stores the history as JSON.
func (h *History) WriteFile(path string) error {
	b, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// ReadHistory loads a history written by WriteFile.
func ReadHistory(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h History
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &h, nil
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
