package awsapi_test

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
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
		var resp *clusterv1.CreateAccessKeyResponse
		var err error
		for deadline := time.Now().Add(20 * time.Second); ; {
			// Retried while an election runs (the call carries no request
			// ID, so a retry makes a new key, which is fine here).
			resp, err = admin.CreateAccessKey(ctx, &clusterv1.CreateAccessKeyRequest{Identity: identity})
			if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
		}
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

	// Grants name signed identities too: alice grants bob Encrypt and
	// Decrypt on a second key, then revokes the grant.
	key2 := *ok[*kms.CreateKeyOutput](t, "CreateKey 2 as alice")(aliceF.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	_, err = bobF.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(key2), Plaintext: []byte("x")})
	wantAPIError(t, "Encrypt as bob before the grant", err, "AccessDeniedException")
	g := ok[*kms.CreateGrantOutput](t, "CreateGrant")(aliceF.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: aws.String(key2),
		GranteePrincipal: aws.String("bob"), Operations: []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationDecrypt}}))
	if g.GrantId == nil || g.GrantToken == nil {
		t.Fatalf("CreateGrant: %+v", g)
	}
	grants := ok[*kms.ListGrantsOutput](t, "ListGrants")(aliceL.ListGrants(ctx, &kms.ListGrantsInput{KeyId: aws.String(key2)}))
	if len(grants.Grants) != 1 || aws.ToString(grants.Grants[0].GranteePrincipal) != "bob" || len(grants.Grants[0].Operations) != 2 {
		t.Fatalf("ListGrants: %+v", grants.Grants)
	}
	enc2 := ok[*kms.EncryptOutput](t, "Encrypt as bob with the grant")(bobF.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(key2),
		Plaintext: []byte("granted"), GrantTokens: []string{*g.GrantToken}}))
	ok[*kms.DecryptOutput](t, "Decrypt as bob with the grant")(bobF.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc2.CiphertextBlob,
		GrantTokens: []string{*g.GrantToken}}))
	ok[*kms.RevokeGrantOutput](t, "RevokeGrant")(aliceF.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: aws.String(key2), GrantId: g.GrantId}))
	c.WaitConverged(t)
	_, err = bobF.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc2.CiphertextBlob})
	wantAPIError(t, "Decrypt as bob after the revocation", err, "AccessDeniedException")
}
