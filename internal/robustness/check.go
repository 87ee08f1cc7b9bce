package robustness

import (
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Report is the outcome of checking one history.
type Report struct {
	Ops               int // operations in the history
	Checked           int // operations given to the linearizability checker
	Unknown           int // operations whose outcome the client did not learn
	UnknownApplied    int // unknown writes that took effect (found in the revision history)
	UnknownNotApplied int // unknown writes that did not
	UnknownReads      int // unknown reads (they constrain nothing)
	Result            porcupine.CheckResult
	CheckTime         time.Duration
	// Problems lists every violation found: non-linearizability, revision
	// order, disagreement with the revision history.
	Problems []string

	history *History
	changes []Change
	model   porcupine.Model
	info    porcupine.LinearizationInfo
}

// OK tells whether the history passed every check.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) String() string {
	return fmt.Sprintf("%d operations (%d checked for linearizability, %d unknown: %d applied, %d not applied, %d reads): %s in %v, %d problems",
		r.Ops, r.Checked, r.Unknown, r.UnknownApplied, r.UnknownNotApplied, r.UnknownReads, r.Result, r.CheckTime.Round(time.Millisecond), len(r.Problems))
}

// Check checks h. If changes is not nil it is the cluster's revision
// history after h.Init (see Resolve), which settles unknown writes and is
// checked against the acknowledged ones; with nil, unknown writes are left
// to the model, which lets each take effect or not (fine for short
// histories, exponential in the number of concurrent unknown writes).
// timeout bounds the linearizability search; running out of time is a
// problem too, since the history was then not checked.
func Check(h *History, changes []Change, timeout time.Duration) *Report {
	r := &Report{Ops: len(h.Ops), history: h, changes: changes}
	if changes != nil {
		var problems []string
		h, problems = Resolve(h, changes)
		r.history = h
		r.Problems = append(r.Problems, problems...)
	}
	var ops []porcupine.Operation
	for _, op := range h.Ops {
		if op.Resp.Unknown {
			r.Unknown++
			switch {
			case !op.Req.Kind.IsWrite():
				r.UnknownReads++
				continue
			case op.Resp.NotApplied:
				r.UnknownNotApplied++
				continue
			case op.Resp.Rev > 0:
				r.UnknownApplied++
			}
		}
		ret := op.Return
		if op.Resp.Unknown {
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{ClientId: op.Client, Input: op.Req, Call: op.Call, Output: op.Resp, Return: ret})
	}
	r.Checked = len(ops)
	r.Problems = append(r.Problems, revisionOrder(h.Ops)...)

	r.model = Model(h.Init)
	start := time.Now()
	r.Result, r.info = porcupine.CheckOperationsVerbose(r.model, ops, timeout)
	r.CheckTime = time.Since(start)
	switch r.Result {
	case porcupine.Illegal:
		r.Problems = append(r.Problems, "the history is not linearizable (see the visualization)")
	case porcupine.Unknown:
		r.Problems = append(r.Problems, fmt.Sprintf("the linearizability check did not finish within %v, so the history is unchecked", timeout))
	}
	return r
}

// revisionOrder checks that revisions never go back in real time: an
// operation invoked after another completed sees at least its revision,
// and a write takes a revision above every revision seen by operations
// that completed before it was invoked.
func revisionOrder(ops []Op) []string {
	// pos orders what an operation saw: a write at revision R is at 2R, a
	// read at header revision R after it, at 2R+1.
	type item struct {
		op  Op
		pos int64
	}
	var items []item
	for _, op := range ops {
		resp := op.Resp
		switch {
		case resp.Unknown && (resp.NotApplied || resp.Rev == 0 || !op.Req.Kind.IsWrite()):
			continue
		case resp.Unknown:
			items = append(items, item{op, 2 * resp.Rev})
		case op.Req.Kind == Put, op.Req.Kind == CAS && resp.Succeeded, op.Req.Kind == Delete && resp.Deleted > 0:
			items = append(items, item{op, 2 * resp.Rev})
		default:
			items = append(items, item{op, 2*resp.Rev + 1})
		}
	}
	byCall := slices.Clone(items)
	slices.SortStableFunc(byCall, func(a, b item) int { return cmpInt64(a.op.Call, b.op.Call) })
	var byReturn []item
	for _, it := range items {
		if !it.op.Resp.Unknown {
			byReturn = append(byReturn, it)
		}
	}
	slices.SortStableFunc(byReturn, func(a, b item) int { return cmpInt64(a.op.Return, b.op.Return) })

	var problems []string
	var before *item // the completed operation with the highest position so far
	next := 0
	for _, it := range byCall {
		for next < len(byReturn) && byReturn[next].op.Return < it.op.Call {
			if before == nil || byReturn[next].pos > before.pos {
				before = &byReturn[next]
			}
			next++
		}
		if before == nil {
			continue
		}
		isWrite := it.pos%2 == 0
		if before.pos > it.pos || (isWrite && before.pos == it.pos) {
			problems = append(problems, fmt.Sprintf("revision went back in real time: %s was invoked after %s had completed", it.op, before.op))
			if len(problems) >= 20 {
				return append(problems, "... (more revision order problems left out)")
			}
		}
	}
	return problems
}

