package member

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// certWarnBefore is how long before a certificate expires a member starts
// warning about it, once a day.
const certWarnBefore = 30 * 24 * time.Hour

// certExpiry is one certificate file's earliest expiry.
type certExpiry struct {
	file     string
	notAfter time.Time
	subject  string
}

// certExpiries reads the certificates in files (PEM, several per file for
// CA bundles) and returns each file's earliest expiry.
func certExpiries(files []string) ([]certExpiry, error) {
	var out []certExpiry
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var e *certExpiry
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate in %s: %w", f, err)
			}
			if e == nil || c.NotAfter.Before(e.notAfter) {
				e = &certExpiry{file: f, notAfter: c.NotAfter, subject: c.Subject.String()}
			}
		}
		if e != nil {
			out = append(out, *e)
		}
	}
	return out, nil
}

// warnExpiring logs a warning for every certificate that expires within
// certWarnBefore of now (or has expired) and returns the earliest expiry
// (zero if there is none).
func warnExpiring(lg *slog.Logger, files []string, now time.Time) time.Time {
	es, err := certExpiries(files)
	if err != nil {
		lg.Warn("cannot read a certificate to check its expiry", "err", err)
		return time.Time{}
	}
	var earliest time.Time
	for _, e := range es {
		if earliest.IsZero() || e.notAfter.Before(earliest) {
			earliest = e.notAfter
		}
		if left := e.notAfter.Sub(now); left < certWarnBefore {
			lg.Warn("certificate expires soon; renew it (files are re-read for new connections, no restart needed)",
				"file", e.file, "subject", e.subject, "not-after", e.notAfter.UTC().Format(time.RFC3339), "days-left", int(left.Hours()/24))
		}
	}
	return earliest
}

// watchCertificates checks the member's certificate files at start and
// then daily until the server stops, and records the earliest expiry.
func (m *Member) watchCertificates(files []string) {
	m.certFiles = files
	if len(files) == 0 {
		return
	}
	m.certExpiry.Store(warnExpiring(m.lg, files, time.Now()).Unix())
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(24 * time.Hour)
		defer t.Stop()
		for {
			select {
			case <-m.Server.Done():
				return
			case <-t.C:
				m.certExpiry.Store(warnExpiring(m.lg, files, time.Now()).Unix())
			}
		}
	}()
}

// CertificatesExpire is when the earliest of the member's certificates
// (its own and the CAs it trusts) expires; zero without TLS files.
func (m *Member) CertificatesExpire() time.Time {
	if s := m.certExpiry.Load(); s > 0 {
		return time.Unix(s, 0)
	}
	return time.Time{}
}
