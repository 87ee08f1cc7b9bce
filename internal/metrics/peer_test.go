package metrics

import "testing"

// peerBytes is the value of a per-peer byte counter, and whether its series
// exists.
func peerBytes(t *testing.T, m *Metrics, name, peer string) (float64, bool) {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "To" || l.GetName() == "From" {
					if l.GetValue() == peer {
						return s.GetCounter().GetValue(), true
					}
				}
			}
		}
	}
	return 0, false
}

// The per-peer byte counters add up under etcd's names and labels (the
// peer's ID in hex), and a removed peer's series go away; counting for the
// ID again starts a new series from zero.
func TestPeerByteCounters(t *testing.T) {
	m := New(Basic)
	m.PeerSent(0xabc, 100)
	m.PeerSent(0xabc, 20)
	m.PeerReceived(0xabc, 7)
	m.PeerSent(0xdef, 1)
	if v, ok := peerBytes(t, m, "etcd_network_peer_sent_bytes_total", "abc"); !ok || v != 120 {
		t.Fatalf("sent to abc = %v (series exists: %v), want 120", v, ok)
	}
	if v, ok := peerBytes(t, m, "etcd_network_peer_received_bytes_total", "abc"); !ok || v != 7 {
		t.Fatalf("received from abc = %v (series exists: %v), want 7", v, ok)
	}
	m.RemovePeer(0xabc)
	if _, ok := peerBytes(t, m, "etcd_network_peer_sent_bytes_total", "abc"); ok {
		t.Fatal("the removed peer's sent series is still exported")
	}
	if v, ok := peerBytes(t, m, "etcd_network_peer_sent_bytes_total", "def"); !ok || v != 1 {
		t.Fatalf("sent to def = %v (series exists: %v) after removing abc, want 1", v, ok)
	}
	m.PeerSent(0xabc, 5)
	if v, ok := peerBytes(t, m, "etcd_network_peer_sent_bytes_total", "abc"); !ok || v != 5 {
		t.Fatalf("sent to abc after it came back = %v (series exists: %v), want 5", v, ok)
	}
}
