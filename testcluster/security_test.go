package testcluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/pki"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// foreignCert is a certificate from a CA the cluster does not trust.
func foreignCert(t *testing.T, node bool) (tls.Certificate, *pki.Authority) {
	t.Helper()
	ca, err := pki.NewAuthority("foreign CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var is *pki.Issued
	if node {
		is, err = ca.IssueNode("node9", nil, time.Hour)
	} else {
		is, err = ca.IssueClient("admin", time.Hour) // even the admin's name
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c, ca
}

// TestTLSRefusesStrangers: clients with a foreign certificate, without one,
// or without TLS are refused; a node with a foreign certificate can neither
// join through the API nor talk to Raft.
func TestTLSRefusesStrangers(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx := apiCtx(t)
	must[*kmsv1.ListKeysResponse](t, "admin ListKeys")(c.KMS(0).ListKeys(ctx, &kmsv1.ListKeysRequest{}))

	short := func() context.Context {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		t.Cleanup(cancel)
		return cctx
	}
	foreign, foreignCA := foreignCert(t, false)
	foreignPool := x509.NewCertPool()
	foreignPool.AddCert(foreignCA.Cert)
	clients := map[string]credentials.TransportCredentials{
		// Trusts the cluster CA, but its own certificate is from elsewhere.
		"foreign certificate": credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{foreign}, RootCAs: c.CAPool(), MinVersion: tls.VersionTLS13}),
		"no certificate":      credentials.NewTLS(&tls.Config{RootCAs: c.CAPool(), MinVersion: tls.VersionTLS13}),
		"plaintext":           insecure.NewCredentials(),
	}
	for name, creds := range clients {
		kms := kmsv1.NewKeyManagementServiceClient(c.DialWith(1, creds))
		if _, err := kms.ListKeys(short(), &kmsv1.ListKeysRequest{}); err == nil {
			t.Errorf("%s: ListKeys succeeded", name)
		}
		if _, err := kms.CreateKey(short(), &kmsv1.CreateKeyRequest{}); err == nil {
			t.Errorf("%s: CreateKey succeeded", name)
		}
	}

	// A node with a foreign certificate asks to join: refused at TLS.
	fnode, _ := foreignCert(t, true)
	joiner := clusterv1.NewClusterServiceClient(c.DialWith(0, credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{fnode}, RootCAs: c.CAPool(), MinVersion: tls.VersionTLS13})))
	if _, err := joiner.Join(short(), &clusterv1.JoinRequest{NodeId: "node9", RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2"}); err == nil {
		t.Fatal("a node with a foreign certificate joined")
	}

	// Raft over TLS refusing a foreign node: raftnode's TestRaftOverTLSRefusesForeignNode.
	c.WaitConverged(t)
}

