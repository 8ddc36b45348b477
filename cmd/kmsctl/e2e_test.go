package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/server"
)

// startCluster starts a real 3-node cluster in this process, with bounds
// short enough for --rotation-period and --pending-window in seconds, and
// waits until every node knows the leader and every member's gRPC address.
func startCluster(t *testing.T) []string {
	t.Helper()
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := server.StartLocal(server.LocalConfig{
		Nodes:   3,
		Dir:     t.TempDir(),
		RootKey: root,
		Limits:  rpc.Limits{MinRotationPeriod: time.Second, MinPendingWindow: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	eps := l.Endpoints()

	deadline := time.Now().Add(30 * time.Second)
	for _, ep := range eps {
		for {
			code, out, _ := runCLI("cluster", "status", "--endpoints", ep, "--timeout", "2s")
			var st clusterStatusDoc
			if code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.LeaderID != "" && registered(st) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s did not see a leader and all members in time; last status %q", ep, out)
			}
			time.Sleep(50 * time.Millisecond) // polling interval, bounded by the deadline
		}
	}
	return eps
}

func registered(st clusterStatusDoc) bool {
	if len(st.Members) != 3 {
		return false
	}
	for _, m := range st.Members {
		if m.GrpcAddr == "" {
			return false
		}
	}
	return true
}

// kmsctl runs the CLI in-process and fails the test unless it succeeds.
func kmsctl(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(args...)
	if code != 0 {
		t.Fatalf("kmsctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// kmsctlFails runs the CLI and checks that it fails with a service error
// naming the exception.
func kmsctlFails(t *testing.T, exception string, args ...string) {
	t.Helper()
	code, out, errOut := runCLI(args...)
	if code != exitService || out != "" || !strings.HasPrefix(errOut, "\nAn error occurred ("+exception+") when calling the ") {
		t.Fatalf("kmsctl %s: exit %d, stdout %q, stderr %q; want exit 254 and An error occurred (%s)", strings.Join(args, " "), code, out, errOut, exception)
	}
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, s)
	}
	return m
}

// TestEndToEnd drives the kmsctl command logic against a real cluster: a
// key made on one node is used on the others, and errors, aliases, queries
// and text output behave as with `aws kms`.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	eps := startCluster(t)
	all := strings.Join(eps, ",")
	n1, n2, n3 := eps[0], eps[1], eps[2]

	// create-key on node 2.
	out := kmsctl(t, "create-key", "--endpoints", n2, "--description", "e2e key", "--tags", "TagKey=team,TagValue=infra")
	md, _ := decodeJSON(t, out)["KeyMetadata"].(map[string]any)
	keyID, _ := md["KeyId"].(string)
	if keyID == "" || md["KeyState"] != "Enabled" || md["Enabled"] != true || md["Description"] != "e2e key" ||
		md["Origin"] != "AWS_KMS" || md["KeyManager"] != "CUSTOMER" || md["KeySpec"] != "SYMMETRIC_DEFAULT" ||
		!strings.HasSuffix(md["Arn"].(string), keyID) || md["CurrentKeyVersion"] != 1.0 {
		t.Fatalf("create-key output:\n%s", out)
	}
	if !regexp.MustCompile(`"CreationDate": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?[+-]\d\d:\d\d"`).MatchString(out) {
		t.Fatalf("CreationDate is not in AWS CLI form:\n%s", out)
	}

	// encrypt via node 1, decrypt via node 3, through --query and text output.
	blob := strings.TrimSpace(kmsctl(t, "--endpoints", n1, "encrypt", "--key-id", keyID,
		"--cli-binary-format", "raw-in-base64-out", "--plaintext", "attack at dawn",
		"--encryption-context", "purpose=e2e,tenant=acme", "--query", "CiphertextBlob", "--output", "text"))
	if _, err := base64.StdEncoding.DecodeString(blob); err != nil || blob == "" {
		t.Fatalf("CiphertextBlob %q is not base64: %v", blob, err)
	}
	out = kmsctl(t, "decrypt", "--endpoints", n3, "--ciphertext-blob", blob, "--encryption-context", `{"tenant":"acme","purpose":"e2e"}`)
	dec := decodeJSON(t, out)
	if dec["Plaintext"] != base64.StdEncoding.EncodeToString([]byte("attack at dawn")) ||
		!strings.HasSuffix(dec["KeyId"].(string), keyID) || dec["EncryptionAlgorithm"] != "SYMMETRIC_DEFAULT" {
		t.Fatalf("decrypt output:\n%s", out)
	}
	kmsctlFails(t, "InvalidCiphertextException", "decrypt", "--endpoints", n3, "--ciphertext-blob", blob, "--encryption-context", "purpose=other")

	// Aliases.
	kmsctl(t, "create-alias", "--endpoints", all, "--alias-name", "alias/e2e", "--target-key-id", keyID)
	blob2 := strings.TrimSpace(kmsctl(t, "encrypt", "--endpoints", n3, "--key-id", "alias/e2e",
		"--plaintext", base64.StdEncoding.EncodeToString([]byte{0, 1, 2}), "--query", "CiphertextBlob", "--output", "text"))
	out = kmsctl(t, "decrypt", "--endpoints", n2, "--ciphertext-blob", blob2, "--query", "Plaintext", "--output", "text")
	if out != "AAEC\n" {
		t.Fatalf("decrypt under the alias gave %q", out)
	}
	out = kmsctl(t, "list-aliases", "--endpoints", n1, "--query", "Aliases[?AliasName=='alias/e2e'].TargetKeyId", "--output", "text")
	if out != keyID+"\n" {
		t.Fatalf("list-aliases gave %q, want %s", out, keyID)
	}
	out = kmsctl(t, "describe-key", "--endpoints", n1, "--key-id", "alias/e2e", "--query", "KeyMetadata.KeyId", "--output", "text")
	if out != keyID+"\n" {
		t.Fatalf("describe-key by alias gave %q", out)
	}

	// disable-key on node 2 is honoured at once by encrypt on node 3.
	if out := kmsctl(t, "disable-key", "--endpoints", n2, "--key-id", keyID); out != "" {
		t.Fatalf("disable-key printed %q", out)
	}
	kmsctlFails(t, "DisabledException", "encrypt", "--endpoints", n3, "--key-id", keyID, "--plaintext", "aGk=")
	if out := kmsctl(t, "describe-key", "--endpoints", n1, "--key-id", keyID, "--query", "KeyMetadata.[KeyState, Enabled]", "--output", "text"); out != "Disabled\tFalse\n" {
		t.Fatalf("describe-key after disable-key: %q", out)
	}
	kmsctl(t, "enable-key", "--endpoints", n1, "--key-id", keyID)

	// Rotation on demand; old ciphertexts still decrypt.
	out = kmsctl(t, "rotate-key-on-demand", "--endpoints", n3, "--key-id", keyID)
	if rot := decodeJSON(t, out); rot["KeyVersion"] != 2.0 {
		t.Fatalf("rotate-key-on-demand: %s", out)
	}
	out = kmsctl(t, "list-key-rotations", "--endpoints", n1, "--key-id", keyID, "--query", "Rotations[*].RotationType", "--output", "text")
	if out != "ON_DEMAND\n" {
		t.Fatalf("list-key-rotations: %q", out)
	}
	out = kmsctl(t, "decrypt", "--endpoints", n1, "--ciphertext-blob", blob2, "--query", "Plaintext", "--output", "text")
	if out != "AAEC\n" {
		t.Fatalf("decrypt after rotation: %q", out)
	}

	// Automatic rotation with a period in seconds.
	kmsctl(t, "enable-key-rotation", "--endpoints", n2, "--key-id", keyID, "--rotation-period", "2s")
	if out := kmsctl(t, "get-key-rotation-status", "--endpoints", n1, "--key-id", keyID, "--query", "KeyRotationEnabled", "--output", "text"); out != "True\n" {
		t.Fatalf("get-key-rotation-status: %q", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out = kmsctl(t, "list-key-rotations", "--endpoints", n3, "--key-id", keyID, "--query", "length(Rotations[?RotationType=='AUTOMATIC'])", "--output", "text")
		if out != "0\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no automatic rotation within 30s of a 2s period")
		}
		time.Sleep(100 * time.Millisecond) // polling interval, bounded by the deadline
	}
	kmsctl(t, "disable-key-rotation", "--endpoints", n2, "--key-id", keyID)

	// Data keys.
	out = kmsctl(t, "generate-data-key", "--endpoints", n2, "--key-id", "alias/e2e", "--key-spec", "AES_256")
	dk := decodeJSON(t, out)
	plain, _ := base64.StdEncoding.DecodeString(dk["Plaintext"].(string))
	if len(plain) != 32 {
		t.Fatalf("generate-data-key: %s", out)
	}
	out = kmsctl(t, "decrypt", "--endpoints", n3, "--ciphertext-blob", dk["CiphertextBlob"].(string), "--query", "Plaintext", "--output", "text")
	if strings.TrimSpace(out) != dk["Plaintext"] {
		t.Fatalf("data key decrypts to %q, want %q", out, dk["Plaintext"])
	}

	// Tags, listing, events.
	kmsctl(t, "tag-resource", "--endpoints", n1, "--key-id", keyID, "--tags", `[{"TagKey":"env","TagValue":"test"}]`)
	out = kmsctl(t, "list-resource-tags", "--endpoints", n3, "--key-id", keyID, "--query", "Tags[].TagKey", "--output", "text")
	if out != "env\tteam\n" && out != "team\tenv\n" {
		t.Fatalf("list-resource-tags: %q", out)
	}
	out = kmsctl(t, "list-keys", "--endpoints", n1, "--query", "Keys[].KeyId", "--output", "text")
	if !strings.Contains(out, keyID) {
		t.Fatalf("list-keys lacks %s: %q", keyID, out)
	}
	out = kmsctl(t, "list-key-events", "--endpoints", n2, "--key-id", keyID, "--query", "Events[0].EventType", "--output", "text")
	if strings.TrimSpace(out) == "" || strings.TrimSpace(out) == "None" {
		t.Fatalf("list-key-events: %q", out)
	}

	// Deletion with a window in seconds, then cancelled.
	out = kmsctl(t, "schedule-key-deletion", "--endpoints", n3, "--key-id", keyID, "--pending-window", "1h")
	if sd := decodeJSON(t, out); sd["KeyState"] != "PendingDeletion" || sd["DeletionDate"] == nil {
		t.Fatalf("schedule-key-deletion: %s", out)
	}
	kmsctlFails(t, "KMSInvalidStateException", "encrypt", "--endpoints", n1, "--key-id", keyID, "--plaintext", "aGk=")
	out = kmsctl(t, "cancel-key-deletion", "--endpoints", n1, "--key-id", keyID)
	if cd := decodeJSON(t, out); !strings.HasSuffix(cd["KeyId"].(string), keyID) {
		t.Fatalf("cancel-key-deletion: %s", out)
	}
	if out := kmsctl(t, "describe-key", "--endpoints", n2, "--key-id", keyID, "--query", "KeyMetadata.KeyState", "--output", "text"); out != "Disabled\n" {
		t.Fatalf("state after cancel-key-deletion: %q", out)
	}

	kmsctlFails(t, "NotFoundException", "describe-key", "--endpoints", all, "--key-id", "00000000-0000-0000-0000-000000000000")

	// cluster status.
	out = kmsctl(t, "cluster", "status", "--endpoints", n3)
	st := decodeJSON(t, out)
	for _, f := range []string{"NodeId", "State", "LeaderId", "AppliedIndex", "StateDigest", "Term", "LastIndex", "Members"} {
		if _, ok := st[f]; !ok {
			t.Fatalf("cluster status lacks %s:\n%s", f, out)
		}
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(st["StateDigest"].(string)) {
		t.Fatalf("StateDigest %v is not hex SHA-256", st["StateDigest"])
	}
	members, _ := st["Members"].([]any)
	if len(members) != 3 {
		t.Fatalf("cluster status members: %v", st["Members"])
	}
	for _, m := range members {
		mm := m.(map[string]any)
		for _, f := range []string{"NodeId", "RaftAddr", "GrpcAddr", "Voter"} {
			if _, ok := mm[f]; !ok {
				t.Fatalf("member lacks %s: %v", f, mm)
			}
		}
	}
}
