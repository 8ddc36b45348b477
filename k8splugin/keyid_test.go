package k8splugin

import (
	"strings"
	"testing"
)

const testARN = "arn:raftkms:kms:local:000000000000:key/6f1c1c53-7d1e-4d0f-9b8e-2f4a3c1d0e9f"

func TestKeyID(t *testing.T) {
	for _, tc := range []struct {
		arn     string
		version uint32
		want    string
		wantErr bool
	}{
		{arn: testARN, version: 1, want: testARN + "/1"},
		{arn: testARN, version: 42, want: testARN + "/42"},
		{arn: testARN, version: 4294967295, want: testARN + "/4294967295"},
		{arn: "", version: 1, wantErr: true},
		{arn: testARN, version: 0, wantErr: true},
		{arn: "arn:x:key/" + strings.Repeat("k", 1024), version: 1, wantErr: true},
	} {
		got, err := KeyID(tc.arn, tc.version)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("KeyID(%q, %d) = %q, %v; want %q (error %v)", tc.arn, tc.version, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestKeyIDChangesExactlyWithVersion: the apiserver re-wraps DEKs when the
// key_id changes, so distinct (key, version) pairs give distinct key_ids and
// the same pair the same one, and ParseKeyID inverts KeyID.
func TestKeyIDChangesExactlyWithVersion(t *testing.T) {
	other := strings.Replace(testARN, "6f1c", "7f1c", 1)
	seen := map[string][2]any{}
	for _, arn := range []string{testARN, other} {
		for v := uint32(1); v <= 12; v++ {
			id, err := KeyID(arn, v)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := KeyID(arn, v)
			if again != id {
				t.Fatalf("KeyID is not a function: %q then %q", id, again)
			}
			if prev, dup := seen[id]; dup {
				t.Fatalf("key_id %q for %s/%d and %v", id, arn, v, prev)
			}
			seen[id] = [2]any{arn, v}
			key, ver, err := ParseKeyID(id)
			if err != nil || ver != v || "key/"+key != arn[strings.LastIndex(arn, "key/"):] {
				t.Fatalf("ParseKeyID(%q) = %q, %d, %v", id, key, ver, err)
			}
		}
	}
}

func TestParseKeyIDRefuses(t *testing.T) {
	for _, bad := range []string{
		"",
		testARN,                               // no version
		testARN + "/",                         // empty version
		testARN + "/0",                        // versions start at 1
		testARN + "/-1",                       // not a number
		testARN + "/v2",                       // not a number
		testARN + "/9999999999",               // beyond uint32
		"key//3",                              // no key ID
		"arn:raftkms:kms:local:0:alias/k8s/3", // an alias, not a key
		"3",
	} {
		if key, v, err := ParseKeyID(bad); err == nil {
			t.Errorf("ParseKeyID(%q) = %q, %d; want an error", bad, key, v)
		}
	}
	// A different ARN prefix (account, region) still names the same key.
	key, v, err := ParseKeyID("arn:raftkms:kms:eu-1:123456789012:key/abc/7")
	if err != nil || key != "abc" || v != 7 {
		t.Fatalf("ParseKeyID with another prefix = %q, %d, %v", key, v, err)
	}
}
