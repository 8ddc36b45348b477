package rpc

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestConditionOperators(t *testing.T) {
	ec := map[string]string{"dept": "finance", "app": "payroll"}
	full := &condFacts{encryptionContext: ec, grantOperations: []string{"Decrypt", "Encrypt"},
		requestAlias: "alias/payroll", callerAccount: DefaultAccount}
	empty := &condFacts{callerAccount: DefaultAccount}
	cases := []struct {
		name  string
		cond  string
		facts *condFacts
		want  bool
	}{
		{"StringEquals match", `{"StringEquals":{"kms:EncryptionContext:dept":"finance"}}`, full, true},
		{"StringEquals any of the values", `{"StringEquals":{"kms:EncryptionContext:dept":["hr","finance"]}}`, full, true},
		{"StringEquals mismatch", `{"StringEquals":{"kms:EncryptionContext:dept":"hr"}}`, full, false},
		{"StringEquals is case-sensitive", `{"StringEquals":{"kms:EncryptionContext:dept":"Finance"}}`, full, false},
		{"StringEquals context key is case-sensitive", `{"StringEquals":{"kms:EncryptionContext:Dept":"finance"}}`, full, false},
		{"condition key prefix is case-insensitive", `{"StringEquals":{"KMS:encryptionContext:dept":"finance"}}`, full, true},
		{"StringEquals absent key", `{"StringEquals":{"kms:EncryptionContext:dept":"finance"}}`, empty, false},
		{"StringNotEquals mismatch", `{"StringNotEquals":{"kms:EncryptionContext:dept":"hr"}}`, full, true},
		{"StringNotEquals match", `{"StringNotEquals":{"kms:EncryptionContext:dept":"finance"}}`, full, false},
		{"StringNotEquals absent key", `{"StringNotEquals":{"kms:EncryptionContext:dept":"hr"}}`, empty, true},
		{"StringEqualsIgnoreCase", `{"StringEqualsIgnoreCase":{"kms:EncryptionContext:dept":"FINANCE"}}`, full, true},
		{"StringNotEqualsIgnoreCase", `{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:dept":"FINANCE"}}`, full, false},
		{"StringLike star", `{"StringLike":{"kms:EncryptionContext:app":"pay*"}}`, full, true},
		{"StringLike question mark", `{"StringLike":{"kms:EncryptionContext:app":"payrol?"}}`, full, true},
		{"StringLike no match", `{"StringLike":{"kms:EncryptionContext:app":"hr*"}}`, full, false},
		{"StringNotLike", `{"StringNotLike":{"kms:EncryptionContext:app":"hr*"}}`, full, true},
		{"StringNotLike match", `{"StringNotLike":{"kms:EncryptionContext:app":"*roll"}}`, full, false},
		{"ForAnyValue keys", `{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["dept","x"]}}`, full, true},
		{"ForAnyValue keys none", `{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["x"]}}`, full, false},
		{"ForAnyValue no context", `{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["dept"]}}`, empty, false},
		{"ForAllValues keys all listed", `{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["dept","app","x"]}}`, full, true},
		{"ForAllValues keys one unlisted", `{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["dept"]}}`, full, false},
		{"ForAllValues no context is vacuously true", `{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["dept"]}}`, empty, true},
		{"ForAllValues StringLike", `{"ForAllValues:StringLike":{"kms:EncryptionContextKeys":["d*","a*"]}}`, full, true},
		{"ForAllValues StringNotEquals", `{"ForAllValues:StringNotEquals":{"kms:GrantOperations":["CreateGrant"]}}`, full, true},
		{"ForAllValues StringNotEquals fails", `{"ForAllValues:StringNotEquals":{"kms:GrantOperations":["Encrypt"]}}`, full, false},
		{"ForAnyValue StringNotLike", `{"ForAnyValue:StringNotLike":{"kms:GrantOperations":["En*"]}}`, full, true},
		{"grant operations subset", `{"ForAllValues:StringEquals":{"kms:GrantOperations":["Decrypt","Encrypt","GenerateDataKey"]}}`, full, true},
		{"grant operations too many", `{"ForAllValues:StringEquals":{"kms:GrantOperations":["Decrypt"]}}`, full, false},
		{"GrantIsForAWSResource is false", `{"Bool":{"kms:GrantIsForAWSResource":"false"}}`, full, true},
		{"GrantIsForAWSResource true never holds", `{"Bool":{"kms:GrantIsForAWSResource":"true"}}`, full, false},
		{"RequestAlias", `{"StringEquals":{"kms:RequestAlias":"alias/payroll"}}`, full, true},
		{"RequestAlias like", `{"StringLike":{"kms:RequestAlias":"alias/pay*"}}`, full, true},
		{"RequestAlias without alias", `{"StringEquals":{"kms:RequestAlias":"alias/payroll"}}`, empty, false},
		{"CallerAccount", `{"StringEquals":{"kms:CallerAccount":"` + DefaultAccount + `"}}`, empty, true},
		{"CallerAccount other", `{"StringEquals":{"kms:CallerAccount":"111122223333"}}`, empty, false},
		{"Null true when absent", `{"Null":{"kms:RequestAlias":"true"}}`, empty, true},
		{"Null true when present", `{"Null":{"kms:RequestAlias":"true"}}`, full, false},
		{"Null false when present", `{"Null":{"kms:EncryptionContextKeys":"false"}}`, full, true},
		{"Null false when absent", `{"Null":{"kms:EncryptionContext:dept":"false"}}`, empty, false},
		{"all operators must hold", `{"StringEquals":{"kms:EncryptionContext:dept":"finance"},"Null":{"kms:RequestAlias":"true"}}`, full, false},
		{"all keys must hold", `{"StringEquals":{"kms:EncryptionContext:dept":"finance","kms:EncryptionContext:app":"payroll"}}`, full, true},
		{"all keys must hold, one fails", `{"StringEquals":{"kms:EncryptionContext:dept":"finance","kms:EncryptionContext:app":"hr"}}`, full, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conds, err := parseConditions(json.RawMessage(tc.cond))
			if err != nil {
				t.Fatal(err)
			}
			got := true
			for i := range conds {
				got = got && conds[i].holds(tc.facts)
			}
			if got != tc.want {
				t.Fatalf("%s = %v, want %v", tc.cond, got, tc.want)
			}
		})
	}
}

