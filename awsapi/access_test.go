package awsapi_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hashicorp/go-hclog"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// lockedBuffer collects the nodes' log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAccessKeyLifecycle: an access key made through a follower works on
// every node at once, is listed without its secret, is the principal of the
// calls signed with it, and once deleted is refused on every node. Its
// secret is in no log line and in no file of any node's data directory.
func TestAccessKeyLifecycle(t *testing.T) {
	logs := &lockedBuffer{}
	ac := newAWSCluster(t, testcluster.WithLogCapture(logs), testcluster.WithLogLevel(hclog.Debug))
	ctx := ctxT(t)
	id, secret := ac.createAccessKey(t, "app")
	for i := 0; i < 3; i++ {
		c := ac.client(i, id, secret)
		ok[*kms.ListKeysOutput](t, "ListKeys as app")(c.ListKeys(ctx, &kms.ListKeysInput{}))
	}
	// (That the signed identity is the principal of the call, through a
	// follower too, is checked with authentication on, in policy_test.go.)
	ok[*kms.CreateKeyOutput](t, "CreateKey as app")(ac.client(2, id, secret).CreateKey(ctx, &kms.CreateKeyInput{}))

	list, err := ac.c.ClusterAPI(0).ListAccessKeys(ctx, &clusterv1.ListAccessKeysRequest{Identity: "app"})
	if err != nil || len(list.AccessKeys) != 1 || list.AccessKeys[0].AccessKeyId != id || list.AccessKeys[0].SecretAccessKey != "" {
		t.Fatalf("ListAccessKeys: %v %v", list, err)
	}
	all, _ := ac.c.ClusterAPI(1).ListAccessKeys(ctx, &clusterv1.ListAccessKeysRequest{})
	if len(all.GetAccessKeys()) != 2 {
		t.Fatalf("ListAccessKeys of all: %v", all)
	}

	if _, err := ac.c.ClusterAPI(ac.follower(t)).DeleteAccessKey(ctx, &clusterv1.DeleteAccessKeyRequest{AccessKeyId: id}); err != nil {
		t.Fatalf("DeleteAccessKey: %v", err)
	}
	ac.c.WaitConverged(t)
	for i := 0; i < 3; i++ {
		_, err := ac.client(i, id, secret).ListKeys(ctx, &kms.ListKeysInput{})
		wantAPIError(t, "a deleted access key", err, "UnrecognizedClientException")
	}
	if _, err := ac.c.ClusterAPI(0).DeleteAccessKey(ctx, &clusterv1.DeleteAccessKeyRequest{AccessKeyId: id}); err == nil {
		t.Fatal("deleting a deleted access key succeeded")
	}
	// The dev key still works.
	ok[*kms.ListKeysOutput](t, "ListKeys as dev")(ac.dev(0).ListKeys(ctx, &kms.ListKeysInput{}))

	// Snapshots too must hold the secrets sealed only.
	for i := 0; i < 3; i++ {
		if _, err := ac.c.ClusterAPI(i).Snapshot(ctx, &clusterv1.SnapshotRequest{}); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
	}
	if len(logs.String()) == 0 {
		t.Fatal("no log lines were captured")
	}
	for _, s := range []string{secret, ac.secret} {
		if strings.Contains(logs.String(), s) {
			t.Fatal("a secret access key is in the nodes' logs")
		}
		for i := 0; i < 3; i++ {
			filepath.Walk(ac.c.DataDir(i), func(path string, info os.FileInfo, err error) error {
				if err != nil || info.IsDir() {
					return nil
				}
				b, _ := os.ReadFile(path)
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("a secret access key is in %s", path)
				}
				return nil
			})
		}
	}
}

// TestAuditOfAWSCalls: calls through the AWS front are audited as gRPC calls
// are, with the signed identity as the principal, and the audit log holds
// no secret access key and no plaintext.
func TestAuditOfAWSCalls(t *testing.T) {
	audit := &lockedBuffer{}
	ac := newAWSClusterAPI(t, []testcluster.APIOption{testcluster.WithAudit(audit)})
	ctx := ctxT(t)
	k := ac.dev(ac.c.WaitForLeader(t))
	key := ok[*kms.CreateKeyOutput](t, "CreateKey")(k.CreateKey(ctx, &kms.CreateKeyInput{}))
	ok[*kms.EncryptOutput](t, "Encrypt")(k.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("audited plaintext")}))
	log := audit.String()
	var sawEncrypt bool
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if strings.Contains(line, "Encrypt") && strings.Contains(line, `"dev"`) {
			sawEncrypt = true
		}
	}
	if !sawEncrypt {
		t.Fatalf("no audit line for Encrypt by dev:\n%s", log)
	}
	if strings.Contains(log, ac.secret) || strings.Contains(log, "audited plaintext") {
		t.Fatal("the audit log holds a secret or a plaintext")
	}
}
