package fsm

import (
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func createSpec(id, spec, usage string, origin Origin) *eventsv1.Envelope {
	var m []byte
	if origin != originExternal {
		m = mat(id, 1)
	}
	return ev(&eventsv1.CreateKey{KeyId: id, Origin: origin, SealedMaterial: m, KeySpec: spec, KeyUsage: usage})
}

// TestKeySpecRules: which specs and usages CreateKey accepts, and that only
// symmetric keys rotate (AWS KMS's rules: asymmetric and HMAC keys rotate
// neither automatically nor on demand, and take no new imported material).
func TestKeySpecRules(t *testing.T) {
	const k = "k1"
	rsaSign := createSpec(k, "RSA_2048", "SIGN_VERIFY", originGenerated)
	hmacExt := createSpec(k, "HMAC_256", "GENERATE_VERIFY_MAC", originExternal)
	runCases(t, []transitionCase{
		{name: "RSA sign", event: rsaSign, state: stEnabled, check: func(t *testing.T, h *harness) {
			if key := h.key(k); key.KeySpec != "RSA_2048" || key.KeyUsage != "SIGN_VERIFY" || key.IsSymmetric() {
				t.Fatalf("key %s %s", key.KeySpec, key.KeyUsage)
			}
		}},
		{name: "RSA encrypt", event: createSpec(k, "RSA_4096", "ENCRYPT_DECRYPT", originGenerated), state: stEnabled},
		{name: "ECC sign", event: createSpec(k, "ECC_NIST_P521", "SIGN_VERIFY", originGenerated), state: stEnabled},
		{name: "HMAC", event: createSpec(k, "HMAC_224", "GENERATE_VERIFY_MAC", originGenerated), state: stEnabled},
		{name: "HMAC external", event: hmacExt, state: stPendingImport},
		{name: "symmetric usage default", event: createSpec(k, "", "", originGenerated), state: stEnabled, check: func(t *testing.T, h *harness) {
			if key := h.key(k); key.KeySpec != DefaultKeySpec || key.KeyUsage != DefaultKeyUsage {
				t.Fatalf("key %s %s", key.KeySpec, key.KeyUsage)
			}
		}},
		{name: "ECC encrypt", event: createSpec(k, "ECC_NIST_P256", "ENCRYPT_DECRYPT", originGenerated), want: ErrValidation},
		{name: "HMAC sign", event: createSpec(k, "HMAC_256", "SIGN_VERIFY", originGenerated), want: ErrValidation},
		{name: "RSA usage default", event: createSpec(k, "RSA_2048", "", originGenerated), state: stEnabled, check: func(t *testing.T, h *harness) {
			if key := h.key(k); key.KeyUsage != DefaultKeyUsage {
				t.Fatalf("usage %s", key.KeyUsage)
			}
		}},
		{name: "symmetric sign", event: createSpec(k, "SYMMETRIC_DEFAULT", "SIGN_VERIFY", originGenerated), want: ErrValidation},
		{name: "RSA external", event: createSpec(k, "RSA_2048", "SIGN_VERIFY", originExternal), want: ErrUnsupported},
		{name: "managed ECC", event: ev(&eventsv1.CreateKey{KeyId: k, Origin: originService, SealedMaterial: mat(k, 1),
			KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY", RotationPeriodSeconds: 86400}), want: ErrUnsupported},

		{name: "enable rotation of RSA", setup: []*eventsv1.Envelope{rsaSign}, event: enableRot(k, 86400), want: ErrUnsupported},
		{name: "disable rotation of RSA", setup: []*eventsv1.Envelope{rsaSign}, event: disableRot(k), want: ErrUnsupported},
		{name: "on-demand rotation of RSA", setup: []*eventsv1.Envelope{rsaSign}, event: rotate(k, RotationType(eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND), 1), want: ErrUnsupported},
		{name: "automatic rotation of RSA", setup: []*eventsv1.Envelope{rsaSign}, event: rotate(k, RotationType(eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC), 1), want: ErrUnsupported},
		{name: "enable rotation of HMAC", setup: []*eventsv1.Envelope{createSpec(k, "HMAC_512", "GENERATE_VERIFY_MAC", originGenerated)}, event: enableRot(k, 86400), want: ErrUnsupported},
		{name: "import HMAC material", setup: []*eventsv1.Envelope{hmacExt, importParams(k, "t1")},
			event: importMat(k, "t1", eventsv1.ImportType_IMPORT_TYPE_EXISTING_KEY_MATERIAL, 1, "fp1", 0), state: stEnabled},
		{name: "new HMAC material", setup: []*eventsv1.Envelope{hmacExt, importParams(k, "t1"),
			importMat(k, "t1", eventsv1.ImportType_IMPORT_TYPE_EXISTING_KEY_MATERIAL, 1, "fp1", 0)},
			event: importMat(k, "t1", eventsv1.ImportType_IMPORT_TYPE_NEW_KEY_MATERIAL, 2, "fp2", 0), want: ErrUnsupported},
	})
}
