package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
)

func TestClassify(t *testing.T) {
	tr := Trust{Admins: []string{"admin", NodeIdentity("n9")}}
	for _, tc := range []struct {
		id     string
		role   Role
		nodeID string
	}{
		{"", RoleNone, ""},
		{"app", RoleClient, ""},
		{"admin", RoleAdmin, ""},
		{NodeIdentity("n1"), RoleNode, "n1"},
		// listed as an admin, still only a node
		{NodeIdentity("n9"), RoleNode, "n9"},
		// malformed node identities are nobody
		{NodeURIPrefix, RoleNone, ""},
		{NodeIdentity("n1/../n2"), RoleNone, ""},
		{NodeIdentity("n 1"), RoleNone, ""},
		// a look-alike prefix is a client, not a node
		{"spiffe://raftkms/nodes/n1", RoleClient, ""},
		{"SPIFFE://raftkms/node/n1", RoleClient, ""},
	} {
		p := tr.Classify(tc.id)
		if p.Role != tc.role || p.NodeID != tc.nodeID {
			t.Errorf("Classify(%q) = %v/%q, want %v/%q", tc.id, p.Role, p.NodeID, tc.role, tc.nodeID)
		}
	}
}

// A node identity comes only from a URI SAN: a certificate whose common name
// is a node URI, without the SAN, names nobody.
func TestNodeIdentityNeedsURISAN(t *testing.T) {
	tr := Trust{}
	cn := &x509.Certificate{Subject: pkix.Name{CommonName: NodeIdentity("n1")}}
	if id := Identity(cn); id != "" {
		t.Fatalf("identity of a CN-only node look-alike = %q, want none", id)
	}
	if p := tr.ClassifyCert(cn); p.Role != RoleNone {
		t.Fatalf("CN-only node look-alike classified %v", p.Role)
	}
	u, _ := url.Parse(NodeIdentity("n1"))
	san := &x509.Certificate{Subject: pkix.Name{CommonName: "whatever"}, URIs: []*url.URL{u}}
	if p := tr.ClassifyCert(san); p.Role != RoleNode || p.NodeID != "n1" {
		t.Fatalf("URI SAN node classified %v/%q", p.Role, p.NodeID)
	}
	plain := &x509.Certificate{Subject: pkix.Name{CommonName: "app"}}
	if p := tr.ClassifyCert(plain); p.Role != RoleClient || p.Identity != "app" {
		t.Fatalf("plain client classified %v/%q", p.Role, p.Identity)
	}
}
