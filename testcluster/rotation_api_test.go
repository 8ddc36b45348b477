package testcluster_test

import (
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestAPIRotationSettings: periods within the cluster's bounds, the status
// AWS reports, on-demand rotations that leave the automatic schedule alone,
// and the per-key on-demand limit.
func TestAPIRotationSettings(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	key := createKey(t, c.KMS(0), "rotation settings")

	st := must[*kmsv1.GetKeyRotationStatusResponse](t, "status")(c.KMS(1).GetKeyRotationStatus(ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: key}))
	if st.KeyRotationEnabled || st.NextRotationDate != nil {
		t.Fatalf("rotation is on by default: %v", st)
	}
	for _, days := range []int32{89, 2561} {
		_, err := c.KMS(2).EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: key, RotationPeriodInDays: days})
		wantErr(t, "period out of bounds", err, codes.InvalidArgument, "ValidationException")
	}
	_, err := c.KMS(2).EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: key, RotationPeriodSeconds: 2})
	wantErr(t, "a 2 s period on a cluster with the default floor", err, codes.InvalidArgument, "ValidationException")

	must[*kmsv1.EnableKeyRotationResponse](t, "EnableKeyRotation")(c.KMS(2).EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: key}))
	st = must[*kmsv1.GetKeyRotationStatusResponse](t, "status")(c.KMS(0).GetKeyRotationStatus(ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: key}))
	if !st.KeyRotationEnabled || st.RotationPeriodInDays != 365 {
		t.Fatalf("default period: %v", st)
	}
	must[*kmsv1.EnableKeyRotationResponse](t, "EnableKeyRotation 90")(c.KMS(1).EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: key, RotationPeriodInDays: 90}))
	st = must[*kmsv1.GetKeyRotationStatusResponse](t, "status")(c.KMS(0).GetKeyRotationStatus(ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: key}))
	next := st.NextRotationDate.AsTime()
	if st.RotationPeriodInDays != 90 || next.Sub(time.Now()) < 89*24*time.Hour || next.Sub(time.Now()) > 91*24*time.Hour {
		t.Fatalf("90-day period: %v", st)
	}

	// Ten on-demand rotations; the eleventh is refused; the automatic plan
	// never moves.
	for v := uint32(2); v <= 11; v++ {
		r := must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(c.KMS(int(v)%3).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
		if r.KeyVersion != v {
			t.Fatalf("on-demand rotation made version %d, want %d", r.KeyVersion, v)
		}
	}
	_, err = c.KMS(0).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key})
	wantErr(t, "the eleventh on-demand rotation", err, codes.ResourceExhausted, "LimitExceededException")
	st = must[*kmsv1.GetKeyRotationStatusResponse](t, "status")(c.KMS(2).GetKeyRotationStatus(ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: key}))
	if !st.NextRotationDate.AsTime().Equal(next) || st.OnDemandRotationStartDate == nil {
		t.Fatalf("on-demand rotations moved the schedule: %v, was %v", st.NextRotationDate.AsTime(), next)
	}
	rots := must[*kmsv1.ListKeyRotationsResponse](t, "ListKeyRotations")(c.KMS(1).ListKeyRotations(ctx, &kmsv1.ListKeyRotationsRequest{KeyId: key}))
	if len(rots.Rotations) != 10 {
		t.Fatalf("%d rotations listed", len(rots.Rotations))
	}
	for i, r := range rots.Rotations {
		if r.RotationType != "ON_DEMAND" || r.KeyVersion != uint32(i+2) || r.RotationDate == nil {
			t.Fatalf("rotation %d = %v", i, r)
		}
	}
	page := must[*kmsv1.ListKeyRotationsResponse](t, "ListKeyRotations page")(c.KMS(1).ListKeyRotations(ctx, &kmsv1.ListKeyRotationsRequest{KeyId: key, Limit: 4}))
	if len(page.Rotations) != 4 || !page.Truncated {
		t.Fatalf("first page: %v", page)
	}

	// Disabled keys refuse rotation changes; disabling rotation keeps the key.
	must[*kmsv1.DisableKeyRotationResponse](t, "DisableKeyRotation")(c.KMS(0).DisableKeyRotation(ctx, &kmsv1.DisableKeyRotationRequest{KeyId: key}))
	st = must[*kmsv1.GetKeyRotationStatusResponse](t, "status")(c.KMS(2).GetKeyRotationStatus(ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: key}))
	if st.KeyRotationEnabled {
		t.Fatal("rotation still on")
	}
	must[*kmsv1.DisableKeyResponse](t, "DisableKey")(c.KMS(0).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key}))
	_, err = c.KMS(1).EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: key})
	wantErr(t, "enable rotation of a disabled key", err, codes.FailedPrecondition, "DisabledException")
}

// TestAPIImportedMaterialExpires: material imported with a ValidTo a few
// seconds ahead expires on every node when the leader's scheduler says so;
// the key refuses crypto until the same material is imported again, and
// then old ciphertexts decrypt.
func TestAPIImportedMaterialExpires(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	key := must[*kmsv1.CreateKeyResponse](t, "CreateKey EXTERNAL")(c.KMS(0).CreateKey(ctx, &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})).KeyMetadata.KeyId
	material := randomMaterial(t)
	token, wrapped := wrapFor(t, c, 1, key, material)
	must[*kmsv1.ImportKeyMaterialResponse](t, "ImportKeyMaterial")(c.KMS(2).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
		KeyId: key, ImportToken: token, EncryptedKeyMaterial: wrapped,
		ExpirationModel: "KEY_MATERIAL_EXPIRES", ValidTo: timestamppb.New(time.Now().Add(2 * time.Second))}))
	enc := must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(0).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("until expiry")}))

	deadline := time.Now().Add(testcluster.WaitTimeout)
	for {
		d := must[*kmsv1.DescribeKeyResponse](t, "DescribeKey")(c.KMS(1).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key}))
		if d.KeyMetadata.KeyState == "PendingImport" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("material never expired: %v", d.KeyMetadata)
		}
		time.Sleep(100 * time.Millisecond) // polling
	}
	for i := range 3 {
		_, err := c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		wantErr(t, "decrypt after expiry", err, codes.FailedPrecondition, "KMSInvalidStateException")
	}
	token, wrapped = wrapFor(t, c, 2, key, material)
	must[*kmsv1.ImportKeyMaterialResponse](t, "re-import")(c.KMS(0).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
		KeyId: key, ImportToken: token, EncryptedKeyMaterial: wrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"}))
	for i := range 3 {
		d := must[*kmsv1.DecryptResponse](t, "decrypt after re-import")(c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob}))
		if string(d.Plaintext) != "until expiry" {
			t.Fatalf("decrypted %q", d.Plaintext)
		}
	}
	ev := must[*kmsv1.ListKeyEventsResponse](t, "ListKeyEvents")(c.KMS(1).ListKeyEvents(ctx, &kmsv1.ListKeyEventsRequest{KeyId: key}))
	found := false
	for _, e := range ev.Events {
		if e.EventType == "ExpireKeyMaterial" && e.Principal == "raftkms:scheduler" {
			found = true
		}
	}
	if !found {
		t.Fatal("no ExpireKeyMaterial event from the scheduler in the key's history")
	}
}
