package watch

import "sort"

// group indexes watchers by what they watch, so that finding the watchers
// of a changed key costs one map lookup plus one check per distinct range
// (not per watcher): watchers of the same key or the same range share an
// entry, which is the common case (many clients watching one prefix).
type group struct {
	keys   map[string]map[*watcher]struct{}
	ranges map[span]*rangeSet
	n      int
}

type rangeSet struct {
	sample   *watcher // any member, for its contains()
	watchers map[*watcher]struct{}
}

func newGroup() group {
	return group{keys: make(map[string]map[*watcher]struct{}), ranges: make(map[span]*rangeSet)}
}

func (g *group) size() int { return g.n }

func (g *group) add(w *watcher) {
	g.n++
	if w.end == nil {
		set := g.keys[string(w.key)]
		if set == nil {
			set = make(map[*watcher]struct{})
			g.keys[string(w.key)] = set
		}
		set[w] = struct{}{}
		return
	}
	rs := g.ranges[w.span]
	if rs == nil {
		rs = &rangeSet{sample: w, watchers: make(map[*watcher]struct{})}
		g.ranges[w.span] = rs
	}
	rs.watchers[w] = struct{}{}
}

func (g *group) remove(w *watcher) {
	if w.end == nil {
		set := g.keys[string(w.key)]
		if _, ok := set[w]; !ok {
			return
		}
		delete(set, w)
		if len(set) == 0 {
			delete(g.keys, string(w.key))
		}
		g.n--
		return
	}
	rs := g.ranges[w.span]
	if rs == nil {
		return
	}
	if _, ok := rs.watchers[w]; !ok {
		return
	}
	delete(rs.watchers, w)
	g.n--
	if len(rs.watchers) == 0 {
		delete(g.ranges, w.span)
		return
	}
	if rs.sample == w {
		for other := range rs.watchers {
			rs.sample = other
			break
		}
	}
}

// match calls f for every watcher of key.
func (g *group) match(key []byte, f func(*watcher)) {
	for w := range g.keys[string(key)] {
		f(w)
	}
	for _, rs := range g.ranges {
		if rs.sample.contains(key) {
			for w := range rs.watchers {
				f(w)
			}
		}
	}
}

// all lists every watcher, by watch ID (watchers of different streams may
// share one), so that iteration is reproducible.
func (g *group) all() []*watcher {
	out := make([]*watcher, 0, g.n)
	for _, set := range g.keys {
		for w := range set {
			out = append(out, w)
		}
	}
	for _, rs := range g.ranges {
		for w := range rs.watchers {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
