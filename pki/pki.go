// Package pki holds the certificates of a raftkms cluster: it makes a CA
// and node and client certificates (kmsd gen-certs), loads them into mutual
// TLS configurations for the client API, node-to-node gRPC and the Raft
// transport, and names the identity a certificate carries.
//
// It imports only the standard library.
package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// NodeURIPrefix starts the URI SAN of every node certificate made by
// gen-certs: spiffe://raftkms/node/<node ID>. A peer whose identity has
// this prefix is a cluster node (it may forward calls on behalf of clients).
const NodeURIPrefix = "spiffe://raftkms/node/"

// Identity is who a certificate names: its first URI SAN if it has one,
// else its subject common name. A common name that looks like a URI
// ("spiffe://…") names nobody: node identities come only from a URI SAN, so
// a client certificate cannot pass for a node by its common name.
func Identity(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	if len(cert.URIs) > 0 {
		return cert.URIs[0].String()
	}
	if strings.Contains(cert.Subject.CommonName, "://") {
		return ""
	}
	return cert.Subject.CommonName
}

// IsNodeIdentity reports whether an identity is a cluster node's.
func IsNodeIdentity(id string) bool { return strings.HasPrefix(id, NodeURIPrefix) }

// NodeIdentity is the identity of node id's certificate.
func NodeIdentity(id string) string { return NodeURIPrefix + id }

// Files names a certificate, its private key and the CA that verifies peers.
type Files struct {
	Cert, Key, CA string
}

// Set reports whether any file is given; Check requires all of them then.
func (f Files) Set() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Check requires all three files together.
func (f Files) Check() error {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return errors.New("TLS needs a certificate, its key and a CA (--tls-cert, --tls-key, --tls-ca)")
	}
	return nil
}

// Load reads the files: the key pair and the CA pool.
func (f Files) Load() (tls.Certificate, *x509.CertPool, error) {
	if err := f.Check(); err != nil {
		return tls.Certificate{}, nil, err
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load %s: %w", f.Cert, err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("%s holds no PEM certificate", f.CA)
	}
	return pair, pool, nil
}

// ServerConfig accepts only TLS 1.3 clients with a certificate signed by the CA.
func ServerConfig(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// ClientConfig presents cert and verifies the server against the CA.
func ClientConfig(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca,
	}
}

// PeerIdentity is the identity of the verified leaf certificate of a TLS
// connection, or "" when there is none.
func PeerIdentity(st tls.ConnectionState) string {
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return ""
	}
	return Identity(st.VerifiedChains[0][0])
}
