// Package pki creates and inspects the certificates a Kvorum (or etcd)
// cluster needs for mutual TLS: one certificate authority, a server and a
// peer certificate for every member, and client certificates.
//
// The package has two layers. The first is pure and works in memory:
// [NewCA] makes a self-signed authority, [CA.Issue] signs a leaf for a
// [Profile] (server, peer or client) and [Describe] reads a certificate
// back into the fields people look at. The second keeps the files of a
// [Layout] on disk:
//
//	DIR/ca.crt, DIR/ca.key                     the authority
//	DIR/members/NAME/server.crt, server.key    client port (--cert-file, --key-file)
//	DIR/members/NAME/peer.crt, peer.key        peer port (--peer-cert-file, --peer-key-file)
//	DIR/clients/NAME.crt, NAME.key             a client; NAME is the certificate's CN
//
// Guarantees: keys are ECDSA P-256 (accepted by Go's TLS, etcd and
// OpenSSL) and written with mode 0600; a file that already exists is
// never overwritten (every target is checked before the first one is
// written, and each is then created exclusively); every leaf is signed by
// the layout's CA and carries the key usages etcd's TLS checks need:
// server and peer certificates are valid for both TLS server and client
// authentication (a member dials its peers with its peer certificate, and
// etcd's gRPC gateway dials its own client port with the server
// certificate), client certificates for client authentication only.
//
// Time enters only through the now arguments, so tests can issue
// certificates that are about to expire.
package pki
