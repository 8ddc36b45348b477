package testcluster_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rotation"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
)

// TestGrantsAcrossNodes: a grant made through one node is in force on every
// other node as soon as CreateGrant returns (reads are linearizable, so no
// grant token is needed), and a retire or revoke is honoured everywhere at
// once just the same.
func TestGrantsAcrossNodes(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx := apiCtx(t)
	l := c.WaitForLeader(t)
	f := (l + 1) % 3
	owner := c.KMSAs(f, "owner")
	key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(owner.CreateKey(ctx, &kmsv1.CreateKeyRequest{})).KeyMetadata.KeyId
	ec := map[string]string{"tenant": "t1"}

	for round := 0; round < 3; round++ {
		// Created through a follower; used at once through every node,
		// with no grant token.
		g := must[*kmsv1.CreateGrantResponse](t, "CreateGrant")(owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{
			KeyId: key, GranteePrincipal: "app", RetiringPrincipal: "ops", Operations: []string{"Encrypt", "Decrypt"},
			Constraints: &kmsv1.GrantConstraints{EncryptionContextEquals: ec}}))
		var blob []byte
		for i := range c.N() {
			app := c.KMSAs((f+1+i)%3, "app")
			enc, err := app.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("p"), EncryptionContext: ec})
			if err != nil {
				t.Fatalf("round %d node %d: encrypt under a fresh grant: %v", round, (f+1+i)%3, err)
			}
			blob = enc.CiphertextBlob
			_, err = app.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("p"), EncryptionContext: map[string]string{"tenant": "t2"}})
			wantErr(t, "encrypt outside the grant's constraint", err, codes.PermissionDenied, "AccessDeniedException")
		}
		// Retire (by token, by the retiring principal) or revoke (by the
		// owner) through one node; refused at once through every node.
		if round%2 == 0 {
			must[*kmsv1.RetireGrantResponse](t, "RetireGrant")(c.KMSAs(l, "ops").RetireGrant(ctx, &kmsv1.RetireGrantRequest{GrantToken: g.GrantToken}))
		} else {
			must[*kmsv1.RevokeGrantResponse](t, "RevokeGrant")(c.KMSAs(l, "owner").RevokeGrant(ctx, &kmsv1.RevokeGrantRequest{KeyId: key, GrantId: g.GrantId}))
		}
		for i := range c.N() {
			_, err := c.KMSAs(i, "app").Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: blob, EncryptionContext: ec})
			wantErr(t, "decrypt after the grant is gone", err, codes.PermissionDenied, "AccessDeniedException")
		}
	}
	for i := range c.N() {
		list := must[*kmsv1.ListGrantsResponse](t, "ListGrants")(c.KMSAs(i, "owner").ListGrants(ctx, &kmsv1.ListGrantsRequest{KeyId: key}))
		if len(list.Grants) != 0 {
			t.Fatalf("node %d lists %d grants", i, len(list.Grants))
		}
	}
	// The lockout check through a follower.
	_, err := owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key,
		Policy: `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":"kms:Encrypt"}]}`})
	wantErr(t, "lockout", err, codes.InvalidArgument, "MalformedPolicyDocumentException")
	c.WaitConverged(t)
}

