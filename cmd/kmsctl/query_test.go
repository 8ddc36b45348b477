package main

import (
	"encoding/json"
	"testing"
)

const queryDoc = `{
  "KeyMetadata": {"KeyId": "k1", "Enabled": true, "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "Version": 3},
  "Keys": [{"KeyId": "c", "KeyArn": "arn:c"}, {"KeyId": "a", "KeyArn": "arn:a"}, {"KeyId": "b"}],
  "Rotations": [
    {"KeyId": "k1", "RotationType": "AUTOMATIC", "KeyVersion": 2},
    {"KeyId": "k1", "RotationType": "ON_DEMAND", "KeyVersion": 3}
  ],
  "Nested": [[1, 2], [3], 4],
  "Empty": [],
  "weird key": "w"
}`

// TestQuery runs --query expressions through the JMESPath library, among
// them the ones the old hand-written subset could not do (slices, sort_by,
// multi-select hashes, most functions), and checks that objects print in
// the answer's field order and hashes in the order their keys are written.
func TestQuery(t *testing.T) {
	doc, err := toValue(json.RawMessage(queryDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ q, want string }{
		{"KeyMetadata.KeyId", `"k1"`},
		{"KeyMetadata.Missing", `null`},
		{"Keys[:2]", `[{"KeyId":"c","KeyArn":"arn:c"},{"KeyId":"a","KeyArn":"arn:a"}]`},
		{"Keys[:2].KeyId", `["c","a"]`},
		{"Keys[::-1].KeyId", `["b","a","c"]`},
		{"Keys[-1].KeyId", `"b"`},
		{"sort_by(Keys, &KeyId)[].KeyId", `["a","b","c"]`},
		{"sort_by(Keys, &KeyId)[0]", `{"KeyId":"a","KeyArn":"arn:a"}`},
		{"reverse(sort_by(Rotations, &KeyVersion))[0].RotationType", `"ON_DEMAND"`},
		{"Keys[].{Id: KeyId, Arn: KeyArn}", `[{"Id":"c","Arn":"arn:c"},{"Id":"a","Arn":"arn:a"},{"Id":"b","Arn":null}]`},
		{"Keys[0].{Z: KeyId, A: KeyArn}", `{"Z":"c","A":"arn:c"}`},
		{"KeyMetadata.{State: Enabled, Id: KeyId}", `{"State":true,"Id":"k1"}`},
		{"Rotations[?RotationType=='ON_DEMAND'].KeyVersion", `[3]`},
		{"Rotations[?KeyVersion > `2`] | [0].RotationType", `"ON_DEMAND"`},
		{"length(Rotations[?RotationType=='AUTOMATIC'])", `1`},
		{"max_by(Rotations, &KeyVersion).KeyVersion", `3`},
		{"sum(Rotations[].KeyVersion)", `5`},
		{"avg(Rotations[].KeyVersion)", `2.5`},
		{"join(',', sort(Keys[].KeyId))", `"a,b,c"`},
		{"contains(Keys[].KeyId, 'b')", `true`},
		{"starts_with(KeyMetadata.KeyId, 'k')", `true`},
		{"sort(keys(KeyMetadata))", `["Enabled","EncryptionAlgorithms","KeyId","Version"]`},
		{"to_string(KeyMetadata.Version)", `"3"`},
		{"Keys[?!KeyArn].KeyId", `["b"]`},
		{"Nested[]", `[1,2,3,4]`},
		{"Empty[*].X", `[]`},
		{`"weird key"`, `"w"`},
		{"Missing || 'default'", `"default"`},
		{"KeyMetadata", `{"KeyId":"k1","Enabled":true,"EncryptionAlgorithms":["SYMMETRIC_DEFAULT"],"Version":3}`},
	} {
		q, err := compileQuery(tc.q)
		if err != nil {
			t.Errorf("compileQuery(%q): %v", tc.q, err)
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
	for _, q := range []string{"", "Keys[", "Keys[0", "a.", "a..b", "a[?b==]", "{a b}", "'unterminated", "Keys[x]"} {
		if _, err := compileQuery(q); err == nil {
			t.Errorf("compileQuery(%q) succeeded", q)
		}
	}
	doc, _ := toValue(json.RawMessage(`{"a": 1}`))
	for _, expr := range []string{"length(a)", "nosuch(a)", "sort_by(a, &b)"} {
		q, err := compileQuery(expr)
		if err != nil {
			continue // refused at compile time: as good
		}
		if _, err := q.eval(doc); err == nil {
			t.Errorf("%s on a number succeeded", expr)
		}
	}
}
