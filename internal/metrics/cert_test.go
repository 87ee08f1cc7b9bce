package metrics

import (
	"testing"
	"time"
)

func TestCertificateExpiryIsExported(t *testing.T) {
	m := New(Basic)
	when := time.Unix(1_900_000_000, 0)
	m.CertificateExpiry(func() time.Time { return when })
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "kvorum_server_certificate_expiry_timestamp_seconds" {
			if got := f.GetMetric()[0].GetGauge().GetValue(); got != float64(when.Unix()) {
				t.Errorf("expiry %v, want %d", got, when.Unix())
			}
			return
		}
	}
	t.Error("kvorum_server_certificate_expiry_timestamp_seconds is not exported")
}
