package rpc

import (
	"testing"

	"github.com/raftkms/raftkms/fsm"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
)

// TestGrantAuthorization: a grant gives its grantee its operations, within
// its constraints; an explicit Deny in the key policy wins over it; who may
// retire and revoke it.
func TestGrantAuthorization(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	owner, app, ops, other := h.kms("owner"), h.kms("app"), h.kms("ops"), h.kms("other")
	key := h.createKey("owner", nil)
	dept := map[string]string{"dept": "a"}

	_, err := app.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x"), EncryptionContext: dept})
	wantCode(t, "app encrypts before the grant", err, codes.PermissionDenied, "AccessDeniedException")

	_, err = app.CreateGrant(ctx, &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "app", Operations: []string{"Encrypt"}})
	wantCode(t, "app grants itself", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "app", Operations: []string{"Fly"}})
	wantCode(t, "unknown operation", err, codes.InvalidArgument, "ValidationException")
	_, err = owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "app", Operations: []string{"Encrypt"}, DryRun: true})
	wantCode(t, "dry run", err, codes.FailedPrecondition, "DryRunOperationException")
	if n := len(grantsOf(t, h, key)); n != 0 {
		t.Fatalf("dry run made %d grants", n)
	}

	req := &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "app", RetiringPrincipal: "ops", Name: "g1",
		Operations:  []string{"Encrypt", "Decrypt", "RetireGrant"},
		Constraints: &kmsv1.GrantConstraints{EncryptionContextSubset: dept}}
	g, err := owner.CreateGrant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := owner.CreateGrant(ctx, req)
	if err != nil || again.GrantId != g.GrantId || again.GrantToken != g.GrantToken {
		t.Fatalf("same name and parameters: %v, %v; want grant %s", again, err, g.GrantId)
	}

	ct, err := app.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x"), EncryptionContext: map[string]string{"dept": "a", "x": "y"},
		GrantTokens: []string{g.GrantToken}})
	if err != nil {
		t.Fatalf("encrypt under the grant: %v", err)
	}
	_, err = app.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x"), EncryptionContext: map[string]string{"dept": "b"}})
	wantCode(t, "outside the constraint", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = app.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: "AES_256", EncryptionContext: dept})
	wantCode(t, "operation the grant lacks", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = other.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x"), EncryptionContext: dept})
	wantCode(t, "not the grantee", err, codes.PermissionDenied, "AccessDeniedException")
	if _, err := app.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: ct.CiphertextBlob, EncryptionContext: map[string]string{"dept": "a", "x": "y"}}); err != nil {
		t.Fatalf("decrypt under the grant: %v", err)
	}

	// An explicit Deny wins over the grant.
	deny := `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":"kms:*"},` +
		`{"Effect":"Deny","Principal":{"Identity":"app"},"Action":"kms:Decrypt"}]}`
	if _, err := owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: deny}); err != nil {
		t.Fatal(err)
	}
	_, err = app.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: ct.CiphertextBlob, EncryptionContext: map[string]string{"dept": "a", "x": "y"}})
	wantCode(t, "deny wins over grant", err, codes.PermissionDenied, "AccessDeniedException")

	list, err := owner.ListGrants(ctx, &kmsv1.ListGrantsRequest{KeyId: key})
	if err != nil || len(list.Grants) != 1 || list.Grants[0].GrantId != g.GrantId || list.Grants[0].Constraints.EncryptionContextSubset["dept"] != "a" {
		t.Fatalf("ListGrants = %v, %v", list, err)
	}
	_, err = app.ListGrants(ctx, &kmsv1.ListGrantsRequest{KeyId: key})
	wantCode(t, "app lists grants", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = other.ListRetirableGrants(ctx, &kmsv1.ListRetirableGrantsRequest{RetiringPrincipal: "ops"})
	wantCode(t, "other lists ops's retirable grants", err, codes.PermissionDenied, "AccessDeniedException")
	if r, err := ops.ListRetirableGrants(ctx, &kmsv1.ListRetirableGrantsRequest{RetiringPrincipal: "ops"}); err != nil || len(r.Grants) != 1 {
		t.Fatalf("ListRetirableGrants = %v, %v", r, err)
	}

	_, err = other.RetireGrant(ctx, &kmsv1.RetireGrantRequest{GrantToken: g.GrantToken})
	wantCode(t, "other retires", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = ops.RetireGrant(ctx, &kmsv1.RetireGrantRequest{GrantToken: "rkg1.bogus"})
	wantCode(t, "bad token", err, codes.InvalidArgument, "InvalidGrantTokenException")
	_, err = ops.RetireGrant(ctx, &kmsv1.RetireGrantRequest{GrantToken: g.GrantToken, DryRun: true})
	wantCode(t, "retire dry run", err, codes.FailedPrecondition, "DryRunOperationException")
	if _, err := ops.RetireGrant(ctx, &kmsv1.RetireGrantRequest{GrantToken: g.GrantToken}); err != nil {
		t.Fatalf("retiring principal retires by token: %v", err)
	}
	_, err = app.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x"), EncryptionContext: dept})
	wantCode(t, "after retire", err, codes.PermissionDenied, "AccessDeniedException")

	// The grantee retires a grant that gives RetireGrant, by key and grant ID.
	g2, err := owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "app", Operations: []string{"Encrypt", "RetireGrant"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.RetireGrant(ctx, &kmsv1.RetireGrantRequest{KeyId: key, GrantId: g2.GrantId}); err != nil {
		t.Fatalf("grantee retires: %v", err)
	}
	// Revoke needs kms:RevokeGrant in the key policy.
	g3, err := owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "app", Operations: []string{"Encrypt"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.RevokeGrant(ctx, &kmsv1.RevokeGrantRequest{KeyId: key, GrantId: g3.GrantId})
	wantCode(t, "grantee revokes", err, codes.PermissionDenied, "AccessDeniedException")
	if _, err := owner.RevokeGrant(ctx, &kmsv1.RevokeGrantRequest{KeyId: key, GrantId: g3.GrantId}); err != nil {
		t.Fatal(err)
	}
	_, err = owner.RevokeGrant(ctx, &kmsv1.RevokeGrantRequest{KeyId: key, GrantId: g3.GrantId})
	wantCode(t, "revoke twice", err, codes.NotFound, "NotFoundException")
	if n := len(grantsOf(t, h, key)); n != 0 {
		t.Fatalf("%d grants left", n)
	}
}

// TestPolicyConditionsEnforced: a condition on the encryption context and
// on the alias, through the real interceptor.
func TestPolicyConditionsEnforced(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	owner, app := h.kms("owner"), h.kms("app")
	key := h.createKey("owner", nil)
	if _, err := owner.CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/pay", TargetKeyId: key}); err != nil {
		t.Fatal(err)
	}
	doc := `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":"kms:*"},
	 {"Effect":"Allow","Principal":{"Identity":"app"},"Action":"kms:Encrypt",
	  "Condition":{"StringEquals":{"kms:EncryptionContext:dept":"a"},"StringLike":{"kms:RequestAlias":"alias/pa*"}}},
	 {"Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Condition":{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"secret"}}}]}`
	if _, err := owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: doc}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		who   kmsv1.KeyManagementServiceClient
		ref   string
		ec    map[string]string
		allow bool
	}{
		{"by alias with the context", app, "alias/pay", map[string]string{"dept": "a"}, true},
		{"by key ID", app, key, map[string]string{"dept": "a"}, false},
		{"wrong context", app, "alias/pay", map[string]string{"dept": "b"}, false},
		{"no context", app, "alias/pay", nil, false},
		{"denied key in context", app, "alias/pay", map[string]string{"dept": "a", "secret": "1"}, false},
		{"owner denied key in context", owner, key, map[string]string{"secret": "1"}, false},
		{"owner", owner, key, nil, true},
	} {
		_, err := c.who.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: c.ref, Plaintext: []byte("x"), EncryptionContext: c.ec})
		if c.allow {
			wantCode(t, c.name, err, codes.OK, "")
		} else {
			wantCode(t, c.name, err, codes.PermissionDenied, "AccessDeniedException")
		}
	}
	_, err := owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Condition":{"StringEquals":{"aws:SourceIp":"1"}}}]}`})
	wantCode(t, "unknown condition key", err, codes.InvalidArgument, "MalformedPolicyDocumentException")
}

