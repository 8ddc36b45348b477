package awsapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/raftkms/raftkms/awsapi"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/testcluster"
)

const testRegion = "us-east-1"

// awsCluster is a 3-node cluster with an AWS-protocol front on every node,
// verifying signatures with the cluster's replicated access keys, and one
// access key made for the identity "dev".
type awsCluster struct {
	c          *testcluster.Cluster
	urls       []string
	id, secret string
}

func newAWSCluster(t *testing.T, opts ...testcluster.Option) *awsCluster {
	t.Helper()
	return newAWSClusterAPI(t, nil, opts...)
}

// newAWSClusterAPI is newAWSCluster with options for the API nodes too.
func newAWSClusterAPI(t *testing.T, apiOpts []testcluster.APIOption, opts ...testcluster.Option) *awsCluster {
	t.Helper()
	c := testcluster.New(t, 3, append([]testcluster.Option{testcluster.WithAPI(apiOpts...)}, opts...)...)
	c.WaitServing(t)
	ac := &awsCluster{c: c}
	for i := 0; i < c.N(); i++ {
		api := c.Server(i).API()
		h, err := awsapi.New(awsapi.Config{Invoker: api, Credentials: api, Region: testRegion})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		ac.urls = append(ac.urls, srv.URL)
	}
	ac.id, ac.secret = ac.createAccessKey(t, "dev")
	return ac
}

// createAccessKey makes an access key through a follower's ClusterService,
// as kmsctl create-access-key does.
func (ac *awsCluster) createAccessKey(t *testing.T, identity string) (string, string) {
	t.Helper()
	resp, err := ac.c.ClusterAPI(ac.follower(t)).CreateAccessKey(ctxT(t), &clusterv1.CreateAccessKeyRequest{Identity: identity})
	if err != nil {
		t.Fatalf("CreateAccessKey: %v", err)
	}
	k := resp.GetAccessKey()
	if k.GetIdentity() != identity || len(k.GetAccessKeyId()) != 20 || len(k.GetSecretAccessKey()) != 40 || k.GetStatus() != "Active" {
		t.Fatalf("CreateAccessKey: %v", k)
	}
	return k.GetAccessKeyId(), k.GetSecretAccessKey()
}

// client is an AWS SDK KMS client for node i, signing with the given key.
func (ac *awsCluster) client(i int, id, secret string) *kms.Client {
	return kms.New(kms.Options{
		Region:       testRegion,
		BaseEndpoint: aws.String(ac.urls[i]),
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		// The cluster answers 500 (KMSInternalException) while it has no
		// leader; on a loaded machine elections may repeat, so retry longer
		// than the SDK's default three attempts.
		RetryMaxAttempts: 10,
	})
}

func (ac *awsCluster) dev(i int) *kms.Client { return ac.client(i, ac.id, ac.secret) }

