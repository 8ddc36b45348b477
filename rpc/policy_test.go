package rpc

import (
	"errors"
	"testing"
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
		`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn"},"Action":"kms:*"}]}`,
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
	s := &Server{cfg: Config{Auth: Auth{Enabled: true, Admins: []string{"root"}, KeyCreators: []string{"maker"}}}}
	cases := []struct {
		id, method string
		ok         bool
	}{
		{"root", "/raftkms.cluster.v1.ClusterService/Remove", true},
		{"app", "/raftkms.cluster.v1.ClusterService/Remove", false},
		{"app", "/raftkms.cluster.v1.ClusterService/Status", true},
		{"spiffe://raftkms/node/kms2", "/raftkms.cluster.v1.ClusterService/Join", true},
		{"app", "/raftkms.cluster.v1.ClusterService/Join", false},
		{"app", "/raftkms.cluster.v1.ClusterService/ReadIndex", false},
		{"maker", "/raftkms.kms.v1.KeyManagementService/CreateKey", true},
		{"app", "/raftkms.kms.v1.KeyManagementService/CreateKey", false},
		{"app", "/raftkms.kms.v1.KeyManagementService/ListKeys", true},
	}
	for _, c := range cases {
		err := s.authorizeMethod(caller{identity: c.id}, c.method)
		if (err == nil) != c.ok {
			t.Errorf("%s calling %s: %v", c.id, c.method, err)
		}
	}
	open := &Server{}
	if err := open.authorizeMethod(caller{identity: principalAnon}, "/raftkms.cluster.v1.ClusterService/Remove"); err != nil {
		t.Errorf("without auth everything is allowed: %v", err)
	}
}
