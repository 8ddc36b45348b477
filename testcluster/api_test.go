package testcluster_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func apiCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantErr checks a call failed with the gRPC code and the AWS exception name.
func wantErr(t *testing.T, what string, err error, code codes.Code, exception string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code || !strings.HasPrefix(st.Message(), exception+":") {
		t.Fatalf("%s: got %v, want %v %s", what, err, code, exception)
	}
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func createKey(t *testing.T, k kmsv1.KeyManagementServiceClient, desc string) string {
	t.Helper()
	resp := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(k.CreateKey(apiCtx(t), &kmsv1.CreateKeyRequest{Description: desc}))
	return resp.KeyMetadata.KeyId
}

// TestAPIEndToEnd drives the API over real gRPC on a 3-node cluster: keys
// made on a follower are used on every node, and bad input, unknown keys
// and unusable keys get the right codes.
func TestAPIEndToEnd(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	l := c.Leader()
	f := (l + 1) % 3

	created := must[*kmsv1.CreateKeyResponse](t, "CreateKey on a follower")(
		c.KMS(f).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "orders"}))
	md := created.KeyMetadata
	if md.KeyState != "Enabled" || !md.Enabled || md.Origin != "AWS_KMS" || md.KeySpec != "SYMMETRIC_DEFAULT" ||
		md.Description != "orders" || md.CurrentKeyVersion != 1 || !strings.HasSuffix(md.Arn, "key/"+md.KeyId) {
		t.Fatalf("created key metadata = %v", md)
	}
	key1 := md.KeyId

	// Encrypt on node 0, decrypt on node 2.
	ec := map[string]string{"tenant": "acme", "purpose": "test"}
	enc := must[*kmsv1.EncryptResponse](t, "Encrypt")(
		c.KMS(0).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key1, Plaintext: []byte("attack at dawn"), EncryptionContext: ec}))
	dec := must[*kmsv1.DecryptResponse](t, "Decrypt")(
		c.KMS(2).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}))
	if string(dec.Plaintext) != "attack at dawn" || dec.KeyId != md.Arn {
		t.Fatalf("Decrypt = %q under %s", dec.Plaintext, dec.KeyId)
	}

	// Bad ciphertexts and contexts.
	_, err := c.KMS(1).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob,
		EncryptionContext: map[string]string{"tenant": "evil", "purpose": "test"}})
	wantErr(t, "wrong encryption context", err, codes.InvalidArgument, "InvalidCiphertextException")
	_, err = c.KMS(1).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
	wantErr(t, "missing encryption context", err, codes.InvalidArgument, "InvalidCiphertextException")
	flipped := bytes.Clone(enc.CiphertextBlob)
	flipped[len(flipped)-5] ^= 0x20
	_, err = c.KMS(1).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: flipped, EncryptionContext: ec})
	wantErr(t, "flipped bit", err, codes.InvalidArgument, "InvalidCiphertextException")
	_, err = c.KMS(1).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob[:20], EncryptionContext: ec})
	wantErr(t, "truncated blob", err, codes.InvalidArgument, "InvalidCiphertextException")
	_, err = c.KMS(1).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: []byte("not a ciphertext at all, really")})
	wantErr(t, "garbage", err, codes.InvalidArgument, "InvalidCiphertextException")

	// Unknown keys.
	_, err = c.KMS(2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: "7a1c0a2e-0000-4000-8000-000000000000", Plaintext: []byte("x")})
	wantErr(t, "unknown key", err, codes.NotFound, "NotFoundException")
	_, err = c.KMS(0).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: "alias/nope"})
	wantErr(t, "unknown alias", err, codes.NotFound, "NotFoundException")
	_, err = c.KMS(0).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key1})
	wantErr(t, "empty plaintext", err, codes.InvalidArgument, "ValidationException")

	// Re-encrypt to another key, on another node.
	key2 := createKey(t, c.KMS(l), "payments")
	re := must[*kmsv1.ReEncryptResponse](t, "ReEncrypt")(c.KMS(1).ReEncrypt(ctx, &kmsv1.ReEncryptRequest{
		CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: ec, DestinationKeyId: key2,
		DestinationEncryptionContext: map[string]string{"moved": "yes"}}))
	dec = must[*kmsv1.DecryptResponse](t, "Decrypt re-encrypted")(c.KMS(2).Decrypt(ctx, &kmsv1.DecryptRequest{
		CiphertextBlob: re.CiphertextBlob, EncryptionContext: map[string]string{"moved": "yes"}}))
	if string(dec.Plaintext) != "attack at dawn" || !strings.HasSuffix(dec.KeyId, key2) || !strings.HasSuffix(re.SourceKeyId, key1) {
		t.Fatalf("re-encrypted: %q under %s (source %s)", dec.Plaintext, dec.KeyId, re.SourceKeyId)
	}

	// Data keys.
	dk := must[*kmsv1.GenerateDataKeyResponse](t, "GenerateDataKey")(
		c.KMS(2).GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key1, KeySpec: "AES_256"}))
	if len(dk.Plaintext) != 32 {
		t.Fatalf("data key of %d bytes", len(dk.Plaintext))
	}
	dec = must[*kmsv1.DecryptResponse](t, "Decrypt data key")(c.KMS(0).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: dk.CiphertextBlob}))
	if !bytes.Equal(dec.Plaintext, dk.Plaintext) {
		t.Fatal("data key does not decrypt to its plaintext")
	}
	dkw := must[*kmsv1.GenerateDataKeyWithoutPlaintextResponse](t, "GenerateDataKeyWithoutPlaintext")(
		c.KMS(1).GenerateDataKeyWithoutPlaintext(ctx, &kmsv1.GenerateDataKeyWithoutPlaintextRequest{KeyId: key1, NumberOfBytes: 64}))
	dec = must[*kmsv1.DecryptResponse](t, "Decrypt data key without plaintext")(
		c.KMS(2).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: dkw.CiphertextBlob}))
	if len(dec.Plaintext) != 64 {
		t.Fatalf("data key without plaintext decrypts to %d bytes", len(dec.Plaintext))
	}
	_, err = c.KMS(1).GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key1, NumberOfBytes: 2000})
	wantErr(t, "data key too long", err, codes.InvalidArgument, "ValidationException")

	// Aliases work wherever a key ID does.
	must[*kmsv1.CreateAliasResponse](t, "CreateAlias")(c.KMS(f).CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/orders", TargetKeyId: key1}))
	_, err = c.KMS(0).CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/orders", TargetKeyId: key2})
	wantErr(t, "duplicate alias", err, codes.AlreadyExists, "AlreadyExistsException")
	byAlias := must[*kmsv1.EncryptResponse](t, "Encrypt by alias")(
		c.KMS(2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: "alias/orders", Plaintext: []byte("via alias")}))
	if !strings.HasSuffix(byAlias.KeyId, key1) {
		t.Fatalf("alias encrypted under %s", byAlias.KeyId)
	}
	desc := must[*kmsv1.DescribeKeyResponse](t, "DescribeKey by alias")(c.KMS(1).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: "alias/orders"}))
	if desc.KeyMetadata.KeyId != key1 {
		t.Fatalf("alias resolves to %s", desc.KeyMetadata.KeyId)
	}
	must[*kmsv1.DecryptResponse](t, "Decrypt naming the alias")(c.KMS(0).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: byAlias.CiphertextBlob, KeyId: "alias/orders"}))
	must[*kmsv1.UpdateAliasResponse](t, "UpdateAlias")(c.KMS(1).UpdateAlias(ctx, &kmsv1.UpdateAliasRequest{AliasName: "alias/orders", TargetKeyId: key2}))
	_, err = c.KMS(0).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: byAlias.CiphertextBlob, KeyId: "alias/orders"})
	wantErr(t, "decrypt naming the wrong key", err, codes.InvalidArgument, "IncorrectKeyException")
	aliases := must[*kmsv1.ListAliasesResponse](t, "ListAliases")(c.KMS(2).ListAliases(ctx, &kmsv1.ListAliasesRequest{KeyId: key2}))
	if len(aliases.Aliases) != 1 || aliases.Aliases[0].AliasName != "alias/orders" {
		t.Fatalf("aliases of key2 = %v", aliases.Aliases)
	}

	// Disabled keys refuse crypto everywhere, and come back when enabled.
	must[*kmsv1.DisableKeyResponse](t, "DisableKey")(c.KMS(0).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key1}))
	_, err = c.KMS(2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key1, Plaintext: []byte("x")})
	wantErr(t, "encrypt with a disabled key", err, codes.FailedPrecondition, "DisabledException")
	_, err = c.KMS(1).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	wantErr(t, "decrypt with a disabled key", err, codes.FailedPrecondition, "DisabledException")
	must[*kmsv1.EnableKeyResponse](t, "EnableKey")(c.KMS(2).EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: key1}))
	must[*kmsv1.DecryptResponse](t, "Decrypt after enable")(c.KMS(1).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}))

	// Pending deletion refuses crypto; cancelling leaves the key disabled.
	_, err = c.KMS(0).ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: key1, PendingWindowInDays: 3})
	wantErr(t, "window below the floor", err, codes.InvalidArgument, "ValidationException")
	sched := must[*kmsv1.ScheduleKeyDeletionResponse](t, "ScheduleKeyDeletion")(
		c.KMS(0).ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: key1, PendingWindowInDays: 7}))
	if sched.KeyState != "PendingDeletion" || sched.PendingWindowInDays != 7 ||
		sched.DeletionDate.AsTime().Sub(time.Now()) < 6*24*time.Hour {
		t.Fatalf("ScheduleKeyDeletion = %v", sched)
	}
	_, err = c.KMS(2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key1, Plaintext: []byte("x")})
	wantErr(t, "encrypt pending deletion", err, codes.FailedPrecondition, "KMSInvalidStateException")
	_, err = c.KMS(1).GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key1, KeySpec: "AES_128"})
	wantErr(t, "data key pending deletion", err, codes.FailedPrecondition, "KMSInvalidStateException")
	must[*kmsv1.CancelKeyDeletionResponse](t, "CancelKeyDeletion")(c.KMS(1).CancelKeyDeletion(ctx, &kmsv1.CancelKeyDeletionRequest{KeyId: key1}))
	desc = must[*kmsv1.DescribeKeyResponse](t, "DescribeKey")(c.KMS(2).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key1}))
	if desc.KeyMetadata.KeyState != "Disabled" || desc.KeyMetadata.DeletionDate != nil {
		t.Fatalf("after cancel: %v", desc.KeyMetadata)
	}

	// On-demand rotation: new ciphertexts use the new version, old ones
	// still decrypt.
	rot := must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(c.KMS(f).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key2}))
	if rot.KeyVersion != 2 {
		t.Fatalf("rotated to version %d", rot.KeyVersion)
	}
	enc2 := must[*kmsv1.EncryptResponse](t, "Encrypt after rotation")(c.KMS(2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key2, Plaintext: []byte("v2")}))
	if h, _, err := keycrypto.ParseCiphertext(enc2.CiphertextBlob); err != nil || h.Version != 2 {
		t.Fatalf("new ciphertext names version %d (%v)", h.Version, err)
	}
	must[*kmsv1.DecryptResponse](t, "Decrypt version 1 after rotation")(c.KMS(0).Decrypt(ctx, &kmsv1.DecryptRequest{
		CiphertextBlob: re.CiphertextBlob, EncryptionContext: map[string]string{"moved": "yes"}}))

	// ListKeys pages.
	page := must[*kmsv1.ListKeysResponse](t, "ListKeys")(c.KMS(1).ListKeys(ctx, &kmsv1.ListKeysRequest{Limit: 1}))
	if len(page.Keys) != 1 || !page.Truncated || page.NextMarker == "" {
		t.Fatalf("first page = %v", page)
	}
	page2 := must[*kmsv1.ListKeysResponse](t, "ListKeys page 2")(c.KMS(2).ListKeys(ctx, &kmsv1.ListKeysRequest{Limit: 1, Marker: page.NextMarker}))
	if len(page2.Keys) != 1 || page2.Truncated || page2.Keys[0].KeyId == page.Keys[0].KeyId {
		t.Fatalf("second page = %v", page2)
	}

	events := must[*kmsv1.ListKeyEventsResponse](t, "ListKeyEvents")(c.KMS(2).ListKeyEvents(ctx, &kmsv1.ListKeyEventsRequest{KeyId: key1}))
	var types []string
	for _, e := range events.Events {
		types = append(types, e.EventType)
	}
	if got := strings.Join(types, ","); !strings.HasPrefix(got, "CreateKey,CreateAlias,") || !strings.HasSuffix(got, "ScheduleKeyDeletion,CancelKeyDeletion") {
		t.Fatalf("key1 history = %s", got)
	}
	c.WaitConverged(t)
}

