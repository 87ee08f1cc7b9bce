package membership

import (
	"crypto/sha1"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MemberID is the ID etcd gives a member with the given peer URLs in the
// cluster named by token (--initial-cluster-token). The initial members
// pass a nil now, so every one of them computes the same IDs for all of
// them without talking; a member added later passes the time it is added,
// so re-adding the same URLs yields a new ID.
func MemberID(peerURLs []string, token string, now *time.Time) uint64 {
	urls := slices.Clone(peerURLs)
	slices.Sort(urls)
	input := strings.Join(urls, "") + token
	if now != nil {
		input += strconv.FormatInt(now.Unix(), 10)
	}
	sum := sha1.Sum([]byte(input))
	return binary.BigEndian.Uint64(sum[:8])
}

// ClusterID is the ID etcd gives a cluster whose initial members have the
// given IDs.
func ClusterID(memberIDs []uint64) uint64 {
	ids := slices.Clone(memberIDs)
	slices.Sort(ids)
	buf := make([]byte, 0, 8*len(ids))
	for _, id := range ids {
		buf = binary.BigEndian.AppendUint64(buf, id)
	}
	sum := sha1.Sum(buf)
	return binary.BigEndian.Uint64(sum[:8])
}