// TestKeyPolicies: an identity outside a key's policy is denied every
// action group; the owner grants and revokes; an explicit Deny wins; admins
// can always recover the policy; policies survive snapshots and restarts.
func TestKeyPolicies(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx := apiCtx(t)
	l := c.Leader()
	f := (l + 1) % 3
	owner, app := c.KMSAs(f, "owner"), c.KMSAs((l+2)%3, "app")

	// Created through a follower: the owner is the creator, not the node.
	key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(owner.CreateKey(ctx, &kmsv1.CreateKeyRequest{})).KeyMetadata.KeyId
	ext := must[*kmsv1.CreateKeyResponse](t, "CreateKey EXTERNAL")(owner.CreateKey(ctx, &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})).KeyMetadata.KeyId
	ev := must[*kmsv1.ListKeyEventsResponse](t, "ListKeyEvents")(owner.ListKeyEvents(ctx, &kmsv1.ListKeyEventsRequest{KeyId: key}))
	if ev.Events[0].Principal != "owner" {
		t.Fatalf("creator recorded as %q", ev.Events[0].Principal)
	}
	enc := must[*kmsv1.EncryptResponse](t, "owner Encrypt")(owner.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("p")}))
	must[*kmsv1.CreateAliasResponse](t, "CreateAlias")(owner.CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/owned", TargetKeyId: key}))

	denied := func(who kmsv1.KeyManagementServiceClient, name string) map[string]func() error {
		return map[string]func() error{
			"read/DescribeKey": func() error { _, err := who.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key}); return err },
			"read/GetKeyRotation": func() error {
				_, err := who.GetKeyRotationStatus(ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: key})
				return err
			},
			"read/ListKeyRotations": func() error {
				_, err := who.ListKeyRotations(ctx, &kmsv1.ListKeyRotationsRequest{KeyId: key})
				return err
			},
			"read/ListKeyEvents": func() error { _, err := who.ListKeyEvents(ctx, &kmsv1.ListKeyEventsRequest{KeyId: key}); return err },
			"read/ListResourceTags": func() error {
				_, err := who.ListResourceTags(ctx, &kmsv1.ListResourceTagsRequest{KeyId: key})
				return err
			},
			"crypto/Encrypt": func() error {
				_, err := who.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
				return err
			},
			"crypto/Decrypt": func() error {
				_, err := who.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
				return err
			},
			"crypto/GenerateDataKey": func() error {
				_, err := who.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: "AES_256"})
				return err
			},
			"crypto/GenerateDataKeyWithoutPlaintext": func() error {
				_, err := who.GenerateDataKeyWithoutPlaintext(ctx, &kmsv1.GenerateDataKeyWithoutPlaintextRequest{KeyId: key, NumberOfBytes: 8})
				return err
			},
			"crypto/ReEncrypt": func() error {
				_, err := who.ReEncrypt(ctx, &kmsv1.ReEncryptRequest{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: key})
				return err
			},
			"lifecycle/DisableKey": func() error { _, err := who.DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key}); return err },
			"lifecycle/EnableKey":  func() error { _, err := who.EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: key}); return err },
			"lifecycle/ScheduleKeyDeletion": func() error {
				_, err := who.ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: key, PendingWindowInDays: 7})
				return err
			},
			"lifecycle/CancelKeyDeletion": func() error {
				_, err := who.CancelKeyDeletion(ctx, &kmsv1.CancelKeyDeletionRequest{KeyId: key})
				return err
			},
			"lifecycle/UpdateKeyDescription": func() error {
				_, err := who.UpdateKeyDescription(ctx, &kmsv1.UpdateKeyDescriptionRequest{KeyId: key, Description: "mine"})
				return err
			},
			"lifecycle/TagResource": func() error {
				_, err := who.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: []*kmsv1.Tag{{TagKey: "a", TagValue: "b"}}})
				return err
			},
			"rotation/EnableKeyRotation": func() error {
				_, err := who.EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: key})
				return err
			},
			"rotation/DisableKeyRotation": func() error {
				_, err := who.DisableKeyRotation(ctx, &kmsv1.DisableKeyRotationRequest{KeyId: key})
				return err
			},
			"rotation/RotateKeyOnDemand": func() error {
				_, err := who.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key})
				return err
			},
			"alias/CreateAlias": func() error {
				_, err := who.CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/" + strings.ReplaceAll(name, "/", "-"), TargetKeyId: key})
				return err
			},
			"alias/DeleteAlias": func() error {
				_, err := who.DeleteAlias(ctx, &kmsv1.DeleteAliasRequest{AliasName: "alias/owned"})
				return err
			},
			"policy/PutKeyPolicy": func() error {
				_, err := who.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*"}]}`})
				return err
			},
			"import/GetParametersForImport": func() error {
				_, err := who.GetParametersForImport(ctx, &kmsv1.GetParametersForImportRequest{KeyId: ext, WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_2048"})
				return err
			},
		}
	}
	before := c.FSM(l).Digest()
	for action, call := range denied(app, "app") {
		wantErr(t, "app "+action, call(), codes.PermissionDenied, "AccessDeniedException")
	}
	c.WaitConverged(t)
	if c.FSM(l).Digest() != before {
		t.Fatal("a denied call changed the state")
	}
	// Admins recover policies but cannot use keys.
	admin := c.KMSAs(l, "admin")
	_, err := admin.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
	wantErr(t, "admin Encrypt", err, codes.PermissionDenied, "AccessDeniedException")
	must[*kmsv1.GetKeyPolicyResponse](t, "admin GetKeyPolicy")(admin.GetKeyPolicy(ctx, &kmsv1.GetKeyPolicyRequest{KeyId: key}))
	_, err = c.ClusterAPI(0).Status(ctx, &clusterv1.StatusRequest{})
	if err != nil {
		t.Fatalf("admin Status: %v", err)
	}
	appCluster := clusterv1.NewClusterServiceClient(c.DialWith(0, c.ClientCreds("app")))
	_, err = appCluster.Remove(ctx, &clusterv1.RemoveRequest{NodeId: "node2"})
	wantErr(t, "app Remove", err, codes.PermissionDenied, "AccessDeniedException")

	// The owner grants app encrypt and decrypt, and denies it decrypt.
	grant := `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Principal":{"Identity":["owner"]},"Action":"kms:*"},
		{"Effect":"Allow","Principal":{"Identity":["app"]},"Action":["kms:Encrypt","kms:Decrypt"]}]}`
	must[*kmsv1.PutKeyPolicyResponse](t, "grant")(owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: grant}))
	for i := range 3 {
		appI := c.KMSAs(i, "app")
		must[*kmsv1.EncryptResponse](t, "app Encrypt after grant")(appI.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}))
		must[*kmsv1.DecryptResponse](t, "app Decrypt after grant")(appI.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob}))
		_, err := appI.DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key})
		wantErr(t, "app DisableKey after grant", err, codes.PermissionDenied, "AccessDeniedException")
	}
	denyDecrypt := strings.Replace(grant, "]}]}", `]},{"Effect":"Deny","Principal":{"Identity":"app"},"Action":"kms:Decrypt"}]}`, 1)
	must[*kmsv1.PutKeyPolicyResponse](t, "deny")(owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: denyDecrypt}))
	_, err = app.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
	wantErr(t, "app Decrypt under Deny", err, codes.PermissionDenied, "AccessDeniedException")
	must[*kmsv1.EncryptResponse](t, "app Encrypt under Deny of Decrypt")(app.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}))

	// Revoke: back to the owner alone.
	ownerOnly := `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":"kms:*"}]}`
	must[*kmsv1.PutKeyPolicyResponse](t, "revoke")(owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: ownerOnly}))
	_, err = app.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
	wantErr(t, "app Encrypt after revoke", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: `{"Statement":[]}`})
	wantErr(t, "malformed policy", err, codes.InvalidArgument, "MalformedPolicyDocumentException")

	// Grant again, then snapshot and restart every node: the policy stays.
	must[*kmsv1.PutKeyPolicyResponse](t, "grant again")(owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: grant}))
	c.WaitConverged(t)
	for i := range 3 {
		if _, err := c.ClusterAPI(i).Snapshot(ctx, &clusterv1.SnapshotRequest{}); err != nil {
			t.Fatalf("snapshot node %d: %v", i, err)
		}
	}
	for i := range 3 {
		c.Kill(i)
		c.Restart(i)
		c.WaitServing(t)
	}
	c.WaitConverged(t)
	for i := range 3 {
		appI := c.KMSAs(i, "app")
		must[*kmsv1.EncryptResponse](t, "app Encrypt after restart")(appI.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}))
		_, err := appI.ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: key, PendingWindowInDays: 7})
		wantErr(t, "app ScheduleKeyDeletion after restart", err, codes.PermissionDenied, "AccessDeniedException")
	}
}