func TestPolicyLockoutCheck(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	owner := h.kms("owner")
	key := h.createKey("owner", nil)
	lockout := `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":["kms:Encrypt","kms:Decrypt"]}]}`
	_, err := owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: lockout})
	wantCode(t, "lockout", err, codes.InvalidArgument, "MalformedPolicyDocumentException")
	_, err = owner.CreateKey(ctx, &kmsv1.CreateKeyRequest{Policy: lockout})
	wantCode(t, "create with lockout", err, codes.InvalidArgument, "MalformedPolicyDocumentException")
	if _, err := owner.CreateKey(ctx, &kmsv1.CreateKeyRequest{Policy: lockout, BypassPolicyLockoutSafetyCheck: true}); err != nil {
		t.Fatalf("create with bypass: %v", err)
	}
	if _, err := owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: lockout, BypassPolicyLockoutSafetyCheck: true}); err != nil {
		t.Fatalf("put with bypass: %v", err)
	}
	_, err = owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: defaultPolicy("owner")})
	wantCode(t, "locked out", err, codes.PermissionDenied, "AccessDeniedException")
	// Admins recover the key, and the check passes for them.
	if _, err := h.kms("admin").PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: lockout}); err != nil {
		t.Fatalf("admin: %v", err)
	}
}

