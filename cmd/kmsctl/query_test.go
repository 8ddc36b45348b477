package main

import (
	"encoding/json"
	"testing"
)

const queryDoc = `{
  "KeyMetadata": {"KeyId": "k1", "Enabled": true, "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "Version": 3},
  "Keys": [{"KeyId": "a", "KeyArn": "arn:a"}, {"KeyId": "b", "KeyArn": "arn:b"}, {"KeyId": "c"}],
  "Rotations": [
    {"KeyId": "k1", "RotationType": "AUTOMATIC", "KeyVersion": 2},
    {"KeyId": "k1", "RotationType": "ON_DEMAND", "KeyVersion": 3}
  ],
  "Nested": [[1, 2], [3], 4],
  "Groups": [{"Items": [{"N": 1}, {"N": 2}]}, {"Items": [{"N": 3}]}],
  "Empty": [],
  "weird key": "w"
}`

func TestQuery(t *testing.T) {
	var raw json.RawMessage = []byte(queryDoc)
	doc, err := toValue(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ q, want string }{
		{"KeyMetadata.KeyId", `"k1"`},
		{"KeyMetadata.Enabled", `true`},
		{"KeyMetadata.Missing", `null`},
		{"Missing.Deeper", `null`},
		{"Keys[0].KeyId", `"a"`},
		{"Keys[-1].KeyId", `"c"`},
		{"Keys[5].KeyId", `null`},
		{"Keys[].KeyId", `["a","b","c"]`},
		{"Keys[*].KeyId", `["a","b","c"]`},
		{"Keys[*].KeyArn", `["arn:a","arn:b"]`},
		{"Rotations[*].RotationType", `["AUTOMATIC","ON_DEMAND"]`},
		{"Rotations[].[RotationType, KeyVersion]", `[["AUTOMATIC",2],["ON_DEMAND",3]]`},
		{"Rotations[].{T: RotationType}", `[{"T":"AUTOMATIC"},{"T":"ON_DEMAND"}]`},
		{"length(Rotations)", `2`},
		{"length(Keys[].KeyArn)", `2`},
		{"length(KeyMetadata.KeyId)", `2`},
		{"Rotations[?RotationType=='ON_DEMAND'].KeyVersion", `[3]`},
		{"Rotations[?KeyVersion > `2`] | [0].RotationType", `"ON_DEMAND"`},
		{"Rotations[?RotationType!='ON_DEMAND' && KeyVersion == `2`].KeyVersion", `[2]`},
		{"Keys[?KeyArn].KeyId", `["a","b"]`},
		{"Keys[?!KeyArn].KeyId", `["c"]`},
		{"Keys[*].KeyId | [1]", `"b"`},
		{"Nested[]", `[1,2,3,4]`},
		{"Groups[*].Items[*].N", `[[1,2],[3]]`},
		{"Groups[].Items[].N", `[1,2,3]`},
		{"Groups[*].Items[0].N", `[1,3]`},
		{"Empty[*].X", `[]`},
		{"KeyMetadata.KeyId[0]", `null`},
		{"KeyMetadata.*", `["k1",true,["SYMMETRIC_DEFAULT"],3]`},
		{`"weird key"`, `"w"`},
		{"KeyMetadata.EncryptionAlgorithms[0]", `"SYMMETRIC_DEFAULT"`},
		{"contains(Keys[].KeyId, 'b')", `true`},
		{"starts_with(KeyMetadata.KeyId, 'k')", `true`},
		{"keys(KeyMetadata)", `["KeyId","Enabled","EncryptionAlgorithms","Version"]`},
		{"Missing || 'default'", `"default"`},
		{"@.KeyMetadata.Version", `3`},
		{"[KeyMetadata.KeyId, Keys[0].KeyId]", `["k1","a"]`},
	} {
		q, err := parseQuery(tc.q)
		if err != nil {
			t.Errorf("parseQuery(%q): %v", tc.q, err)
			continue
		}
		v, err := q.eval(doc)
		if err != nil {
			t.Errorf("eval(%q): %v", tc.q, err)
			continue
		}
		got, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("%s = %s, want %s", tc.q, got, tc.want)
		}
	}
}

func TestQueryErrors(t *testing.T) {
	for _, q := range []string{"", "Keys[", "Keys[0", "a.", "a..b", "nosuch(a)", "a[?b==]", "{a b}", "'unterminated", "a $ b", "Keys[x]"} {
		if _, err := parseQuery(q); err == nil {
			t.Errorf("parseQuery(%q) succeeded", q)
		}
	}
	doc, _ := toValue(json.RawMessage(`{"a": 1}`))
	q, err := parseQuery("length(a)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.eval(doc); err == nil {
		t.Error("length of a number succeeded")
	}
}
