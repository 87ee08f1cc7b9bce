package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key prefixes. Each one-byte prefix owns one kind of record; the byte
// values order the raft log before the state machine, so a raft snapshot
// can stream the state machine as the contiguous span
// [StateMachineStart, StateMachineEnd).
const (
	prefixRaft    byte = 0x01 // raft log, hard state, snapshot metadata
	prefixMeta    byte = 0x10 // state machine metadata: applied index, revisions, cluster
	prefixLatest  byte = 0x11 // latest version of every live key
	prefixHistory byte = 0x12 // key-major index of every retained version
	prefixEvents  byte = 0x13 // revision-major log of every retained change
	prefixMember  byte = 0x14 // cluster members
	prefixLease   byte = 0x15 // leases and the keys attached to them
	prefixAuth    byte = 0x16 // users and roles (reserved for the auth issue)
	prefixRemoved byte = 0x17 // IDs of members removed from the cluster
	prefixAlarm   byte = 0x18 // active alarms
	prefixPromote byte = 0x19 // learners to promote once they have caught up
	prefixEnd     byte = 0x20
)

// StateMachineStart and StateMachineEnd bound every key a raft snapshot
// carries. Everything outside the span is local to one member.
var (
	StateMachineStart = []byte{prefixMeta}
	StateMachineEnd   = []byte{prefixEnd}
)

// Raft records.
var (
	HardStateKey    = []byte{prefixRaft, 'h'}
	SnapshotMetaKey = []byte{prefixRaft, 's'} // raftpb.SnapshotMetadata of the last snapshot/compaction point
	entryPrefix     = []byte{prefixRaft, 'e'}
)

// EntryKey is the key of the raft log entry at index.
func EntryKey(index uint64) []byte { return AppendEntryKey(make([]byte, 0, len(entryPrefix)+8), index) }

// AppendEntryKey appends EntryKey(index) to dst.
func AppendEntryKey(dst []byte, index uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, entryPrefix...), index)
}

// EntryKeyIndex decodes a key made by EntryKey.
func EntryKeyIndex(k []byte) (uint64, error) {
	if len(k) != len(entryPrefix)+8 || k[0] != entryPrefix[0] || k[1] != entryPrefix[1] {
		return 0, fmt.Errorf("storage: malformed raft entry key %x", k)
	}
	return binary.BigEndian.Uint64(k[len(entryPrefix):]), nil
}

// Metadata records of the state machine.
var (
	// AppliedIndexKey holds the raft index (8 bytes) of the last entry whose
	// effects are in the state machine. Written in the same batch as them.
	AppliedIndexKey = metaKey("applied")
	// CurrentRevKey holds the current main revision (8 bytes).
	CurrentRevKey = metaKey("rev")
	// CompactRevKey holds the revision of the last compaction (8 bytes).
	CompactRevKey = metaKey("compact")
	// CompactedRevKey holds the revision up to which the history was
	// physically compacted (8 bytes): at most CompactRevKey's; absent in
	// stores written before compaction ran in the background, where the two
	// are equal.
	CompactedRevKey = metaKey("compacted")
	// CompactScanKey holds the progress of the compaction steps under way:
	// the revision they compact to (8 bytes) and the history key or the
	// event key they go on from. Absent when none are under way.
	CompactScanKey = metaKey("compactscan")
	// ClusterKey holds the cluster identity (see server package).
	ClusterKey = metaKey("cluster")
	// LocalMemberKey holds this member's identity; it is not replicated, so
	// it lives outside the state machine span.
	LocalMemberKey = []byte{prefixRaft, 'm'}
	// PendingSnapshotKey marks a raft snapshot that is being installed; its
	// value names the file holding the snapshot data. See raftnode.
	PendingSnapshotKey = []byte{prefixRaft, 'p'}
	// RaftLogKey records that this member's raft log was created (in
	// raftnode.WALDir or --wal-dir, named in the value): a member whose
	// engine holds it but whose log is gone must not start with an empty
	// raft state (it could vote twice in a term).
	RaftLogKey = []byte{prefixRaft, 'w'}
	// LogMovedHardState is what HardStateKey holds once the raft log lives
	// in its write-ahead log: not a hard state, so that a build from before
	// the move, which reads the raft log from the engine, refuses the data
	// dir ("raft hard state is corrupt") instead of starting a new raft log
	// on top of the applied state.
	LogMovedHardState = []byte("\xffthe raft log moved to its write-ahead log (member/wal or --wal-dir): this data dir needs a Kvorum build from 2026-12-06 or later")
)

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