// TestAPIRetriedCreateKeyAppliesOnce sends the same CreateKey (same request
// ID) before and after the leader is killed: one key exists.
func TestAPIRetriedCreateKeyAppliesOnce(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	l := c.Leader()
	ctx := metadata.AppendToOutgoingContext(apiCtx(t), rpc.MDRequestID, "create-once-1")
	first := must[*kmsv1.CreateKeyResponse](t, "first CreateKey")(c.KMS(l).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "once"}))
	c.Kill(l)
	c.WaitForLeader(t)
	for _, i := range []int{(l + 1) % 3, (l + 2) % 3} {
		var again *kmsv1.CreateKeyResponse
		var err error
		// The node may answer Unavailable while leadership settles: retry
		// the same request, as the client library does.
		deadline := time.Now().Add(testcluster.WaitTimeout)
		for {
			again, err = c.KMS(i).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "once"})
			if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond) // retry backoff
		}
		if err != nil {
			t.Fatalf("retried CreateKey via node %d: %v", i, err)
		}
		if again.KeyMetadata.KeyId != first.KeyMetadata.KeyId {
			t.Fatalf("retry via node %d made key %s, first attempt made %s", i, again.KeyMetadata.KeyId, first.KeyMetadata.KeyId)
		}
	}
	c.Restart(l)
	c.WaitConverged(t)
	for i := range 3 {
		if n := c.FSM(i).KeyCount(); n != 1 {
			t.Fatalf("node %d holds %d keys, want 1", i, n)
		}
	}
}

