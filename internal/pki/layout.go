package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Layout is a directory of certificates in the layout the package
// documents.
type Layout struct{ Dir string }

// CA returns the paths of the authority's certificate and key.
func (l Layout) CA() (cert, key string) {
	return filepath.Join(l.Dir, "ca.crt"), filepath.Join(l.Dir, "ca.key")
}

// Member returns the paths of a member's certificate and key for p
// (Server or Peer).
func (l Layout) Member(name string, p Profile) (cert, key string) {
	dir := filepath.Join(l.Dir, "members", name)
	return filepath.Join(dir, p.String()+".crt"), filepath.Join(dir, p.String()+".key")
}

// Client returns the paths of a client's certificate and key.
func (l Layout) Client(name string) (cert, key string) {
	dir := filepath.Join(l.Dir, "clients")
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

// Validity is how long new certificates are valid.
type Validity struct {
	CA   time.Duration
	Leaf time.Duration
}

// DefaultValidity is ten years for the authority and one year for leaves.
var DefaultValidity = Validity{CA: 10 * 365 * 24 * time.Hour, Leaf: 365 * 24 * time.Hour}

// Plan is everything Init creates.
type Plan struct {
	CAName   string
	Members  []Member
	Clients  []string
	Validity Validity
}

// file is one file to write.
type file struct {
	path string
	data []byte
	mode fs.FileMode
}

func pairFiles(pair KeyPair, cert, key string) []file {
	return []file{{cert, pair.CertPEM, 0o644}, {key, pair.KeyPEM, 0o600}}
}

// Init creates the authority and the certificates of plan in l.Dir and
// returns the paths it wrote. It writes nothing if any of them exists.
func (l Layout) Init(plan Plan, now time.Time) ([]string, error) {
	if err := checkUnique("member", memberNames(plan.Members)); err != nil {
		return nil, err
	}
	if err := checkUnique("client", plan.Clients); err != nil {
		return nil, err
	}
	ca, err := NewCA(plan.CAName, now, plan.Validity.CA)
	if err != nil {
		return nil, err
	}
	cert, key := l.CA()
	files := pairFiles(ca.PEM(), cert, key)
	for _, m := range plan.Members {
		mf, err := l.memberFiles(ca, m, plan.Validity.Leaf, now)
		if err != nil {
			return nil, err
		}
		files = append(files, mf...)
	}
	for _, c := range plan.Clients {
		mf, err := l.clientFiles(ca, c, plan.Validity.Leaf, now)
		if err != nil {
			return nil, err
		}
		files = append(files, mf...)
	}
	return writeAll(files)
}

// LoadCA reads the layout's authority.
func (l Layout) LoadCA() (*CA, error) {
	certPath, keyPath := l.CA()
	var pair KeyPair
	var err error
	if pair.CertPEM, err = os.ReadFile(certPath); err != nil {
		return nil, fmt.Errorf("reading the CA: %w (create one with pki init)", err)
	}
	if pair.KeyPEM, err = os.ReadFile(keyPath); err != nil {
		return nil, fmt.Errorf("reading the CA key: %w", err)
	}
	ca, err := LoadCA(pair)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	return ca, nil
}

// AddMember signs a server and a peer certificate for m with the layout's
// existing authority and returns the paths it wrote. It writes nothing if
// any of them exists.
func (l Layout) AddMember(m Member, validity time.Duration, now time.Time) ([]string, error) {
	ca, err := l.LoadCA()
	if err != nil {
		return nil, err
	}
	files, err := l.memberFiles(ca, m, validity, now)
	if err != nil {
		return nil, err
	}
	return writeAll(files)
}

// AddClient signs a client certificate with common name name with the
// layout's existing authority and returns the paths it wrote.
func (l Layout) AddClient(name string, validity time.Duration, now time.Time) ([]string, error) {
	ca, err := l.LoadCA()
	if err != nil {
		return nil, err
	}
	files, err := l.clientFiles(ca, name, validity, now)
	if err != nil {
		return nil, err
	}
	return writeAll(files)
}

func (l Layout) memberFiles(ca *CA, m Member, validity time.Duration, now time.Time) ([]file, error) {
	if err := CheckName("member", m.Name); err != nil {
		return nil, err
	}
	if len(m.IPs)+len(m.DNSNames) == 0 {
		return nil, fmt.Errorf("member %s has no address: give NAME=IP,DNS,... or add localhost names", m.Name)
	}
	var files []file
	for _, p := range []Profile{Server, Peer} {
		pair, err := ca.Issue(Request{Profile: p, CommonName: m.Name, DNSNames: m.DNSNames, IPs: m.IPs, Validity: validity}, now)
		if err != nil {
			return nil, err
		}
		cert, key := l.Member(m.Name, p)
		files = append(files, pairFiles(pair, cert, key)...)
	}
	return files, nil
}

func (l Layout) clientFiles(ca *CA, name string, validity time.Duration, now time.Time) ([]file, error) {
	if err := CheckName("client", name); err != nil {
		return nil, err
	}
	pair, err := ca.Issue(Request{Profile: Client, CommonName: name, Validity: validity}, now)
	if err != nil {
		return nil, err
	}
	cert, key := l.Client(name)
	return pairFiles(pair, cert, key), nil
}

// writeAll writes files, none of which may exist yet. If one write fails,
// the files written before it are removed again.
func writeAll(files []file) ([]string, error) {
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			return nil, fmt.Errorf("%s already exists; kvorumctl pki never overwrites a file: remove it or use another --dir", f.path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	var written []string
	undo := func() {
		for _, p := range written {
			os.Remove(p)
		}
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			undo()
			return nil, err
		}
		if err := writeNew(f); err != nil {
			undo()
			return nil, err
		}
		written = append(written, f.path)
	}
	return written, nil
}

// writeNew creates f.path exclusively with f.mode (whatever the umask
// says) and syncs it.
func writeNew(f file) error {
	out, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if err != nil {
		return err
	}
	if err := out.Chmod(f.mode); err != nil {
		out.Close()
		os.Remove(f.path)
		return err
	}
	if _, err := out.Write(f.data); err != nil {
		out.Close()
		os.Remove(f.path)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(f.path)
		return err
	}
	return out.Close()
}

func memberNames(ms []Member) []string {
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names
}

func checkUnique(kind string, names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("%s %q is given twice", kind, n)
		}
		seen[n] = true
	}
	return nil
}