// LatestKey is the key under which the latest live version of user key k is
// kept. Ordering of LatestKey equals ordering of user keys.
func LatestKey(k []byte) []byte { return AppendLatestKey(make([]byte, 0, 1+len(k)), k) }

// AppendLatestKey appends LatestKey(k) to dst.
func AppendLatestKey(dst, k []byte) []byte {
	dst = append(dst, prefixLatest)
	return append(dst, k...)
}

// LatestSpan returns the engine span holding latest versions of user keys in
// [start, end). An empty end means "no upper bound" (etcd's from-key form is
// expressed by the caller passing nil).
func LatestSpan(start, end []byte) (lo, hi []byte) {
	lo = LatestKey(start)
	if end == nil {
		return lo, []byte{prefixLatest + 1}
	}
	return lo, LatestKey(end)
}

// UserKeyFromLatest strips the prefix of a LatestKey.
func UserKeyFromLatest(k []byte) []byte { return k[1:] }

// History keys order by user key, then by revision. The user key is escaped
// (0x00 -> 0x00 0xff) and terminated by 0x00 0x01 so that no key is a prefix
// of another's encoding and byte order equals (key, revision) order.
const (
	escByte  = 0x00
	escMark  = 0xff
	termMark = 0x01
)

func appendEscaped(dst, k []byte) []byte {
	for _, c := range k {
		if c == escByte {
			dst = append(dst, escByte, escMark)
			continue
		}
		dst = append(dst, c)
	}
	return append(dst, escByte, termMark)
}

// HistoryKeyPrefix is the prefix shared by every history key of user key k.
func HistoryKeyPrefix(k []byte) []byte {
	out := make([]byte, 0, len(k)+3)
	out = append(out, prefixHistory)
	return appendEscaped(out, k)
}

// HistoryKey is the key of the version of user key k written at revision rev.
func HistoryKey(k []byte, rev Revision) []byte {
	return AppendHistoryKey(make([]byte, 0, len(k)+3+revisionLen), k, rev)
}

// AppendHistoryKey appends HistoryKey(k, rev) to dst.
func AppendHistoryKey(dst, k []byte, rev Revision) []byte {
	dst = append(dst, prefixHistory)
	return rev.append(appendEscaped(dst, k))
}

// AppendHistoryRevision appends to a HistoryKeyPrefix the revision that
// completes it into a HistoryKey.
func AppendHistoryRevision(prefix []byte, rev Revision) []byte { return rev.append(prefix) }

// HistoryKeyPastRevisions is a key after every history key whose prefix
// (HistoryKeyPrefix) is prefix and before any of the next user key: a
// revision's main part is not negative, so its first byte is below 0xff.
func HistoryKeyPastRevisions(prefix []byte) []byte {
	out := make([]byte, 0, len(prefix)+revisionLen)
	out = append(out, prefix...)
	for range revisionLen {
		out = append(out, 0xff)
	}
	return out
}

// HistorySpanStart is the smallest history key of any user key >= k.
func HistorySpanStart(k []byte) []byte { return HistoryKeyPrefix(k) }

// HistorySpanEnd is the smallest history key of any user key >= end, or the
// end of the history prefix when end is nil.
func HistorySpanEnd(end []byte) []byte {
	if end == nil {
		return []byte{prefixHistory + 1}
	}
	return HistoryKeyPrefix(end)
}

// ErrMalformedKey reports a stored key that no encoder here produces:
// corruption or a foreign data dir.
var ErrMalformedKey = errors.New("storage: malformed key")

// SplitHistoryKey splits a history key into the part that names its user
// key (HistoryKeyPrefix of it) and its revision, without decoding the user
// key; the prefix aliases hk.
func SplitHistoryKey(hk []byte) ([]byte, Revision, error) {
	if len(hk) < 1+2+revisionLen || hk[0] != prefixHistory {
		return nil, Revision{}, fmt.Errorf("%w: history key %x", ErrMalformedKey, hk)
	}
	rev, err := decodeRevision(hk[len(hk)-revisionLen:])
	return hk[:len(hk)-revisionLen], rev, err
}

