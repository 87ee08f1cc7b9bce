package robustness

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Model is the sequential specification of the key space for porcupine: a
// single copy of etcd's MVCC store, with the revision counter, each key's
// create and mod revisions and version, and the header revision of every
// response. It is nondeterministic only for writes whose outcome is unknown
// and unresolved: those may take effect or not.
//
// Its states are State values, its inputs Request and outputs Response.
func Model(init State) porcupine.Model {
	nm := &porcupine.NondeterministicModel{
		Init: func() []any { return []any{init} },
		Step: func(state, input, output any) []any {
			next := step(state.(State), input.(Request), output.(Response))
			out := make([]any, len(next))
			for i, s := range next {
				out[i] = s
			}
			return out
		},
		Equal: func(a, b any) bool { return a.(State).equal(b.(State)) },
		Hash:  func(s any) uint64 { return s.(State).hash() },
		DescribeOperation: func(input, output any) string {
			return fmt.Sprintf("%s -> %s", input.(Request), output.(Response))
		},
		DescribeState: func(s any) string { return s.(State).String() },
	}
	return nm.ToModel()
}

// step returns the states the store can be in after applying req to s
// and answering resp; none if it could not have answered resp.
func step(s State, req Request, resp Response) []State {
	if resp.Unknown && !req.Kind.IsWrite() {
		return []State{s} // a read whose answer was lost constrains nothing
	}
	if resp.Unknown && resp.NotApplied {
		return []State{s}
	}
	switch req.Kind {
	case Get:
		if resp.Rev == s.Rev && sameKVs(resp.KVs, s.rangeKeys(req.Key, "")) {
			return []State{s}
		}
	case Range:
		if resp.Rev == s.Rev && sameKVs(resp.KVs, s.rangeKeys(req.Key, req.End)) {
			return []State{s}
		}
	case Put:
		return write(s, s.put(req.Key, req.Value), resp, func() bool { return true })
	case Delete:
		_, exists := s.KVs[req.Key]
		if !exists {
			// A delete of an absent key changes nothing, not even the
			// revision.
			if (resp.Unknown && resp.Rev == 0) || (!resp.Unknown && resp.Deleted == 0 && resp.Rev == s.Rev) {
				return []State{s}
			}
			return nil
		}
		return write(s, s.del(req.Key), resp, func() bool { return resp.Deleted == 1 })
	case CAS:
		if s.KVs[req.Key].Mod == req.ModRev {
			return write(s, s.put(req.Key, req.Value), resp, func() bool { return resp.Succeeded })
		}
		if (resp.Unknown && resp.Rev == 0) || (!resp.Unknown && !resp.Succeeded && resp.Rev == s.Rev && sameKVs(resp.KVs, s.rangeKeys(req.Key, ""))) {
			return []State{s}
		}
	}
	return nil
}

// write is the outcome of a write that would take s to next: the client
// must have seen next's revision and ok() if it got a response; an unknown
// write may have taken effect or not, and if Resolve found its revision it
// took effect there.
func write(s, next State, resp Response, ok func() bool) []State {
	switch {
	case resp.Unknown && resp.Rev == 0:
		return []State{next, s}
	case resp.Unknown:
		if resp.Rev == next.Rev {
			return []State{next}
		}
	case resp.Rev == next.Rev && ok():
		return []State{next}
	}
	return nil
}

func (s State) put(key, value string) State {
	kvs := maps.Clone(s.KVs)
	if kvs == nil {
		kvs = map[string]KV{}
	}
	rev := s.Rev + 1
	old, exists := kvs[key]
	kv := KV{Key: key, Value: value, Create: rev, Mod: rev, Version: 1}
	if exists {
		kv.Create, kv.Version = old.Create, old.Version+1
	}
	kvs[key] = kv
	return State{Rev: rev, KVs: kvs}
}

func (s State) del(key string) State {
	kvs := maps.Clone(s.KVs)
	delete(kvs, key)
	return State{Rev: s.Rev + 1, KVs: kvs}
}

// rangeKeys is what a range [key, end) reads, in key order; an empty end
// reads key alone.
func (s State) rangeKeys(key, end string) []KV {
	var out []KV
	for k, kv := range s.KVs {
		if k == key || (end != "" && k >= key && k < end) {
			out = append(out, kv)
		}
	}
	slices.SortFunc(out, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func sameKVs(a, b []KV) bool {
	return slices.Equal(a, b)
}

func (s State) equal(o State) bool {
	return s.Rev == o.Rev && maps.Equal(s.KVs, o.KVs)
}

func (s State) hash() uint64 {
	h := uint64(s.Rev) * 0x9e3779b97f4a7c15
	for _, kv := range s.KVs {
		f := fnv.New64a()
		fmt.Fprintf(f, "%s\x00%s\x00%d\x00%d\x00%d", kv.Key, kv.Value, kv.Create, kv.Mod, kv.Version)
		h ^= f.Sum64()
	}
	return h
}

func (s State) String() string {
	keys := slices.Sorted(maps.Keys(s.KVs))
	var b strings.Builder
	fmt.Fprintf(&b, "rev %d:", s.Rev)
	for _, k := range keys {
		kv := s.KVs[k]
		fmt.Fprintf(&b, " %s=%s@%d", k, kv.Value, kv.Mod)
	}
	return b.String()
}
