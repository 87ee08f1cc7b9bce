package mvcc

import (
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// latestCache remembers the latest version of recently used keys for the
// Writer, whose every put must know the key's previous version: a point
// lookup in the engine costs ~10µs, the cache a map access.
//
// Invariant: an entry equals what the Writer's batch view holds under
// LatestKey(key) (nil: no live version). Only the Writer reads or changes
// it, from the one apply goroutine; it is updated as the Writer writes, so
// it describes the batch being built, which is valid because a batch that
// fails to commit stops the member. A Store opened anew (restart, raft
// snapshot) starts with an empty cache.
//
// Entries live in a slice, found through a map of slot numbers, and are
// evicted by the clock algorithm (a slot used since the hand last passed
// it is spared once): a put of a cached key changes its slot in place and
// allocates nothing, a new key allocates only its map key. The list-based
// LRU before it allocated four objects for every new key, and with keys
// written at random (most puts miss a cache of a fifth of the keys) it
// cost more CPU than the lookups it saved.
type latestCache struct {
	max, used int
	index     map[string]int32 // slot of each cached key
	slots     []cacheSlot
	free      []int32 // slots of evicted keys, for reuse
	hand      int     // next slot the clock looks at
}

// cacheSlot is one cached key's latest version, held as the fields of a
// KeyValue (a generated message must not be copied by value).
type cacheSlot struct {
	key                    string // "" while the slot is free
	used                   bool   // read or written since the hand passed
	live                   bool   // false: the key has no live version
	value                  []byte
	create, mod, ver, leas int64
}

func newLatestCache(maxBytes int) *latestCache {
	return &latestCache{max: maxBytes, index: make(map[string]int32)}
}

// slotSize is what one entry costs, estimated with its overheads (map
// entry, slot, key and value bytes).
func slotSize(key string, live bool, value []byte) int {
	n := 2*len(key) + 96
	if live {
		n += len(value) + 64
	}
	return n
}

// get returns a private copy of the cached version and whether key was
// cached at all.
func (c *latestCache) get(key []byte) (*mvccpb.KeyValue, bool) {
	i, ok := c.index[string(key)]
	if !ok {
		return nil, false
	}
	s := &c.slots[i]
	s.used = true
	if !s.live {
		return nil, true
	}
	return &mvccpb.KeyValue{
		Key:            key,
		CreateRevision: s.create,
		ModRevision:    s.mod,
		Version:        s.ver,
		Value:          s.value,
		Lease:          s.leas,
	}, true
}

// set records kv (nil: no live version) as key's latest version. It keeps
// kv's value slice, which is never written in place.
func (c *latestCache) set(key []byte, kv *mvccpb.KeyValue) {
	if i, ok := c.index[string(key)]; ok {
		s := &c.slots[i]
		c.used -= slotSize(s.key, s.live, s.value)
		s.fill(kv)
		s.used = true
		c.used += slotSize(s.key, s.live, s.value)
		c.evict(int(i))
		return
	}
	var i int32
	if n := len(c.free); n > 0 {
		i, c.free = c.free[n-1], c.free[:n-1]
	} else {
		c.slots = append(c.slots, cacheSlot{})
		i = int32(len(c.slots) - 1)
	}
	s := &c.slots[i]
	s.key = string(key)
	s.fill(kv)
	s.used = false // a new key is the first to go if never used again
	c.index[s.key] = i
	c.used += slotSize(s.key, s.live, s.value)
	c.evict(int(i))
}

func (s *cacheSlot) fill(kv *mvccpb.KeyValue) {
	if kv == nil {
		s.live, s.value = false, nil
		s.create, s.mod, s.ver, s.leas = 0, 0, 0, 0
		return
	}
	s.live, s.value = true, kv.Value
	s.create, s.mod, s.ver, s.leas = kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease
}

// evict drops entries until the cache is within its bound, sparing the
// slot keep (the one just written) unless it is all that is left.
func (c *latestCache) evict(keep int) {
	for c.used > c.max && len(c.index) > 0 {
		if c.hand >= len(c.slots) {
			c.hand = 0
		}
		i := c.hand
		c.hand++
		s := &c.slots[i]
		if s.key == "" {
			continue
		}
		if i == keep && len(c.index) > 1 {
			continue // the entry just written goes only when it alone is over the bound
		}
		if s.used {
			s.used = false
			continue
		}
		c.used -= slotSize(s.key, s.live, s.value)
		delete(c.index, s.key)
		*s = cacheSlot{}
		c.free = append(c.free, int32(i))
	}
}
