package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Profile is what a leaf certificate is for; it decides the key usages.
type Profile int

const (
	// Server is a member's certificate on the client port.
	Server Profile = iota
	// Peer is a member's certificate on the peer port.
	Peer
	// Client is a certificate a client presents (kube-apiserver, an
	// admin); with etcd's --client-cert-auth its common name is the user.
	Client
)

func (p Profile) String() string {
	switch p {
	case Server:
		return "server"
	case Peer:
		return "peer"
	case Client:
		return "client"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// extKeyUsages are the extended key usages of each profile. A member's
// server certificate is also a client certificate: etcd's gRPC gateway
// dials the member's own client port with it, and with --client-cert-auth
// that connection must authenticate.
func (p Profile) extKeyUsages() []x509.ExtKeyUsage {
	switch p {
	case Server, Peer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	default:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
}

// clockSkew is how far before "now" certificates become valid, so that a
// member whose clock is a little behind accepts them at once.
const clockSkew = 5 * time.Minute

// KeyPair is a certificate and its private key, PEM-encoded.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// CA is a certificate authority that can sign leaf certificates.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
	pair KeyPair
}

// PEM returns the authority's certificate and key, PEM-encoded.
func (ca *CA) PEM() KeyPair { return ca.pair }

// NewCA creates a self-signed authority named name, valid from now for
// validity.
func NewCA(name string, now time.Time, validity time.Duration) (*CA, error) {
	if name == "" {
		return nil, errors.New("the CA needs a name")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("CA validity %v is not positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	pair, err := sign(tmpl, tmpl, key, key)
	if err != nil {
		return nil, err
	}
	return LoadCA(pair)
}

// LoadCA reads an authority from its PEM-encoded certificate and key. The
// key must belong to the certificate, and the certificate must be a CA.
func LoadCA(pair KeyPair) (*CA, error) {
	tc, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", cert.Subject)
	}
	signer, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the key of CA %q cannot sign", cert.Subject)
	}
	return &CA{Cert: cert, key: signer, pair: pair}, nil
}

// Request describes a leaf certificate to issue.
type Request struct {
	Profile    Profile
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Validity   time.Duration
}

// Issue creates a new key and a certificate for it signed by ca, valid
// from now for req.Validity, but never beyond the CA's own expiry.
func (ca *CA) Issue(req Request, now time.Time) (KeyPair, error) {
	if req.CommonName == "" {
		return KeyPair{}, errors.New("a certificate needs a common name")
	}
	if req.Validity <= 0 {
		return KeyPair{}, fmt.Errorf("validity %v of %s certificate %q is not positive", req.Validity, req.Profile, req.CommonName)
	}
	if req.Profile != Client && len(req.DNSNames)+len(req.IPs) == 0 {
		return KeyPair{}, fmt.Errorf("%s certificate %q has no DNS name or IP address; TLS clients could not verify it", req.Profile, req.CommonName)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return KeyPair{}, err
	}
	notAfter := now.Add(req.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.CommonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           req.Profile.extKeyUsages(),
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPs,
	}
	return sign(tmpl, ca.Cert, key, ca.key)
}

func sign(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) (KeyPair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return KeyPair{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// newSerial returns a random 128-bit serial number, as RFC 5280 allows
// (at most 20 octets) and CAs/Browser Forum rules expect (unpredictable).
func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// ParseCertificates returns every certificate in PEM data.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}
