package k8splugin_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"
)

// pluginPolicy is the key policy docs/kubernetes.md recommends: the key's
// owner manages it, the plugin's identity may only wrap, unwrap and
// describe.
const pluginPolicy = `{"Version":"2012-10-17","Statement":[
	{"Effect":"Allow","Principal":{"Identity":["owner"]},"Action":"kms:*"},
	{"Effect":"Allow","Principal":{"Identity":["kube-apiserver"]},"Action":["kms:Encrypt","kms:Decrypt","kms:DescribeKey"]}]}`

// TestPluginRotationAndFailover drives the plugin the way kube-apiserver
// does, through the generated KMS v2 client over a unix socket, against a
// 3-node cluster with mutual TLS and key policies: wrap a DEK, rotate the key
// on demand, see the new key_id in Status, wrap under the new version, and
// unwrap every DEK ever wrapped, while the leader is killed, and after every
// node has been down.
func TestPluginRotationAndFailover(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx := testCtx(t)
	owner := c.KMSAs(0, "owner")
	md := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(owner.CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "kubernetes secrets"})).KeyMetadata
	must[*kmsv1.PutKeyPolicyResponse](t, "PutKeyPolicy")(owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: md.KeyId, Policy: pluginPolicy}))
	must[*kmsv1.CreateAliasResponse](t, "CreateAlias")(owner.CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/k8s-secrets", TargetKeyId: md.KeyId}))

	p := startPlugin(t, c, "alias/k8s-secrets", grpc.WithTransportCredentials(c.ClientCreds("kube-apiserver")))
	v1 := keyIDOf(t, md.Arn, 1)
	if healthz, id := p.status(t); healthz != "ok" || id != v1 {
		t.Fatalf("Status = %q, %q; want ok, %q", healthz, id, v1)
	}
	w1 := p.encrypt(t, v1)
	p.mustDecrypt(t, "Decrypt version 1", w1)

	// An identity the key policy does not name gets nothing.
	stranger := startPlugin(t, c, "alias/k8s-secrets", grpc.WithTransportCredentials(c.ClientCreds("stranger")))
	_, err := stranger.api.Status(ctx, &kmsapi.StatusRequest{})
	wantErr(t, "Status as a stranger", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = stranger.api.Decrypt(ctx, w1.decryptReq())
	wantErr(t, "Decrypt as a stranger", err, codes.PermissionDenied, "AccessDeniedException")

	// Rotate on demand: Status names the new version at once (it reads
	// linearizably), and new DEKs are wrapped under it.
	rot := must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(owner.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: md.KeyId}))
	if rot.KeyVersion != 2 {
		t.Fatalf("rotated to version %d", rot.KeyVersion)
	}
	v2 := keyIDOf(t, md.Arn, 2)
	if healthz, id := p.status(t); healthz != "ok" || id != v2 {
		t.Fatalf("Status after rotation = %q, %q; want ok, %q", healthz, id, v2)
	}
	w2 := p.encrypt(t, v2)
	p.mustDecrypt(t, "Decrypt version 1 after rotation", w1)
	p.mustDecrypt(t, "Decrypt version 2", w2)

	// Kill the leader: the plugin's client fails over, old and new DEKs
	// still unwrap, and Status recovers once a new leader serves.
	l := c.Leader()
	c.Kill(l)
	p.mustDecrypt(t, "Decrypt version 1 with the leader dead", w1)
	p.mustDecrypt(t, "Decrypt version 2 with the leader dead", w2)
	p.waitStatus(t, v2)

	// Rotate on the two survivors; the change shows and wraps at once.
	live := (l + 1) % 3
	must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand with the leader dead")(
		c.KMSAs(live, "owner").RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: md.KeyId}))
	v3 := keyIDOf(t, md.Arn, 3)
	if healthz, id := p.status(t); healthz != "ok" || id != v3 {
		t.Fatalf("Status after the second rotation = %q, %q; want ok, %q", healthz, id, v3)
	}
	w3 := p.encrypt(t, v3)
	c.Restart(l)
	c.WaitServing(t)
	for _, w := range []wrapped{w1, w2, w3} {
		p.mustDecrypt(t, "Decrypt after the old leader is back ("+w.resp.KeyId+")", w)
	}

	// Every node down: Status fails (the apiserver's health check with it)
	// and nothing unwraps; when the cluster is back, so is the plugin.
	for i := range 3 {
		c.Kill(i)
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second) // the apiserver's default timeout
	resp, err := p.api.Status(sctx, &kmsapi.StatusRequest{})
	cancel()
	if err == nil && resp.Healthz == "ok" {
		t.Fatalf("Status with every node down = %v; want a failure", resp)
	}
	if code := status.Code(err); err != nil && code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Fatalf("Status with every node down: %v; want Unavailable or DeadlineExceeded", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = p.api.Decrypt(dctx, w1.decryptReq())
	cancel()
	if err == nil {
		t.Fatal("Decrypt with every node down succeeded")
	}
	for i := range 3 {
		c.Restart(i)
	}
	c.WaitServing(t)
	p.waitStatus(t, v3)
	p.mustDecrypt(t, "Decrypt after a full restart", w1)
}