// TestVersionControlsAcrossLeaderKill: the minimum decryption version and
// a destroyed version are honoured on every node, survive the leader's
// death, and come back from a snapshot with the same digest.
func TestVersionControlsAcrossLeaderKill(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	kms := c.KMS((c.Leader() + 1) % 3)
	key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{})).KeyMetadata.KeyId
	blobs := make([][]byte, 4) // blobs[v] is encrypted under version v
	for v := 1; v <= 3; v++ {
		if v > 1 {
			must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(kms.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
		}
		blobs[v] = must[*kmsv1.EncryptResponse](t, "Encrypt")(kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte{byte(v)}})).CiphertextBlob
	}
	// check decrypts every blob on every live node: want[v] is whether
	// version v must still decrypt.
	check := func(what string, want [4]bool) {
		t.Helper()
		for i := range c.N() {
			if !c.Alive(i) {
				continue
			}
			for v := 1; v <= 3; v++ {
				d, err := c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: blobs[v]})
				switch {
				case want[v] && (err != nil || !bytes.Equal(d.Plaintext, []byte{byte(v)})):
					t.Fatalf("%s: node %d version %d: %v", what, i, v, err)
				case !want[v]:
					wantErr(t, what, err, codes.FailedPrecondition, "KMSInvalidStateException")
				}
			}
		}
	}
	check("all versions", [4]bool{false, true, true, true})
	must[*kmsv1.UpdateKeyVersionPolicyResponse](t, "raise")(kms.UpdateKeyVersionPolicy(ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 3}))
	check("minimum 3", [4]bool{false, false, false, true})
	must[*kmsv1.UpdateKeyVersionPolicyResponse](t, "lower")(kms.UpdateKeyVersionPolicy(ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 2}))
	check("minimum 2", [4]bool{false, false, true, true})

	old := c.Leader()
	c.Kill(old)
	c.WaitForLeader(t)
	kms = c.KMS(c.Leader())
	must[*kmsv1.DestroyKeyVersionResponse](t, "destroy v1")(kms.DestroyKeyVersion(ctx, &kmsv1.DestroyKeyVersionRequest{KeyId: key, KeyVersion: 1}))
	_, err := kms.DestroyKeyVersion(ctx, &kmsv1.DestroyKeyVersionRequest{KeyId: key, KeyVersion: 3})
	wantErr(t, "destroy the current version", err, codes.InvalidArgument, "ValidationException")
	must[*kmsv1.UpdateKeyVersionPolicyResponse](t, "set 2 again on the new leader")(kms.UpdateKeyVersionPolicy(ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 2}))
	_, err = kms.UpdateKeyVersionPolicy(ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 1})
	wantErr(t, "lower below a destroyed version", err, codes.FailedPrecondition, "KMSInvalidStateException")
	check("after the leader's death", [4]bool{false, false, true, true})

	c.Restart(old)
	c.WaitConverged(t)
	check("old leader back", [4]bool{false, false, true, true})
	for i := range c.N() {
		k, _ := c.FSM(i).Key(key)
		if v := k.Version(1); v.Sealed != nil || v.DestroyedAt == 0 {
			t.Fatalf("node %d still holds the destroyed version's material", i)
		}
	}

	// Snapshot and restore carry it all, digest for digest.
	var buf bytes.Buffer
	if _, err := c.FSM(0).Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored, err := fsm.New(fsm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := restored.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if restored.Digest() != c.FSM(0).Digest() {
		t.Fatal("restored digest differs")
	}
	if k, _ := restored.Key(key); k.MinDecryptionVersion != 2 || k.Versions[0].DestroyedAt == 0 {
		t.Fatalf("restored key: min %d, version 1 %+v", k.MinDecryptionVersion, k.Versions[0])
	}
}

// TestGrantsSurviveSnapshotRestart: grants, minimum versions and destroyed
// versions come back from every node's snapshot after a full restart.
func TestGrantsSurviveSnapshotRestart(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx := apiCtx(t)
	owner := c.KMSAs(c.Leader(), "owner")
	key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(owner.CreateKey(ctx, &kmsv1.CreateKeyRequest{})).KeyMetadata.KeyId
	g := must[*kmsv1.CreateGrantResponse](t, "CreateGrant")(owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{
		KeyId: key, GranteePrincipal: "app", Operations: []string{"Encrypt"}, Name: "n"}))
	must[*kmsv1.RotateKeyOnDemandResponse](t, "rotate")(owner.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
	must[*kmsv1.DestroyKeyVersionResponse](t, "destroy")(owner.DestroyKeyVersion(ctx, &kmsv1.DestroyKeyVersionRequest{KeyId: key, KeyVersion: 1}))
	c.WaitConverged(t)
	for i := range c.N() {
		if err := c.Node(i).Snapshot(); err != nil {
			t.Fatalf("node %d snapshot: %v", i, err)
		}
	}
	want := c.FSM(0).Digest()
	for i := range c.N() {
		c.Kill(i)
	}
	for i := range c.N() {
		c.Restart(i)
	}
	c.WaitForLeader(t)
	c.WaitConverged(t)
	for i := range c.N() {
		if got := c.FSM(i).Digest(); got != want {
			t.Fatalf("node %d digest after restart %x, before %x", i, got[:8], want[:8])
		}
		if c.Node(i).Restores() == 0 {
			t.Fatalf("node %d did not restore its snapshot", i)
		}
		if _, err := c.KMSAs(i, "app").Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("p")}); err != nil {
			t.Fatalf("node %d: grant lost in the snapshot: %v", i, err)
		}
	}
	again := must[*kmsv1.CreateGrantResponse](t, "CreateGrant again")(owner.CreateGrant(ctx, &kmsv1.CreateGrantRequest{
		KeyId: key, GranteePrincipal: "app", Operations: []string{"Encrypt"}, Name: "n"}))
	if again.GrantId != g.GrantId {
		t.Fatalf("same name and parameters after restore gave grant %s, want %s", again.GrantId, g.GrantId)
	}
}

