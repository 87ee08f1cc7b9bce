package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Info is what a person checks on a certificate.
type Info struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	SANs      []string  `json:"sans"`
	Usages    []string  `json:"usages"`
	IsCA      bool      `json:"is_ca"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Describe returns the facts of c.
func Describe(c *x509.Certificate) Info {
	info := Info{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		IsCA:      c.IsCA,
		NotBefore: c.NotBefore,
		NotAfter:  c.NotAfter,
	}
	info.SANs = append(info.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		info.SANs = append(info.SANs, ip.String())
	}
	for _, u := range c.URIs {
		info.SANs = append(info.SANs, u.String())
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			info.Usages = append(info.Usages, "server auth")
		case x509.ExtKeyUsageClientAuth:
			info.Usages = append(info.Usages, "client auth")
		case x509.ExtKeyUsageAny:
			info.Usages = append(info.Usages, "any")
		default:
			info.Usages = append(info.Usages, fmt.Sprintf("ext usage %d", u))
		}
	}
	if c.IsCA {
		info.Usages = append(info.Usages, "CA")
	}
	return info
}

// Entry is one certificate found by Scan, with what is wrong with it.
type Entry struct {
	// Path is relative to the scanned directory.
	Path string `json:"path"`
	Info
	// Problems are reasons the certificate will not work or is unsafe: it
	// does not verify against the directory's ca.crt, its key file does
	// not match or others may read it, it is expired or not valid yet. Expiry soon is not a problem here;
	// callers decide what "soon" is.
	Problems []string `json:"problems,omitempty"`
}

// Scan describes every certificate in the *.crt files under dir, in path
// order, and checks each against dir's ca.crt (if there is one) and the
// key file next to it (same name with .key, if there is one) at time now.
func Scan(dir string, now time.Time) ([]Entry, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".crt") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("no *.crt files under %s", dir)
	}

	roots := x509.NewCertPool()
	caPath, _ := Layout{Dir: dir}.CA()
	haveCA := false
	if data, err := os.ReadFile(caPath); err == nil {
		if cas, err := ParseCertificates(data); err == nil {
			for _, c := range cas {
				roots.AddCert(c)
			}
			haveCA = true
		}
	}

	var out []Entry
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		certs, err := ParseCertificates(data)
		if err != nil {
			out = append(out, Entry{Path: rel, Problems: []string{err.Error()}})
			continue
		}
		keyProblem := checkKey(p, data)
		for i, c := range certs {
			e := Entry{Path: rel, Info: Describe(c)}
			switch {
			case now.After(c.NotAfter):
				e.Problems = append(e.Problems, "expired")
			case now.Before(c.NotBefore):
				e.Problems = append(e.Problems, "not valid yet")
			}
			if haveCA {
				_, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: c.NotBefore.Add(time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
				if err != nil {
					e.Problems = append(e.Problems, "not signed by "+filepath.Base(caPath)+": "+err.Error())
				}
			}
			if i == 0 && keyProblem != "" {
				e.Problems = append(e.Problems, keyProblem)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// checkKey reports what is wrong with the .key file next to certPath: not
// the certificate's key, or readable by others ("" if nothing, or if there
// is no key file).
func checkKey(certPath string, certPEM []byte) string {
	keyPath := strings.TrimSuffix(certPath, ".crt") + ".key"
	keyPEM, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return err.Error()
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return filepath.Base(keyPath) + ": " + err.Error()
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Sprintf("%s: mode %v lets others read the key; chmod 600 it", filepath.Base(keyPath), fi.Mode().Perm())
	}
	return ""
}
