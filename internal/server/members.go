package server

import "github.com/kvorum/kvorum/internal/apply"

// syncPeers makes the transport know every other member of the replicated
// member list at its current peer URLs, and forget the members removed by
// changes.
func (s *Server) syncPeers(changes []apply.MemberChange) {
	if s.transport == nil {
		return // still opening: open adds the peers it loaded
	}
	for _, m := range s.members.List() {
		if m.GetID() != s.memberID {
			s.transport.AddPeer(m.GetID(), m.GetPeerURLs())
		}
	}
	for _, c := range changes {
		if c.Removed && c.ID != s.memberID {
			s.transport.RemovePeer(c.ID)
			s.Metrics().RemovePeer(c.ID)
		}
	}
}