// TestAPILinearizableDisable: a DisableKey acknowledged through one node is
// honoured by every Encrypt sent to another node after it returns, even
// while that node applies slowly. The same loop with stale-ok reads shows the
// slow node really lags (so the check can fail).
func TestAPILinearizableDisable(t *testing.T) {
	var slow atomic.Int32
	slow.Store(-1)
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithOnApply(func(i int, _ string) {
		if int32(i) == slow.Load() {
			time.Sleep(15 * time.Millisecond) // the slow node's apply delay
		}
	})))
	c.WaitServing(t)
	l := c.Leader()
	writer, reader := l, (l+1)%3
	slow.Store(int32(reader))
	ctx := apiCtx(t)
	key := createKey(t, c.KMS(writer), "linearizable")
	staleServed := 0
	const rounds = 25
	for r := range rounds {
		must[*kmsv1.DisableKeyResponse](t, "DisableKey")(c.KMS(writer).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key}))
		_, err := c.KMS(reader).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
		if st, _ := status.FromError(err); err == nil || st.Code() != codes.FailedPrecondition {
			t.Fatalf("round %d: Encrypt on node %d after DisableKey returned: %v (want DisabledException)", r, reader, err)
		}
		must[*kmsv1.EnableKeyResponse](t, "EnableKey")(c.KMS(writer).EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: key}))
		must[*kmsv1.EncryptResponse](t, "Encrypt after enable")(c.KMS(reader).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}))

		// The control: the same question with a stale-ok read.
		must[*kmsv1.DisableKeyResponse](t, "DisableKey")(c.KMS(writer).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key}))
		stale := metadata.AppendToOutgoingContext(ctx, rpc.MDStaleOK, "true")
		if _, err := c.KMS(reader).Encrypt(stale, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); err == nil {
			staleServed++
		}
		must[*kmsv1.EnableKeyResponse](t, "EnableKey")(c.KMS(writer).EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: key}))
	}
	t.Logf("stale-ok reads served a disabled key %d of %d times on the slow node", staleServed, rounds)
	if staleServed == 0 {
		t.Fatalf("the slow node never lagged: the linearizability check proved nothing")
	}
	slow.Store(-1)
	c.WaitConverged(t)
}

