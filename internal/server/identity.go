package server

import (
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kvorum/kvorum/internal/storage"
)

// InitialMember is one entry of --initial-cluster.
type InitialMember struct {
	Name     string
	PeerURLs []string
}

// localIdentity is what a data dir remembers about the member it belongs
// to. It is local (outside the replicated span) and written once, at
// bootstrap.
type localIdentity struct {
	Name      string `json:"name"`
	MemberID  uint64 `json:"member_id"`
	ClusterID uint64 `json:"cluster_id"`
	Token     string `json:"token"`
	// Removed is set once this member applied its own removal from the
	// cluster; it may not start from this data dir again.
	Removed bool `json:"removed,omitempty"`
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
	if err := db.Set(storage.LocalMemberKey, v, pebble.NoSync); err != nil {
		return err
	}
	return db.Flush() // the engine writes no log: a flush makes it durable
}