func TestConditionsMalformed(t *testing.T) {
	for _, c := range []string{
		`{"StringEquals":{"aws:SourceIp":"10.0.0.1"}}`,                     // unknown key
		`{"StringEquals":{"kms:EncryptionContext:":"x"}}`,                  // context key missing
		`{"StringEquals":{"kms:ViaService":"x"}}`,                          // a key raftkms does not know
		`{"NumericEquals":{"kms:EncryptionContext:a":"1"}}`,                // unknown operator
		`{"ForSomeValues:StringEquals":{"kms:EncryptionContextKeys":"a"}}`, // unknown set operator
		`{"ForAnyValue:Null":{"kms:EncryptionContextKeys":"true"}}`,        // Null takes no set operator
		`{"Null":{"kms:RequestAlias":"yes"}}`,                              // Null takes true or false
		`{"Bool":{"kms:GrantIsForAWSResource":["true","false"]}}`,          // one Bool value
		`{"StringEquals":{"kms:EncryptionContext:a":[]}}`,                  // no values
		`{"StringEquals":{"kms:EncryptionContext:a":1}}`,                   // not strings
		`{"StringEquals":{}}`,                                              // no keys
		`{"StringEquals":"kms:RequestAlias"}`,                              // not a map
		`["StringEquals"]`,
	} {
		_, err := parseConditions(json.RawMessage(c))
		var api *apiError
		if !errors.As(err, &api) || api.name != "MalformedPolicyDocumentException" {
			t.Errorf("parseConditions(%s) = %v, want MalformedPolicyDocumentException", c, err)
		}
		doc := `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Condition":` + c + `}]}`
		if _, err := parsePolicy(doc); !errors.As(err, &api) || api.name != "MalformedPolicyDocumentException" {
			t.Errorf("parsePolicy with condition %s = %v, want MalformedPolicyDocumentException", c, err)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"", "", true}, {"*", "", true}, {"*", "abc", true}, {"a*c", "abc", true}, {"a*c", "ac", true},
		{"a*c", "abd", false}, {"a?c", "abc", true}, {"a?c", "ac", false}, {"*b*", "abc", true},
		{"a**", "a", true}, {"é?", "éx", true}, {"abc", "abcd", false}, {"*.txt", "a.b.txt", true},
	} {
		if got := globMatch(c.p, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
	}
}

// FuzzConditions feeds the condition parser arbitrary blocks and checks
// that evaluation never panics, and that the negated string operators are
// the complements of the positive ones on a single-valued key.
func FuzzConditions(f *testing.F) {
	f.Add(`{"StringLike":{"kms:EncryptionContext:a":"x*"}}`, "a", "xy", "x*")
	f.Add(`{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}`, "b", "", "?")
	f.Add(`{"Null":{"kms:RequestAlias":"true"}}`, "", "v", "*?*")
	f.Fuzz(func(t *testing.T, block, ecKey, ecVal, pattern string) {
		facts := &condFacts{encryptionContext: map[string]string{ecKey: ecVal}, requestAlias: "alias/" + ecVal,
			grantOperations: []string{ecVal}, callerAccount: DefaultAccount}
		if conds, err := parseConditions(json.RawMessage(block)); err == nil {
			for i := range conds {
				conds[i].holds(facts)
				conds[i].holds(&condFacts{})
			}
		}
		if ecKey == "" {
			return
		}
		for _, pair := range [][2]string{{"StringEquals", "StringNotEquals"}, {"StringLike", "StringNotLike"},
			{"StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"}} {
			mk := func(op string) []condition {
				b, _ := json.Marshal(map[string]map[string]string{op: {"kms:EncryptionContext:" + ecKey: pattern}})
				c, err := parseConditions(b)
				if err != nil {
					t.Fatalf("%s: %v", b, err)
				}
				return c
			}
			pos, neg := mk(pair[0]), mk(pair[1])
			if pos[0].holds(facts) == neg[0].holds(facts) {
				t.Fatalf("%s and %s agree on %q against %q", pair[0], pair[1], ecVal, pattern)
			}
		}
	})
}