func TestGenerateRandomAndListKeyPolicies(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	owner := h.kms("owner")
	for _, n := range []int32{0, -1, 1025} {
		_, err := owner.GenerateRandom(ctx, &kmsv1.GenerateRandomRequest{NumberOfBytes: n})
		wantCode(t, "GenerateRandom out of range", err, codes.InvalidArgument, "ValidationException")
	}
	for _, n := range []int32{1, 1024} {
		r, err := owner.GenerateRandom(ctx, &kmsv1.GenerateRandomRequest{NumberOfBytes: n})
		if err != nil || len(r.Plaintext) != int(n) {
			t.Fatalf("GenerateRandom(%d) = %v, %v", n, r, err)
		}
	}
	key := h.createKey("owner", nil)
	r, err := owner.ListKeyPolicies(ctx, &kmsv1.ListKeyPoliciesRequest{KeyId: key})
	if err != nil || len(r.PolicyNames) != 1 || r.PolicyNames[0] != "default" {
		t.Fatalf("ListKeyPolicies = %v, %v", r, err)
	}
	_, err = h.kms("other").ListKeyPolicies(ctx, &kmsv1.ListKeyPoliciesRequest{KeyId: key})
	wantCode(t, "other ListKeyPolicies", err, codes.PermissionDenied, "AccessDeniedException")
}