// follower is the index of a node that is not the leader.
func (ac *awsCluster) follower(t *testing.T) int {
	t.Helper()
	l := ac.c.WaitForLeader(t)
	return (l + 1) % ac.c.N()
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ok[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

// wantType checks that err is the AWS exception type E.
func wantType[E error](t *testing.T, what string, err error) {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("%s: got %v (%T), want %T", what, err, err, e)
	}
}

// TestSDKEveryOperation drives every KMS operation with the AWS SDK for Go
// through a follower, signed by the SDK, and checks the answers' shapes.
func TestSDKEveryOperation(t *testing.T) {
	ac := newAWSCluster(t)
	f := ac.follower(t)
	k := ac.dev(f)
	other := ac.dev((f + 1) % 3)
	ctx := ctxT(t)

	created := ok[*kms.CreateKeyOutput](t, "CreateKey")(k.CreateKey(ctx, &kms.CreateKeyInput{
		Description: aws.String("orders"),
		Tags:        []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("payments")}},
	}))
	md := created.KeyMetadata
	if md == nil || md.KeyId == nil || md.Arn == nil || md.KeyState != types.KeyStateEnabled || !md.Enabled ||
		aws.ToString(md.Description) != "orders" || md.CreationDate == nil || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt {
		t.Fatalf("CreateKey metadata: %+v", md)
	}
	if time.Since(*md.CreationDate) > time.Hour || time.Until(*md.CreationDate) > time.Hour {
		t.Fatalf("CreationDate %v is not now", md.CreationDate)
	}
	id, arn := *md.KeyId, *md.Arn

	// Aliases, and every form of KeyId.
	ok[*kms.CreateAliasOutput](t, "CreateAlias")(k.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/orders"), TargetKeyId: aws.String(id)}))
	aliases := ok[*kms.ListAliasesOutput](t, "ListAliases")(other.ListAliases(ctx, &kms.ListAliasesInput{KeyId: aws.String(id)}))
	if len(aliases.Aliases) != 1 || aws.ToString(aliases.Aliases[0].AliasName) != "alias/orders" ||
		aws.ToString(aliases.Aliases[0].TargetKeyId) != id || aliases.Aliases[0].AliasArn == nil {
		t.Fatalf("ListAliases: %+v", aliases.Aliases)
	}
	aliasARN := *aliases.Aliases[0].AliasArn
	for _, ref := range []string{id, arn, "alias/orders", aliasARN} {
		d := ok[*kms.DescribeKeyOutput](t, "DescribeKey "+ref)(other.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)}))
		if aws.ToString(d.KeyMetadata.KeyId) != id {
			t.Fatalf("DescribeKey %s: %+v", ref, d.KeyMetadata)
		}
	}

	// Crypto, served by the node that receives it.
	enc := ok[*kms.EncryptOutput](t, "Encrypt")(k.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/orders"),
		Plaintext: []byte("card 4111"), EncryptionContext: map[string]string{"order": "42"}}))
	if len(enc.CiphertextBlob) == 0 || enc.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		t.Fatalf("Encrypt: %+v", enc)
	}
	dec := ok[*kms.DecryptOutput](t, "Decrypt")(other.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob,
		EncryptionContext: map[string]string{"order": "42"}}))
	if string(dec.Plaintext) != "card 4111" || aws.ToString(dec.KeyId) != arn {
		t.Fatalf("Decrypt: %q key %v", dec.Plaintext, aws.ToString(dec.KeyId))
	}
	_, err := other.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"order": "43"}})
	wantType[*types.InvalidCiphertextException](t, "Decrypt with the wrong context", err)

	second := *ok[*kms.CreateKeyOutput](t, "CreateKey 2")(k.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	re := ok[*kms.ReEncryptOutput](t, "ReEncrypt")(k.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob,
		SourceEncryptionContext: map[string]string{"order": "42"}, DestinationKeyId: aws.String(second)}))
	if aws.ToString(re.SourceKeyId) != arn || len(re.CiphertextBlob) == 0 {
		t.Fatalf("ReEncrypt: %+v", re)
	}
	dec2 := ok[*kms.DecryptOutput](t, "Decrypt re-encrypted")(k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob}))
	if string(dec2.Plaintext) != "card 4111" {
		t.Fatalf("Decrypt after ReEncrypt: %q", dec2.Plaintext)
	}
	dk := ok[*kms.GenerateDataKeyOutput](t, "GenerateDataKey")(k.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256}))
	if len(dk.Plaintext) != 32 {
		t.Fatalf("GenerateDataKey plaintext is %d bytes", len(dk.Plaintext))
	}
	dkPlain := ok[*kms.DecryptOutput](t, "Decrypt data key")(other.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob}))
	if !bytes.Equal(dkPlain.Plaintext, dk.Plaintext) {
		t.Fatal("the data key does not decrypt to itself")
	}
	dkw := ok[*kms.GenerateDataKeyWithoutPlaintextOutput](t, "GenerateDataKeyWithoutPlaintext")(k.GenerateDataKeyWithoutPlaintext(ctx,
		&kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(id), NumberOfBytes: aws.Int32(16)}))
	if got := ok[*kms.DecryptOutput](t, "Decrypt data key 2")(k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dkw.CiphertextBlob})); len(got.Plaintext) != 16 {
		t.Fatalf("data key without plaintext is %d bytes", len(got.Plaintext))
	}

	// Lists with pagination.
	page1 := ok[*kms.ListKeysOutput](t, "ListKeys")(other.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(1)}))
	if len(page1.Keys) != 1 || !page1.Truncated || page1.NextMarker == nil {
		t.Fatalf("ListKeys page 1: %+v", page1)
	}
	page2 := ok[*kms.ListKeysOutput](t, "ListKeys 2")(other.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(10), Marker: page1.NextMarker}))
	if len(page2.Keys) != 1 || page2.Truncated || aws.ToString(page2.Keys[0].KeyId) == aws.ToString(page1.Keys[0].KeyId) {
		t.Fatalf("ListKeys page 2: %+v", page2)
	}
	var all int
	pager := kms.NewListKeysPaginator(other, &kms.ListKeysInput{Limit: aws.Int32(1)})
	for pager.HasMorePages() {
		all += len(ok[*kms.ListKeysOutput](t, "ListKeys pager")(pager.NextPage(ctx)).Keys)
	}
	if all != 2 {
		t.Fatalf("the SDK's paginator saw %d keys, want 2", all)
	}

	// Description, tags.
	ok[*kms.UpdateKeyDescriptionOutput](t, "UpdateKeyDescription")(k.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: aws.String(id), Description: aws.String("orders v2")}))
	ok[*kms.TagResourceOutput](t, "TagResource")(k.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id),
		Tags: []types.Tag{{TagKey: aws.String("env"), TagValue: aws.String("prod")}}}))
	ok[*kms.UntagResourceOutput](t, "UntagResource")(k.UntagResource(ctx, &kms.UntagResourceInput{KeyId: aws.String(id), TagKeys: []string{"team"}}))
	tags := ok[*kms.ListResourceTagsOutput](t, "ListResourceTags")(other.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(id)}))
	if len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].TagKey) != "env" || aws.ToString(tags.Tags[0].TagValue) != "prod" || tags.Truncated {
		t.Fatalf("ListResourceTags: %+v", tags)
	}
	if d := ok[*kms.DescribeKeyOutput](t, "DescribeKey")(other.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})); aws.ToString(d.KeyMetadata.Description) != "orders v2" {
		t.Fatalf("description: %v", aws.ToString(d.KeyMetadata.Description))
	}

	// Policies.
	pol := ok[*kms.GetKeyPolicyOutput](t, "GetKeyPolicy")(other.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id), PolicyName: aws.String("default")}))
	if aws.ToString(pol.Policy) == "" {
		t.Fatal("GetKeyPolicy: empty policy")
	}
	newPolicy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*"}]}`
	ok[*kms.PutKeyPolicyOutput](t, "PutKeyPolicy")(k.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), PolicyName: aws.String("default"), Policy: aws.String(newPolicy)}))
	if pol := ok[*kms.GetKeyPolicyOutput](t, "GetKeyPolicy 2")(other.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id)})); aws.ToString(pol.Policy) != newPolicy {
		t.Fatalf("GetKeyPolicy after Put: %s", aws.ToString(pol.Policy))
	}

	// Rotation.
	ok[*kms.EnableKeyRotationOutput](t, "EnableKeyRotation")(k.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(id), RotationPeriodInDays: aws.Int32(180)}))
	rs := ok[*kms.GetKeyRotationStatusOutput](t, "GetKeyRotationStatus")(other.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(id)}))
	if !rs.KeyRotationEnabled || aws.ToInt32(rs.RotationPeriodInDays) != 180 || rs.NextRotationDate == nil ||
		rs.NextRotationDate.Sub(time.Now()) < 179*24*time.Hour {
		t.Fatalf("GetKeyRotationStatus: %+v", rs)
	}
	ok[*kms.RotateKeyOnDemandOutput](t, "RotateKeyOnDemand")(k.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(id)}))
	rots := ok[*kms.ListKeyRotationsOutput](t, "ListKeyRotations")(other.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: aws.String(id)}))
	if len(rots.Rotations) != 1 || rots.Rotations[0].RotationType != types.RotationTypeOnDemand || rots.Rotations[0].RotationDate == nil {
		t.Fatalf("ListKeyRotations: %+v", rots.Rotations)
	}
	ok[*kms.DisableKeyRotationOutput](t, "DisableKeyRotation")(k.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: aws.String(id)}))
	if rs := ok[*kms.GetKeyRotationStatusOutput](t, "GetKeyRotationStatus 2")(other.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(id)})); rs.KeyRotationEnabled {
		t.Fatal("rotation still enabled")
	}
	// The old ciphertext still decrypts after rotation.
	ok[*kms.DecryptOutput](t, "Decrypt after rotation")(k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"order": "42"}}))

	// Disable, enable; errors by type.
	ok[*kms.DisableKeyOutput](t, "DisableKey")(k.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(id)}))
	_, err = other.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantType[*types.DisabledException](t, "Encrypt with a disabled key", err)
	ok[*kms.EnableKeyOutput](t, "EnableKey")(k.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(id)}))
	ok[*kms.EncryptOutput](t, "Encrypt after EnableKey")(other.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")}))
	_, err = other.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/missing")})
	wantType[*types.NotFoundException](t, "DescribeKey of a missing alias", err)
	_, err = k.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/orders"), TargetKeyId: aws.String(second)})
	wantType[*types.AlreadyExistsException](t, "CreateAlias twice", err)
	_, err = k.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: nil})
	if err == nil {
		t.Fatal("Encrypt with no plaintext succeeded")
	}

	ok[*kms.UpdateAliasOutput](t, "UpdateAlias")(k.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/orders"), TargetKeyId: aws.String(second)}))
	if d := ok[*kms.DescribeKeyOutput](t, "DescribeKey by moved alias")(other.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/orders")})); aws.ToString(d.KeyMetadata.KeyId) != second {
		t.Fatalf("alias points at %v, want %s", aws.ToString(d.KeyMetadata.KeyId), second)
	}
	ok[*kms.DeleteAliasOutput](t, "DeleteAlias")(k.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/orders")}))

	// Deletion.
	sched := ok[*kms.ScheduleKeyDeletionOutput](t, "ScheduleKeyDeletion")(k.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)}))
	if sched.KeyState != types.KeyStatePendingDeletion || aws.ToInt32(sched.PendingWindowInDays) != 7 || sched.DeletionDate == nil ||
		sched.DeletionDate.Sub(time.Now()) < 6*24*time.Hour {
		t.Fatalf("ScheduleKeyDeletion: %+v", sched)
	}
	_, err = other.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantType[*types.KMSInvalidStateException](t, "Encrypt with a key pending deletion", err)
	ok[*kms.CancelKeyDeletionOutput](t, "CancelKeyDeletion")(k.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(id)}))
	if d := ok[*kms.DescribeKeyOutput](t, "DescribeKey after cancel")(other.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})); d.KeyMetadata.KeyState != types.KeyStateDisabled {
		t.Fatalf("after CancelKeyDeletion: %v", d.KeyMetadata.KeyState)
	}
}

