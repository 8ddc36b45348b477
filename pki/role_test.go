package pki

import "testing"

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