func TestVersionControlsAPI(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	owner := h.kms("owner")
	key := h.createKey("owner", nil)
	ct1, err := owner.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("one")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}); err != nil {
		t.Fatal(err)
	}
	ct2, err := owner.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("two")})
	if err != nil {
		t.Fatal(err)
	}
	decrypt := func(ct []byte) error {
		_, err := owner.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: ct})
		return err
	}
	_, err = h.kms("other").UpdateKeyVersionPolicy(ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 2})
	wantCode(t, "other raises the minimum", err, codes.PermissionDenied, "AccessDeniedException")
	if _, err := owner.UpdateKeyVersionPolicy(ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 2}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "v1 below minimum", decrypt(ct1.CiphertextBlob), codes.FailedPrecondition, "KMSInvalidStateException")
	wantCode(t, "v2", decrypt(ct2.CiphertextBlob), codes.OK, "")
	if _, err := owner.UpdateKeyVersionPolicy(ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 1}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "v1 after lowering", decrypt(ct1.CiphertextBlob), codes.OK, "")
	_, err = owner.DestroyKeyVersion(ctx, &kmsv1.DestroyKeyVersionRequest{KeyId: key, KeyVersion: 2})
	wantCode(t, "destroy current", err, codes.InvalidArgument, "ValidationException")
	if _, err := owner.DestroyKeyVersion(ctx, &kmsv1.DestroyKeyVersionRequest{KeyId: key, KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	err = decrypt(ct1.CiphertextBlob)
	wantCode(t, "v1 destroyed", err, codes.FailedPrecondition, "KMSInvalidStateException")
	wantCode(t, "v2 after destroying v1", decrypt(ct2.CiphertextBlob), codes.OK, "")
	if k, _ := h.f.Key(key); k.Versions[0].Sealed != nil {
		t.Fatal("destroyed version still holds sealed material")
	}
	d, err := owner.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key})
	if err != nil || d.KeyMetadata.MinDecryptionVersion != 1 {
		t.Fatalf("DescribeKey = %v, %v", d, err)
	}
}

func grantsOf(t *testing.T, h *harness, key string) []fsm.Grant {
	t.Helper()
	k, ok := h.f.Key(key)
	if !ok {
		t.Fatalf("no key %s", key)
	}
	return k.Grants
}

// TestGranteeCreatesSubGrants: a grantee with CreateGrant may pass on only
// the operations and constraints of its own grant.
func TestGranteeCreatesSubGrants(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	owner, app := h.kms("owner"), h.kms("app")
	key := h.createKey("owner", nil)
	acme := map[string]string{"tenant": "acme"}
	if _, err := owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "app",
		Operations: []string{"CreateGrant", "Encrypt"}, Constraints: &kmsv1.GrantConstraints{EncryptionContextSubset: acme}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ops  []string
		cons map[string]string
		code codes.Code
	}{
		{"same operation and constraint", []string{"Encrypt"}, acme, codes.OK},
		{"an operation it lacks", []string{"Encrypt", "Decrypt"}, acme, codes.PermissionDenied},
		{"no constraint", []string{"Encrypt"}, nil, codes.PermissionDenied},
		{"another constraint", []string{"Encrypt"}, map[string]string{"tenant": "other"}, codes.PermissionDenied},
	} {
		req := &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "batch", Operations: c.ops}
		if c.cons != nil {
			req.Constraints = &kmsv1.GrantConstraints{EncryptionContextSubset: c.cons}
		}
		_, err := app.CreateGrant(ctx, req)
		if c.code == codes.OK {
			wantCode(t, c.name, err, codes.OK, "")
		} else {
			wantCode(t, c.name, err, c.code, "AccessDeniedException")
		}
	}
	// The owner, through the key policy, is not limited.
	if _, err := owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{KeyId: key, GranteePrincipal: "batch", Operations: []string{"Decrypt"}}); err != nil {
		t.Fatal(err)
	}
}

// TestDryRunCryptoCalls: a cryptographic call with DryRun answers
// DryRunOperationException when it would succeed, and its own error when not.
func TestDryRunCryptoCalls(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	owner := h.kms("owner")
	key := h.createKey("owner", nil)
	enc, err := owner.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = owner.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x"), DryRun: true})
	wantCode(t, "Encrypt", err, codes.FailedPrecondition, "DryRunOperationException")
	_, err = owner.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, DryRun: true})
	wantCode(t, "Decrypt", err, codes.FailedPrecondition, "DryRunOperationException")
	_, err = owner.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: "AES_256", DryRun: true})
	wantCode(t, "GenerateDataKey", err, codes.FailedPrecondition, "DryRunOperationException")
	_, err = owner.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"a": "b"}, DryRun: true})
	wantCode(t, "Decrypt that would fail", err, codes.InvalidArgument, "InvalidCiphertextException")
	_, err = h.kms("other").Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x"), DryRun: true})
	wantCode(t, "Encrypt without permission", err, codes.PermissionDenied, "AccessDeniedException")
}
