package metrics

import (
	"fmt"
	"testing"
)

// TestClientVersionsAreBounded checks that client_api_version, which comes
// from the client, makes at most maxClientVersions series: past them
// requests of a new kind and version count under "other", none is lost.
func TestClientVersionsAreBounded(t *testing.T) {
	m := New(Basic)
	const versions = maxClientVersions + 8
	for i := range versions {
		m.ClientRequest("unary", fmt.Sprintf("3.%d", i))
		m.ClientRequest("unary", fmt.Sprintf("3.%d", i))
	}
	m.ClientRequest("stream", "3.0") // a new pair past the bound
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	series, total := map[string]float64{}, 0.0
	for _, f := range fams {
		if f.GetName() != "etcd_server_client_requests_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == "stream" && labels["client_api_version"] != "other" {
				t.Errorf("a new pair past the bound made its own series: %v", labels)
			}
			if labels["type"] == "unary" {
				series[labels["client_api_version"]] = s.GetCounter().GetValue()
				total += s.GetCounter().GetValue()
			}
		}
	}
	if len(series) != maxClientVersions+1 {
		t.Errorf("%d unary series, want %d versions and other", len(series), maxClientVersions)
	}
	if series["other"] != 2*8 || series["3.0"] != 2 || total != 2*versions {
		t.Errorf("other %v, 3.0 %v, total %v; want %d, 2, %d", series["other"], series["3.0"], total, 2*8, 2*versions)
	}
}
