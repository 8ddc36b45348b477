package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAccessKeyCommands: create-access-key prints the AccessKey document of
// `aws iam create-access-key` with the secret, list-access-keys never does,
// delete-access-key removes the key.
func TestAccessKeyCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster; skipped in -short mode")
	}
	eps := strings.Join(startCluster(t), ",")
	out := kmsctl(t, "--endpoints", eps, "create-access-key", "--identity", "app")
	var created struct {
		AccessKey struct{ UserName, AccessKeyId, SecretAccessKey, Status, CreateDate string }
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create-access-key output %q: %v", out, err)
	}
	k := created.AccessKey
	if k.UserName != "app" || len(k.AccessKeyId) != 20 || !strings.HasPrefix(k.AccessKeyId, "AKIA") ||
		len(k.SecretAccessKey) != 40 || k.Status != "Active" || k.CreateDate == "" {
		t.Fatalf("create-access-key: %+v", k)
	}
	kmsctl(t, "--endpoints", eps, "create-access-key", "--identity", "other")

	list := kmsctl(t, "--endpoints", eps, "list-access-keys", "--identity", "app")
	if strings.Contains(list, k.SecretAccessKey) || !strings.Contains(list, k.AccessKeyId) {
		t.Fatalf("list-access-keys: %s", list)
	}
	var listed struct {
		AccessKeyMetadata []struct{ UserName, AccessKeyId string }
	}
	json.Unmarshal([]byte(list), &listed)
	if len(listed.AccessKeyMetadata) != 1 || listed.AccessKeyMetadata[0].UserName != "app" {
		t.Fatalf("list-access-keys --identity app: %s", list)
	}
	if got := kmsctl(t, "--endpoints", eps, "list-access-keys", "--query", "length(AccessKeyMetadata)"); strings.TrimSpace(got) != "2" {
		t.Fatalf("list-access-keys of every identity: %s", got)
	}
	if out := kmsctl(t, "--endpoints", eps, "delete-access-key", "--access-key-id", k.AccessKeyId); out != "" {
		t.Fatalf("delete-access-key printed %q", out)
	}
	kmsctlFails(t, "NotFoundException", "--endpoints", eps, "delete-access-key", "--access-key-id", k.AccessKeyId)
	kmsctlFails(t, "ValidationException", "--endpoints", eps, "create-access-key", "--identity", "has space")
}
