package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pathMembers is where a member serves the member list on its peer URLs,
// for members that join an existing cluster (etcd serves /members there
// for the same purpose).
const pathMembers = "/members"

// headerClusterID carries the cluster ID in the answer of pathMembers.
const headerClusterID = "X-Kvorum-Cluster-ID"

// memberInfo is one member in the answer of pathMembers.
type memberInfo struct {
	ID         string   `json:"id"` // hex
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// PeerHandler serves the peer plane: raft messages and snapshots (the
// transport) and the member list for joining members.
func (s *Server) PeerHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", s.transport.Handler())
	mux.HandleFunc("GET "+pathMembers, s.serveMembers)
	return mux
}

func (s *Server) serveMembers(w http.ResponseWriter, _ *http.Request) {
	var out []memberInfo
	for _, m := range s.members.List() {
		out = append(out, memberInfo{ID: strconv.FormatUint(m.GetID(), 16), Name: m.GetName(),
			PeerURLs: m.GetPeerURLs(), ClientURLs: m.GetClientURLs(), IsLearner: m.GetIsLearner()})
	}
	w.Header().Set(headerClusterID, strconv.FormatUint(s.clusterID, 16))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// joinedCluster is what a joining member learned from a running one.
type joinedCluster struct {
	clusterID uint64
	members   []memberInfo
}

// joinIdentity is the identity of a member started with
// --initial-cluster-state existing on an empty data dir: it asks the other
// members of --initial-cluster for the cluster's ID and member list, and
// finds itself there by its advertised peer URLs (added before with
// member add).
func (s *Server) joinIdentity() (*localIdentity, *joinedCluster, error) {
	cfg := s.cfg
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.PeerClientTLS}}
	defer client.CloseIdleConnections()
	mine := slices.Sorted(slices.Values(cfg.AdvertisePeerURLs))
	var errs []error
	var answered *joinedCluster
	// Every member is asked until one lists this member: the one that
	// answered member add has applied it, others may not have yet.
	for _, m := range cfg.InitialCluster {
		if m.Name == cfg.Name {
			continue
		}
		for _, u := range m.PeerURLs {
			jc, err := fetchMembers(client, u)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			answered = jc
			id, ok, err := jc.find(mine)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				break // this member does not know us (yet); ask the next one
			}
			ident := &localIdentity{Name: cfg.Name, MemberID: id, ClusterID: jc.clusterID, Token: cfg.ClusterToken}
			if err := saveIdentity(s.db, ident); err != nil {
				return nil, nil, err
			}
			return ident, jc, nil
		}
	}
	if answered == nil {
		return nil, nil, fmt.Errorf("cannot join the existing cluster: no other member of --initial-cluster answered: %w", errors.Join(errs...))
	}
	return nil, nil, fmt.Errorf("cluster %x has no member with peer URLs %s; add this member first (member add --peer-urls=%s), or use --initial-cluster-state new for a new cluster",
		answered.clusterID, strings.Join(mine, ","), strings.Join(mine, ","))
}

// find returns the ID of the member whose peer URLs are urls (sorted).
func (jc *joinedCluster) find(urls []string) (uint64, bool, error) {
	for _, m := range jc.members {
		if !slices.Equal(slices.Sorted(slices.Values(m.PeerURLs)), urls) {
			continue
		}
		id, err := strconv.ParseUint(m.ID, 16, 64)
		if err != nil {
			return 0, false, fmt.Errorf("cannot join the existing cluster: member ID %q: %w", m.ID, err)
		}
		return id, true, nil
	}
	return 0, false, nil
}

func fetchMembers(client *http.Client, peerURL string) (*joinedCluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(peerURL, "/")+pathMembers, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask %s for the member list: %w", peerURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ask %s for the member list: %s", peerURL, resp.Status)
	}
	cid, err := strconv.ParseUint(resp.Header.Get(headerClusterID), 16, 64)
	if err != nil {
		return nil, fmt.Errorf("ask %s for the member list: no valid cluster ID in the answer", peerURL)
	}
	jc := &joinedCluster{clusterID: cid}
	if err := json.NewDecoder(resp.Body).Decode(&jc.members); err != nil {
		return nil, fmt.Errorf("ask %s for the member list: %w", peerURL, err)
	}
	return jc, nil
}

// markRemoved records in the data dir that this member was removed from
// its cluster, so it refuses to start from it again.
func (s *Server) markRemoved() {
	ident, err := loadIdentity(s.db)
	if err != nil || ident == nil {
		s.lg.Error("cannot record this member's removal in its data dir", "err", err)
		return
	}
	ident.Removed = true
	if err := saveIdentity(s.db, ident); err != nil {
		s.lg.Error("cannot record this member's removal in its data dir", "err", err)
	}
}
