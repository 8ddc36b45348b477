package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// inUTC prints timestamps in UTC for the duration of a test.
func inUTC(t *testing.T) {
	t.Helper()
	old := outputLocation
	outputLocation = time.UTC
	t.Cleanup(func() { outputLocation = old })
}

func render(t *testing.T, v any, g *globals) string {
	t.Helper()
	var b bytes.Buffer
	if err := printResult(&b, v, g); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func jsonOut() *globals { return &globals{output: "json"} }

func ptr[T any](v T) *T { return &v }

func TestAWSTime(t *testing.T) {
	inUTC(t)
	for in, want := range map[time.Time]string{
		time.Date(2026, 11, 22, 10, 15, 31, 123_000_000, time.UTC):           "2026-11-22T10:15:31.123000+00:00",
		time.Date(2026, 11, 22, 10, 15, 31, 0, time.UTC):                     "2026-11-22T10:15:31+00:00",
		time.Date(2026, 11, 22, 10, 15, 31, 123_456_789, time.UTC):           "2026-11-22T10:15:31.123456+00:00",
		time.Date(2026, 11, 22, 12, 15, 31, 5_000, time.FixedZone("", 7200)): "2026-11-22T10:15:31.000005+00:00",
	} {
		if got := awsTime(in).String(); got != want {
			t.Errorf("awsTime(%v) = %q, want %q", in, got, want)
		}
	}
	outputLocation = time.FixedZone("", -7*3600)
	if got := awsTime(time.Date(2026, 11, 22, 10, 15, 31, 0, time.UTC)).String(); got != "2026-11-22T03:15:31-07:00" {
		t.Errorf("in -07:00: %q", got)
	}
}

func TestKeyMetadataJSON(t *testing.T) {
	inUTC(t)
	created := timestamppb.New(time.Date(2026, 11, 22, 10, 15, 31, 123_000_000, time.UTC))
	doc := keyMetadataOf(&kmsv1.KeyMetadata{
		AwsAccountId: "111122223333", KeyId: "k1", Arn: "arn:aws:kms:local:111122223333:key/k1",
		CreationDate: created, Enabled: true, KeyUsage: "ENCRYPT_DECRYPT", KeyState: "Enabled",
		Origin: "AWS_KMS", KeyManager: "CUSTOMER", CustomerMasterKeySpec: "SYMMETRIC_DEFAULT",
		KeySpec: "SYMMETRIC_DEFAULT", EncryptionAlgorithms: []string{"SYMMETRIC_DEFAULT"}, CurrentKeyVersion: 1,
	})
	want := `{
    "KeyMetadata": {
        "AWSAccountId": "111122223333",
        "KeyId": "k1",
        "Arn": "arn:aws:kms:local:111122223333:key/k1",
        "CreationDate": "2026-11-22T10:15:31.123000+00:00",
        "Enabled": true,
        "Description": "",
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": "Enabled",
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": [
            "SYMMETRIC_DEFAULT"
        ],
        "MultiRegion": false,
        "CurrentKeyVersion": 1
    }
}
`
	if got := render(t, doc, jsonOut()); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}

	// Fields AWS prints only when set.
	deletion := timestamppb.New(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	doc = keyMetadataOf(&kmsv1.KeyMetadata{KeyId: "k2", KeyState: "PendingDeletion", DeletionDate: deletion,
		ValidTo: deletion, ExpirationModel: "KEY_MATERIAL_EXPIRES", PendingDeletionWindowInDays: 7, Origin: "EXTERNAL"})
	got := render(t, doc, jsonOut())
	for _, f := range []string{`"DeletionDate": "2026-12-01T00:00:00+00:00"`, `"ValidTo": `, `"ExpirationModel": "KEY_MATERIAL_EXPIRES"`,
		`"PendingDeletionWindowInDays": 7`} {
		if !strings.Contains(got, f) {
			t.Errorf("output lacks %s:\n%s", f, got)
		}
	}
	if strings.Contains(got, "CurrentKeyVersion") {
		t.Errorf("CurrentKeyVersion 0 should be omitted:\n%s", got)
	}
}

// TestFieldNames checks each document's field names against the AWS
// response shapes, in order.
func TestFieldNames(t *testing.T) {
	inUTC(t)
	epoch := awsTime(time.Unix(0, 0))
	ts := &epoch
	for _, tc := range []struct {
		doc  any
		want string
	}{
		{encryptDoc{[]byte("c"), "arn", "SYMMETRIC_DEFAULT"}, `{"CiphertextBlob":"Yw==","KeyId":"arn","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}`},
		{decryptDoc{"arn", []byte("p"), "SYMMETRIC_DEFAULT"}, `{"KeyId":"arn","Plaintext":"cA==","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}`},
		{dataKeyDoc{[]byte("c"), []byte("p"), "arn"}, `{"CiphertextBlob":"Yw==","Plaintext":"cA==","KeyId":"arn"}`},
		{dataKeyWithoutPlaintextDoc{[]byte("c"), "arn"}, `{"CiphertextBlob":"Yw==","KeyId":"arn"}`},
		{reEncryptDoc{[]byte("c"), "src", "dst", "SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT"},
			`{"CiphertextBlob":"Yw==","SourceKeyId":"src","KeyId":"dst","SourceEncryptionAlgorithm":"SYMMETRIC_DEFAULT","DestinationEncryptionAlgorithm":"SYMMETRIC_DEFAULT"}`},
		{listKeysDoc{Keys: []keyListEntry{{"id", "arn"}}}, `{"Keys":[{"KeyId":"id","KeyArn":"arn"}]}`},
		{listKeysDoc{Keys: []keyListEntry{}, paging: paging{NextMarker: "m", Truncated: ptr(true)}}, `{"Keys":[],"NextMarker":"m","Truncated":true}`},
		{listKeysDoc{Keys: []keyListEntry{}, paging: paging{Truncated: ptr(false)}}, `{"Keys":[],"Truncated":false}`},
		{rotationStatusDoc{KeyID: "arn"}, `{"KeyRotationEnabled":false,"KeyId":"arn"}`},
		{rotationStatusDoc{true, "arn", 90, ts, ts, 0, 0},
			`{"KeyRotationEnabled":true,"KeyId":"arn","RotationPeriodInDays":90,"NextRotationDate":"1970-01-01T00:00:00+00:00","OnDemandRotationStartDate":"1970-01-01T00:00:00+00:00"}`},
		{listKeyRotationsDoc{Rotations: []rotationEntry{{KeyID: "arn", RotationDate: ts, RotationType: "ON_DEMAND", KeyVersion: 2}}},
			`{"Rotations":[{"KeyId":"arn","RotationDate":"1970-01-01T00:00:00+00:00","RotationType":"ON_DEMAND","KeyVersion":2}]}`},
		{listKeyRotationsDoc{Rotations: []rotationEntry{{KeyID: "arn", KeyMaterialID: "ab", KeyMaterialState: "PENDING_ROTATION"}}},
			`{"Rotations":[{"KeyId":"arn","KeyMaterialId":"ab","KeyMaterialState":"PENDING_ROTATION"}]}`},
		{importKeyMaterialDoc{"arn", "ab", 2}, `{"KeyId":"arn","KeyMaterialId":"ab","KeyVersion":2}`},
		{keyVersionDoc{"arn", 3}, `{"KeyId":"arn","KeyVersion":3}`},
		{keyIDDoc{"arn"}, `{"KeyId":"arn"}`},
		{scheduleKeyDeletionDoc{"arn", ts, "PendingDeletion", 7},
			`{"KeyId":"arn","DeletionDate":"1970-01-01T00:00:00+00:00","KeyState":"PendingDeletion","PendingWindowInDays":7}`},
		{listAliasesDoc{Aliases: []aliasEntry{{"alias/a", "arn:alias", "k", ts, ts}}},
			`{"Aliases":[{"AliasName":"alias/a","AliasArn":"arn:alias","TargetKeyId":"k","CreationDate":"1970-01-01T00:00:00+00:00","LastUpdatedDate":"1970-01-01T00:00:00+00:00"}]}`},
		{importParametersDoc{"arn", []byte("t"), []byte("k"), ts},
			`{"KeyId":"arn","ImportToken":"dA==","PublicKey":"aw==","ParametersValidTo":"1970-01-01T00:00:00+00:00"}`},
		{keyPolicyDoc{"{}", "default"}, `{"Policy":"{}","PolicyName":"default"}`},
		{listResourceTagsDoc{Tags: []tagEntry{{"k", "v"}}}, `{"Tags":[{"TagKey":"k","TagValue":"v"}]}`},
		{listKeyEventsDoc{KeyID: "k", Events: []keyEventEntry{{"CreateKey", ts, "p", "r", "Enabled", 1, "abcd"}}},
			`{"KeyId":"k","Events":[{"EventType":"CreateKey","Time":"1970-01-01T00:00:00+00:00","Principal":"p","RequestId":"r","KeyState":"Enabled","KeyVersion":1,"Hash":"abcd"}]}`},
		{clusterStatusOf(&clusterv1.StatusResponse{NodeId: "kms1", State: "Leader", LeaderId: "kms1", AppliedIndex: 7,
			StateDigest: []byte{0xab, 0xcd}, Term: 2, LastIndex: 8,
			Members: []*clusterv1.Member{{NodeId: "kms1", RaftAddr: "r", GrpcAddr: "g", Voter: true}}}),
			`{"NodeId":"kms1","State":"Leader","LeaderId":"kms1","AppliedIndex":7,"StateDigest":"abcd","Term":2,"LastIndex":8,"Members":[{"NodeId":"kms1","RaftAddr":"r","GrpcAddr":"g","Voter":true}]}`},
	} {
		got := strings.Join(strings.Fields(render(t, tc.doc, jsonOut())), "")
		if got != tc.want {
			t.Errorf("%T:\n got %s\nwant %s", tc.doc, got, tc.want)
		}
	}
}

func TestEmptyResponsePrintsNothing(t *testing.T) {
	for _, g := range []*globals{jsonOut(), {output: "text"}, {output: "json", query: "KeyId", hasQuery: true}} {
		if got := render(t, nil, g); got != "" {
			t.Fatalf("printed %q for an empty response", got)
		}
	}
}

func TestTextOutput(t *testing.T) {
	inUTC(t)
	text := &globals{output: "text"}
	for _, tc := range []struct {
		name  string
		doc   any
		query string
		want  string
	}{
		{"scalar", encryptDoc{[]byte("c"), "arn", "SYMMETRIC_DEFAULT"}, "CiphertextBlob", "Yw==\n"},
		{"list of scalars", listKeysDoc{Keys: []keyListEntry{{"a", "arn:a"}, {"b", "arn:b"}}}, "Keys[].KeyId", "a\tb\n"},
		{"bool", rotationStatusDoc{KeyRotationEnabled: true}, "KeyRotationEnabled", "True\n"},
		{"null", rotationStatusDoc{}, "NextRotationDate", "None\n"},
		{"whole object", encryptDoc{[]byte("c"), "arn", "SYMMETRIC_DEFAULT"}, "", "Yw==\tSYMMETRIC_DEFAULT\tarn\n"},
		{"list of objects", listKeysDoc{Keys: []keyListEntry{{"a", "arn:a"}, {"b", "arn:b"}}}, "",
			"KEYS\tarn:a\ta\nKEYS\tarn:b\tb\n"},
		{"nested", keyMetadataDoc{keyMetadataOut{KeyID: "k", KeyState: "Enabled", EncryptionAlgorithms: []string{"SYMMETRIC_DEFAULT"}}}, "",
			"KEYMETADATA\t\t\t\tFalse\tk\tEnabled\tFalse\nENCRYPTIONALGORITHMS\tSYMMETRIC_DEFAULT\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := *text
			if tc.query != "" {
				g.query, g.hasQuery = tc.query, true
			}
			if got := render(t, tc.doc, &g); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestQueryJSONKeepsFieldOrder(t *testing.T) {
	doc := keyMetadataOf(&kmsv1.KeyMetadata{KeyId: "k", Arn: "arn", KeyState: "Enabled"})
	got := render(t, doc, &globals{output: "json", query: "KeyMetadata.{Id: KeyId, State: KeyState}", hasQuery: true})
	want := "{\n    \"Id\": \"k\",\n    \"State\": \"Enabled\"\n}\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	got = render(t, doc, &globals{output: "json", query: "KeyMetadata.KeyId", hasQuery: true})
	if got != "\"k\"\n" {
		t.Fatalf("scalar query printed %q", got)
	}
}

// TestTableOutput checks the layout of table output: a title box, one row
// per list element under the field names, nested lists in inner boxes.
func TestTableOutput(t *testing.T) {
	inUTC(t)
	doc := listAliasesDoc{Aliases: []aliasEntry{{AliasName: "alias/a", AliasArn: "arn:a", TargetKeyID: "k1"}, {AliasName: "alias/b", AliasArn: "arn:b"}}}
	got := render(t, doc, &globals{output: "table", operation: "ListAliases"})
	want := "" +
		"----------------------------------------------\n" +
		"|                ListAliases                 |\n" +
		"+--------------------------------------------+\n" +
		"||                 Aliases                  ||\n" +
		"|+------------+-------------+---------------+|\n" +
		"||  AliasArn  |  AliasName  |  TargetKeyId  ||\n" +
		"|+------------+-------------+---------------+|\n" +
		"||  arn:a     |  alias/a    |  k1           ||\n" +
		"||  arn:b     |  alias/b    |               ||\n" +
		"|+------------+-------------+---------------+|\n"
	if got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}
	for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if len(line) != len("----------------------------------------------") {
			t.Fatalf("line %q is not as wide as the others", line)
		}
	}
	// Too wide for the terminal: the one-row box turns into name | value rows.
	t.Setenv("COLUMNS", "40")
	got = render(t, keyMetadataOf(&kmsv1.KeyMetadata{KeyId: "1234abcd-12ab-34cd-56ef-1234567890ab", KeyState: "Enabled", Arn: "arn:x"}),
		&globals{output: "table", operation: "DescribeKey"})
	if !strings.Contains(got, "||  KeyState      |  Enabled   ") || strings.Contains(got, "CurrentKeyVersion") {
		t.Fatalf("vertical table:\n%s", got)
	}
}

func TestYAMLOutput(t *testing.T) {
	inUTC(t)
	doc := keyMetadataOf(&kmsv1.KeyMetadata{AwsAccountId: "000000000000", KeyId: "k", KeyState: "Enabled", CurrentKeyVersion: 2,
		EncryptionAlgorithms: []string{"SYMMETRIC_DEFAULT"}})
	got := render(t, doc, &globals{output: "yaml"})
	want := "KeyMetadata:\n  AWSAccountId: \"000000000000\"\n  KeyId: k\n  Arn: \"\"\n  Enabled: false\n  Description: \"\"\n" +
		"  KeyState: Enabled\n  EncryptionAlgorithms:\n    - SYMMETRIC_DEFAULT\n  MultiRegion: false\n  CurrentKeyVersion: 2\n"
	if got != want {
		t.Fatalf("yaml:\n%q\nwant\n%q", got, want)
	}
}
