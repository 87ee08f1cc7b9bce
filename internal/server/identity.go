package server

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/storage"
)

// InitialMember is one entry of --initial-cluster.
type InitialMember struct {
	Name     string
	PeerURLs []string
}

// MemberID derives a member's ID from its peer URLs and the cluster token,
// so every initial member computes the same IDs for all of them without
// talking to each other.
func MemberID(peerURLs []string, token string) uint64 {
	urls := slices.Clone(peerURLs)
	sort.Strings(urls)
	h := sha1.New()
	for _, u := range urls {
		h.Write([]byte(u))
		h.Write([]byte{0})
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return nonZero(binary.BigEndian.Uint64(sum[:8]))
}

// ClusterID derives the cluster ID from the initial members' IDs and token.
func ClusterID(memberIDs []uint64, token string) uint64 {
	ids := slices.Clone(memberIDs)
	slices.Sort(ids)
	h := sha1.New()
	for _, id := range ids {
		h.Write(binary.BigEndian.AppendUint64(nil, id))
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return nonZero(binary.BigEndian.Uint64(sum[:8]))
}

func nonZero(v uint64) uint64 {
	if v == 0 {
		return 1
	}
	return v
}

// localIdentity is what a data dir remembers about the member it belongs
// to. It is local (outside the replicated span) and written once, at
// bootstrap.
type localIdentity struct {
	Name      string `json:"name"`
	MemberID  uint64 `json:"member_id"`
	ClusterID uint64 `json:"cluster_id"`
	Token     string `json:"token"`
}

func loadIdentity(db *pebble.DB) (*localIdentity, error) {
	v, err := storage.Get(db, storage.LocalMemberKey)
	if err != nil || v == nil {
		return nil, err
	}
	id := &localIdentity{}
	if err := json.Unmarshal(v, id); err != nil {
		return nil, fmt.Errorf("data dir identity record is corrupt: %w", err)
	}
	return id, nil
}

func saveIdentity(db *pebble.DB, id *localIdentity) error {
	v, err := json.Marshal(id)
	if err != nil {
		return err
	}
	return db.Set(storage.LocalMemberKey, v, pebble.Sync)
}
