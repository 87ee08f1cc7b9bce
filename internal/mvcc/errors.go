package mvcc

import "errors"

// Errors returned by the store. The api package maps each of them to the
// matching etcd rpctypes error; callers test for them with errors.Is, since
// they are usually wrapped with the offending input.
var (
	// ErrCompacted: a read or compaction asked for a revision that has been
	// compacted away.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev: a read or compaction asked for a revision newer than the
	// current one.
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
	// ErrCompactionInProgress: the stored history is still being compacted
	// (see Store.WaitCompacted); try again later.
	ErrCompactionInProgress = errors.New("mvcc: compaction in progress")
	// ErrKeyNotFound: a put with ignore_value or ignore_lease names a key
	// that does not exist, or a txn holds an empty request op.
	ErrKeyNotFound = errors.New("mvcc: key not found")
	// ErrDuplicateKey: a txn writes one key twice on one branch path.
	ErrDuplicateKey = errors.New("mvcc: duplicate key given in txn request")
	// ErrTooManyOps: a txn has more operations than the configured maximum.
	ErrTooManyOps = errors.New("mvcc: too many operations in txn request")
	// ErrEmptyKey: a request or compare names no key.
	ErrEmptyKey = errors.New("mvcc: key is not provided")
	// ErrValueProvided: a put sets ignore_value and a value.
	ErrValueProvided = errors.New("mvcc: value is provided")
	// ErrLeaseProvided: a put sets ignore_lease and a lease.
	ErrLeaseProvided = errors.New("mvcc: lease is provided")
	// ErrInvalidSortOption: a range has an unknown sort order or target.
	ErrInvalidSortOption = errors.New("mvcc: invalid sort option")
)

// IsRequestError reports whether err is a verdict on the request (one of the
// errors above): deterministic, the same on every member, and leaving
// nothing written. Any other error from a Writer is a storage failure after
// which the batch must be discarded.
func IsRequestError(err error) bool {
	for _, e := range []error{ErrCompacted, ErrFutureRev, ErrKeyNotFound, ErrDuplicateKey, ErrTooManyOps,
		ErrEmptyKey, ErrValueProvided, ErrLeaseProvided, ErrInvalidSortOption} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