// TestMaxDecryptionVersionsRetiresOldest: a key rotating every second with
// at most two versions available for decryption has its older versions
// retired by the leader's scheduler, through events, on every node; nothing
// is destroyed, and an operator cannot lower the minimum past the limit.
func TestMaxDecryptionVersionsRetiresOldest(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithLimits(rpc.Limits{MinRotationPeriod: time.Second})))
	c.WaitServing(t)
	ctx := apiCtx(t)
	kms := c.KMS((c.Leader() + 1) % 3)
	key := createKey(t, kms, "retiring")
	v1 := must[*kmsv1.EncryptResponse](t, "Encrypt")(kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("v1")})).CiphertextBlob
	must[*kmsv1.EnableKeyRotationResponse](t, "EnableKeyRotation")(kms.EnableKeyRotation(ctx,
		&kmsv1.EnableKeyRotationRequest{KeyId: key, RotationPeriodSeconds: 1, MaxDecryptionVersions: 2}))
	st := must[*kmsv1.GetKeyRotationStatusResponse](t, "status")(c.KMS(c.Leader()).GetKeyRotationStatus(ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: key}))
	if st.MaxDecryptionVersions != 2 {
		t.Fatalf("rotation status %v", st)
	}

	// Every node reaches version 4 or later with exactly the two newest
	// versions decryptable.
	waitFor(t, "versions retired on every node", func() bool {
		for i := range c.N() {
			k, ok := c.FSM(i).Key(key)
			if !ok || k.CurrentVersion() < 4 || k.MinDecryptionVersion != k.CurrentVersion()-1 {
				return false
			}
		}
		return true
	})
	for i := range c.N() {
		_, err := c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: v1})
		wantErr(t, "decrypt a retired version", err, codes.FailedPrecondition, "KMSInvalidStateException")
	}
	_, err := kms.UpdateKeyVersionPolicy(ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 1})
	wantErr(t, "lower the minimum past the limit", err, codes.InvalidArgument, "ValidationException")

	// Clearing the limit stops retiring; the operator may then re-admit the
	// old versions, whose material was never destroyed.
	must[*kmsv1.EnableKeyRotationResponse](t, "clear the limit")(kms.EnableKeyRotation(ctx,
		&kmsv1.EnableKeyRotationRequest{KeyId: key, RotationPeriodSeconds: 1}))
	must[*kmsv1.UpdateKeyVersionPolicyResponse](t, "re-admit")(kms.UpdateKeyVersionPolicy(ctx,
		&kmsv1.UpdateKeyVersionPolicyRequest{KeyId: key, MinDecryptionVersion: 1}))
	must[*kmsv1.DisableKeyRotationResponse](t, "DisableKeyRotation")(kms.DisableKeyRotation(ctx, &kmsv1.DisableKeyRotationRequest{KeyId: key}))
	c.WaitConverged(t)
	for i := range c.N() {
		d, err := c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: v1})
		if err != nil || string(d.Plaintext) != "v1" {
			t.Fatalf("node %d: version 1 after re-admission: %v", i, err)
		}
		k, _ := c.FSM(i).Key(key)
		retired := 0
		for _, h := range k.History {
			if h.Type == "UpdateKeyVersionPolicy" && h.Principal == rotation.Principal {
				retired++
			}
		}
		if retired < 2 {
			t.Fatalf("node %d: %d retirements by the scheduler in the history", i, retired)
		}
		for _, v := range k.Versions {
			if v.Sealed == nil || v.DestroyedAt != 0 {
				t.Fatalf("node %d: version %d lost its material", i, v.Number)
			}
		}
	}
}
