package mvcc

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func cacheKV(key string, rev int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte("v" + key), CreateRevision: 1, ModRevision: rev, Version: rev, Lease: 7}
}

// checkCache verifies the cache's bookkeeping: every indexed slot holds
// its key, the byte count is the sum of the entries, and it is in bounds.
func checkCache(t *testing.T, c *latestCache) {
	t.Helper()
	sum := 0
	for k, i := range c.index {
		s := c.slots[i]
		if s.key != k {
			t.Fatalf("index maps %q to slot %d holding %q", k, i, s.key)
		}
		sum += slotSize(s.key, s.live, s.value)
	}
	if sum != c.used {
		t.Fatalf("cache counts %d bytes, its entries hold %d", c.used, sum)
	}
	if c.used > c.max {
		t.Fatalf("cache holds %d bytes, bound %d", c.used, c.max)
	}
	if free := len(c.slots) - len(c.index); free != len(c.free) {
		t.Fatalf("%d slots without a key, %d on the free list", free, len(c.free))
	}
}

func TestLatestCacheKeepsVersionsWithinItsBound(t *testing.T) {
	one := slotSize("k000", true, []byte("vk000"))
	c := newLatestCache(10 * one)

	c.set([]byte("a"), cacheKV("a", 3))
	c.set([]byte("gone"), nil)
	got, ok := c.get([]byte("a"))
	if !ok || got.GetModRevision() != 3 || string(got.GetValue()) != "va" || got.GetLease() != 7 || string(got.GetKey()) != "a" {
		t.Fatalf("get a = %v, %v; want the version at 3", got, ok)
	}
	got.Value = nil // a caller may change its copy (keys_only)
	if again, _ := c.get([]byte("a")); string(again.GetValue()) != "va" {
		t.Fatalf("a caller's change reached the cache: %v", again)
	}
	if got, ok := c.get([]byte("gone")); !ok || got != nil {
		t.Fatalf("get of a cached absence = %v, %v; want nil, true", got, ok)
	}
	if _, ok := c.get([]byte("never")); ok {
		t.Fatal("a key never set is reported cached")
	}
	c.set([]byte("a"), cacheKV("a", 4))
	if got, _ := c.get([]byte("a")); got.GetModRevision() != 4 {
		t.Fatalf("after a second set, get a = %v; want the version at 4", got)
	}
	checkCache(t, c)

	for i := range 200 {
		c.set(fmt.Appendf(nil, "k%03d", i), cacheKV(fmt.Sprintf("k%03d", i), int64(i+10)))
		checkCache(t, c)
	}
	if n := len(c.index); n < 5 || n > 10 {
		t.Fatalf("%d entries cached, want about 10 of %d bytes within %d", n, one, c.max)
	}
	if got, ok := c.get([]byte("k199")); !ok || got.GetModRevision() != 209 {
		t.Fatalf("the newest key: %v, %v", got, ok)
	}

	// An entry a larger than the whole bound is not kept.
	c.set([]byte("huge"), &mvccpb.KeyValue{Key: []byte("huge"), Value: make([]byte, 20*one)})
	checkCache(t, c)
	if _, ok := c.get([]byte("huge")); ok {
		t.Fatal("an entry larger than the bound is cached")
	}
}

// The clock spares a key read since its hand last passed: a key read
// between every two new ones stays cached while new keys come and go.
func TestLatestCacheKeepsKeysInUse(t *testing.T) {
	one := slotSize("k000", true, []byte("vk000"))
	c := newLatestCache(8 * one)
	c.set([]byte("hot"), cacheKV("hot", 1))
	for i := range 100 {
		c.set(fmt.Appendf(nil, "k%03d", i), cacheKV(fmt.Sprintf("k%03d", i), int64(i+2)))
		if _, ok := c.get([]byte("hot")); !ok {
			t.Fatalf("the key read after every put was evicted after %d new keys", i+1)
		}
	}
	checkCache(t, c)
}

// A put of a cached key allocates nothing in the cache.
func TestLatestCacheUpdateAllocatesNothing(t *testing.T) {
	c := newLatestCache(1 << 20)
	key := []byte("k")
	kv := cacheKV("k", 2)
	c.set(key, kv)
	if n := testing.AllocsPerRun(100, func() { c.set(key, kv) }); n != 0 {
		t.Fatalf("a put of a cached key allocated %v times", n)
	}
}
