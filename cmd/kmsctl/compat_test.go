package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// TestAWSCompat is the table of issue 18 against a real cluster: exit
// codes and error lines of service errors, output formats, paging,
// --endpoint-url, --cli-input-json and --debug, as the AWS CLI v2 has them.
func TestAWSCompat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	eps := startCluster(t)
	t.Setenv("RAFTKMS_ENDPOINTS", strings.Join(eps, ","))
	keyID := strings.TrimSpace(kmsctl(t, "create-key", "--description", "compat", "--query", "KeyMetadata.KeyId", "--output", "text"))
	other := strings.TrimSpace(kmsctl(t, "create-key", "--query", "KeyMetadata.KeyId", "--output", "text"))
	missing := "00000000-0000-0000-0000-000000000000"
	secret := "hunter2-correct-horse"
	input := filepath.Join(t.TempDir(), "encrypt.json")
	if err := os.WriteFile(input, []byte(`{"KeyId": "`+keyID+`", "Plaintext": "aGk=", "EncryptionContext": {"app": "compat"}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []cliCase{
		{"not found", []string{"describe-key", "--key-id", missing}, exitService,
			[]string{"\nAn error occurred (NotFoundException) when calling the DescribeKey operation: "}, nil},
		{"server-side validation", []string{"encrypt", "--key-id", keyID, "--plaintext", "aGk=", "--encryption-algorithm", "BOGUS"}, exitService,
			[]string{"An error occurred (ValidationException) when calling the Encrypt operation: "}, nil},
		{"wrong context", []string{"decrypt", "--ciphertext-blob", "AQID"}, exitService,
			[]string{"when calling the Decrypt operation: "}, nil},
		{"no-paginate", []string{"list-keys", "--no-paginate"}, exitOK, nil, []string{`"Truncated": false`}},
		{"limit", []string{"list-keys", "--limit", "1"}, exitOK, nil, []string{`"Truncated": true`, `"NextMarker": "`}},
		{"automatic pagination prints no Truncated", []string{"list-keys", "--query", "Truncated"}, exitOK, nil, []string{"null"}},
		{"endpoint-url", []string{"describe-key", "--key-id", keyID, "--endpoint-url", "http://" + eps[1], "--query", "KeyMetadata.KeyId", "--output", "text"},
			exitOK, nil, []string{keyID + "\n"}},
		{"extension field in JSON", []string{"describe-key", "--key-id", keyID}, exitOK, nil, []string{`"CurrentKeyVersion": 1`}},
		{"extension field asked for in text", []string{"describe-key", "--key-id", keyID, "--query", "KeyMetadata.CurrentKeyVersion", "--output", "text"},
			exitOK, nil, []string{"1\n"}},
		{"table", []string{"describe-key", "--key-id", keyID, "--output", "table"}, exitOK, nil,
			[]string{"  DescribeKey  ", "|\n+---", "||  KeyId  ", "EncryptionAlgorithms", keyID}},
		{"cli-input-json", []string{"encrypt", "--cli-input-json", "file://" + input, "--query", "KeyId", "--output", "text"}, exitOK, nil,
			[]string{keyID + "\n"}},
		{"query functions", []string{"list-keys", "--query", "length(sort_by(Keys, &KeyId)[:2])", "--output", "text"}, exitOK, nil, []string{"2\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t) })
	}

	// Text output has exactly the AWS CLI's columns for describe-key: the
	// scalar fields of KeyMetadata in name order, without CurrentKeyVersion.
	out := kmsctl(t, "describe-key", "--key-id", keyID, "--output", "text")
	cols := strings.Split(strings.SplitN(out, "\n", 2)[0], "\t")
	want := []string{"KEYMETADATA", "AWSAccountId", "Arn", "CreationDate", "CustomerMasterKeySpec", "Description", "Enabled",
		"KeyId", "KeyManager", "KeySpec", "KeyState", "KeyUsage", "MultiRegion", "Origin"}
	if len(cols) != len(want) || cols[0] != "KEYMETADATA" || cols[5] != "compat" || cols[7] != keyID || cols[10] != "Enabled" {
		t.Fatalf("describe-key text columns %q, want %q", cols, want)
	}
	if out := kmsctl(t, "rotate-key-on-demand", "--key-id", other, "--output", "text"); strings.Contains(out, "\t") {
		t.Fatalf("rotate-key-on-demand text has extra columns: %q", out)
	}

	// YAML parses back to the JSON answer.
	var y struct {
		KeyMetadata struct {
			KeyID             string `yaml:"KeyId"`
			AWSAccountID      string `yaml:"AWSAccountId"`
			Enabled           bool   `yaml:"Enabled"`
			CurrentKeyVersion int    `yaml:"CurrentKeyVersion"`
		} `yaml:"KeyMetadata"`
	}
	if err := yaml.Unmarshal([]byte(kmsctl(t, "describe-key", "--key-id", keyID, "--output", "yaml")), &y); err != nil ||
		y.KeyMetadata.KeyID != keyID || !y.KeyMetadata.Enabled || y.KeyMetadata.AWSAccountID == "" || y.KeyMetadata.CurrentKeyVersion != 1 {
		t.Fatalf("yaml output: %+v, %v", y, err)
	}
	var stream []map[string]any
	if err := yaml.Unmarshal([]byte(kmsctl(t, "list-keys", "--output", "yaml-stream")), &stream); err != nil || len(stream) != 1 {
		t.Fatalf("yaml-stream output: %v, %v", stream, err)
	}

	// --debug shows the requests, never the plaintext, nor the data key.
	code, out, errOut := runCLI("encrypt", "--key-id", keyID, "--cli-binary-format", "raw-in-base64-out", "--plaintext", secret, "--debug")
	if code != exitOK || !strings.Contains(errOut, `Calling Encrypt with params: {"keyId": "`+keyID+`", "plaintext": "<21 bytes, not shown>"}`) {
		t.Fatalf("--debug encrypt: exit %d, stderr %q", code, errOut)
	}
	if strings.Contains(errOut, secret) || strings.Contains(errOut, base64.StdEncoding.EncodeToString([]byte(secret))) {
		t.Fatalf("--debug printed the plaintext: %q", errOut)
	}
	var enc struct{ CiphertextBlob string }
	if err := json.Unmarshal([]byte(out), &enc); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI("decrypt", "--ciphertext-blob", enc.CiphertextBlob, "--debug")
	if code != exitOK || strings.Contains(errOut, enc.CiphertextBlob) || !strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(secret))) {
		t.Fatalf("--debug decrypt: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut = runCLI("generate-data-key", "--key-id", keyID, "--key-spec", "AES_256", "--debug", "--query", "Plaintext", "--output", "text")
	if code != exitOK || len(strings.TrimSpace(out)) != 44 || strings.Contains(errOut, strings.TrimSpace(out)) {
		t.Fatalf("--debug generate-data-key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