// TestSDKImport brings its own key material through the AWS SDK: wrapping
// parameters, RSA-OAEP wrapping on the client, import, use, deletion of the
// material.
func TestSDKImport(t *testing.T) {
	ac := newAWSCluster(t)
	f := ac.follower(t)
	k := ac.dev(f)
	ctx := ctxT(t)

	id := *ok[*kms.CreateKeyOutput](t, "CreateKey EXTERNAL")(k.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})).KeyMetadata.KeyId
	if d := ok[*kms.DescribeKeyOutput](t, "DescribeKey")(k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})); d.KeyMetadata.KeyState != types.KeyStatePendingImport || d.KeyMetadata.Origin != types.OriginTypeExternal {
		t.Fatalf("new EXTERNAL key: %+v", d.KeyMetadata)
	}
	params := ok[*kms.GetParametersForImportOutput](t, "GetParametersForImport")(k.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId: aws.String(id), WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048}))
	if params.ParametersValidTo == nil || time.Until(*params.ParametersValidTo) < time.Hour {
		t.Fatalf("ParametersValidTo: %v", params.ParametersValidTo)
	}
	pub, err := x509.ParsePKIXPublicKey(params.PublicKey)
	if err != nil {
		t.Fatalf("PublicKey: %v", err)
	}
	material := make([]byte, 32)
	rand.Read(material)
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), material, nil)
	if err != nil {
		t.Fatal(err)
	}
	imp := ok[*kms.ImportKeyMaterialOutput](t, "ImportKeyMaterial")(k.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: aws.String(id),
		ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapped, ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}))
	if d := ok[*kms.DescribeKeyOutput](t, "DescribeKey imported")(k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})); imp.KeyMaterialId == nil ||
		len(*imp.KeyMaterialId) != 64 || aws.ToString(d.KeyMetadata.CurrentKeyMaterialId) != *imp.KeyMaterialId {
		t.Fatalf("KeyMaterialId %v, CurrentKeyMaterialId %v", imp.KeyMaterialId, d.KeyMetadata.CurrentKeyMaterialId)
	}
	enc := ok[*kms.EncryptOutput](t, "Encrypt with imported material")(k.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("byok")}))
	if got := ok[*kms.DecryptOutput](t, "Decrypt")(ac.dev((f+1)%3).Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})); string(got.Plaintext) != "byok" {
		t.Fatalf("Decrypt: %q", got.Plaintext)
	}
	// New material is staged (PENDING_ROTATION) until RotateKeyOnDemand.
	newMaterial := make([]byte, 32)
	rand.Read(newMaterial)
	wrappedNew, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), newMaterial, nil)
	if err != nil {
		t.Fatal(err)
	}
	staged := ok[*kms.ImportKeyMaterialOutput](t, "ImportKeyMaterial NEW_KEY_MATERIAL")(k.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: aws.String(id),
		ImportToken: params.ImportToken, EncryptedKeyMaterial: wrappedNew, ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire,
		ImportType: types.ImportTypeNewKeyMaterial}))
	all := ok[*kms.ListKeyRotationsOutput](t, "ListKeyRotations ALL_KEY_MATERIAL")(k.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: aws.String(id),
		IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial}))
	if n := len(all.Rotations); n != 2 || all.Rotations[1].KeyMaterialState != types.KeyMaterialStatePendingRotation ||
		aws.ToString(all.Rotations[1].KeyMaterialId) != aws.ToString(staged.KeyMaterialId) {
		t.Fatalf("materials while staged: %+v", all.Rotations)
	}
	ok[*kms.RotateKeyOnDemandOutput](t, "RotateKeyOnDemand")(k.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(id)}))
	if d := ok[*kms.DescribeKeyOutput](t, "DescribeKey rotated")(k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})); aws.ToString(d.KeyMetadata.CurrentKeyMaterialId) != aws.ToString(staged.KeyMaterialId) {
		t.Fatalf("after rotation CurrentKeyMaterialId %v, want %v", d.KeyMetadata.CurrentKeyMaterialId, staged.KeyMaterialId)
	}
	if got := ok[*kms.DecryptOutput](t, "Decrypt v1 after rotation")(ac.dev((f+2)%3).Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})); string(got.Plaintext) != "byok" {
		t.Fatalf("Decrypt: %q", got.Plaintext)
	}
	// A bad token is refused by type.
	_, err = k.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: aws.String(id), ImportToken: []byte("not a token"),
		EncryptedKeyMaterial: wrapped, ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	if err == nil {
		t.Fatal("ImportKeyMaterial with a bad token succeeded")
	}
	ok[*kms.DeleteImportedKeyMaterialOutput](t, "DeleteImportedKeyMaterial")(k.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(id)}))
	_, err = k.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantType[*types.KMSInvalidStateException](t, "Encrypt after DeleteImportedKeyMaterial", err)
}

