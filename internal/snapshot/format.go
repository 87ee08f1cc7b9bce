package snapshot

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/etcd/client/pkg/v3/types"
)

// etcd's backend layout: bucket names, meta keys and the encodings of
// revisions and member records, as etcd v3.6 and v3.7 write them
// (go.etcd.io/etcd/server/v3/storage/schema and storage/mvcc).
//
// They are restated here rather than imported because etcd's server
// packages register etcd's Prometheus metrics in the default registry when
// they are linked in, which would put etcd's mvcc, backend, wal and lease
// metrics (with etcd's names, never updated) into Kvorum's binaries.
// format_test.go checks every name and encoding below against etcd's own
// packages, reading a file written here with etcd's readers.
var (
	bucketKey            = []byte("key")
	bucketMeta           = []byte("meta")
	bucketLease          = []byte("lease")
	bucketAlarm          = []byte("alarm")
	bucketCluster        = []byte("cluster")
	bucketMembers        = []byte("members")
	bucketMembersRemoved = []byte("members_removed")
	bucketAuth           = []byte("auth")
	bucketAuthUsers      = []byte("authUsers")
	bucketAuthRoles      = []byte("authRoles")

	// allBuckets are the buckets etcd creates in every backend.
	allBuckets = [][]byte{bucketKey, bucketMeta, bucketLease, bucketAlarm, bucketCluster,
		bucketMembers, bucketMembersRemoved, bucketAuth, bucketAuthUsers, bucketAuthRoles}

	metaConsistentIndex  = []byte("consistent_index")
	metaTerm             = []byte("term")
	metaConfState        = []byte("confState")
	metaStorageVersion   = []byte("storageVersion")
	metaScheduledCompact = []byte("scheduledCompactRev")
	metaFinishedCompact  = []byte("finishedCompactRev")
	clusterVersionKey    = []byte("clusterVersion")
	authEnabledKey       = []byte("authEnabled")  // in bucketAuth: 1 on, 0 off
	authRevisionKey      = []byte("authRevision") // in bucketAuth: 8 bytes big-endian
)

// A key of the key bucket is the revision of the change: main and sub
// revision as 8-byte big-endian numbers joined by '_', and a trailing 't'
// when the change is a deletion (tombstone).
const (
	revKeyLen       = 8 + 1 + 8
	revSeparator    = '_'
	tombstoneMark   = 't'
	markedRevKeyLen = revKeyLen + 1
)

func revKey(main, sub int64, tombstone bool) []byte {
	k := make([]byte, 0, markedRevKeyLen)
	k = binary.BigEndian.AppendUint64(k, uint64(main))
	k = append(k, revSeparator)
	k = binary.BigEndian.AppendUint64(k, uint64(sub))
	if tombstone {
		k = append(k, tombstoneMark)
	}
	return k
}

// parseRevKey decodes a key of the key bucket (or a compaction revision
// of the meta bucket, which has the same form without mark).
func parseRevKey(k []byte) (main, sub int64, tombstone bool, err error) {
	if (len(k) != revKeyLen && len(k) != markedRevKeyLen) || k[8] != revSeparator {
		return 0, 0, false, fmt.Errorf("malformed revision key %x", k)
	}
	main, sub = int64(binary.BigEndian.Uint64(k[:8])), int64(binary.BigEndian.Uint64(k[9:17]))
	if main < 0 || sub < 0 {
		return 0, 0, false, fmt.Errorf("malformed revision key %x: negative revision", k)
	}
	return main, sub, len(k) == markedRevKeyLen && k[revKeyLen] == tombstoneMark, nil
}

// leaseKey is the key of a lease record: its ID, 8 bytes big-endian.
func leaseKey(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// memberKey is the key of a member record: its ID in hex.
func memberKey(id uint64) []byte { return []byte(types.ID(id).String()) }

// memberRecord is the JSON value of a member record: etcd's
// membership.Member, whose two embedded attribute structs put these fields
// at the top level in this order.
type memberRecord struct {
	ID         types.ID `json:"id"`
	PeerURLs   []string `json:"peerURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
	Name       string   `json:"name,omitempty"`
	ClientURLs []string `json:"clientURLs,omitempty"`
}