// DecodeHistoryKey splits a history key into its user key and revision.
func DecodeHistoryKey(hk []byte) ([]byte, Revision, error) {
	prefix, rev, err := SplitHistoryKey(hk)
	if err != nil {
		return nil, Revision{}, err
	}
	user, err := DecodeHistoryPrefix(prefix)
	return user, rev, err
}

// DecodeHistoryPrefix decodes the user key of a HistoryKeyPrefix.
func DecodeHistoryPrefix(prefix []byte) ([]byte, error) {
	if len(prefix) < 3 || prefix[0] != prefixHistory {
		return nil, fmt.Errorf("%w: history key prefix %x", ErrMalformedKey, prefix)
	}
	body := prefix[1:]
	user := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != escByte {
			user = append(user, c)
			continue
		}
		if i+1 >= len(body) {
			break
		}
		switch body[i+1] {
		case escMark:
			user = append(user, escByte)
			i++
		case termMark:
			if i+2 != len(body) {
				return nil, fmt.Errorf("%w: history key prefix %x", ErrMalformedKey, prefix)
			}
			return user, nil
		default:
			return nil, fmt.Errorf("%w: history key prefix %x", ErrMalformedKey, prefix)
		}
	}
	return nil, fmt.Errorf("%w: history key prefix %x", ErrMalformedKey, prefix)
}

// Revision identifies one change: Main is the store revision of the request
// that made it, Sub orders the changes inside that request (a txn).
type Revision struct {
	Main int64
	Sub  int64
}

const revisionLen = 16

func (r Revision) append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Main))
	return binary.BigEndian.AppendUint64(dst, uint64(r.Sub))
}

func decodeRevision(b []byte) (Revision, error) {
	if len(b) != revisionLen {
		return Revision{}, fmt.Errorf("%w: revision %x", ErrMalformedKey, b)
	}
	return Revision{
		Main: int64(binary.BigEndian.Uint64(b[:8])),
		Sub:  int64(binary.BigEndian.Uint64(b[8:])),
	}, nil
}

// EventKey is the key of the change made at rev in the revision-major log.
func EventKey(rev Revision) []byte { return AppendEventKey(make([]byte, 0, 1+revisionLen), rev) }

// AppendEventKey appends EventKey(rev) to dst.
func AppendEventKey(dst []byte, rev Revision) []byte { return rev.append(append(dst, prefixEvents)) }

// EventSpan is the span of events with main revision in [fromMain, toMain).
func EventSpan(fromMain, toMain int64) (lo, hi []byte) {
	return EventKey(Revision{Main: fromMain}), EventKey(Revision{Main: toMain})
}

// IsEventKey reports whether k is in the span of event keys.
func IsEventKey(k []byte) bool { return len(k) > 0 && k[0] == prefixEvents }

// DecodeEventKey returns the revision of an event key.
func DecodeEventKey(k []byte) (Revision, error) {
	if len(k) != 1+revisionLen || k[0] != prefixEvents {
		return Revision{}, fmt.Errorf("%w: event key %x", ErrMalformedKey, k)
	}
	return decodeRevision(k[1:])
}

// MemberKey is the key of the member with the given raft ID.
func MemberKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixMember}, id)
}

// RemovedMemberKey marks the member with the given raft ID as removed; a
// removed ID never returns.
func RemovedMemberKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixRemoved}, id)
}

// AutoPromoteKey marks learner id for promotion once it has caught up.
func AutoPromoteKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixPromote}, id)
}

// AutoPromoteSpan bounds every AutoPromoteKey.
func AutoPromoteSpan() (lo, hi []byte) { return []byte{prefixPromote}, []byte{prefixPromote + 1} }

// RemovedMemberSpan bounds every RemovedMemberKey.
func RemovedMemberSpan() (lo, hi []byte) { return []byte{prefixRemoved}, []byte{prefixRemoved + 1} }

