package rpc

import (
	"errors"
	"testing"

	"github.com/raftkms/raftkms/pki"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
)

func TestDefaultPolicyParses(t *testing.T) {
	p, err := parsePolicy(defaultPolicy("app"))
	if err != nil {
		t.Fatalf("the default policy does not parse: %v", err)
	}
	if !p.allows("app", "kms:Encrypt") || !p.allows("app", "kms:PutKeyPolicy") || p.allows("other", "kms:Encrypt") {
		t.Fatal("the default policy must give its creator, and only its creator, every action")
	}
}

func TestPolicyEvaluation(t *testing.T) {
	doc := `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Principal":{"Identity":["app","ops"]},"Action":["kms:Encrypt","kms:Decrypt","kms:Generate*"]},
		{"Effect":"Allow","Principal":{"Identity":"ops"},"Action":"kms:*"},
		{"Effect":"Deny","Principal":{"Identity":["ops"]},"Action":"kms:ScheduleKeyDeletion"},
		{"Effect":"Allow","Principal":"*","Action":"kms:DescribeKey"}]}`
	p, err := parsePolicy(doc)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		id, action string
		want       bool
	}{
		{"app", "kms:Encrypt", true}, {"app", "kms:GenerateDataKey", true}, {"app", "kms:GenerateDataKeyWithoutPlaintext", true},
		{"app", "kms:DisableKey", false}, {"app", "kms:ReEncryptFrom", false},
		{"ops", "kms:DisableKey", true}, {"ops", "kms:ScheduleKeyDeletion", false},
		{"stranger", "kms:DescribeKey", true}, {"stranger", "kms:Encrypt", false}, {"", "kms:Encrypt", false},
	}
	for _, c := range cases {
		if got := p.allows(c.id, c.action); got != c.want {
			t.Errorf("allows(%q, %q) = %v, want %v", c.id, c.action, got, c.want)
		}
	}
}

func TestMalformedPolicies(t *testing.T) {
	for _, doc := range []string{
		``, `{}`, `[]`, `{"Statement":[]}`, `not json`,
		`{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:*"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"someone","Action":"kms:*"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:group/x"},"Action":"kms:*"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*crypt"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Condition":{"a":"b"}}]}`,
		`{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Extra":1}]}`,
	} {
		_, err := parsePolicy(doc)
		var api *apiError
		if !errors.As(err, &api) || api.name != "MalformedPolicyDocumentException" {
			t.Errorf("parsePolicy(%s) = %v, want MalformedPolicyDocumentException", doc, err)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add(defaultPolicy("app"))
	f.Add(`{"Statement":[{"Effect":"Deny","Principal":{"Identity":["a"]},"Action":["kms:Gen*"]}]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := parsePolicy(doc)
		if err == nil {
			p.allows("a", "kms:Encrypt")
		}
	})
}

func TestAuthorizeMethod(t *testing.T) {
	s := &Server{cfg: Config{Auth: Auth{Enabled: true, Admins: []string{"root"}, KeyCreators: []string{"maker"}}},
		trust: pki.Trust{Admins: []string{"root"}}}
	join := &clusterv1.JoinRequest{NodeId: "kms2"}
	cases := []struct {
		id, method string
		req        any
		ok         bool
	}{
		{"root", "/raftkms.cluster.v1.ClusterService/Remove", nil, true},
		{"app", "/raftkms.cluster.v1.ClusterService/Remove", nil, false},
		{"spiffe://raftkms/node/kms2", "/raftkms.cluster.v1.ClusterService/Remove", nil, false},
		{"app", "/raftkms.cluster.v1.ClusterService/Status", nil, true},
		{"spiffe://raftkms/node/kms2", "/raftkms.cluster.v1.ClusterService/Join", join, true},
		{"spiffe://raftkms/node/kms3", "/raftkms.cluster.v1.ClusterService/Join", join, false},
		{"root", "/raftkms.cluster.v1.ClusterService/Join", join, true},
		{"app", "/raftkms.cluster.v1.ClusterService/Join", join, false},
		{"app", "/raftkms.cluster.v1.ClusterService/ReadIndex", nil, false},
		{"root", "/raftkms.cluster.v1.ClusterService/ReadIndex", nil, false},
		{"spiffe://raftkms/node/kms3", "/raftkms.cluster.v1.ClusterService/ReadIndex", nil, true},
		{"maker", "/raftkms.kms.v1.KeyManagementService/CreateKey", nil, true},
		{"app", "/raftkms.kms.v1.KeyManagementService/CreateKey", nil, false},
		{"app", "/raftkms.kms.v1.KeyManagementService/ListKeys", nil, true},
	}
	for _, c := range cases {
		m, err := lookupMethod(c.method)
		if err != nil {
			t.Fatal(err)
		}
		p := s.trust.Classify(c.id)
		err = s.authorizeMethod(caller{identity: p.Identity, role: p.Role, nodeID: p.NodeID}, m, c.req)
		if (err == nil) != c.ok {
			t.Errorf("%s calling %s: %v", c.id, c.method, err)
		}
	}
	open := &Server{}
	m, _ := lookupMethod("/raftkms.cluster.v1.ClusterService/Remove")
	if err := open.authorizeMethod(caller{identity: principalAnon}, m, nil); err != nil {
		t.Errorf("without auth everything is allowed: %v", err)
	}
}