// TestSDKSignatures checks SigV4: a bad secret, an unknown access key, and
// requests with no or an incomplete signature are refused with AWS's
// exception names, and nothing is done.
func TestSDKSignatures(t *testing.T) {
	ac := newAWSCluster(t)
	ctx := ctxT(t)
	_, err := ac.client(0, ac.id, "wrongwrongwrongwrongwrongwrongwrongwrong").CreateKey(ctx, &kms.CreateKeyInput{})
	wantAPIError(t, "bad secret", err, "InvalidSignatureException")
	_, err = ac.client(1, "AKIAUNKNOWN000000000", ac.secret).ListKeys(ctx, &kms.ListKeysInput{})
	wantAPIError(t, "unknown access key", err, "UnrecognizedClientException")
	keys := ok[*kms.ListKeysOutput](t, "ListKeys")(ac.dev(2).ListKeys(ctx, &kms.ListKeysInput{}))
	if len(keys.Keys) != 0 {
		t.Fatalf("refused requests made keys: %+v", keys.Keys)
	}

	// Raw requests: no Authorization, a truncated one.
	for _, tc := range []struct{ name, authz, want string }{
		{"no signature", "", "MissingAuthenticationTokenException"},
		{"incomplete", "AWS4-HMAC-SHA256 Credential=" + ac.id + "/20260101/us-east-1/kms/aws4_request", "IncompleteSignatureException"},
		{"other scheme", "Basic ZGV2OmRldg==", "IncompleteSignatureException"},
	} {
		req, _ := http.NewRequest(http.MethodPost, ac.urls[0], bytes.NewReader([]byte(`{}`)))
		req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		if tc.authz != "" {
			req.Header.Set("Authorization", tc.authz)
		}
		status, typ, hdr := rawCall(t, req)
		if status != 400 || typ != tc.want || hdr != tc.want {
			t.Errorf("%s: got %d %q (header %q), want 400 %s", tc.name, status, typ, hdr, tc.want)
		}
	}
}

