package pki

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
)

// Role is what a certificate is allowed to be in a raftkms cluster.
type Role int

// The roles. A node certificate reaches Raft and the node-to-node calls and
// nothing else of an administrator's; an admin or client certificate never
// reaches Raft or the node-to-node calls.
const (
	// RoleNone: no verified certificate.
	RoleNone Role = iota
	// RoleClient: any other verified certificate of the cluster CA; what it
	// may do to a key is the key's policy's business.
	RoleClient
	// RoleAdmin: an identity listed as a cluster administrator.
	RoleAdmin
	// RoleNode: a node certificate, spiffe://raftkms/node/ID.
	RoleNode
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleAdmin:
		return "admin"
	case RoleNode:
		return "node"
	}
	return "none"
}

// Peer is a classified identity.
type Peer struct {
	// Identity is the certificate's identity (Identity).
	Identity string
	// Role is what it is allowed to be.
	Role Role
	// NodeID is the Raft server ID a node certificate speaks for; "" for
	// every other role.
	NodeID string
}

// Trust is the one place that decides what a verified certificate is
// allowed to be. Every listener (the client API, the node-to-node calls and
// the Raft transport) classifies its peers through it.
type Trust struct {
	// Admins are the identities with the admin role. A node identity is
	// never an admin, even when listed.
	Admins []string
}

// Classify names the role of a verified identity ("" is RoleNone).
func (t Trust) Classify(identity string) Peer {
	if identity == "" {
		return Peer{}
	}
	if id, ok := strings.CutPrefix(identity, NodeURIPrefix); ok {
		if validNodeID(id) {
			return Peer{Identity: identity, Role: RoleNode, NodeID: id}
		}
		// A malformed node identity is nobody's: not a node, and not a
		// client that could be mistaken for one in a policy.
		return Peer{Identity: identity}
	}
	for _, a := range t.Admins {
		if a == identity {
			return Peer{Identity: identity, Role: RoleAdmin}
		}
	}
	return Peer{Identity: identity, Role: RoleClient}
}

// ClassifyCert names the role of a verified leaf certificate.
func (t Trust) ClassifyCert(cert *x509.Certificate) Peer { return t.Classify(Identity(cert)) }

// ClassifyConn names the role of the verified peer of a TLS connection.
func (t Trust) ClassifyConn(st tls.ConnectionState) Peer { return t.Classify(PeerIdentity(st)) }

// validNodeID accepts the node IDs raftkms gives out: 1–128 characters of
// letters, digits, '-', '_' and '.'.
func validNodeID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