// TestPluginRefusals: a DEK is bound to its key_id, its annotations and the
// plugin's encryption context; an unknown, disabled, pending-deletion or
// deleted key fails clearly; an alias moved to another key changes the
// key_id while DEKs of the old key still unwrap.
func TestPluginRefusals(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithLimits(rpc.Limits{MinPendingWindow: time.Second})))
	c.WaitServing(t)
	ctx := testCtx(t)
	kms := c.KMS(0)
	md := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{})).KeyMetadata
	other := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{})).KeyMetadata
	p := startPlugin(t, c, md.KeyId)
	v1 := keyIDOf(t, md.Arn, 1)
	w := p.encrypt(t, v1)

	t.Run("bindings", func(t *testing.T) {
		for _, tc := range []struct {
			name      string
			edit      func(*kmsapi.DecryptRequest)
			exception string
		}{
			{"key_id of another version", func(r *kmsapi.DecryptRequest) { r.KeyId = keyIDOf(t, md.Arn, 2) }, "InvalidCiphertextException"},
			{"key_id of another key", func(r *kmsapi.DecryptRequest) { r.KeyId = keyIDOf(t, other.Arn, 1) }, "InvalidCiphertextException"},
			{"no key_id", func(r *kmsapi.DecryptRequest) { r.KeyId = "" }, "ValidationException"},
			{"no annotations", func(r *kmsapi.DecryptRequest) { r.Annotations = nil }, "ValidationException"},
			{"unknown scheme", func(r *kmsapi.DecryptRequest) {
				r.Annotations = map[string][]byte{"scheme.kms.raftkms.io": []byte("9")}
			}, "ValidationException"},
			{"flipped bit", func(r *kmsapi.DecryptRequest) {
				r.Ciphertext = bytes.Clone(r.Ciphertext)
				r.Ciphertext[len(r.Ciphertext)-3] ^= 1
			}, "InvalidCiphertextException"},
			{"not a raftkms ciphertext", func(r *kmsapi.DecryptRequest) { r.Ciphertext = []byte("k8s:enc:kms:v2:other-plugin") }, "InvalidCiphertextException"},
			{"empty ciphertext", func(r *kmsapi.DecryptRequest) { r.Ciphertext = nil }, "ValidationException"},
		} {
			req := w.decryptReq()
			tc.edit(req)
			_, err := p.api.Decrypt(ctx, req)
			wantErr(t, tc.name, err, codes.InvalidArgument, tc.exception)
		}
		// A ciphertext an application made with the same key, without the
		// plugin's context, does not pass for a DEK; and a DEK does not
		// unwrap by a plain Decrypt that omits the context.
		app := must[*kmsv1.EncryptResponse](t, "application Encrypt")(kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: md.KeyId, Plaintext: dek(t)}))
		req := w.decryptReq()
		req.Ciphertext = app.CiphertextBlob
		_, err := p.api.Decrypt(ctx, req)
		wantErr(t, "an application's ciphertext", err, codes.InvalidArgument, "InvalidCiphertextException")
		_, err = kms.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: w.resp.Ciphertext})
		wantErr(t, "a DEK without the plugin's context", err, codes.InvalidArgument, "InvalidCiphertextException")
		_, err = p.api.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "x"})
		wantErr(t, "empty DEK", err, codes.InvalidArgument, "ValidationException")
		_, err = p.api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: make([]byte, 2000), Uid: "x"})
		wantErr(t, "DEK too long for 1 kB", err, codes.InvalidArgument, "ValidationException")
		p.mustDecrypt(t, "the untouched DEK", w)
	})

	t.Run("unknown key", func(t *testing.T) {
		for _, ref := range []string{"alias/not-there", "7a1c0a2e-0000-4000-8000-000000000000"} {
			u := startPlugin(t, c, ref)
			_, err := u.api.Status(ctx, &kmsapi.StatusRequest{})
			wantErr(t, "Status of "+ref, err, codes.NotFound, "NotFoundException")
			if !strings.Contains(status.Convert(err).Message(), ref) {
				t.Fatalf("Status of %s: %v does not name the key", ref, err)
			}
			_, err = u.api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek(t), Uid: "x"})
			wantErr(t, "Encrypt with "+ref, err, codes.NotFound, "NotFoundException")
		}
	})

	t.Run("awaiting imported material", func(t *testing.T) {
		ext := must[*kmsv1.CreateKeyResponse](t, "CreateKey EXTERNAL")(kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})).KeyMetadata
		e := startPlugin(t, c, ext.KeyId)
		if healthz, _ := e.status(t); healthz == "ok" || !strings.Contains(healthz, "PendingImport") {
			t.Fatalf("Status of a key without material = %q", healthz)
		}
		_, err := e.api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek(t), Uid: "x"})
		wantErr(t, "Encrypt with a key without material", err, codes.FailedPrecondition, "KMSInvalidStateException")
	})

	t.Run("alias moved", func(t *testing.T) {
		must[*kmsv1.CreateAliasResponse](t, "CreateAlias")(kms.CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/k8s", TargetKeyId: md.KeyId}))
		a := startPlugin(t, c, "alias/k8s")
		old := a.encrypt(t, v1)
		must[*kmsv1.UpdateAliasResponse](t, "UpdateAlias")(kms.UpdateAlias(ctx, &kmsv1.UpdateAliasRequest{AliasName: "alias/k8s", TargetKeyId: other.KeyId}))
		moved := keyIDOf(t, other.Arn, 1)
		if healthz, id := a.status(t); healthz != "ok" || id != moved {
			t.Fatalf("Status after the alias moved = %q, %q; want ok, %q", healthz, id, moved)
		}
		a.encrypt(t, moved)
		a.mustDecrypt(t, "a DEK of the alias's old key", old)
	})

	t.Run("disabled, pending deletion, deleted", func(t *testing.T) {
		must[*kmsv1.DisableKeyResponse](t, "DisableKey")(kms.DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: md.KeyId}))
		if healthz, id := p.status(t); healthz == "ok" || !strings.Contains(healthz, "Disabled") || id != v1 {
			t.Fatalf("Status of a disabled key = %q, %q", healthz, id)
		}
		_, err := p.api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek(t), Uid: "x"})
		wantErr(t, "Encrypt with a disabled key", err, codes.FailedPrecondition, "DisabledException")
		_, err = p.api.Decrypt(ctx, w.decryptReq())
		wantErr(t, "Decrypt with a disabled key", err, codes.FailedPrecondition, "DisabledException")
		must[*kmsv1.EnableKeyResponse](t, "EnableKey")(kms.EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: md.KeyId}))
		if healthz, _ := p.status(t); healthz != "ok" {
			t.Fatalf("Status after EnableKey = %q", healthz)
		}

		must[*kmsv1.ScheduleKeyDeletionResponse](t, "ScheduleKeyDeletion")(kms.ScheduleKeyDeletion(ctx,
			&kmsv1.ScheduleKeyDeletionRequest{KeyId: md.KeyId, PendingWindowSeconds: 1}))
		// The deletion may already be done when Status asks: then the key
		// is NotFound. Before that it is PendingDeletion, never ok.
		if resp, err := p.api.Status(ctx, &kmsapi.StatusRequest{}); err == nil {
			if resp.Healthz == "ok" || !strings.Contains(resp.Healthz, "PendingDeletion") {
				t.Fatalf("Status of a key pending deletion = %q", resp.Healthz)
			}
		} else {
			wantErr(t, "Status of a key pending deletion", err, codes.NotFound, "NotFoundException")
		}
		deadline := time.Now().Add(testcluster.WaitTimeout)
		for {
			_, err := kms.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: md.KeyId})
			if status.Code(err) == codes.NotFound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("key not deleted after its waiting period: %v", err)
			}
			time.Sleep(50 * time.Millisecond) // polling
		}
		_, err = p.api.Decrypt(ctx, w.decryptReq())
		wantErr(t, "Decrypt with a deleted key", err, codes.NotFound, "NotFoundException")
		_, err = p.api.Status(ctx, &kmsapi.StatusRequest{})
		wantErr(t, "Status of a deleted key", err, codes.NotFound, "NotFoundException")
	})
}
