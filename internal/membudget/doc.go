// Package membudget splits a member's memory budget (--memory-budget-bytes)
// among the parts of Kvorum that hold memory on purpose: the storage
// engine's block cache and memtables, the key space's latest-version cache
// and key filter, and the watch hub's buffer of recent changes. What is
// left is the Go runtime's soft limit, which makes the garbage collector
// work harder rather than let the heap grow past the budget.
//
// None of these grows with the number of keys: a member with ten times the
// data holds the same caches, and the rest stays on disk (and in the
// operating system's page cache, which the kernel gives back under
// pressure and which does not count in the process's RSS).
package membudget
