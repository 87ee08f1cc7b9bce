package auth

import (
	"bytes"
	"slices"

	"go.etcd.io/etcd/api/v3/authpb"
)

// Range is a key range as requests name it: End empty means the single key
// Key; End "\x00" means every key from Key on; otherwise [Key, End).
type Range struct {
	Key, End []byte
}

// Access is what a request needs.
type Access struct {
	// Admin requests need the root role.
	Admin bool
	// Read and Write are the key ranges the request reads and writes.
	Read, Write []Range
}

// interval is a half-open key interval; a nil hi means no upper bound.
type interval struct{ lo, hi []byte }

func toInterval(key, end []byte) interval {
	switch {
	case len(end) == 0:
		return interval{key, append(slices.Clone(key), 0)}
	case len(end) == 1 && end[0] == 0:
		return interval{key, nil}
	default:
		return interval{key, end}
	}
}

// less orders upper bounds, nil being the largest.
func hiLess(a, b []byte) bool {
	switch {
	case a == nil:
		return false
	case b == nil:
		return true
	default:
		return bytes.Compare(a, b) < 0
	}
}

// covered reports whether want lies within the union of have.
func covered(want interval, have []interval) bool {
	if want.hi != nil && bytes.Compare(want.lo, want.hi) >= 0 {
		return true // an empty range needs nothing
	}
	slices.SortFunc(have, func(a, b interval) int { return bytes.Compare(a.lo, b.lo) })
	pos := want.lo // everything below pos is covered
	for _, h := range have {
		if bytes.Compare(h.lo, pos) > 0 {
			break // a gap at pos
		}
		if hiLess(pos, h.hi) || h.hi == nil {
			if h.hi == nil {
				return true
			}
			pos = h.hi
		}
		if want.hi != nil && !hiLess(pos, want.hi) {
			return true
		}
	}
	return false
}

// permitted reports whether roles grant access to r for reading (write
// false) or writing.
func permitted(roles []*authpb.Role, r Range, write bool) bool {
	var have []interval
	for _, role := range roles {
		for _, p := range role.GetKeyPermission() {
			ok := p.GetPermType() == authpb.Permission_READWRITE ||
				(write && p.GetPermType() == authpb.Permission_WRITE) ||
				(!write && p.GetPermType() == authpb.Permission_READ)
			if ok {
				have = append(have, toInterval(p.GetKey(), p.GetRangeEnd()))
			}
		}
	}
	return covered(toInterval(r.Key, r.End), have)
}
