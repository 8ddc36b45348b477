package main

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestParseConstraints(t *testing.T) {
	c, err := parseConstraints(`EncryptionContextSubset={tenant=acme,app=x}`)
	if err != nil || c.EncryptionContextSubset["tenant"] != "acme" || c.EncryptionContextSubset["app"] != "x" || len(c.EncryptionContextEquals) != 0 {
		t.Fatalf("shorthand: %v, %v", c, err)
	}
	c, err = parseConstraints(`{"EncryptionContextEquals": {"k": "v"}}`)
	if err != nil || c.EncryptionContextEquals["k"] != "v" {
		t.Fatalf("JSON: %v, %v", c, err)
	}
	for _, bad := range []string{`Other={a=b}`, `EncryptionContextSubset=a=b`, `{"Nope": {}}`, `{`} {
		if _, err := parseConstraints(bad); err == nil {
			t.Errorf("parseConstraints(%q) succeeded", bad)
		}
	}
}

// TestGrantAndVersionCommands runs the grant, key-policy, random and
// version-control commands against a real cluster, across its nodes.
func TestGrantAndVersionCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	eps := startCluster(t)
	n1, n2, n3 := eps[0], eps[1], eps[2]
	keyID := strings.TrimSpace(kmsctl(t, "create-key", "--endpoints", n1, "--query", "KeyMetadata.KeyId", "--output", "text"))

	kmsctlFails(t, "DryRunOperationException", "create-grant", "--endpoints", n2, "--key-id", keyID,
		"--grantee-principal", "app", "--operations", "Encrypt", "--dry-run")
	g := decodeJSON(t, kmsctl(t, "create-grant", "--endpoints", n2, "--key-id", keyID, "--grantee-principal", "app",
		"--retiring-principal", "ops", "--operations", "Encrypt", "Decrypt", "--constraints", "EncryptionContextSubset={tenant=acme}",
		"--name", "job"))
	id, _ := g["GrantId"].(string)
	token, _ := g["GrantToken"].(string)
	if len(id) != 64 || token == "" {
		t.Fatalf("create-grant printed %v", g)
	}
	out := kmsctl(t, "list-grants", "--endpoints", n3, "--key-id", keyID, "--query", "Grants[0].[GrantId,Constraints.EncryptionContextSubset.tenant]", "--output", "text")
	if got := strings.Fields(out); len(got) != 2 || got[0] != id || got[1] != "acme" {
		t.Fatalf("list-grants on another node: %q", out)
	}
	out = kmsctl(t, "list-retirable-grants", "--endpoints", n1, "--retiring-principal", "ops", "--query", "Grants[].GrantId", "--output", "text")
	if strings.TrimSpace(out) != id {
		t.Fatalf("list-retirable-grants: %q", out)
	}
	kmsctl(t, "retire-grant", "--endpoints", n3, "--grant-token", token)
	if out := kmsctl(t, "list-grants", "--endpoints", n1, "--key-id", keyID, "--query", "length(Grants)", "--output", "text"); strings.TrimSpace(out) != "0" {
		t.Fatalf("grants after retire-grant: %q", out)
	}
	kmsctlFails(t, "NotFoundException", "revoke-grant", "--endpoints", n1, "--key-id", keyID, "--grant-id", id)

	if out := kmsctl(t, "list-key-policies", "--endpoints", n2, "--key-id", keyID, "--query", "PolicyNames[0]", "--output", "text"); strings.TrimSpace(out) != "default" {
		t.Fatalf("list-key-policies: %q", out)
	}
	rnd := strings.TrimSpace(kmsctl(t, "generate-random", "--endpoints", n3, "--number-of-bytes", "48", "--query", "Plaintext", "--output", "text"))
	if b, err := base64.StdEncoding.DecodeString(rnd); err != nil || len(b) != 48 {
		t.Fatalf("generate-random printed %q (%v)", rnd, err)
	}
	kmsctlFails(t, "ValidationException", "generate-random", "--endpoints", n3, "--number-of-bytes", "1025")

	kmsctlFails(t, "DryRunOperationException", "encrypt", "--endpoints", n1, "--key-id", keyID, "--plaintext", "aGk=", "--dry-run")
	old := strings.TrimSpace(kmsctl(t, "encrypt", "--endpoints", n1, "--key-id", keyID, "--plaintext", "aGk=", "--query", "CiphertextBlob", "--output", "text"))
	kmsctl(t, "rotate-key-on-demand", "--endpoints", n1, "--key-id", keyID)
	kmsctl(t, "update-key-version-policy", "--endpoints", n2, "--key-id", keyID, "--min-decryption-version", "2")
	kmsctlFails(t, "KMSInvalidStateException", "decrypt", "--endpoints", n3, "--ciphertext-blob", old)
	kmsctl(t, "update-key-version-policy", "--endpoints", n2, "--key-id", keyID, "--min-decryption-version", "1")
	kmsctl(t, "decrypt", "--endpoints", n3, "--ciphertext-blob", old)
	kmsctlFails(t, "DryRunOperationException", "decrypt", "--endpoints", n2, "--ciphertext-blob", old, "--dry-run")
	kmsctlFails(t, "ValidationException", "destroy-key-version", "--endpoints", n1, "--key-id", keyID, "--key-version", "2")
	out = kmsctl(t, "destroy-key-version", "--endpoints", n1, "--key-id", keyID, "--key-version", "1", "--query", "KeyVersion", "--output", "text")
	if strings.TrimSpace(out) != "1" {
		t.Fatalf("destroy-key-version printed %q", out)
	}
	kmsctlFails(t, "KMSInvalidStateException", "decrypt", "--endpoints", n2, "--ciphertext-blob", old)

	kmsctl(t, "enable-key-rotation", "--endpoints", n1, "--key-id", keyID, "--rotation-period-in-days", "90", "--max-decryption-versions", "3")
	if out := kmsctl(t, "get-key-rotation-status", "--endpoints", n3, "--key-id", keyID, "--query", "MaxDecryptionVersions", "--output", "text"); strings.TrimSpace(out) != "3" {
		t.Fatalf("get-key-rotation-status MaxDecryptionVersions: %q", out)
	}
}
