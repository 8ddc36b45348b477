package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrNotNode is the refusal of a peer that is not the cluster node a link
// needs: a client or admin certificate, an unverified peer, or another node
// than the one expected.
var ErrNotNode = errors.New("pki: peer is not the expected cluster node")

// RequireNode checks that a verified TLS connection's peer holds a node
// certificate, and nodeID's when nodeID is not "". It returns the peer as
// Classify names it.
func (t Trust) RequireNode(st tls.ConnectionState, nodeID string) (Peer, error) {
	p := t.ClassifyConn(st)
	if p.Role != RoleNode {
		return p, fmt.Errorf("%w: %q is a %s certificate", ErrNotNode, p.Identity, p.Role)
	}
	if nodeID != "" && p.NodeID != nodeID {
		return p, fmt.Errorf("%w: expected node %q, the certificate is node %q's", ErrNotNode, nodeID, p.NodeID)
	}
	return p, nil
}

// NodeOnly returns a copy of cfg whose handshakes fail unless the peer
// presents a verified node certificate of the cluster CA (nodeID's when
// nodeID is not ""). It is how every node-to-node link (Raft, both ways,
// and the node-to-node gRPC calls) refuses clients and admins: the check
// runs inside the handshake, so a refused peer never sends a byte past it.
// cfg's own VerifyConnection, if any, runs first.
func (t Trust) NodeOnly(cfg *tls.Config, nodeID string) *tls.Config {
	out := cfg.Clone()
	prev := cfg.VerifyConnection
	out.VerifyConnection = func(st tls.ConnectionState) error {
		if prev != nil {
			if err := prev(st); err != nil {
				return err
			}
		}
		_, err := t.RequireNode(st, nodeID)
		return err
	}
	return out
}

// OwnNode checks that a TLS configuration presents nodeID's own node
// certificate, so a node started with a client certificate, or another
// node's, fails at start-up with a clear message rather than being refused
// by every peer.
func (t Trust) OwnNode(cfg *tls.Config, nodeID string) error {
	if cfg == nil || len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return errors.New("pki: the TLS configuration presents no certificate")
	}
	c := cfg.Certificates[0]
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("pki: own certificate: %w", err)
		}
	}
	p := t.ClassifyCert(leaf)
	if p.Role != RoleNode || p.NodeID != nodeID {
		return fmt.Errorf("pki: node %q must present its node certificate (%s), not %q (a %s certificate)",
			nodeID, NodeIdentity(nodeID), p.Identity, p.Role)
	}
	return nil
}