// TestSignatureTimesAndTampering: a signature from more than 15 minutes ago
// or ahead is refused, a body changed after signing is refused, and the
// same request signed now is served.
func TestSignatureTimesAndTampering(t *testing.T) {
	ac := newAWSCluster(t)
	id, secret := ac.id, ac.secret
	for _, tc := range []struct {
		name string
		at   time.Time
		want int
	}{
		{"now", time.Now(), 200},
		{"14 minutes ago", time.Now().Add(-14 * time.Minute), 200},
		{"expired", time.Now().Add(-16 * time.Minute), 400},
		{"in the future", time.Now().Add(16 * time.Minute), 400},
	} {
		status, typ, _ := rawCall(t, signedRequest(t, ac.urls[1], "ListKeys", `{}`, id, secret, tc.at))
		if status != tc.want || (tc.want == 400 && typ != "InvalidSignatureException") {
			t.Errorf("%s: got %d %s, want %d", tc.name, status, typ, tc.want)
		}
	}
	req := signedRequest(t, ac.urls[1], "CreateKey", `{"Description":"a"}`, id, secret, time.Now())
	req.Body = io.NopCloser(bytes.NewReader([]byte(`{"Description":"b"}`)))
	if status, typ, _ := rawCall(t, req); status != 400 || typ != "InvalidSignatureException" {
		t.Errorf("tampered body: got %d %s", status, typ)
	}
	req = signedRequest(t, ac.urls[1], "CreateKey", `{}`, id, secret, time.Now())
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	if status, typ, _ := rawCall(t, req); status != 400 || typ != "InvalidSignatureException" {
		t.Errorf("tampered target: got %d %s", status, typ)
	}
}