// MemberIDOfKey decodes a key made by RemovedMemberKey or AutoPromoteKey.
func MemberIDOfKey(k []byte) (uint64, error) {
	if len(k) != 9 || (k[0] != prefixRemoved && k[0] != prefixPromote) {
		return 0, fmt.Errorf("storage: malformed member ID key %x", k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// AlarmKey is the key of the active alarm of the given type (an
// etcdserverpb.AlarmType) raised for member memberID.
func AlarmKey(memberID uint64, alarm int32) []byte {
	k := binary.BigEndian.AppendUint64([]byte{prefixAlarm}, memberID)
	return binary.BigEndian.AppendUint32(k, uint32(alarm))
}

// AlarmSpan bounds every AlarmKey.
func AlarmSpan() (lo, hi []byte) { return []byte{prefixAlarm}, []byte{prefixAlarm + 1} }

// AlarmKeyParts decodes a key made by AlarmKey.
func AlarmKeyParts(k []byte) (memberID uint64, alarm int32, err error) {
	if len(k) != 13 || k[0] != prefixAlarm {
		return 0, 0, fmt.Errorf("storage: malformed alarm key %x", k)
	}
	return binary.BigEndian.Uint64(k[1:9]), int32(binary.BigEndian.Uint32(k[9:])), nil
}

// Auth records: whether auth is enabled, the auth store's revision, and
// users and roles by name (marshaled authpb.User and authpb.Role).
var (
	AuthEnabledKey  = []byte{prefixAuth, 'e'}
	AuthRevisionKey = []byte{prefixAuth, 'v'}
)

// AuthUserKey is the key of the user named name.
func AuthUserKey(name string) []byte { return append([]byte{prefixAuth, 'u'}, name...) }

// AuthUserSpan bounds every AuthUserKey.
func AuthUserSpan() (lo, hi []byte) { return []byte{prefixAuth, 'u'}, []byte{prefixAuth, 'u' + 1} }

// AuthRoleKey is the key of the role named name.
func AuthRoleKey(name string) []byte { return append([]byte{prefixAuth, 'r'}, name...) }

// AuthRoleSpan bounds every AuthRoleKey.
func AuthRoleSpan() (lo, hi []byte) { return []byte{prefixAuth, 'r'}, []byte{prefixAuth, 'r' + 1} }

// MemberSpan bounds every MemberKey.
func MemberSpan() (lo, hi []byte) { return []byte{prefixMember}, []byte{prefixMember + 1} }

// Lease records: 'l' + ID holds a lease, 'k' + ID + user key marks a key
// attached to it. IDs are stored as unsigned big-endian so records sort by
// ID and one lease's attachments are contiguous.
const (
	leaseRecord = 'l'
	leaseAttach = 'k'
)

// LeaseKey is the key of the record of lease id.
func LeaseKey(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixLease, leaseRecord}, uint64(id))
}

// LeaseSpan bounds every LeaseKey.
func LeaseSpan() (lo, hi []byte) {
	return []byte{prefixLease, leaseRecord}, []byte{prefixLease, leaseRecord + 1}
}

// DecodeLeaseKey returns the lease ID of a key made by LeaseKey.
func DecodeLeaseKey(k []byte) (int64, error) {
	if len(k) != 2+8 || k[0] != prefixLease || k[1] != leaseRecord {
		return 0, fmt.Errorf("%w: lease key %x", ErrMalformedKey, k)
	}
	return int64(binary.BigEndian.Uint64(k[2:])), nil
}

// LeaseAttachKey marks user key k as attached to lease id.
func LeaseAttachKey(id int64, k []byte) []byte {
	out := make([]byte, 0, 2+8+len(k))
	out = binary.BigEndian.AppendUint64(append(out, prefixLease, leaseAttach), uint64(id))
	return append(out, k...)
}

// LeaseAttachSpan bounds every LeaseAttachKey.
func LeaseAttachSpan() (lo, hi []byte) {
	return []byte{prefixLease, leaseAttach}, []byte{prefixLease, leaseAttach + 1}
}

// DecodeLeaseAttachKey splits a key made by LeaseAttachKey.
func DecodeLeaseAttachKey(k []byte) (int64, []byte, error) {
	if len(k) < 2+8 || k[0] != prefixLease || k[1] != leaseAttach {
		return 0, nil, fmt.Errorf("%w: lease attachment key %x", ErrMalformedKey, k)
	}
	return int64(binary.BigEndian.Uint64(k[2:10])), k[10:], nil
}

// PutUint64 and GetUint64 encode the fixed-width counters stored above.
func PutUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// GetUint64 decodes a value made by PutUint64; a missing value is zero.
func GetUint64(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: counter value %x", ErrMalformedKey, b)
	}
	return binary.BigEndian.Uint64(b), nil
}
