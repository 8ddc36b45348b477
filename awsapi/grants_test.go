package awsapi_test

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// TestSDKGrants drives the grant operations, ListKeyPolicies,
// GenerateRandom and DryRun with the AWS SDK for Go, across nodes, and
// checks the shapes the SDK decodes.
func TestSDKGrants(t *testing.T) {
	ac := newAWSCluster(t)
	f := ac.follower(t)
	k, other := ac.dev(f), ac.dev((f+1)%3)
	ctx := ctxT(t)
	id := *ok[*kms.CreateKeyOutput](t, "CreateKey")(k.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId

	in := &kms.CreateGrantInput{KeyId: aws.String(id), GranteePrincipal: aws.String("app"), RetiringPrincipal: aws.String("ops"),
		Operations:  []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationDecrypt},
		Constraints: &types.GrantConstraints{EncryptionContextSubset: map[string]string{"tenant": "acme"}},
		Name:        aws.String("job")}
	_, err := k.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: in.KeyId, GranteePrincipal: in.GranteePrincipal,
		Operations: in.Operations, DryRun: aws.Bool(true)})
	wantType[*types.DryRunOperationException](t, "CreateGrant DryRun", err)
	g := ok[*kms.CreateGrantOutput](t, "CreateGrant")(k.CreateGrant(ctx, in))
	if len(aws.ToString(g.GrantId)) != 64 || aws.ToString(g.GrantToken) == "" {
		t.Fatalf("CreateGrant: %+v", g)
	}
	again := ok[*kms.CreateGrantOutput](t, "CreateGrant again")(other.CreateGrant(ctx, in))
	if aws.ToString(again.GrantId) != aws.ToString(g.GrantId) {
		t.Fatalf("same name and parameters gave grant %s, want %s", aws.ToString(again.GrantId), aws.ToString(g.GrantId))
	}
	list := ok[*kms.ListGrantsOutput](t, "ListGrants")(other.ListGrants(ctx, &kms.ListGrantsInput{KeyId: aws.String(id)}))
	if len(list.Grants) != 1 {
		t.Fatalf("ListGrants: %+v", list.Grants)
	}
	lg := list.Grants[0]
	if aws.ToString(lg.GrantId) != aws.ToString(g.GrantId) || aws.ToString(lg.GranteePrincipal) != "app" || len(lg.Operations) != 2 ||
		lg.Constraints == nil || lg.Constraints.EncryptionContextSubset["tenant"] != "acme" || lg.CreationDate == nil ||
		aws.ToString(lg.Name) != "job" {
		t.Fatalf("ListGrants entry: %+v", lg)
	}
	ret := ok[*kms.ListRetirableGrantsOutput](t, "ListRetirableGrants")(k.ListRetirableGrants(ctx,
		&kms.ListRetirableGrantsInput{RetiringPrincipal: aws.String("ops")}))
	if len(ret.Grants) != 1 {
		t.Fatalf("ListRetirableGrants: %+v", ret.Grants)
	}
	ok[*kms.RetireGrantOutput](t, "RetireGrant")(other.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g.GrantToken}))
	if l := ok[*kms.ListGrantsOutput](t, "ListGrants after")(k.ListGrants(ctx, &kms.ListGrantsInput{KeyId: aws.String(id)})); len(l.Grants) != 0 {
		t.Fatalf("grants after RetireGrant: %+v", l.Grants)
	}
	_, err = k.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: aws.String(id), GrantId: g.GrantId})
	wantType[*types.NotFoundException](t, "RevokeGrant of a retired grant", err)

	pol := ok[*kms.ListKeyPoliciesOutput](t, "ListKeyPolicies")(k.ListKeyPolicies(ctx, &kms.ListKeyPoliciesInput{KeyId: aws.String(id)}))
	if len(pol.PolicyNames) != 1 || pol.PolicyNames[0] != "default" {
		t.Fatalf("ListKeyPolicies: %+v", pol.PolicyNames)
	}
	rnd := ok[*kms.GenerateRandomOutput](t, "GenerateRandom")(k.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(64)}))
	if len(rnd.Plaintext) != 64 {
		t.Fatalf("GenerateRandom gave %d bytes", len(rnd.Plaintext))
	}
	_, err = k.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(1025)})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
		t.Fatalf("GenerateRandom 1025: %v, want ValidationException", err)
	}
}