// Replay applies changes to init.
func Replay(init State, changes []Change) State {
	s := init
	for _, c := range changes {
		if c.Delete {
			s = s.del(c.Key)
		} else {
			s = s.put(c.Key, c.Value)
		}
	}
	return s
}

// LostWrites returns the acknowledged writes of h that a member's final
// key space (at the revision changes end at) does not hold: the key must
// hold the written value at the acknowledged revision, or a later revision
// must have overwritten or deleted it.
func LostWrites(h *History, changes []Change, final map[string]KV) []string {
	lastDelete := map[string]int64{}
	for _, c := range changes {
		if c.Delete {
			lastDelete[c.Key] = c.Rev
		}
	}
	var lost []string
	for _, op := range h.Ops {
		acked := !op.Resp.Unknown && (op.Req.Kind == Put || (op.Req.Kind == CAS && op.Resp.Succeeded))
		if !acked {
			continue
		}
		rev := op.Resp.Rev
		kv, ok := final[op.Req.Key]
		switch {
		case ok && kv.Mod == rev && kv.Value == op.Req.Value:
		case ok && kv.Mod > rev:
		case !ok && lastDelete[op.Req.Key] > rev:
		default:
			lost = append(lost, fmt.Sprintf("%s: the final state has %+v (present %v)", op, kv, ok))
		}
	}
	return lost
}

// DiffStates describes how two states differ, "" if they do not.
func DiffStates(want, got State) string {
	var d []string
	if want.Rev != got.Rev {
		d = append(d, fmt.Sprintf("revision %d, want %d", got.Rev, want.Rev))
	}
	for _, k := range slices.Sorted(maps.Keys(want.KVs)) {
		if g, ok := got.KVs[k]; !ok {
			d = append(d, fmt.Sprintf("%s missing, want %+v", k, want.KVs[k]))
		} else if g != want.KVs[k] {
			d = append(d, fmt.Sprintf("%s is %+v, want %+v", k, g, want.KVs[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got.KVs)) {
		if _, ok := want.KVs[k]; !ok {
			d = append(d, fmt.Sprintf("%s present (%+v), want absent", k, got.KVs[k]))
		}
	}
	return strings.Join(d, "; ")
}

// WriteArtifacts writes into dir what is needed to study a failed check:
// history.json (the history as recorded), resolved.json (after Resolve),
// changes.json (the revision history), problems.txt, and
// linearizability.html (porcupine's visualization). extra, if not empty, is
// written to notes.txt (the seed and the fault schedule).
func (r *Report) WriteArtifacts(dir string, recorded *History, extra string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := recorded.WriteFile(filepath.Join(dir, "history.json")); err != nil {
		return err
	}
	if err := r.history.WriteFile(filepath.Join(dir, "resolved.json")); err != nil {
		return err
	}
	var b strings.Builder
	for _, c := range r.changes {
		fmt.Fprintln(&b, c)
	}
	if err := os.WriteFile(filepath.Join(dir, "changes.txt"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	problems := r.String() + "\n" + strings.Join(r.Problems, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "problems.txt"), []byte(problems), 0o644); err != nil {
		return err
	}
	if extra != "" {
		if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte(extra), 0o644); err != nil {
			return err
		}
	}
	return porcupine.VisualizePath(r.model, r.info, filepath.Join(dir, "linearizability.html"))
}