// TestProtocolErrors: unknown operations, malformed bodies and unsupported
// members are AWS JSON errors; ListKeyEvents (raftkms's own) is served.
func TestProtocolErrors(t *testing.T) {
	ac := newAWSCluster(t)
	id, secret := ac.id, ac.secret
	for _, tc := range []struct{ name, op, body, want string }{
		{"unknown operation", "CreateCustomKeyStore", `{}`, "UnknownOperationException"},
		{"not JSON", "ListKeys", `{`, "SerializationException"},
		{"wrong type", "ListKeys", `{"Limit":"ten"}`, "SerializationException"},
		{"bad base64", "Decrypt", `{"CiphertextBlob":"%%%"}`, "SerializationException"},
		{"unsupported member", "Decrypt", `{"CiphertextBlob":"eA==","Recipient":{"AttestationDocument":"eA=="}}`, "ValidationException"},
		{"missing key", "DescribeKey", `{"KeyId":"alias/none"}`, "NotFoundException"},
	} {
		status, typ, hdr := rawCall(t, signedRequest(t, ac.urls[0], tc.op, tc.body, id, secret, time.Now()))
		if status != 400 || typ != tc.want || hdr != tc.want {
			t.Errorf("%s: got %d %q (header %q), want 400 %s", tc.name, status, typ, hdr, tc.want)
		}
	}
	// On the leader: with authentication off (as here, without TLS) a
	// forwarded call records its principal as "anonymous".
	leader := ac.urls[ac.c.WaitForLeader(t)]
	status, _, _ := rawCall(t, signedRequest(t, leader, "CreateKey", `{"Description":"events","DryRun":false}`, id, secret, time.Now()))
	if status != 200 {
		t.Fatalf("CreateKey with DryRun false: %d", status)
	}
	resp, err := http.DefaultClient.Do(signedRequest(t, ac.urls[0], "ListKeys", `{}`, id, secret, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var keys struct {
		Keys      []struct{ KeyId, KeyArn string }
		Truncated *bool
	}
	json.NewDecoder(resp.Body).Decode(&keys)
	resp.Body.Close()
	if len(keys.Keys) != 1 || keys.Truncated == nil || *keys.Truncated {
		t.Fatalf("ListKeys raw: %+v", keys)
	}
	resp, err = http.DefaultClient.Do(signedRequest(t, ac.urls[2], "ListKeyEvents", `{"KeyId":"`+keys.Keys[0].KeyId+`"}`, id, secret, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var events struct {
		Events []struct {
			EventType, Principal string
			Time                 float64
		}
	}
	json.NewDecoder(resp.Body).Decode(&events)
	resp.Body.Close()
	if len(events.Events) != 1 || events.Events[0].Principal != "dev" || time.Since(time.Unix(int64(events.Events[0].Time), 0)) > time.Hour {
		t.Fatalf("ListKeyEvents: %+v", events)
	}
}
