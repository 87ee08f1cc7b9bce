package mvcc

import (
	"container/list"

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
type latestCache struct {
	max, used int
	entries   map[string]*list.Element
	lru       list.List // front: most recently used
}

type cacheEntry struct {
	key string
	kv  *mvccpb.KeyValue // nil: the key has no live version
}

func newLatestCache(maxBytes int) *latestCache {
	return &latestCache{max: maxBytes, entries: make(map[string]*list.Element)}
}

func entrySize(key string, kv *mvccpb.KeyValue) int {
	n := 2*len(key) + 96 // map key, list element and struct overheads
	if kv != nil {
		n += len(kv.Value) + 64
	}
	return n
}

// get returns a private copy of the cached version and whether key was
// cached at all.
func (c *latestCache) get(key []byte) (*mvccpb.KeyValue, bool) {
	el, ok := c.entries[string(key)]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return shallowCopy(el.Value.(*cacheEntry).kv), true
}

// set records kv (nil: no live version) as key's latest version.
func (c *latestCache) set(key []byte, kv *mvccpb.KeyValue) {
	kv = shallowCopy(kv)
	if el, ok := c.entries[string(key)]; ok {
		e := el.Value.(*cacheEntry)
		c.used += entrySize(e.key, kv) - entrySize(e.key, e.kv)
		e.kv = kv
		c.lru.MoveToFront(el)
	} else {
		e := &cacheEntry{key: string(key), kv: kv}
		c.entries[e.key] = c.lru.PushFront(e)
		c.used += entrySize(e.key, kv)
	}
	for c.used > c.max && c.lru.Len() > 0 {
		e := c.lru.Remove(c.lru.Back()).(*cacheEntry)
		delete(c.entries, e.key)
		c.used -= entrySize(e.key, e.kv)
	}
}

// shallowCopy copies the struct so callers may change its fields (a range
// clears Value for keys_only); the byte slices are never written in place.
func shallowCopy(kv *mvccpb.KeyValue) *mvccpb.KeyValue {
	if kv == nil {
		return nil
	}
	return &mvccpb.KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Value:          kv.Value,
		Lease:          kv.Lease,
	}
}
