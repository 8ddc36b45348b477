package rpc

import "testing"

func TestPolicyAWSPrincipals(t *testing.T) {
	doc := `{"Version":"2012-10-17","Statement":[
	 {"Effect":"Allow","Principal":{"AWS":["alice","arn:aws:iam::111122223333:user/team/bob"]},"Action":"kms:Encrypt"},
	 {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/carol"},"Action":"kms:Decrypt"},
	 {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:DescribeKey"},
	 {"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:GetKeyPolicy"},
	 {"Effect":"Deny","Principal":{"AWS":"mallory", "Identity":"eve"},"Action":"kms:*"}]}`
	p, err := parsePolicy(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id, action string
		want       bool
	}{
		{"alice", "kms:Encrypt", true},
		{"bob", "kms:Encrypt", true},
		{"team/bob", "kms:Encrypt", false},
		{"carol", "kms:Decrypt", true},
		{"carol", "kms:Encrypt", false},
		{"anyone", "kms:DescribeKey", true},
		{"anyone", "kms:GetKeyPolicy", true},
		{"anyone", "kms:Encrypt", false},
		{"mallory", "kms:DescribeKey", false},
		{"eve", "kms:GetKeyPolicy", false},
	} {
		if got := p.allows(tc.id, tc.action); got != tc.want {
			t.Errorf("%s %s: allowed %v, want %v", tc.id, tc.action, got, tc.want)
		}
	}
	for _, bad := range []string{
		`{"AWS":"arn:aws:iam::1:group/x"}`, `{"AWS":"arn:aws:s3:::bucket"}`, `{"AWS":""}`, `{"AWS":[]}`,
		`{"AWS":"arn:aws:iam::1:user/"}`, `{"Service":"kms.amazonaws.com"}`,
	} {
		doc := `{"Statement":[{"Effect":"Allow","Principal":` + bad + `,"Action":"kms:*"}]}`
		if _, err := parsePolicy(doc); err == nil {
			t.Errorf("Principal %s accepted", bad)
		}
	}
}
