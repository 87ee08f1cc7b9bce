package robustness

import (
	"fmt"
	"slices"
)

// Change is what one revision did to the key space, as read back from the
// cluster after the run (a range of the key space at that revision and at
// the one before).
type Change struct {
	Rev    int64  `json:"rev"`
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Delete bool   `json:"delete,omitempty"`
}

func (c Change) String() string {
	if c.Delete {
		return fmt.Sprintf("rev %d: delete %s", c.Rev, c.Key)
	}
	return fmt.Sprintf("rev %d: put %s=%s", c.Rev, c.Key, c.Value)
}

// Resolve settles the unknown writes of h with changes, the cluster's
// revision history from h.Init.Rev+1 on (one Change per revision, in
// order), and checks that the acknowledged writes agree with it. It returns
// a copy of h in which
//
//   - an unknown put or CAS whose value some revision wrote has Resp.Rev
//     set to that revision (values are unique, so there is one at most);
//   - an unknown delete of a key is matched, in invocation order, to the
//     deletions of that key that no acknowledged delete explains (matching
//     the earliest invoked to the earliest revision is possible whenever
//     any matching is, as every unknown delete may take effect at any
//     time after its invocation);
//   - every other unknown write has Resp.NotApplied set.
//
// It reports as problems: an acknowledged write that is not at its
// revision, a revision that no client's write explains, a value written
// twice, and a gap in changes.
func Resolve(h *History, changes []Change) (*History, []string) {
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	changeAt := make(map[int64]Change, len(changes))
	putAt := map[string]int64{} // value -> revision
	for i, c := range changes {
		if want := h.Init.Rev + int64(i) + 1; c.Rev != want {
			report("revision history is not contiguous: change %d is at revision %d, want %d", i, c.Rev, want)
			return h, problems
		}
		changeAt[c.Rev] = c
		if c.Delete {
			continue
		}
		if prev, dup := putAt[c.Value]; dup {
			report("value %s was written twice, at revisions %d and %d (a write applied twice)", c.Value, prev, c.Rev)
			continue
		}
		putAt[c.Value] = c.Rev
	}

	out := &History{Init: h.Init, Ops: slices.Clone(h.Ops)}
	claimed := map[int64]int{} // revision -> index of the op that wrote it
	claim := func(i int, rev int64) {
		if j, dup := claimed[rev]; dup {
			report("revision %d is claimed by two writes: %s and %s", rev, out.Ops[j], out.Ops[i])
			return
		}
		claimed[rev] = i
	}
	unknownDeletes := map[string][]int{}
	for i := range out.Ops {
		op := &out.Ops[i]
		req, resp := op.Req, &op.Resp
		if !req.Kind.IsWrite() {
			continue
		}
		if resp.Unknown {
			switch req.Kind {
			case Put, CAS:
				if rev, ok := putAt[req.Value]; ok {
					resp.Rev = rev
					claim(i, rev)
				} else {
					resp.NotApplied = true
				}
			case Delete:
				unknownDeletes[req.Key] = append(unknownDeletes[req.Key], i)
			}
			continue
		}
		changed := (req.Kind == Put) || (req.Kind == CAS && resp.Succeeded) || (req.Kind == Delete && resp.Deleted > 0)
		if !changed {
			continue
		}
		c, ok := changeAt[resp.Rev]
		switch {
		case !ok:
			report("acknowledged %s at revision %d, but the cluster's revision history (%d..%d) has no such revision",
				op, resp.Rev, h.Init.Rev+1, h.Init.Rev+int64(len(changes)))
		case req.Kind == Delete && (!c.Delete || c.Key != req.Key):
			report("acknowledged %s, but revision %d did %s", op, resp.Rev, c)
		case req.Kind != Delete && (c.Delete || c.Key != req.Key || c.Value != req.Value):
			report("acknowledged write lost: %s, but revision %d did %s", op, resp.Rev, c)
		}
		claim(i, resp.Rev)
	}

	unexplained := map[string][]int64{} // key -> deletions no acknowledged delete explains
	for _, c := range changes {
		if _, ok := claimed[c.Rev]; ok {
			continue
		}
		if c.Delete {
			unexplained[c.Key] = append(unexplained[c.Key], c.Rev)
			continue
		}
		report("%s was written by no client (or by one that was told another revision)", c)
	}
	for key, revs := range unexplained {
		ops := unknownDeletes[key]
		if len(revs) > len(ops) {
			report("revisions %v delete %s, but only %d deletes of it have an unknown outcome", revs, key, len(ops))
		}
		slices.SortStableFunc(ops, func(a, b int) int { return cmpInt64(out.Ops[a].Call, out.Ops[b].Call) })
		for n, i := range ops {
			if n < len(revs) {
				out.Ops[i].Resp.Rev = revs[n]
			} else {
				out.Ops[i].Resp.NotApplied = true
			}
		}
		delete(unknownDeletes, key)
	}
	for _, ops := range unknownDeletes {
		for _, i := range ops {
			out.Ops[i].Resp.NotApplied = true
		}
	}
	return out, problems
}
