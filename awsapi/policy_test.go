package awsapi_test

import (
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/raftkms/raftkms/awsapi"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// TestSignedIdentityIsThePrincipal runs a mutual-TLS cluster with key
// policies on: an access key's identity is the principal exactly as a
// certificate identity is, and a policy's Principal {"AWS": [...]} names the
// same identities on both fronts. Only admins create access keys.
func TestSignedIdentityIsThePrincipal(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx := ctxT(t)
	var urls []string
	for i := 0; i < 3; i++ {
		api := c.Server(i).API()
		h, err := awsapi.New(awsapi.Config{Invoker: api, Credentials: api, Region: testRegion})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	leader := c.WaitForLeader(t)
	f := (leader + 1) % 3
	admin := clusterv1.NewClusterServiceClient(c.DialWith(f, c.ClientCreds("admin")))
	if _, err := clusterv1.NewClusterServiceClient(c.DialWith(f, c.ClientCreds("alice"))).CreateAccessKey(ctx,
		&clusterv1.CreateAccessKeyRequest{Identity: "alice"}); err == nil {
		t.Fatal("a client that is not an admin created an access key")
	}
	keyFor := func(identity string) (*kms.Client, *kms.Client) {
		resp, err := admin.CreateAccessKey(ctx, &clusterv1.CreateAccessKeyRequest{Identity: identity})
		if err != nil {
			t.Fatalf("CreateAccessKey %s: %v", identity, err)
		}
		k := resp.GetAccessKey()
		mk := func(i int) *kms.Client {
			return (&awsCluster{urls: urls}).client(i, k.GetAccessKeyId(), k.GetSecretAccessKey())
		}
		return mk(leader), mk(f)
	}
	aliceL, aliceF := keyFor("alice")
	_, bobF := keyFor("bob")

	// Alice's key is hers (the default policy names its creator).
	key := *ok[*kms.CreateKeyOutput](t, "CreateKey as alice")(aliceF.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	ok[*kms.EncryptOutput](t, "Encrypt as alice")(aliceF.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(key), Plaintext: []byte("x")}))
	_, err := bobF.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(key), Plaintext: []byte("x")})
	wantAPIError(t, "Encrypt as bob", err, "AccessDeniedException")
	if _, err := c.KMSAs(f, "bob").Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); err == nil {
		t.Fatal("bob's certificate may use alice's key")
	}
	// The key's history names alice, through the follower that forwarded it.
	ev, err := c.KMSAs(leader, "alice").ListKeyEvents(ctx, &kmsv1.ListKeyEventsRequest{KeyId: key})
	if err != nil || ev.Events[0].Principal != "alice" {
		t.Fatalf("the key's creator: %v %v", ev, err)
	}

	// An AWS-style policy gives bob Encrypt only, by IAM user ARN.
	policy := (`{"Version":"2012-10-17","Statement":[
	 {"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"kms:*"},
	 {"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::000000000000:user/bob"]},"Action":"kms:Encrypt"}]}`)
	ok[*kms.PutKeyPolicyOutput](t, "PutKeyPolicy as alice")(aliceL.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(key),
		PolicyName: aws.String("default"), Policy: aws.String(policy)}))
	enc := ok[*kms.EncryptOutput](t, "Encrypt as bob")(bobF.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(key), Plaintext: []byte("x")}))
	_, err = bobF.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError(t, "Decrypt as bob", err, "AccessDeniedException")
	// The same policy, the same answers for bob's certificate.
	if _, err := c.KMSAs(f, "bob").Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt with bob's certificate: %v", err)
	}
	if _, err := c.KMSAs(f, "bob").Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob}); err == nil {
		t.Fatal("bob's certificate may decrypt")
	}
	ok[*kms.DecryptOutput](t, "Decrypt as alice")(aliceF.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}))
}