// TestAPINoPlaintextMaterialOnDisk unseals every key version through the
// root key and searches every file in every node's data directory (BoltDB,
// snapshots) for the raw material, and for plaintexts and data keys.
func TestAPINoPlaintextMaterialOnDisk(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	var secrets [][]byte
	for i := range 4 {
		key := createKey(t, c.KMS(i%3), "secret")
		must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(c.KMS((i+1)%3).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
		pt := []byte("plaintext-that-must-never-be-stored-" + key)
		must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: pt}))
		dk := must[*kmsv1.GenerateDataKeyResponse](t, "GenerateDataKey")(c.KMS(1).GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: "AES_256"}))
		secrets = append(secrets, pt, dk.Plaintext)
	}
	c.WaitConverged(t)
	for i := range 3 {
		must[*struct{}](t, "snapshot")(nil, func() error { _, err := c.ClusterAPI(i).Snapshot(ctx, nil); return err }())
	}
	var sealed [][]byte
	c.FSM(0).ForEachKey(func(k *fsm.Key) bool {
		for _, v := range k.Versions {
			m, err := c.Root().Open(k.ID, v.Number, v.Sealed)
			if err != nil {
				t.Fatalf("unseal %s v%d: %v", k.ID, v.Number, err)
			}
			secrets = append(secrets, m)
			sealed = append(sealed, v.Sealed)
		}
		return true
	})
	if len(sealed) != 8 {
		t.Fatalf("%d key versions, want 8", len(sealed))
	}
	foundSealed := 0
	for i := range 3 {
		err := filepath.Walk(c.DataDir(i), func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, s := range secrets {
				if bytes.Contains(data, s) {
					t.Errorf("%s holds a secret in plaintext", path)
				}
			}
			for _, s := range sealed {
				if bytes.Contains(data, s) {
					foundSealed++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The scan looked at the right files: the sealed material is there.
	if foundSealed < len(sealed)*3 {
		t.Fatalf("sealed material found only %d times in the data dirs; the scan missed files", foundSealed)
	}
}

// TestAPIKeyAttributes covers tags, description, policy and managed keys.
func TestAPIKeyAttributes(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	key := createKey(t, c.KMS(0), "before")
	must[*kmsv1.TagResourceResponse](t, "TagResource")(c.KMS(1).TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key,
		Tags: []*kmsv1.Tag{{TagKey: "team", TagValue: "payments"}, {TagKey: "env", TagValue: "prod"}}}))
	must[*kmsv1.UntagResourceResponse](t, "UntagResource")(c.KMS(2).UntagResource(ctx, &kmsv1.UntagResourceRequest{KeyId: key, TagKeys: []string{"env"}}))
	tags := must[*kmsv1.ListResourceTagsResponse](t, "ListResourceTags")(c.KMS(0).ListResourceTags(ctx, &kmsv1.ListResourceTagsRequest{KeyId: key}))
	if len(tags.Tags) != 1 || tags.Tags[0].TagKey != "team" || tags.Tags[0].TagValue != "payments" {
		t.Fatalf("tags = %v", tags.Tags)
	}
	_, err := c.KMS(1).TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: []*kmsv1.Tag{{TagValue: "no key"}}})
	wantErr(t, "tag without a key", err, codes.InvalidArgument, "ValidationException")

	must[*kmsv1.UpdateKeyDescriptionResponse](t, "UpdateKeyDescription")(c.KMS(2).UpdateKeyDescription(ctx, &kmsv1.UpdateKeyDescriptionRequest{KeyId: key, Description: "after"}))
	desc := must[*kmsv1.DescribeKeyResponse](t, "DescribeKey")(c.KMS(1).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key}))
	if desc.KeyMetadata.Description != "after" {
		t.Fatalf("description = %q", desc.KeyMetadata.Description)
	}

	pol := must[*kmsv1.GetKeyPolicyResponse](t, "GetKeyPolicy")(c.KMS(0).GetKeyPolicy(ctx, &kmsv1.GetKeyPolicyRequest{KeyId: key}))
	if pol.PolicyName != "default" || !strings.Contains(pol.Policy, "kms:*") {
		t.Fatalf("default policy = %v", pol)
	}
	custom := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["kms:Encrypt"]}]}`
	must[*kmsv1.PutKeyPolicyResponse](t, "PutKeyPolicy")(c.KMS(2).PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, PolicyName: "default", Policy: custom}))
	pol = must[*kmsv1.GetKeyPolicyResponse](t, "GetKeyPolicy")(c.KMS(1).GetKeyPolicy(ctx, &kmsv1.GetKeyPolicyRequest{KeyId: key, PolicyName: "default"}))
	if pol.Policy != custom {
		t.Fatalf("policy = %s", pol.Policy)
	}

	managed := must[*kmsv1.CreateKeyResponse](t, "CreateKey managed")(c.KMS(1).CreateKey(ctx, &kmsv1.CreateKeyRequest{Managed: true}))
	if managed.KeyMetadata.KeyManager != "AWS" {
		t.Fatalf("managed key metadata = %v", managed.KeyMetadata)
	}
	st := must[*kmsv1.GetKeyRotationStatusResponse](t, "GetKeyRotationStatus")(c.KMS(2).GetKeyRotationStatus(ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: managed.KeyMetadata.KeyId}))
	if !st.KeyRotationEnabled || st.RotationPeriodInDays != 365 {
		t.Fatalf("managed key rotation = %v", st)
	}
	_, err = c.KMS(0).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: managed.KeyMetadata.KeyId})
	wantErr(t, "rotate a managed key", err, codes.FailedPrecondition, "UnsupportedOperationException")
	_, err = c.KMS(0).DisableKeyRotation(ctx, &kmsv1.DisableKeyRotationRequest{KeyId: managed.KeyMetadata.KeyId})
	wantErr(t, "disable a managed key's rotation", err, codes.FailedPrecondition, "UnsupportedOperationException")
	c.WaitConverged(t)
}