// lockedBuffer collects log or audit lines from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// TestNoSecretsAnywhere runs a workload (create, encrypt, data keys, rotate,
// import) on a TLS cluster with audit and debug logging, then searches every
// file of every data dir, the audit log and the captured server logs for
// every plaintext, data key, unsealed key material, imported material and
// wrapping private key: none may appear, raw or in base64 or hex.
func TestNoSecretsAnywhere(t *testing.T) {
	var audit, logs lockedBuffer
	c := testcluster.New(t, 3, testcluster.WithLogLevel(hclog.Debug), testcluster.WithLogCapture(&logs),
		testcluster.WithAPI(testcluster.WithTLS(), testcluster.WithAudit(&audit)))
	c.WaitServing(t)
	ctx := apiCtx(t)
	var secrets [][]byte
	var blobs [][]byte
	var keys []string
	for i := range 3 {
		kms := c.KMS(i)
		key := createKey(t, kms, "workload")
		keys = append(keys, key)
		must[*kmsv1.RotateKeyOnDemandResponse](t, "rotate")(kms.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
		pt := []byte("very-secret-plaintext-" + key)
		enc := must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS((i+1)%3).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: pt,
			EncryptionContext: map[string]string{"k": "v"}}))
		dk := must[*kmsv1.GenerateDataKeyResponse](t, "GenerateDataKey")(c.KMS((i+2)%3).GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: "AES_256"}))
		dec := must[*kmsv1.DecryptResponse](t, "Decrypt")(kms.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: dk.CiphertextBlob}))
		secrets = append(secrets, pt, dk.Plaintext, dec.Plaintext)
		blobs = append(blobs, enc.CiphertextBlob, dk.CiphertextBlob)
	}
	// Bring your own key.
	ext := must[*kmsv1.CreateKeyResponse](t, "CreateKey EXTERNAL")(c.KMS(1).CreateKey(ctx, &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})).KeyMetadata.KeyId
	keys = append(keys, ext)
	material := make([]byte, 32)
	rand.Read(material)
	params := must[*kmsv1.GetParametersForImportResponse](t, "GetParametersForImport")(c.KMS(2).GetParametersForImport(ctx,
		&kmsv1.GetParametersForImportRequest{KeyId: ext, WrappingAlgorithm: "RSA_AES_KEY_WRAP_SHA_256", WrappingKeySpec: "RSA_2048"}))
	wrapped, err := keycrypto.WrapKeyMaterial(rand.Reader, params.PublicKey, "RSA_AES_KEY_WRAP_SHA_256", material)
	if err != nil {
		t.Fatal(err)
	}
	must[*kmsv1.ImportKeyMaterialResponse](t, "ImportKeyMaterial")(c.KMS(0).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
		KeyId: ext, ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapped,
		ExpirationModel: "KEY_MATERIAL_EXPIRES", ValidTo: timestamppb.New(time.Now().Add(time.Hour))}))
	secrets = append(secrets, material)
	// Asymmetric and HMAC keys: their private keys, and data key pairs'.
	asymKeys, asymSecrets := asymmetricWorkload(t, c, keys[0])
	keys, secrets = append(keys, asymKeys...), append(secrets, asymSecrets...)
	c.WaitConverged(t)
	for i := range 3 {
		if _, err := c.ClusterAPI(i).Snapshot(ctx, &clusterv1.SnapshotRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// Every version's unsealed material and the wrapping private key.
	for _, id := range keys {
		k, _ := c.FSM(0).Key(id)
		for _, v := range k.Versions {
			m, err := c.Root().Open(id, v.Number, v.Sealed)
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(append(secrets, m), privateKeyParts(t, m)...)
		}
		if k.Import != nil {
			priv, err := c.Root().OpenPrivateKey(id, k.Import.TokenID, k.Import.SealedPrivateKey)
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, priv)
		}
	}
	if len(secrets) < 15 {
		t.Fatalf("only %d secrets collected", len(secrets))
	}
	forms := func(s []byte) [][]byte {
		return [][]byte{s, []byte(base64.StdEncoding.EncodeToString(s)), []byte(base64.RawStdEncoding.EncodeToString(s)),
			[]byte(strings.ToLower(hex.EncodeToString(s))), []byte(strings.ToUpper(hex.EncodeToString(s))),
			[]byte(strings.Trim(fmt.Sprint(s), "[]")),                                // how %v prints a []byte
			[]byte(strings.ReplaceAll(strings.Trim(fmt.Sprint(s), "[]"), " ", ", "))} // and hclog
	}
	search := func(where string, data []byte, needles [][]byte, what string) {
		for _, s := range needles {
			for _, form := range forms(s) {
				if bytes.Contains(data, form) {
					t.Errorf("%s holds %s", where, what)
				}
			}
		}
	}
	files := 0
	for i := range 3 {
		filepath.Walk(c.DataDir(i), func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			data, _ := os.ReadFile(path)
			files++
			search(path, data, secrets, "a secret")
			return nil
		})
	}
	auditLog, logText := audit.Bytes(), logs.Bytes()
	search("the audit log", auditLog, secrets, "a secret")
	search("the audit log", auditLog, blobs, "a ciphertext body")
	search("the server logs", logText, secrets, "a secret")
	// The search looked at real material: the logs and audit are not empty.
	if files < 6 || len(logText) < 1000 || bytes.Count(auditLog, []byte("\n")) < 20 ||
		!bytes.Contains(auditLog, []byte(`"operation":"Encrypt"`)) || !bytes.Contains(auditLog, []byte(`"identity":"admin"`)) {
		t.Fatalf("too little to search: %d files, %d bytes of logs, audit:\n%s", files, len(logText), auditLog)
	}
}
